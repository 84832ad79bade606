package buffer

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"fieldbridge/internal/testwait"
)

// storeKind is one Store configuration the contract suite runs against.
type storeKind struct {
	name       string
	persistent bool
	config     func(t testing.TB) Config
}

var storeKinds = []storeKind{
	{"memory", false, func(testing.TB) Config { return Config{InMemory: true} }},
	{"disk", true, func(t testing.TB) Config { return Config{Dir: t.TempDir(), Sync: 5 * time.Millisecond} }},
	{"disk_sync_always", true, func(t testing.TB) Config { return Config{Dir: t.TempDir()} }},
}

// TestContract is the buffer's contract suite (style.md C23), run against
// an in-memory store and on-disk stores with group commit and with
// sync=always.
func TestContract(t *testing.T) {
	cases := []struct {
		name     string
		diskOnly bool
		run      func(t *testing.T, k storeKind)
	}{
		{"order_and_seq_per_queue", false, testOrderAndSeq},
		{"build_error_keeps_seq", false, testBuildErrorKeepsSeq},
		{"payload_limit", false, testPayloadLimit},
		{"drop_newest", false, testDropNewest},
		{"drop_oldest", false, testDropOldest},
		{"drop_oldest_takes_from_largest_queue", false, testDropOldestLargest},
		{"drop_oldest_under_forwarder", false, testDropOldestUnderForwarder},
		{"max_age", false, testMaxAge},
		{"forward_fails_nth_publish", false, testForwardFailsNth},
		{"forward_out_of_order_results", false, testForwardAsync},
		{"forward_uplink_down_then_up", false, testForwardOutage},
		{"forward_live_append", false, testForwardLive},
		{"forward_window_bound", false, testForwardWindow},
		{"forward_rate_limit", false, testForwardRate},
		{"one_forwarder_per_queue", false, testOneForwarder},
		{"close_idempotent", false, testCloseIdempotent},
		{"close_stops_forward", false, testCloseStopsForward},
		{"byte_accounting", false, testByteAccounting},
		{"corrupt_record_skipped", false, testCorruptRecord},
		{"reclaim_empties_key_space", false, testReclaim},
		{"reopen_after_close", true, testReopenAfterClose},
		{"reopen_after_unclean_stop", true, testReopenUnclean},
		{"reopen_after_power_loss", true, testReopenPowerLoss},
		{"seq_not_reused_after_reclaim", true, testSeqAfterReclaim},
		{"corrupt_record_after_reopen", true, testCorruptRecordReopen},
	}
	for _, k := range storeKinds {
		t.Run(k.name, func(t *testing.T) {
			for _, c := range cases {
				if c.diskOnly && !k.persistent {
					continue
				}
				t.Run(c.name, func(t *testing.T) {
					t.Parallel()
					c.run(t, k)
				})
			}
		})
	}
}

