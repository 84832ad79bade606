package buffer

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const testTopic = "iot-2/evt/reading/fmt/json"

// TestEnqueueConcurrent hands events of several queues over from several
// goroutines at once, with Append mixed in on one queue, and checks that
// each queue is stored and delivered complete and in seq order, and that
// the in-memory counters match.
func TestEnqueueConcurrent(t *testing.T) {
	for _, k := range storeKinds {
		t.Run(k.name, func(t *testing.T) {
			s := openTest(t, k.config(t))
			const queues, per = 4, 300
			var wg sync.WaitGroup
			for i := range queues {
				wg.Add(1)
				go func() {
					defer wg.Done()
					q := fmt.Sprintf("q%d", i)
					for n := range per {
						var err error
						if i == 0 && n%7 == 0 {
							_, err = s.Append(q, testTopic, seqPayload(20)) // waits behind the writer
						} else {
							_, err = s.Enqueue(q, testTopic, seqPayload(20))
						}
						if err != nil {
							t.Errorf("queue %s event %d: %v", q, n, err)
							return
						}
					}
				}()
			}
			wg.Wait()
			if err := s.Flush(); err != nil {
				t.Fatal(err)
			}
			for i := range queues {
				q := fmt.Sprintf("q%d", i)
				c := s.QueueCounters(q)
				if c.Appended != per || c.Len != per || c.NextSeq != per+1 || c.Dropped+c.Failed != 0 {
					t.Errorf("QueueCounters(%s) = %+v, want %d appended and waiting, NextSeq %d, nothing lost", q, c, per, per+1)
				}
				st := s.QueueStats(q)
				st.OldestAge = 0
				if diff := cmp.Diff(st, c); diff != "" {
					t.Errorf("QueueCounters(%s) differs from QueueStats (-stats +counters):\n%s", q, diff)
				}
				if diff := cmp.Diff(seqRange(1, per), drainAll(t, s, q)); diff != "" {
					t.Errorf("queue %s delivered (-want +got):\n%s", q, diff)
				}
			}
		})
	}
}

