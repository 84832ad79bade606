package buffer

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"fieldbridge/internal/testwait"
)

// windowPublisher acknowledges at once the events with seq <= ackUpTo and
// holds the results of the others for ever, so every forwarder stops with a
// full window that starts past the first event: a drain frozen in the
// middle. It counts publishes per topic (each queue has its own topic).
type windowPublisher struct {
	ackUpTo uint64
	mu      sync.Mutex
	calls   map[string]int
}

func (p *windowPublisher) Publish(_ context.Context, topic string, payload []byte) <-chan error {
	ch := make(chan error, 1)
	if payloadSeq(payload) <= p.ackUpTo {
		ch <- nil
	}
	p.mu.Lock()
	p.calls[topic]++
	p.mu.Unlock()
	return ch
}

func (p *windowPublisher) published(topic string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls[topic]
}

// enqueueWaiting enqueues one event to queue (its topic is the queue's
// name) and returns its seq; when the writer is behind (a loaded machine)
// it waits for it and tries again.
func enqueueWaiting(t *testing.T, s *Store, queue string) uint64 {
	t.Helper()
	for {
		seq, err := s.Enqueue(queue, queue, seqPayload(4))
		if errors.Is(err, ErrFull) {
			if err := s.Flush(); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("Enqueue(%s): %v", queue, err)
		}
		return seq
	}
}

// TestStatsOldestAgeWithoutReadingEveryQueue is the /metrics scrape during
// a drain (issue 12): a backlog in 1 000 queues. Stats must not read every
// queue from the database for OldestAge (1 000 reads made a scrape take
// over 5 s while the forwarders drained), counted by statsReads, and still
// report every queue's exact age once known: without forwarders after a few
// calls of at most statsReadBudget reads each, and with forwarders whose
// windows hold the oldest events with no read at all.
func TestStatsOldestAgeWithoutReadingEveryQueue(t *testing.T) {
	const queues, perQueue, window, acked = 1000, 12, 8, 4
	clock := &fakeClock{t: time.Date(2026, 12, 2, 4, 0, 0, 0, time.UTC)}
	cfg := Config{Dir: t.TempDir(), Sync: 5 * time.Millisecond, InFlight: window}
	cfg.now = clock.now
	s := openTest(t, cfg)

	// appendedAt[queue][seq] is the clock when the event was enqueued.
	names := make([]string, queues)
	appendedAt := map[string]map[uint64]time.Time{}
	firstSeq := map[string]uint64{}
	for i := range names {
		names[i] = fmt.Sprintf("dev-%04d", i)
		appendedAt[names[i]] = map[uint64]time.Time{}
	}
	for range perQueue {
		for _, name := range names {
			clock.advance(time.Millisecond)
			seq := enqueueWaiting(t, s, name)
			appendedAt[name][seq] = clock.now()
			if firstSeq[name] == 0 {
				firstSeq[name] = seq
			}
		}
		clock.advance(time.Minute)
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}

	// stats calls Stats and returns it with the database reads it made.
	stats := func() (Stats, int64) {
		before := s.statsReads.Load()
		st := s.Stats()
		return st, s.statsReads.Load() - before
	}
	// check compares every queue's OldestAge with the age of the event
	// with seq oldest(queue); an unknown age (0) is allowed when unknownOK.
	check := func(st Stats, oldest func(string) uint64, unknownOK bool) (exact int) {
		t.Helper()
		now := clock.now()
		if len(st.Queues) != queues {
			t.Fatalf("Stats has %d queues, want %d", len(st.Queues), queues)
		}
		for _, q := range st.Queues {
			want := now.Sub(appendedAt[q.Queue][oldest(q.Queue)])
			switch {
			case q.OldestAge == want:
				exact++
			case q.OldestAge == 0 && unknownOK:
			default:
				t.Fatalf("%s: OldestAge %v, want %v", q.Queue, q.OldestAge, want)
			}
		}
		return exact
	}

	// Nothing forwarded yet: the first call reads its budget and no more
	// (fewer only while space reclamation holds the database).
	st, reads := stats()
	if reads > statsReadBudget || reads == 0 {
		t.Fatalf("first Stats with %d queues waiting read %d queues from the database, want %d (statsReadBudget)", queues, reads, statsReadBudget)
	}
	first := func(q string) uint64 { return firstSeq[q] }
	if exact := check(st, first, true); exact != int(reads) {
		t.Fatalf("first Stats knew %d exact ages, want the %d it read", exact, reads)
	}
	// Each further call reads queues not known yet, until all are known.
	for calls := 1; ; calls++ {
		if calls > 10*(queues/statsReadBudget+1) {
			t.Fatalf("after %d calls of Stats not every age is known", calls)
		}
		st, reads = stats()
		if reads > statsReadBudget {
			t.Fatalf("Stats read %d queues, more than statsReadBudget (%d)", reads, statsReadBudget)
		}
		if check(st, first, true) == queues {
			break
		}
	}
	clock.advance(time.Minute)
	st, reads = stats()
	if reads != 0 {
		t.Fatalf("Stats with every oldest event known read %d queues from the database, want 0", reads)
	}
	check(st, first, false)

	// A drain frozen in the middle: every forwarder had its first acked
	// events acknowledged and holds a full window of later ones. The oldest
	// waiting event is the first of that window, read before the cursor
	// moved; its time is known from the forwarder's reads.
	pub := &windowPublisher{calls: map[string]int{}}
	pub.ackUpTo = firstSeq[names[0]] + acked - 1
	for _, name := range names {
		if firstSeq[name] != firstSeq[names[0]] {
			t.Fatalf("queues start at different seqs (%s: %d, %s: %d); the test assumes one", name, firstSeq[name], names[0], firstSeq[names[0]])
		}
	}
	runForwarders(t, s, names, pub)
	for _, name := range names {
		testwait.For(t, 60*time.Second, name+" acknowledged its first events and refilled its window", func() bool {
			return s.QueueCounters(name).Acked == acked && pub.published(name) == window+acked
		})
	}
	clock.advance(time.Minute)
	st, reads = stats()
	if reads != 0 {
		t.Fatalf("Stats during a drain read %d queues from the database, want 0", reads)
	}
	check(st, func(q string) uint64 { return firstSeq[q] + acked }, false)
}