func testOrderAndSeq(t *testing.T, k storeKind) {
	s := openTest(t, k.config(t))
	a := mustAppend(t, s, "dev-a", 50, 10)
	b := mustAppend(t, s, "dev-b", 20, 10)
	if diff := cmp.Diff(seqRange(1, 50), a); diff != "" {
		t.Errorf("seqs of dev-a (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(seqRange(1, 20), b); diff != "" {
		t.Errorf("seqs of dev-b (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(a, drainAll(t, s, "dev-a")); diff != "" {
		t.Errorf("delivered dev-a (-appended +delivered):\n%s", diff)
	}
	if diff := cmp.Diff(b, drainAll(t, s, "dev-b")); diff != "" {
		t.Errorf("delivered dev-b (-appended +delivered):\n%s", diff)
	}
	if got := s.QueueStats("dev-a"); got.Len != 0 || got.Bytes != 0 || got.Acked != 50 || got.NextSeq != 51 {
		t.Errorf("QueueStats(dev-a) = %+v, want empty, 50 acked, next 51", got)
	}
	if seq := mustAppend(t, s, "dev-a", 1, 0)[0]; seq != 51 {
		t.Errorf("Append after drain got seq %d, want 51", seq)
	}
}

func testBuildErrorKeepsSeq(t *testing.T, k storeKind) {
	s := openTest(t, k.config(t))
	mustAppend(t, s, "d", 3, 0)
	errBuild := errors.New("mapping failed")
	_, err := s.Append("d", "t", func(uint64) ([]byte, error) { return nil, errBuild })
	if !errors.Is(err, errBuild) {
		t.Fatalf("Append with failing build = %v, want %v", err, errBuild)
	}
	if seq := mustAppend(t, s, "d", 1, 0)[0]; seq != 4 {
		t.Errorf("seq after a failed build = %d, want 4 (not consumed)", seq)
	}
}

func testPayloadLimit(t *testing.T, k storeKind) {
	s := openTest(t, k.config(t))
	_, err := s.Append("d", "t", func(uint64) ([]byte, error) { return make([]byte, MaxPayload+1), nil })
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Append(%d bytes) = %v, want ErrTooLarge", MaxPayload+1, err)
	}
	if got := s.QueueStats("d"); got.Len != 0 || got.NextSeq != 1 {
		t.Errorf("after ErrTooLarge QueueStats = %+v, want nothing queued and seq 1 unused", got)
	}
	seq, err := s.Append("d", "t", func(uint64) ([]byte, error) { return make([]byte, MaxPayload), nil })
	if err != nil || seq != 1 {
		t.Fatalf("Append(%d bytes) = %d, %v, want 1, nil", MaxPayload, seq, err)
	}
	if _, err := s.Append("d", "", seqPayload(0)); err == nil {
		t.Errorf("Append with empty topic succeeded")
	}
	if _, err := s.Append("", "t", seqPayload(0)); err == nil {
		t.Errorf("Append with empty queue succeeded")
	}
}

// smallCap returns a config with a cap of about n records of the given pad.
func smallCap(k storeKind, t testing.TB, policy FullPolicy) Config {
	cfg := k.config(t)
	cfg.MaxBytes = 2 * (MaxPayload + maxRecordOverhead) // the minimum
	cfg.OnFull = policy
	return cfg
}

func testDropNewest(t *testing.T, k storeKind) {
	s := openTest(t, smallCap(k, t, DropNewest))
	var stored []uint64
	var refused int
	for i := 0; i < 3000 && refused < 5; i++ {
		seq, err := s.Append("d", "t", seqPayload(200))
		switch {
		case errors.Is(err, ErrFull):
			refused++
		case err != nil:
			t.Fatalf("Append: %v", err)
		default:
			stored = append(stored, seq)
		}
	}
	if refused == 0 {
		t.Fatalf("no ErrFull after %d appends under a %d-byte cap", len(stored), s.cfg.MaxBytes)
	}
	st := s.QueueStats("d")
	if st.Dropped != uint64(refused) || st.Bytes > s.cfg.MaxBytes {
		t.Errorf("QueueStats = %+v, want Dropped %d and Bytes <= %d", st, refused, s.cfg.MaxBytes)
	}
	if diff := cmp.Diff(seqRange(1, uint64(len(stored))), stored); diff != "" {
		t.Errorf("stored seqs not contiguous (-want +got):\n%s", diff)
	}
	// The backlog is kept whole, and space returns once it is delivered.
	if diff := cmp.Diff(stored, drainAll(t, s, "d")); diff != "" {
		t.Errorf("delivered (-stored +delivered):\n%s", diff)
	}
	if seq := mustAppend(t, s, "d", 1, 200)[0]; seq != uint64(len(stored))+1 {
		t.Errorf("Append after drain got seq %d, want %d", seq, len(stored)+1)
	}
}

func testDropOldest(t *testing.T, k storeKind) {
	s := openTest(t, smallCap(k, t, DropOldest))
	seqs := mustAppend(t, s, "d", 3000, 200)
	if diff := cmp.Diff(seqRange(1, 3000), seqs); diff != "" {
		t.Fatalf("seqs (-want +got):\n%s", diff)
	}
	st := s.QueueStats("d")
	if st.Bytes > s.cfg.MaxBytes || st.Dropped == 0 || uint64(st.Len)+st.Dropped != 3000 {
		t.Fatalf("QueueStats = %+v, want Bytes <= %d, Len+Dropped = 3000, Dropped > 0", st, s.cfg.MaxBytes)
	}
	got := drainAll(t, s, "d")
	if diff := cmp.Diff(seqRange(3000-uint64(len(got))+1, 3000), got); diff != "" {
		t.Errorf("delivered is not the newest suffix (-want +got):\n%s", diff)
	}
}

func testDropOldestLargest(t *testing.T, k storeKind) {
	s := openTest(t, smallCap(k, t, DropOldest))
	mustAppend(t, s, "big", 1200, 200)
	small := mustAppend(t, s, "small", 10, 10)
	// Fill up through the small queue: the big one pays.
	for range 300 {
		small = append(small, mustAppend(t, s, "small", 1, 200)...)
	}
	if st := s.QueueStats("small"); st.Dropped != 0 || st.Len != int64(len(small)) {
		t.Errorf("small queue: %+v, want nothing dropped, Len %d", st, len(small))
	}
	if st := s.QueueStats("big"); st.Dropped == 0 {
		t.Errorf("big queue: %+v, want drops", st)
	}
	if tot := s.Stats(); tot.Bytes > tot.MaxBytes {
		t.Errorf("Stats().Bytes = %d > MaxBytes %d", tot.Bytes, tot.MaxBytes)
	}
}

func testDropOldestUnderForwarder(t *testing.T, k storeKind) {
	s := openTest(t, smallCap(k, t, DropOldest))
	pub := &fakePublisher{async: true}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Forward(ctx, "d", pub) }()
	const n = 4000
	mustAppend(t, s, "d", n, 300)
	testwait.For(t, 20*time.Second, "queue empty", func() bool { return s.QueueStats("d").Len == 0 })
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("Forward = %v", err)
	}
	got := distinct(pub.seqs())
	if !slices.IsSorted(got) {
		t.Errorf("first deliveries out of order: %v", got)
	}
	st := s.QueueStats("d")
	if uint64(len(got))+st.Dropped < n {
		t.Errorf("delivered %d + dropped %d < appended %d: events lost without being counted", len(got), st.Dropped, n)
	}
}

