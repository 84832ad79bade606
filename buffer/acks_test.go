package buffer

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"fieldbridge/internal/testwait"

	"github.com/google/go-cmp/cmp"
)

// runForwarders runs Forward on every queue with pub until the test ends.
func runForwarders(t *testing.T, s *Store, queues []string, pub Publisher) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, q := range queues {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Forward(ctx, q, pub); err != nil && err != ErrClosed {
				t.Errorf("Forward(%s) = %v", q, err)
			}
		}()
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
}

func queueNames(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("dev-%03d", i)
	}
	return names
}

// TestAcksShareCommits is paced load: every queue gets one event per round,
// and its forwarder has nothing more to send after the acknowledgement. No
// acknowledgement may cost a commit of its own: the cursors of all queues
// ride with the next round's events: three transactions per round at most
// (the writer is held while a round is handed over, so its events make at
// most two batches; the Flush marker may make a third). Committing the cursor per acknowledgement, as before,
// took one transaction per event.
func TestAcksShareCommits(t *testing.T) {
	cfg := Config{Dir: t.TempDir(), Sync: 5 * time.Millisecond, ackDelay: time.Hour}
	s := openTest(t, cfg)
	const queues, rounds = 100, 5
	names := queueNames(queues)
	if err := s.Prepare(names...); err != nil {
		t.Fatal(err)
	}
	runForwarders(t, s, names, &fakePublisher{})
	before := s.commits.Load()
	for round := 1; round <= rounds; round++ {
		s.gate.Lock() // hold the writer: the round gathers in its channel
		for _, q := range names {
			if _, err := s.Enqueue(q, testTopic, seqPayload(20)); err != nil {
				s.gate.Unlock()
				t.Fatal(err)
			}
		}
		s.gate.Unlock()
		if err := s.Flush(); err != nil {
			t.Fatal(err)
		}
		testwait.For(t, 20*time.Second, fmt.Sprintf("round %d acknowledged", round), func() bool {
			for _, q := range names {
				if c := s.QueueCounters(q); c.Acked != uint64(round) {
					return false
				}
			}
			return true
		})
		// The previous round's cursors went with this round's events.
		for _, q := range names {
			if got := diskCursor(t, s, q); got < uint64(round-1) || got > uint64(round) {
				t.Fatalf("round %d: cursor of %s on disk = %d, want %d or %d", round, q, got, round-1, round)
			}
		}
	}
	if err := s.Flush(); err != nil { // the last round's cursors, in one transaction
		t.Fatal(err)
	}
	commits := s.commits.Load() - before
	if commits > 3*rounds+1 {
		t.Errorf("%d acknowledgements of %d queues took %d commits, want at most %d (three per round and the last Flush)",
			queues*rounds, queues, commits, 3*rounds+1)
	}
	for _, q := range names {
		if got := diskCursor(t, s, q); got != rounds {
			t.Errorf("cursor of %s on disk after the last Flush = %d, want %d", q, got, rounds)
		}
	}
	t.Logf("%d acknowledgements, %d commits (events and cursors)", queues*rounds, commits)
}

// TestAckDelayCommitsQuietCursors: with no further events, settled cursors
// are committed by the writer's timer.
func TestAckDelayCommitsQuietCursors(t *testing.T) {
	s := openTest(t, Config{Dir: t.TempDir(), Sync: 5 * time.Millisecond, ackDelay: 20 * time.Millisecond})
	names := queueNames(10)
	for _, q := range names {
		mustAppend(t, s, q, 3, 10)
	}
	runForwarders(t, s, names, &fakePublisher{})
	testwait.For(t, 20*time.Second, "every cursor committed", func() bool {
		for _, q := range names {
			if diskCursor(t, s, q) != 3 {
				return false
			}
		}
		return true
	})
	// The timer fired, the writer took the cursors: nothing waits, so
	// nothing is armed to wake it again.
	testwait.For(t, 20*time.Second, "the ack timer stopped", func() bool { return !s.ackTimerArmed() })
}

