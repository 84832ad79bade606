package buffer

import (
	"fmt"
	"sync"
	"testing"
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