func testMaxAge(t *testing.T, k storeKind) {
	clock := &fakeClock{t: time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)}
	cfg := k.config(t)
	cfg.MaxAge = time.Hour
	cfg.now = clock.now
	s := openTest(t, cfg)
	mustAppend(t, s, "d", 10, 0) // 1..10 at 10:00
	clock.advance(50 * time.Minute)
	mustAppend(t, s, "d", 5, 0) // 11..15 at 10:50
	clock.advance(20 * time.Minute)
	if got := s.QueueStats("d").OldestAge; got != 70*time.Minute {
		t.Errorf("OldestAge = %v, want 70m", got)
	}
	s.expireAll() // what the periodic sweep does
	st := s.QueueStats("d")
	if st.Len != 5 || st.Dropped != 10 || st.DroppedAge != 10 {
		t.Errorf("after sweep QueueStats = %+v, want Len 5, Dropped 10 by age", st)
	}
	// Forward skips what expired meanwhile (lazily, without the sweep).
	clock.advance(45 * time.Minute)
	mustAppend(t, s, "d", 2, 0) // 16..17
	if got := drainAll(t, s, "d"); !cmp.Equal(got, []uint64{16, 17}) {
		t.Errorf("delivered %v, want [16 17]", got)
	}
	if st := s.QueueStats("d"); st.DroppedAge != 15 {
		t.Errorf("DroppedAge = %d, want 15", st.DroppedAge)
	}
}