// TestStampsOldest follows one queue's stamps through the reads of a
// forwarder: which reads make the oldest event's time known, which leave an
// estimate (an older event's time), and when the ring is kept.
func TestStampsOldest(t *testing.T) {
	at := func(seq uint64) time.Time { return time.Unix(1000+int64(seq), 0) }
	read := func(seqs ...uint64) []readItem {
		var items []readItem
		for _, seq := range seqs {
			items = append(items, readItem{seq: seq, rec: record{Seq: seq, Appended: at(seq)}})
		}
		return items
	}
	const window = 4
	var st stamps
	expect := func(head uint64, wantSeq uint64, wantExact bool) {
		t.Helper()
		got, exact := st.oldest(head)
		if got != at(wantSeq).UnixNano() || exact != wantExact {
			t.Fatalf("head %d: oldest = %v (exact %v), want the time of seq %d (exact %v)",
				head, time.Unix(0, got), exact, wantSeq, wantExact)
		}
	}
	if got, exact := st.oldest(0); got != 0 || exact {
		t.Fatalf("nothing read: oldest = %d, %v; want 0, false", got, exact)
	}

	// A live queue: one record at a time from the oldest, no ring.
	st.noteRead(0, 1, read(1), window, window)
	expect(0, 1, true)
	if st.ring != nil {
		t.Fatal("a read of one record from the oldest allocated the ring")
	}
	// The cursor moved past it with nothing read since: an estimate.
	expect(1, 1, false)

	// A backlog: the window is filled from the oldest, then ahead of it.
	st.noteRead(1, 2, read(2, 3, 4, 5), window, window)
	for head := uint64(1); head <= 4; head++ {
		expect(head, head+1, true)
	}
	st.noteRead(3, 6, read(6, 7), 2, window) // seqs 2 and 3 acknowledged
	for head := uint64(3); head <= 6; head++ {
		expect(head, head+1, true)
	}
	// Past everything read: the last oldest known is the estimate.
	expect(7, 2, false)

	// A Stats read of one record keeps the ring; a forwarder's read from
	// the oldest that finds a single record drops it (no backlog).
	st.noteRead(5, 6, read(6), 1, window)
	if st.ring == nil {
		t.Fatal("a read of the one record asked for dropped the ring")
	}
	expect(6, 7, true)
	st.noteRead(7, 8, read(8), window, window)
	if st.ring != nil {
		t.Fatal("a read from the oldest that found one record of the window kept the ring")
	}
	expect(7, 8, true)

	// A corrupt oldest record leaves no stamp.
	bad := []readItem{{seq: 9, err: errCorrupt}}
	st.noteRead(8, 9, bad, window, window)
	expect(8, 8, false)
}