// TestEnqueueNeverWaitsForTheDisk holds the writer inside its commit (the
// gate, as reclamation does) and shows that Enqueue keeps returning: once
// the hand-over channel is full it refuses events, counted as dropped,
// without consuming their seq; what was accepted is stored afterwards.
func TestEnqueueNeverWaitsForTheDisk(t *testing.T) {
	cfg := Config{Dir: t.TempDir(), Sync: 5 * time.Millisecond, writeQueue: 2}
	s := openTest(t, cfg)
	mustAppend(t, s, "d", 1, 5) // queue registered, seq 1 stored

	s.gate.Lock() // the disk is "stalled"
	var accepted []uint64
	var refused int
	for range 10 {
		seq, err := s.Enqueue("d", testTopic, seqPayload(5))
		switch {
		case err == nil:
			accepted = append(accepted, seq)
		case errors.Is(err, ErrFull):
			refused++
		default:
			s.gate.Unlock()
			t.Fatalf("Enqueue while the writer is stalled: %v", err)
		}
	}
	c := s.QueueCounters("d")
	s.gate.Unlock()
	// The channel holds two; the writer holds the batch it gathered.
	if len(accepted) < 2 || refused == 0 || refused != 10-len(accepted) {
		t.Fatalf("accepted %v, refused %d while stalled; want at least 2 accepted, the rest refused", accepted, refused)
	}
	if c.Dropped != uint64(refused) || c.NextSeq != uint64(2+len(accepted)) {
		t.Errorf("while stalled: QueueCounters = %+v, want Dropped %d, NextSeq %d (refusals consume no seq)", c, refused, 2+len(accepted))
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	if c := s.QueueCounters("d"); c.Appended != uint64(1+len(accepted)) {
		t.Errorf("after the stall Appended = %d, want %d", c.Appended, 1+len(accepted))
	}
	if diff := cmp.Diff(append([]uint64{1}, accepted...), drainAll(t, s, "d")); diff != "" {
		t.Errorf("delivered (-want +got):\n%s", diff)
	}
}

// TestEnqueueDiskFull: the writer runs the disk guard before its commit; an
// event refused there keeps its seq consumed and is counted as failed, in
// state.json across a restart, like Append's.
func TestEnqueueDiskFull(t *testing.T) {
	var free atomic.Int64
	free.Store(30 << 20)
	cfg := Config{Dir: t.TempDir(), Sync: time.Millisecond, MinFree: 16 << 20,
		diskFree: func(string) (int64, error) { return free.Load(), nil }}
	s := openTest(t, cfg)
	mustAppend(t, s, "d", 2, 5)
	free.Store(12 << 20)
	for range 3 {
		if _, err := s.Enqueue("d", testTopic, seqPayload(5)); err != nil {
			t.Fatalf("Enqueue on a full disk = %v, want nil (the writer refuses it)", err)
		}
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	if c := s.QueueCounters("d"); c.Failed != 3 || c.Appended != 2 || c.NextSeq != 6 {
		t.Errorf("QueueCounters on a full disk = %+v, want Failed 3, Appended 2, NextSeq 6", c)
	}
	free.Store(30 << 20)
	seq, err := s.Enqueue("d", testTopic, seqPayload(5))
	if err != nil || seq != 6 {
		t.Fatalf("Enqueue after space returned = %d, %v; want 6", seq, err)
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]uint64{1, 2, 6}, drainAll(t, s, "d")); diff != "" {
		t.Errorf("delivered (-want +got):\n%s", diff)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, cfg)
	if c := s.QueueCounters("d"); c.Failed != 3 || c.NextSeq != 7 {
		t.Errorf("after reopen QueueCounters = %+v, want Failed 3, NextSeq 7", c)
	}
}

// TestEnqueueDropNewest: the cap counts events still waiting for the
// writer, so drop_newest refuses at hand-over, without consuming the seq.
func TestEnqueueDropNewest(t *testing.T) {
	for _, k := range storeKinds {
		t.Run(k.name, func(t *testing.T) {
			s := openTest(t, smallCap(k, t, DropNewest))
			var accepted []uint64
			refused := 0
			for i := 0; i < 5000 && refused < 5; i++ {
				seq, err := s.Enqueue("d", testTopic, seqPayload(200))
				switch {
				case err == nil:
					accepted = append(accepted, seq)
				case errors.Is(err, ErrFull):
					refused++
				default:
					t.Fatal(err)
				}
			}
			if err := s.Flush(); err != nil {
				t.Fatal(err)
			}
			c := s.QueueCounters("d")
			if refused == 0 || c.Dropped != uint64(refused) || c.Bytes > s.cfg.MaxBytes || c.Appended != uint64(len(accepted)) {
				t.Errorf("accepted %d, refused %d, counters %+v; want Dropped = refused and Bytes <= %d", len(accepted), refused, c, s.cfg.MaxBytes)
			}
			if diff := cmp.Diff(seqRange(1, uint64(len(accepted))), accepted); diff != "" {
				t.Errorf("accepted seqs not contiguous (-want +got):\n%s", diff)
			}
		})
	}
}

// TestCloseCommitsEnqueued: Close waits for the writer, so every event
// accepted before Close is stored and there after reopening.
func TestCloseCommitsEnqueued(t *testing.T) {
	cfg := Config{Dir: t.TempDir(), Sync: 5 * time.Millisecond}
	s := openTest(t, cfg)
	for range 200 {
		if _, err := s.Enqueue("d", testTopic, seqPayload(10)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Enqueue("d", testTopic, seqPayload(10)); !errors.Is(err, ErrClosed) {
		t.Errorf("Enqueue after Close = %v, want ErrClosed", err)
	}
	if err := s.Flush(); !errors.Is(err, ErrClosed) {
		t.Errorf("Flush after Close = %v, want ErrClosed", err)
	}
	s = openTest(t, cfg)
	if c := s.QueueCounters("d"); c.Len != 200 || c.NextSeq != 201 {
		t.Errorf("after reopen QueueCounters = %+v, want 200 waiting, NextSeq 201", c)
	}
}

// TestQueueCountersAcrossRestart: the counters QueueCounters reads from
// memory are the ones QueueStats reports; Failed is persisted in state.json
// and comes back after a restart, the others count since Open.
func TestQueueCountersAcrossRestart(t *testing.T) {
	var free atomic.Int64
	free.Store(30 << 20)
	cfg := Config{Dir: t.TempDir(), Sync: time.Millisecond, MinFree: 16 << 20,
		diskFree: func(string) (int64, error) { return free.Load(), nil }}
	s := openTest(t, cfg)
	mustAppend(t, s, "d", 3, 5)
	free.Store(12 << 20)
	if _, err := s.Append("d", testTopic, seqPayload(5)); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("Append on a full disk = %v, want ErrDiskFull", err)
	}
	free.Store(30 << 20)
	drainAll(t, s, "d")
	want := QueueStats{Queue: "d", NextSeq: 5, Appended: 3, Acked: 3, Failed: 1}
	if diff := cmp.Diff(want, s.QueueCounters("d")); diff != "" {
		t.Errorf("QueueCounters before restart (-want +got):\n%s", diff)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, cfg)
	// The failed seq 4 is past the last record: Open counts it as skipped.
	want = QueueStats{Queue: "d", NextSeq: 5, Failed: 1, Skipped: 1}
	if diff := cmp.Diff(want, s.QueueCounters("d")); diff != "" {
		t.Errorf("QueueCounters after restart (-want +got):\n%s", diff)
	}
	if got := s.QueueCounters("never-used"); got.Appended != 0 || got.NextSeq == 0 {
		t.Errorf("QueueCounters of an unknown queue = %+v, want zero counters and a NextSeq", got)
	}
}

// TestPrepareLeasesInOneWrite: Prepare registers queues and leases their
// seqs in one state.json write, so their first events do not rewrite it;
// numbering is unchanged and continues after a restart.
func TestPrepareLeasesInOneWrite(t *testing.T) {
	cfg := Config{Dir: t.TempDir(), Sync: 5 * time.Millisecond, leaseBlock: 64}
	s := openTest(t, cfg)
	if err := s.Prepare("c", "a", "b", "a"); err != nil {
		t.Fatal(err)
	}
	before, err := readState(cfg.Dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"a", "b", "c"} {
		if before.Leases[q] < 1+64 {
			t.Errorf("lease of %s after Prepare = %d, want at least %d", q, before.Leases[q], 1+64)
		}
		for range 10 {
			if _, err := s.Enqueue(q, testTopic, seqPayload(5)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	after, err := readState(cfg.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if !after.Written.Equal(before.Written) {
		t.Errorf("state.json rewritten by the first events (written %v, then %v): Prepare's leases were not used", before.Written, after.Written)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, cfg)
	for _, q := range []string{"a", "b", "c"} {
		if c := s.QueueCounters(q); c.Len != 10 || c.NextSeq != 11 {
			t.Errorf("after reopen QueueCounters(%s) = %+v, want 10 waiting, NextSeq 11", q, c)
		}
	}
	if err := s.Prepare(""); err == nil {
		t.Error("Prepare(\"\") = nil, want an error")
	}
}

// TestEnqueueDropOldestLargeBatch: events that pile up while the writer is
// held are committed in batches that drop_oldest can make room for, even
// when together they exceed MaxBytes: the oldest are dropped (counted),
// none fails.
func TestEnqueueDropOldestLargeBatch(t *testing.T) {
	for _, k := range storeKinds {
		t.Run(k.name, func(t *testing.T) {
			s := openTest(t, smallCap(k, t, DropOldest))
			mustAppend(t, s, "d", 1, 10)
			s.gate.Lock()
			for range 8 { // 8 × ~100 KB, twice the cap
				if _, err := s.Enqueue("d", testTopic, seqPayload(100_000)); err != nil {
					s.gate.Unlock()
					t.Fatal(err)
				}
			}
			s.gate.Unlock()
			if err := s.Flush(); err != nil {
				t.Fatal(err)
			}
			c := s.QueueCounters("d")
			if c.Failed != 0 || c.Dropped == 0 || c.Bytes > s.cfg.MaxBytes || c.Appended != 9 {
				t.Errorf("QueueCounters = %+v, want 9 appended, none failed, the oldest dropped, Bytes <= %d", c, s.cfg.MaxBytes)
			}
		})
	}
}

// TestEventsReadiedTogetherShareACommit: events handed over by goroutines
// that became runnable at the same moment (the buses of one poll slot) go
// into one Badger transaction. On one CPU the first of them makes the
// writer run next; without its yield the writer committed that event alone.
// The runtime's run-queue fairness check may still let the writer in early
// now and then, so most rounds, not all, must share one commit (without the
// yield none does).
func TestEventsReadiedTogetherShareACommit(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	s := openTest(t, Config{Dir: t.TempDir(), Sync: time.Second, ackDelay: time.Hour})
	names := queueNames(8)
	if err := s.Prepare(names...); err != nil {
		t.Fatal(err)
	}
	const rounds = 10
	shared := 0
	for range rounds {
		if err := s.Flush(); err != nil {
			t.Fatal(err)
		}
		before := s.commits.Load()
		start := make(chan struct{})
		var wg sync.WaitGroup
		for _, q := range names {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				if _, err := s.Enqueue(q, testTopic, seqPayload(20)); err != nil {
					t.Error(err)
				}
			}()
		}
		close(start)
		wg.Wait()
		if err := s.Flush(); err != nil {
			t.Fatal(err)
		}
		if s.commits.Load()-before == 1 {
			shared++
		}
	}
	if shared < rounds/2 {
		t.Errorf("%d of %d rounds of 8 events readied together went into one commit, want at least %d", shared, rounds, rounds/2)
	}
	t.Logf("%d of %d rounds in one commit", shared, rounds)
}