func testForwardFailsNth(t *testing.T, k storeKind) {
	s := openTest(t, k.config(t))
	seqs := mustAppend(t, s, "d", 300, 20)
	fails := map[int]bool{5: true, 6: true, 70: true, 200: true}
	// Failures arrive late, after further publishes went out: those are
	// sent again after going back (duplicates). A failure reported at once
	// stops the window instead (testForwardOutage).
	pub := &fakePublisher{failLate: true, fail: func(n int) bool { return fails[n] }}
	forwardUntil(t, s, "d", pub, "all acked", func() bool { return s.QueueStats("d").Len == 0 })
	got := pub.seqs()
	checkDelivery(t, seqs, got)
	if len(got) <= len(seqs) {
		t.Errorf("delivered %d messages for %d events: want duplicates after go-back-N", len(got), len(seqs))
	}
}

// checkDelivery checks at-least-once, in-order delivery under go-back-N:
// every appended seq was delivered, nothing else was, and the last delivery
// of each seq comes in seq order (after a failure the stream restarts at
// the first unacknowledged event and runs in order from there).
func checkDelivery(t testing.TB, appended, delivered []uint64) {
	t.Helper()
	last := map[uint64]int{}
	for i, seq := range delivered {
		last[seq] = i
	}
	var order []uint64
	for i, seq := range delivered {
		if last[seq] == i {
			order = append(order, seq)
		}
	}
	if diff := cmp.Diff(appended, order); diff != "" {
		t.Errorf("last deliveries are not the appended seqs in order (-appended +got):\n%s", diff)
	}
}

func testForwardAsync(t *testing.T, k storeKind) {
	cfg := k.config(t)
	cfg.InFlight = 8
	s := openTest(t, cfg)
	seqs := mustAppend(t, s, "d", 500, 20)
	pub := &fakePublisher{async: true, fail: func(n int) bool { return n%97 == 0 }}
	forwardUntil(t, s, "d", pub, "all acked", func() bool { return s.QueueStats("d").Len == 0 })
	checkDelivery(t, seqs, pub.seqs())
}

func testForwardOutage(t *testing.T, k storeKind) {
	cfg := k.config(t)
	cfg.retryMax = 20 * time.Millisecond
	s := openTest(t, cfg)
	var down atomic.Bool
	down.Store(true)
	pub := &fakePublisher{fail: func(int) bool { return down.Load() }}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- s.Forward(ctx, "d", pub) }()
	seqs := mustAppend(t, s, "d", 100, 20)
	testwait.For(t, 5*time.Second, "failed attempts", func() bool {
		pub.mu.Lock()
		defer pub.mu.Unlock()
		return pub.calls > 3
	})
	if st := s.QueueStats("d"); st.Len != 100 {
		t.Fatalf("during the outage Len = %d, want 100 (nothing deleted without PUBACK)", st.Len)
	}
	down.Store(false)
	testwait.For(t, 10*time.Second, "drained after the outage", func() bool { return s.QueueStats("d").Len == 0 })
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("Forward = %v", err)
	}
	if diff := cmp.Diff(seqs, pub.seqs()); diff != "" {
		t.Errorf("delivered (-appended +got):\n%s", diff)
	}
}

func testForwardLive(t *testing.T, k storeKind) {
	s := openTest(t, k.config(t))
	pub := &fakePublisher{}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Forward(ctx, "d", pub) }()
	for i := 1; i <= 20; i++ {
		mustAppend(t, s, "d", 1, 0)
		testwait.For(t, 5*time.Second, "live event published", func() bool { return len(pub.seqs()) == i })
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("Forward = %v", err)
	}
	if diff := cmp.Diff(seqRange(1, 20), pub.seqs()); diff != "" {
		t.Errorf("delivered (-want +got):\n%s", diff)
	}
}

