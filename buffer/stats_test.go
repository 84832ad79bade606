package buffer

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestQueueCountersWhileRegistering reads the statistics of queues that do
// not exist yet, from several goroutines, while another goroutine registers
// them (Prepare) and appends their first event. Run with -race (CI does):
// the lookup of an unknown queue reads the queue map that registration
// writes and the seq floors that registration reads. Each reader also checks
// what it saw: a queue's NextSeq never goes back, and before its first event
// it is the seq that first event then gets.
func TestQueueCountersWhileRegistering(t *testing.T) {
	for _, k := range storeKinds {
		t.Run(k.name, func(t *testing.T) {
			s := openTest(t, k.config(t))
			const queues, perPrepare = 40, 4
			names := make([]string, queues)
			for i := range names {
				names[i] = fmt.Sprintf("dev-%02d", i)
			}
			unknownNext := s.QueueCounters("never-used").NextSeq
			if unknownNext < 1 {
				t.Fatalf("an unknown queue reports NextSeq %d, want at least 1", unknownNext)
			}

			stop := make(chan struct{})
			var wg sync.WaitGroup
			for reader := range 3 {
				stats := s.QueueCounters
				if reader == 1 {
					stats = s.QueueStats
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					seen := map[string]uint64{}
					for {
						select {
						case <-stop:
							return
						default:
						}
						for _, name := range names {
							st := stats(name)
							switch {
							case st.Queue != name:
								t.Errorf("statistics of %s name queue %q", name, st.Queue)
								return
							case st.NextSeq < seen[name]:
								t.Errorf("%s: NextSeq went back from %d to %d", name, seen[name], st.NextSeq)
								return
							case st.Appended == 0 && st.NextSeq != unknownNext:
								t.Errorf("%s before its first event: NextSeq %d, want %d", name, st.NextSeq, unknownNext)
								return
							}
							seen[name] = st.NextSeq
						}
					}
				}()
			}

			for i := 0; i < queues; i += perPrepare {
				batch := names[i : i+perPrepare]
				if err := s.Prepare(batch...); err != nil {
					t.Errorf("Prepare(%v): %v", batch, err)
					break
				}
				for _, name := range batch {
					if seq, err := s.Append(name, testTopic, seqPayload(5)); err != nil || seq != unknownNext {
						t.Errorf("first Append to %s: seq %d, %v; want seq %d, the NextSeq it had while unknown", name, seq, err, unknownNext)
					}
				}
			}
			close(stop)
			wg.Wait()

			for _, name := range names {
				if c := s.QueueCounters(name); c.Appended != 1 || c.Len != 1 || c.NextSeq != unknownNext+1 {
					t.Errorf("QueueCounters(%s) = %+v, want 1 appended and waiting, NextSeq %d", name, c, unknownNext+1)
				}
			}
		})
	}
}

// TestLostWithoutTheQueueLock: Lost counts what QueueCounters reports as
// Dropped + Failed, and answers while the queue's mutex is held (as the
// writer holds it over its Badger transaction): the poll path calls it for
// every reading and must not wait for the disk.
func TestLostWithoutTheQueueLock(t *testing.T) {
	s := openTest(t, Config{Dir: t.TempDir(), MaxBytes: 512 << 10, OnFull: DropNewest, Sync: time.Second})
	if got := s.Lost("q"); got != 0 {
		t.Fatalf("Lost of an unknown queue = %d, want 0", got)
	}
	refused := 0
	for range 1000 {
		if _, err := s.Append("q", testTopic, seqPayload(1000)); errors.Is(err, ErrFull) {
			refused++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if refused == 0 {
		t.Fatal("nothing was refused: the test shows nothing")
	}
	c := s.QueueCounters("q")
	if got := s.Lost("q"); got != c.Dropped+c.Failed || got != uint64(refused) {
		t.Fatalf("Lost = %d, want Dropped %d + Failed %d = the %d refused", got, c.Dropped, c.Failed, refused)
	}

	q, _ := s.lookupQueue("q")
	q.mu.Lock() // as the writer does over a transaction
	got := make(chan uint64, 1)
	go func() { got <- s.Lost("q") }()
	select {
	case n := <-got:
		q.mu.Unlock()
		if n != uint64(refused) {
			t.Fatalf("Lost under the held lock = %d, want %d", n, refused)
		}
	case <-time.After(5 * time.Second):
		q.mu.Unlock()
		t.Fatal("Lost waited for the queue's mutex")
	}
}
