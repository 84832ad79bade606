package buffer

import (
	"log/slog"
	"testing"
	"time"
)

// TestForwardWindowStartsSmall: a forwarder's window array starts with
// room for windowStart results, grows while a backlog fills it to the
// configured InFlight, keeps every result in seq order across the growth,
// and goes back to windowStart once it is empty, so that hundreds of
// forwarders of live queues do not each keep a drain's array.
func TestForwardWindowStartsSmall(t *testing.T) {
	const inflight = 64
	f := &forwarder{log: slog.New(slog.DiscardHandler)}
	f.slots = make([]flight, 0, min(inflight, windowStart))
	f.win = f.slots[:0]
	for round := range 3 {
		n := 2 // live traffic: a couple of results outstanding
		if round == 1 {
			n = inflight // a backlog fills the window
		}
		for seq := range uint64(n) {
			f.push(flight{seq: seq + 1, res: make(chan error, 1)})
		}
		if round == 1 && cap(f.slots) < inflight {
			t.Fatalf("window array: room for %d with %d outstanding, want it grown", cap(f.slots), n)
		}
		for want := uint64(1); len(f.win) > 0; want++ {
			if got := f.win[0].seq; got != want {
				t.Fatalf("round %d: front of the window is seq %d, want %d", round, got, want)
			}
			f.pop(nil)
		}
		if len(f.acked) != n {
			t.Fatalf("round %d: %d settled, want %d", round, len(f.acked), n)
		}
		f.acked = f.acked[:0]
		if cap(f.slots) != windowStart {
			t.Errorf("round %d: empty window keeps room for %d, want %d", round, cap(f.slots), windowStart)
		}
	}
}

// TestFreshRecordsStartSmall: a queue's records kept for its forwarder
// (fresh.go) take room for freshStart at first, grow up to InFlight when
// the forwarder falls behind (the newest InFlight are kept), and the grown
// array is given back once the forwarder has taken them all.
func TestFreshRecordsStartSmall(t *testing.T) {
	const inflight = 16
	s := openTest(t, Config{InMemory: true, InFlight: inflight})
	q, err := s.queue("d")
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 2, 7, 0, 0, 0, time.UTC)
	keep := func(seq uint64) {
		q.mu.Lock()
		defer q.mu.Unlock()
		if !s.keepFresh(q, seq, appendRecord(nil, seq, at, "t", []byte("{}"))) {
			t.Fatalf("record %d not kept with a forwarder running", seq)
		}
	}
	q.mu.Lock()
	q.forwarding = true // as Forward sets it
	q.mu.Unlock()

	keep(1)
	if c := cap(q.fresh); c != freshStart {
		t.Errorf("one kept record takes room for %d, want %d", c, freshStart)
	}
	for seq := uint64(2); seq <= 40; seq++ {
		keep(seq)
	}
	if len(q.fresh) != inflight || q.fresh[0].seq != 40-inflight+1 {
		t.Fatalf("kept %d records from seq %d, want the newest %d (from %d)", len(q.fresh), q.fresh[0].seq, inflight, 40-inflight+1)
	}
	items, next := s.takeFresh(q, 40-inflight+1, 41, inflight, nil)
	if len(items) != inflight || next != 41 {
		t.Fatalf("took %d records, next %d; want %d, 41", len(items), next, inflight)
	}
	for i, it := range items {
		if it.err != nil || it.seq != uint64(40-inflight+1+i) {
			t.Fatalf("item %d: seq %d err %v", i, it.seq, it.err)
		}
	}
	if q.fresh != nil {
		t.Errorf("after the forwarder took every kept record the queue keeps room for %d, want none", cap(q.fresh))
	}
}

// TestTakeFreshAllocatesNothing: a paced forwarder takes each new record
// from memory without an allocation: into its scratch slice, with the
// queue's last topic string reused while the bytes are equal (the slice
// and the topic were two allocations per event).
func TestTakeFreshAllocatesNothing(t *testing.T) {
	s := openTest(t, Config{InMemory: true})
	q, err := s.queue("d")
	if err != nil {
		t.Fatal(err)
	}
	q.mu.Lock()
	q.forwarding = true // as Forward sets it
	q.mu.Unlock()
	at := time.Date(2026, 12, 2, 7, 0, 0, 0, time.UTC)
	const runs = 100
	recs := make([][]byte, runs+2)
	for i := range recs {
		recs[i] = appendRecord(nil, uint64(i+1), at, "iot-2/type/t/id/d/evt/reading/fmt/json", []byte(`{"d":{}}`))
	}
	seq := uint64(1)
	items := make([]readItem, 0, 4)
	take := func() {
		q.mu.Lock()
		s.keepFresh(q, seq, recs[seq-1])
		q.mu.Unlock()
		var next uint64
		items, next = s.takeFresh(q, seq, seq+1, 4, items[:0])
		if len(items) != 1 || next != seq+1 || items[0].err != nil || items[0].rec.Seq != seq {
			t.Fatalf("seq %d: took %d items, next %d, err %v", seq, len(items), next, items[0].err)
		}
		seq++
	}
	take() // the first topic string
	if n := testing.AllocsPerRun(runs, take); n != 0 {
		t.Errorf("taking a fresh record: %.1f allocations, want 0", n)
	}
	if got, want := items[0].rec.Topic, "iot-2/type/t/id/d/evt/reading/fmt/json"; got != want {
		t.Errorf("topic %q, want %q", got, want)
	}
}
