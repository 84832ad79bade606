package buffer

import (
	"context"
	"slices"
	"testing"
	"time"

	"fieldbridge/internal/testwait"
)

// TestForwardUntilIdle: ForwardUntilIdle returns at once on an empty queue;
// otherwise it delivers everything (including events still with the
// writer, and through failed publishes) and returns only when the queue is
// empty and its cursor persisted: a reopened Store re-sends nothing.
func TestForwardUntilIdle(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Config{Dir: dir, Sync: time.Second}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	pub := &fakePublisher{async: true}
	if err := s.ForwardUntilIdle(ctx, "cmd:d1", pub); err != nil || len(pub.seqs()) != 0 {
		t.Fatalf("empty queue: ForwardUntilIdle = %v, published %v", err, pub.seqs())
	}

	want := mustAppend(t, s, "cmd:d1", 5, 10)
	for range 3 { // handed to the writer, maybe not committed yet
		seq, err := s.Enqueue("cmd:d1", "t", seqPayload(10))
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, seq)
	}
	pub.fail = func(n int) bool { return n == 2 || n == 3 } // two failed publishes: go back and resend
	if err := s.ForwardUntilIdle(ctx, "cmd:d1", pub); err != nil {
		t.Fatalf("ForwardUntilIdle = %v", err)
	}
	if got := distinct(pub.seqs()); !slices.Equal(got, want) {
		t.Fatalf("delivered %v, want %v", got, want)
	}
	if st := s.QueueStats("cmd:d1"); st.Len != 0 || st.Acked != uint64(len(want)) {
		t.Fatalf("after ForwardUntilIdle: %+v, want empty with %d acknowledged", st, len(want))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, Config{Dir: dir, Sync: time.Second})
	again := &fakePublisher{}
	if err := s.ForwardUntilIdle(ctx, "cmd:d1", again); err != nil || len(again.seqs()) != 0 {
		t.Fatalf("after reopening: ForwardUntilIdle = %v, re-sent %v, want nothing", err, again.seqs())
	}
}

// TestForwardUntilIdleStopsWithCtx: while the uplink fails every publish the
// queue never gets idle; ForwardUntilIdle keeps retrying and returns nil
// when its ctx ends, the events still buffered.
func TestForwardUntilIdleStopsWithCtx(t *testing.T) {
	s := openTest(t, Config{InMemory: true})
	mustAppend(t, s, "cmd:d1", 3, 10)
	pub := &fakePublisher{fail: func(int) bool { return true }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.ForwardUntilIdle(ctx, "cmd:d1", pub) }()
	testwait.For(t, 10*time.Second, "three failed publishes", func() bool {
		pub.mu.Lock()
		defer pub.mu.Unlock()
		return pub.calls >= 3
	})
	select {
	case err := <-done:
		t.Fatalf("ForwardUntilIdle returned %v while nothing was acknowledged", err)
	default:
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("ForwardUntilIdle after cancel = %v", err)
	}
	if st := s.QueueStats("cmd:d1"); st.Len != 3 {
		t.Fatalf("queue after cancel: %+v, want the 3 events", st)
	}
}