// TestAckTimerRunsOnlyWhileCursorsWait: an idle Store arms no timer;
// settling an acknowledgement arms the ackDelay timer without waking the
// writer; the next batch (here a Flush) takes the cursors along and stops
// the timer, so that it does not wake the writer for nothing.
func TestAckTimerRunsOnlyWhileCursorsWait(t *testing.T) {
	s := openTest(t, Config{Dir: t.TempDir(), Sync: 5 * time.Millisecond, ackDelay: time.Hour})
	names := queueNames(10)
	if err := s.Prepare(names...); err != nil {
		t.Fatal(err)
	}
	if s.ackTimerArmed() || s.ackTimerSet.Load() != 0 {
		t.Fatal("a fresh Store armed the ack timer")
	}
	runForwarders(t, s, names, &fakePublisher{})
	// Append returns after its commit: the last queue's event is settled
	// after the last batch, so the timer must be running at the end (the
	// earlier ones may ride with a later append's batch).
	for _, q := range names {
		mustAppend(t, s, q, 1, 20)
	}
	wakes := s.writerWakes.Load()
	testwait.For(t, 20*time.Second, "every event acknowledged", func() bool {
		for _, q := range names {
			if s.QueueCounters(q).Acked != 1 {
				return false
			}
		}
		return true
	})
	if got := s.writerWakes.Load() - wakes; got != 0 {
		t.Errorf("settling 10 acknowledgements woke the writer %d times, want 0 (the timer is armed by the settler)", got)
	}
	if !s.ackTimerArmed() {
		t.Fatal("settled cursors wait, but the ack timer is not armed")
	}
	if err := s.Flush(); err != nil { // a batch: it takes the cursors
		t.Fatal(err)
	}
	if s.ackTimerArmed() {
		t.Error("the batch took every cursor, but the ack timer still runs")
	}
	for _, q := range names {
		if got := diskCursor(t, s, q); got != 1 {
			t.Errorf("cursor of %s on disk = %d, want 1", q, got)
		}
	}
}

// TestAcksCommittedOnStopAndClose: a forwarder that stops commits its
// cursor before Forward returns; Close commits the cursors settled before
// it.
func TestAcksCommittedOnStopAndClose(t *testing.T) {
	cfg := Config{Dir: t.TempDir(), Sync: 5 * time.Millisecond, ackDelay: time.Hour}
	s := openTest(t, cfg)
	mustAppend(t, s, "stop", 5, 10)
	forwardUntil(t, s, "stop", &fakePublisher{}, "5 acknowledged", func() bool { return s.QueueCounters("stop").Acked == 5 })
	if got := diskCursor(t, s, "stop"); got != 5 {
		t.Errorf("cursor on disk after Forward returned = %d, want 5", got)
	}

	mustAppend(t, s, "close", 5, 10)
	runForwarders(t, s, []string{"close"}, &fakePublisher{})
	testwait.For(t, 20*time.Second, "5 acknowledged", func() bool { return s.QueueCounters("close").Acked == 5 })
	if got := diskCursor(t, s, "close"); got == 5 {
		t.Fatalf("cursor committed before Close with an hour's ack delay: the test shows nothing")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, cfg)
	if got := s.QueueStats("close"); got.Len != 0 || got.NextSeq != 6 {
		t.Errorf("after Close and reopen QueueStats = %+v, want empty, NextSeq 6", got)
	}
}

// TestAcksPassWhenEventsRefused: with free space between MinFree/2 and
// MinFree the writer refuses a batch's events but commits the cursors that
// waited for it, so that a full buffer still drains.
func TestAcksPassWhenEventsRefused(t *testing.T) {
	var free atomic.Int64
	free.Store(30 << 20)
	cfg := Config{Dir: t.TempDir(), Sync: time.Millisecond, MinFree: 16 << 20, ackDelay: time.Hour,
		diskFree: func(string) (int64, error) { return free.Load(), nil }}
	s := openTest(t, cfg)
	mustAppend(t, s, "a", 4, 10)
	runForwarders(t, s, []string{"a"}, &fakePublisher{})
	testwait.For(t, 20*time.Second, "4 acknowledged", func() bool { return s.QueueCounters("a").Acked == 4 })
	if got := diskCursor(t, s, "a"); got != 0 {
		t.Fatalf("cursor on disk = %d before any batch with an hour's ack delay, want 0", got)
	}
	free.Store(12 << 20) // below MinFree, above MinFree/2
	if _, err := s.Enqueue("b", testTopic, seqPayload(10)); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	if c := s.QueueCounters("b"); c.Failed != 1 || c.Appended != 0 {
		t.Errorf("QueueCounters(b) = %+v, want the event refused (Failed 1)", c)
	}
	if got := diskCursor(t, s, "a"); got != 4 {
		t.Errorf("cursor of a on disk after a refused batch = %d, want 4", got)
	}
}