func testForwardWindow(t *testing.T, k storeKind) {
	cfg := k.config(t)
	cfg.InFlight = 16
	s := openTest(t, cfg)
	mustAppend(t, s, "d", 100, 0)
	pub := &fakePublisher{hold: true}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Forward(ctx, "d", pub) }()
	for round := 1; round <= 3; round++ {
		testwait.For(t, 5*time.Second, "window full", func() bool { return len(pub.seqs()) == 16*round })
		if st := s.QueueStats("d"); st.Len != int64(100-16*(round-1)) {
			t.Errorf("round %d: Len = %d with results held, want %d", round, st.Len, 100-16*(round-1))
		}
		pub.release()
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("Forward = %v", err)
	}
	if n := len(pub.seqs()); n > 16*4 {
		t.Errorf("published %d with 3 windows released, want at most %d", n, 16*4)
	}
}

func testForwardRate(t *testing.T, k storeKind) {
	cfg := k.config(t)
	cfg.Rate = 400
	s := openTest(t, cfg)
	mustAppend(t, s, "d", 100, 0)
	start := time.Now()
	got := drainAll(t, s, "d")
	// 100 events at 400/s with a burst of 40 cannot take less than 150 ms.
	if d := time.Since(start); d < 140*time.Millisecond {
		t.Errorf("drained 100 events in %v at rate 400/s", d)
	}
	if diff := cmp.Diff(seqRange(1, 100), got); diff != "" {
		t.Errorf("delivered (-want +got):\n%s", diff)
	}
}

func testOneForwarder(t *testing.T, k storeKind) {
	s := openTest(t, k.config(t))
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Forward(ctx, "d", &fakePublisher{}) }()
	testwait.For(t, 5*time.Second, "forwarder running", func() bool {
		q, _ := s.queue("d")
		q.mu.Lock()
		defer q.mu.Unlock()
		return q.forwarding
	})
	if err := s.Forward(ctx, "d", &fakePublisher{}); err == nil {
		t.Errorf("second Forward on one queue = nil, want an error")
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("Forward = %v", err)
	}
}

func testCloseIdempotent(t *testing.T, k storeKind) {
	s, err := Open(k.config(t), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, "d", 3, 0)
	if s.Stats().Closed {
		t.Errorf("Stats().Closed = true before Close")
	}
	for i := range 3 {
		if err := s.Close(); err != nil {
			t.Fatalf("Close #%d = %v", i+1, err)
		}
	}
	if _, err := s.Append("d", "t", seqPayload(0)); !errors.Is(err, ErrClosed) {
		t.Errorf("Append after Close = %v, want ErrClosed", err)
	}
	if err := s.Forward(context.Background(), "d", &fakePublisher{}); !errors.Is(err, ErrClosed) {
		t.Errorf("Forward after Close = %v, want ErrClosed", err)
	}
	if !s.Stats().Closed { // must not panic either
		t.Errorf("Stats().Closed = false after Close")
	}
}

func testCloseStopsForward(t *testing.T, k storeKind) {
	s, err := Open(k.config(t), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, "d", 50, 0)
	pub := &fakePublisher{hold: true}
	errc := make(chan error, 1)
	go func() { errc <- s.Forward(context.Background(), "d", pub) }()
	testwait.For(t, 5*time.Second, "window full", func() bool { return len(pub.seqs()) > 0 })
	if err := s.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Errorf("Forward after Close = %v, want ErrClosed", err)
	}
}

func testByteAccounting(t *testing.T, k storeKind) {
	s := openTest(t, k.config(t))
	var want int64
	for i := range 40 {
		pad := i * 37
		seq, err := s.Append("d", "iot-2/evt/x/fmt/json", seqPayload(pad))
		if err != nil {
			t.Fatal(err)
		}
		p, _ := seqPayload(pad)(seq)
		want += int64(keyLen + recordSize("iot-2/evt/x/fmt/json", p))
	}
	if got := s.QueueStats("d").Bytes; got != want {
		t.Errorf("Bytes = %d, want %d", got, want)
	}
	if got := s.Stats().Bytes; got != want {
		t.Errorf("Stats().Bytes = %d, want %d", got, want)
	}
	drainAll(t, s, "d")
	if got := s.Stats(); got.Bytes != 0 || got.Len != 0 || s.total.Load() != 0 {
		t.Errorf("after drain Stats() = %+v, total %d, want zero", got, s.total.Load())
	}
}

