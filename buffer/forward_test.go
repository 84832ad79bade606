package buffer

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// slowPublisher acknowledges each publish after a delay, like a distant
// broker.
type slowPublisher struct{ delay time.Duration }

func (p slowPublisher) Publish(ctx context.Context, _ string, _ []byte) <-chan error {
	ch := make(chan error, 1)
	go func() {
		t := time.NewTimer(p.delay)
		defer t.Stop()
		select {
		case <-t.C:
			ch <- nil
		case <-ctx.Done():
			ch <- ctx.Err()
		}
	}()
	return ch
}

func TestForwardLogsDrainProgress(t *testing.T) {
	var logs captureLogger
	cfg := Config{InMemory: true, InFlight: 4, progressEvery: 20 * time.Millisecond}
	s, err := Open(cfg, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mustAppend(t, s, "d", 600, 10)
	forwardUntil(t, s, "d", slowPublisher{delay: time.Millisecond}, "drained",
		func() bool { return strings.Contains(logs.String(), "buffer backlog drained") })
	out := logs.String()
	for _, want := range []string{
		`level=DEBUG msg="buffer backlog draining" queue=d events_left=600`,
		`rate_per_second=`,
		`eta_seconds=`,
		`msg="buffer backlog drained" queue=d events_sent=600`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q; log:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "draining"); n > 200 {
		t.Errorf("%d progress lines: progress must not be logged per event", n)
	}
}

// TestReadRangeAcrossGaps: readRange looks the first records up by key and
// hands over to an iterator at a gap or for a long read; either way it
// returns the records that exist, in order, and where to read next.
func TestReadRangeAcrossGaps(t *testing.T) {
	s, err := Open(Config{InMemory: true}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mustAppend(t, s, "d", 12, 10) // seqs 1..12
	q, err := s.queue("d")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.db.Update(func(txn *badger.Txn) error {
		for _, seq := range []uint64{2, 7} { // gaps: inside the first few, and past them
			if err := txn.Delete(eventKey(q.qid, seq)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	seqsOf := func(items []readItem) (seqs []uint64) {
		for _, it := range items {
			if it.err != nil {
				t.Fatalf("seq %d: %v", it.seq, it.err)
			}
			if it.rec.Seq != it.seq {
				t.Fatalf("item %d holds the record of seq %d", it.seq, it.rec.Seq)
			}
			seqs = append(seqs, it.seq)
		}
		return seqs
	}
	for _, c := range []struct {
		from, to uint64
		max      int
		want     []uint64
		next     uint64
	}{
		{1, 13, 100, []uint64{1, 3, 4, 5, 6, 8, 9, 10, 11, 12}, 13},
		{1, 13, 3, []uint64{1, 3, 4}, 5},
		{3, 13, 2, []uint64{3, 4}, 5},              // by key only
		{3, 13, 6, []uint64{3, 4, 5, 6, 8, 9}, 10}, // by key, then the iterator past the gap at 7
		{8, 10, 100, []uint64{8, 9}, 10},
		{7, 8, 100, nil, 8}, // only a gap
	} {
		items, next, err := s.readRange(q, c.from, c.to, c.max)
		if err != nil {
			t.Fatal(err)
		}
		if got := seqsOf(items); !slices.Equal(got, c.want) || next != c.next {
			t.Errorf("readRange(%d, %d, max %d) = %v, next %d; want %v, next %d", c.from, c.to, c.max, got, next, c.want, c.next)
		}
	}
}