// TestFreshRecordsSkipBadgerReads: at paced load the forwarder takes each
// committed event from memory and never reads Badger; a backlog (events
// committed before the forwarder ran) is read from Badger.
func TestFreshRecordsSkipBadgerReads(t *testing.T) {
	for _, k := range storeKinds {
		t.Run(k.name, func(t *testing.T) {
			s := openTest(t, k.config(t))
			backlog := mustAppend(t, s, "d", 30, 10)
			pub := &fakePublisher{}
			runForwarders(t, s, []string{"d"}, pub)
			testwait.For(t, 20*time.Second, "backlog delivered", func() bool { return s.QueueCounters("d").Acked == 30 })
			if s.reads.Load() == 0 {
				t.Fatal("a backlog was delivered without reading Badger")
			}
			reads := s.reads.Load()
			want := backlog
			for i := range 40 {
				var seq uint64
				var err error
				if i%4 == 0 {
					seq, err = s.Append("d", testTopic, seqPayload(10))
				} else {
					seq, err = s.Enqueue("d", testTopic, seqPayload(10))
				}
				if err != nil {
					t.Fatal(err)
				}
				want = append(want, seq)
				if err := s.Flush(); err != nil {
					t.Fatal(err)
				}
				testwait.For(t, 20*time.Second, "event acknowledged", func() bool { return s.QueueCounters("d").Acked == uint64(len(want)) })
			}
			if got := s.reads.Load() - reads; got != 0 {
				t.Errorf("40 paced events took %d Badger reads, want 0", got)
			}
			if diff := cmp.Diff(want, pub.seqs()); diff != "" {
				t.Errorf("delivered (-want +got):\n%s", diff)
			}
		})
	}
}

// TestFreshRecordsForwarderBehind: a forwarder more than a window behind
// gets the older records from Badger and the newest from memory, in order,
// each once.
func TestFreshRecordsForwarderBehind(t *testing.T) {
	s := openTest(t, Config{Dir: t.TempDir(), Sync: 5 * time.Millisecond, InFlight: 4})
	pub := &fakePublisher{hold: true}
	runForwarders(t, s, []string{"d"}, pub)
	var want []uint64
	for range 50 {
		seq, err := s.Enqueue("d", testTopic, seqPayload(10))
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, seq)
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 20*time.Second, "all delivered", func() bool {
		pub.release()
		return s.QueueCounters("d").Acked == 50
	})
	if diff := cmp.Diff(want, pub.seqs()); diff != "" {
		t.Errorf("delivered (-want +got):\n%s", diff)
	}
	if s.reads.Load() == 0 {
		t.Error("50 events behind a window of 4 were delivered without reading Badger")
	}
}

// TestAcksBeyondOneTransaction: more settled cursors than one writer
// transaction takes (maxCursors) are all committed, the rest in the next
// transaction at once; at Close too.
func TestAcksBeyondOneTransaction(t *testing.T) {
	for _, how := range []string{"flush", "close"} {
		t.Run(how, func(t *testing.T) {
			cfg := Config{Dir: t.TempDir(), Sync: 5 * time.Millisecond, ackDelay: time.Hour}
			s := openTest(t, cfg)
			names := queueNames(maxCursors + 100)
			if err := s.Prepare(names...); err != nil {
				t.Fatal(err)
			}
			for _, name := range names {
				mustAppend(t, s, name, 1, 0)
				q, err := s.queue(name)
				if err != nil {
					t.Fatal(err)
				}
				if err := s.settle(q, []flight{{seq: 1, size: s.QueueCounters(name).Bytes}}); err != nil {
					t.Fatal(err)
				}
			}
			if how == "close" {
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				s = openTest(t, cfg)
				if st := s.Stats(); st.Len != 0 {
					t.Errorf("after Close and reopen Stats().Len = %d, want 0: every cursor committed at Close", st.Len)
				}
				return
			}
			if err := s.Flush(); err != nil {
				t.Fatal(err)
			}
			testwait.For(t, 20*time.Second, "every cursor committed", func() bool {
				for _, name := range names {
					if diskCursor(t, s, name) != 1 {
						return false
					}
				}
				return true
			})
			if st := s.Stats(); st.Len != 0 || st.Bytes != 0 {
				t.Errorf("Stats = %+v, want empty", st)
			}
		})
	}
}