// putRaw writes a raw value under an event key, bypassing the codec.
func putRaw(t testing.TB, s *Store, queue string, seq uint64, val []byte) {
	t.Helper()
	q, err := s.queue(queue)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.db.Update(func(txn *badgerTxn) error { return txn.Set(eventKey(q.qid, seq), val) }); err != nil {
		t.Fatal(err)
	}
}

func testCorruptRecord(t *testing.T, k storeKind) {
	s := openTest(t, k.config(t))
	mustAppend(t, s, "d", 10, 5)
	putRaw(t, s, "d", 4, []byte("garbage, not a record"))
	putRaw(t, s, "d", 6, getRaw(t, s, "d", 7)) // a valid record under the wrong key
	got := drainAll(t, s, "d")
	if diff := cmp.Diff([]uint64{1, 2, 3, 5, 7, 8, 9, 10}, got); diff != "" {
		t.Errorf("delivered (-want +got):\n%s", diff)
	}
	if st := s.QueueStats("d"); st.Corrupt != 2 || st.Len != 0 {
		t.Errorf("QueueStats = %+v, want Corrupt 2, Len 0", st)
	}
}

// eventKeys counts the event keys Badger still holds (any version state).
func eventKeys(t testing.TB, s *Store) int {
	t.Helper()
	n := 0
	txn := s.db.NewTransaction(false)
	defer txn.Discard()
	it := txn.NewIterator(badgerIterOpts([]byte{pfxEvent}, true))
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		n++
	}
	return n
}

func testReclaim(t *testing.T, k storeKind) {
	cfg := k.config(t)
	cfg.noBackground = true
	if !cfg.InMemory {
		cfg.Sync = time.Millisecond // this case is about reclamation, not fsync
	}
	s := openTest(t, cfg)
	mustAppend(t, s, "a", 3000, 0)
	mustAppend(t, s, "b", 100, 0)
	drainAll(t, s, "b")
	// Acknowledge exactly 1000 of a: the broker refuses everything after.
	pub := &fakePublisher{fail: func(n int) bool { return n > 1000 }}
	forwardUntil(t, s, "a", pub, "1000 acked", func() bool { return s.QueueStats("a").Acked == 1000 })
	s.reclaim()
	q, _ := s.queue("a")
	q.mu.Lock()
	reclaimed := q.reclaimedTo
	q.mu.Unlock()
	if reclaimed != 767 {
		t.Errorf("a reclaimed to %d, want 767 (the complete 256-blocks below the cursor at 1000)", reclaimed)
	}
	if got, want := eventKeys(t, s), 3000-767; got != want {
		t.Errorf("event keys left = %d, want %d (a from 768 on; b dropped whole)", got, want)
	}
	drainAll(t, s, "a")
	s.reclaim()
	if got := eventKeys(t, s); got != 0 {
		t.Errorf("event keys after draining everything = %d, want 0", got)
	}
	if seq := mustAppend(t, s, "a", 1, 0)[0]; seq != 3001 {
		t.Errorf("seq after reclaim = %d, want 3001", seq)
	}
	if diff := cmp.Diff([]uint64{3001}, drainAll(t, s, "a")); diff != "" {
		t.Errorf("delivered after reclaim (-want +got):\n%s", diff)
	}
}

func testReopenAfterClose(t *testing.T, k storeKind) {
	cfg := k.config(t)
	s, err := Open(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, "d", 10, 30)
	mustAppend(t, s, "e", 3, 30)
	pub := &fakePublisher{fail: func(n int) bool { return n > 4 }}
	forwardUntil(t, s, "d", pub, "4 acked", func() bool { return s.QueueStats("d").Acked >= 4 })
	acked := s.QueueStats("d").Acked
	wantBytes := s.QueueStats("d").Bytes
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, cfg)
	st := s.QueueStats("d")
	if st.Len != int64(10-acked) || st.NextSeq != 11 || st.Bytes != wantBytes {
		t.Errorf("after reopen QueueStats(d) = %+v, want Len %d, NextSeq 11, Bytes %d", st, 10-acked, wantBytes)
	}
	if diff := cmp.Diff(seqRange(acked+1, 10), drainAll(t, s, "d")); diff != "" {
		t.Errorf("delivered after reopen (-want +got):\n%s", diff)
	}
	if seq := mustAppend(t, s, "e", 1, 0)[0]; seq != 4 {
		t.Errorf("e's next seq after reopen = %d, want 4", seq)
	}
}

