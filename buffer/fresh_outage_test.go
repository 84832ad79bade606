package buffer

import (
	"context"
	"slices"
	"testing"
	"time"

	"fieldbridge/internal/testwait"
)

// TestFreshNotKeptBehind: while the publisher holds every result (the
// broker down) the queue keeps no fresh records once more than two windows
// wait: they would only wait in memory until the forwarder had read the
// backlog before them from Badger. Without the bound the queue keeps the
// newest window (InFlight records) through the whole outage. Once the
// results come, every event arrives once, in order.
func TestFreshNotKeptBehind(t *testing.T) {
	const inFlight = 8
	s := openTest(t, Config{Dir: t.TempDir(), Sync: time.Second, InFlight: inFlight})
	q, err := s.queue("q")
	if err != nil {
		t.Fatal(err)
	}
	pub := &fakePublisher{hold: true}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- s.Forward(ctx, "q", pub) }()
	testwait.For(t, 10*time.Second, "the forwarder running", func() bool {
		q.mu.Lock()
		defer q.mu.Unlock()
		return q.forwarding
	})

	seqs := mustAppend(t, s, "q", 10*inFlight, 100)
	testwait.For(t, 10*time.Second, "a window published and held", func() bool {
		pub.mu.Lock()
		defer pub.mu.Unlock()
		return len(pub.held) == inFlight
	})
	q.mu.Lock()
	kept := len(q.fresh)
	q.mu.Unlock()
	if kept != 0 {
		t.Fatalf("%d fresh records kept with %d events waiting behind a held window, want none", kept, len(seqs))
	}

	testwait.For(t, 20*time.Second, "every event acknowledged", func() bool {
		pub.release()
		return s.QueueStats("q").Len == 0
	})
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("Forward = %v, want nil after cancel", err)
	}
	if got := distinct(pub.seqs()); !slices.Equal(got, seqs) {
		t.Fatalf("%d distinct events delivered, want the %d appended, in order", len(got), len(seqs))
	}
}