// TestReadAheadBoundsTheWindows: with many queues draining, the forwarders
// together hold about Config.ReadAhead records read and not acknowledged,
// not InFlight per queue (issue 12: 1 000 full windows were about 50 MiB of
// a drain's heap); each queue still gets records, and once the results come
// back everything is delivered in order and the running total is back to 0.
func TestReadAheadBoundsTheWindows(t *testing.T) {
	const queues, perQueue, window, readAhead = 50, 40, 32, 64
	s := openTest(t, Config{Dir: t.TempDir(), Sync: 5 * time.Millisecond, InFlight: window, ReadAhead: readAhead})
	names := make([]string, queues)
	for i := range names {
		names[i] = fmt.Sprintf("dev-%02d", i)
	}
	for range perQueue {
		for _, name := range names {
			enqueueWaiting(t, s, name)
		}
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}

	pub := &fakePublisher{hold: true}
	published := func() map[string]int {
		pub.mu.Lock()
		defer pub.mu.Unlock()
		n := map[string]int{}
		for _, d := range pub.delivered {
			n[d.topic]++
		}
		return n
	}
	runForwarders(t, s, names, pub)
	testwait.For(t, 30*time.Second, "every queue published", func() bool { return len(published()) == queues })

	// Nothing is acknowledged: each forwarder read once, and again at most
	// once when an append's notification was still pending; each read
	// gets at least one record.
	total := 0
	for _, n := range published() {
		total += n
	}
	if limit := readAhead + 2*queues; total > limit {
		t.Fatalf("%d queues with InFlight %d published %d events with none acknowledged, want at most %d (read-ahead %d, plus one read per queue and a notified one)",
			queues, window, total, limit, readAhead)
	}

	pub.mu.Lock()
	pub.hold = false
	pub.mu.Unlock()
	pub.release()
	testwait.For(t, 60*time.Second, "every queue drained", func() bool { return s.Counters().Len == 0 })
	got := map[string][]uint64{}
	pub.mu.Lock()
	for _, d := range pub.delivered {
		got[d.topic] = append(got[d.topic], d.seq)
	}
	pub.mu.Unlock()
	for _, name := range names {
		seqs := distinct(got[name])
		for i := 1; i < len(seqs); i++ {
			if seqs[i] != seqs[i-1]+1 {
				t.Fatalf("%s: delivered %v, want consecutive seqs in order", name, seqs)
			}
		}
		if len(seqs) != perQueue {
			t.Fatalf("%s: delivered %d distinct events, want %d", name, len(seqs), perQueue)
		}
	}
	s.countReadAhead()
	if left := s.readAhead.total.Load(); left != 0 {
		t.Fatalf("read-ahead after the drain: %d records, want 0", left)
	}
}

// TestStatsOldestAgeOfLiveQueues: events enqueued while their forwarders
// run are handed to the forwarders from memory (fresh.go), not read from
// the database; their times still reach the stamps, so Stats knows every
// queue's oldest event without a read.
func TestStatsOldestAgeOfLiveQueues(t *testing.T) {
	const queues = 40
	clock := &fakeClock{t: time.Date(2026, 12, 2, 5, 0, 0, 0, time.UTC)}
	cfg := Config{Dir: t.TempDir(), Sync: 5 * time.Millisecond, InFlight: 8}
	cfg.now = clock.now
	s := openTest(t, cfg)
	pub := &fakePublisher{hold: true}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	names := make([]string, queues)
	for i := range names {
		names[i] = fmt.Sprintf("dev-%02d", i)
		if err := s.Prepare(names[i]); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Forward(ctx, names[i], pub); err != nil {
				t.Errorf("Forward(%s): %v", names[i], err)
			}
		}()
	}
	defer func() { cancel(); wg.Wait() }()
	appended := map[string]time.Time{}
	for _, name := range names {
		clock.advance(time.Second)
		enqueueWaiting(t, s, name)
		appended[name] = clock.now()
	}
	testwait.For(t, 30*time.Second, "every queue's event published", func() bool {
		pub.mu.Lock()
		defer pub.mu.Unlock()
		return len(pub.delivered) == queues
	})
	clock.advance(time.Minute)
	before := s.statsReads.Load()
	st := s.Stats()
	if reads := s.statsReads.Load() - before; reads != 0 {
		t.Fatalf("Stats with every queue's event in its forwarder's window read %d queues from the database, want 0", reads)
	}
	for _, q := range st.Queues {
		if want := clock.now().Sub(appended[q.Queue]); q.OldestAge != want {
			t.Errorf("%s: OldestAge %v, want %v", q.Queue, q.OldestAge, want)
		}
	}
}