// abandon simulates a crash in-process: Badger is closed (so the directory
// lock is released) but state.json keeps clean=false.
func abandon(t testing.TB, s *Store) {
	t.Helper()
	close(s.done)
	s.handoffMu.Lock() // the writer commits what it holds and exits
	s.handoffClosed = true
	close(s.wch)
	s.handoffMu.Unlock()
	s.wg.Wait()
	s.gate.Lock()
	s.closed = true
	s.gate.Unlock()
	s.leaseMu.Lock()
	s.stateClosed = true
	s.leaseMu.Unlock()
	if err := s.db.Close(); err != nil {
		t.Fatal(err)
	}
	s.closeOnce.Do(func() {})
}

func testReopenUnclean(t *testing.T, k storeKind) {
	cfg := k.config(t)
	s, err := Open(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, "d", 10, 0)
	abandon(t, s)
	s = openTest(t, cfg)
	// Same boot: nothing was lost, numbering continues without a gap.
	if got := s.QueueStats("d"); got.NextSeq != 11 || got.Len != 10 {
		t.Errorf("after unclean stop QueueStats = %+v, want NextSeq 11, Len 10", got)
	}
	if diff := cmp.Diff(seqRange(1, 10), drainAll(t, s, "d")); diff != "" {
		t.Errorf("delivered (-want +got):\n%s", diff)
	}
}

func testReopenPowerLoss(t *testing.T, k storeKind) {
	cfg := k.config(t)
	cfg.leaseBlock = 100
	s, err := Open(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, "d", 10, 0)
	abandon(t, s)
	// Pretend the machine rebooted: another boot id in state.json.
	st, err := readState(cfg.Dir)
	if err != nil {
		t.Fatal(err)
	}
	st.BootID = "another-boot"
	if err := writeState(cfg.Dir, st); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, cfg)
	got := s.QueueStats("d")
	want := uint64(11)
	if cfg.Sync > 0 {
		want = 101 // group commit: events after the last sync may be gone; resume above the lease
	}
	if got.NextSeq != want || got.Len != 10 || got.Skipped != want-11 {
		t.Errorf("after power loss QueueStats = %+v, want NextSeq %d, Len 10, Skipped %d", got, want, want-11)
	}
	if diff := cmp.Diff(seqRange(1, 10), drainAll(t, s, "d")); diff != "" {
		t.Errorf("delivered (-want +got):\n%s", diff)
	}
	if seq := mustAppend(t, s, "d", 1, 0)[0]; seq != want {
		t.Errorf("Append after power loss got %d, want %d", seq, want)
	}
}

func testSeqAfterReclaim(t *testing.T, k storeKind) {
	cfg := k.config(t)
	cfg.noBackground = true
	s, err := Open(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, "d", 25, 0)
	drainAll(t, s, "d")
	s.reclaim()
	if n := eventKeys(t, s); n != 0 {
		t.Fatalf("event keys after reclaim = %d, want 0", n)
	}
	abandon(t, s) // even without a clean close
	s = openTest(t, cfg)
	if seq := mustAppend(t, s, "d", 1, 0)[0]; seq != 26 {
		t.Errorf("seq after reclaim and reopen = %d, want 26", seq)
	}
}

func testCorruptRecordReopen(t *testing.T, k storeKind) {
	cfg := k.config(t)
	s, err := Open(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, "d", 5, 0)
	putRaw(t, s, "d", 3, []byte{1, 0, 0})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, cfg)
	if diff := cmp.Diff([]uint64{1, 2, 4, 5}, drainAll(t, s, "d")); diff != "" {
		t.Errorf("delivered (-want +got):\n%s", diff)
	}
	if got := s.QueueStats("d"); got.Corrupt != 1 {
		t.Errorf("Corrupt = %d, want 1", got.Corrupt)
	}
}

// TestOpenRecovers covers start-up on damaged storage: it must never block.
func TestOpenRecovers(t *testing.T) {
	t.Run("dir_is_a_file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "file")
		if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		s := openTest(t, Config{Dir: path})
		st := s.Stats()
		if !st.InMemory || !strings.Contains(st.Fault, "memory") {
			t.Errorf("Stats() = %+v, want InMemory with a fault", st)
		}
		if seq := mustAppend(t, s, "d", 1, 0)[0]; seq < 1_000_000_000 {
			t.Errorf("seq in fallback = %d, want a time-based floor", seq)
		}
	})
	t.Run("corrupt_manifest", func(t *testing.T) {
		cfg := Config{Dir: t.TempDir(), Sync: time.Millisecond}
		s, err := Open(cfg, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		mustAppend(t, s, "d", 20, 0)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(cfg.Dir, "db", "MANIFEST"), []byte("this is not a manifest"), 0o600); err != nil {
			t.Fatal(err)
		}
		s = openTest(t, cfg)
		st := s.Stats()
		if st.InMemory || !strings.Contains(st.Fault, "moved to") {
			t.Errorf("Stats() = %+v, want on disk with a moved-aside fault", st)
		}
		if seq := mustAppend(t, s, "d", 1, 0)[0]; seq != 21 {
			t.Errorf("seq after the database was moved aside = %d, want 21 (from state.json)", seq)
		}
		matches, _ := filepath.Glob(filepath.Join(cfg.Dir, "db.broken-*"))
		if len(matches) != 1 {
			t.Errorf("moved-aside directories: %v, want one", matches)
		}
	})
	t.Run("state_file_lost", func(t *testing.T) {
		cfg := Config{Dir: t.TempDir(), Sync: time.Millisecond}
		s, err := Open(cfg, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		mustAppend(t, s, "d", 5, 0)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(cfg.Dir, stateName), []byte("{garbage"), 0o600); err != nil {
			t.Fatal(err)
		}
		s = openTest(t, cfg)
		if got := s.QueueStats("d"); got.Len != 5 || got.NextSeq < 1_000_000_000 {
			t.Errorf("QueueStats = %+v, want the 5 events kept and a time-based seq floor", got)
		}
	})
	t.Run("locked_by_another_store", func(t *testing.T) {
		cfg := Config{Dir: t.TempDir(), Sync: time.Millisecond}
		openTest(t, cfg)
		if s, err := Open(cfg, testLogger(t)); err == nil {
			_ = s.Close()
			t.Fatalf("second Open of a directory in use succeeded")
		}
	})
}

func TestConfigValidation(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  Config
	}{
		{"no_dir", Config{}},
		{"negative_max_bytes", Config{InMemory: true, MaxBytes: -1}},
		{"tiny_max_bytes", Config{InMemory: true, MaxBytes: 1000}},
		{"bad_policy", Config{InMemory: true, OnFull: 7}},
		{"negative_rate", Config{InMemory: true, Rate: -1}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if s, err := Open(c.cfg, nil); err == nil {
				_ = s.Close()
				t.Errorf("Open(%+v) succeeded, want an error", c.cfg)
			}
		})
	}
	for _, s := range []string{"drop_oldest", "drop_newest"} {
		p, err := ParseFullPolicy(s)
		if err != nil || p.String() != s {
			t.Errorf("ParseFullPolicy(%q) = %v, %v; String() = %q", s, p, err, p.String())
		}
	}
	if _, err := ParseFullPolicy("block"); err == nil {
		t.Errorf("ParseFullPolicy(block) succeeded")
	}
}
