package buffer

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"

	"fieldbridge/internal/testwait"
)

// errFakePublish is what fakePublisher reports for a failed publish.
var errFakePublish = errors.New("fake: no PUBACK")

// delivery is one message the fake broker acknowledged.
type delivery struct {
	topic string
	seq   uint64
}

// fakePublisher acknowledges every publish at once unless told to fail it.
// fail(n) (n counts every call from 1) decides a failure; async delivers
// results from a goroutine after a random-ish delay; hold keeps results
// until release.
type fakePublisher struct {
	mu        sync.Mutex
	calls     int
	delivered []delivery
	fail      func(n int) bool
	async     bool
	failLate  bool // report failures a moment later, as a lost connection does
	hold      bool
	held      []chan error
}

func (p *fakePublisher) Publish(ctx context.Context, topic string, payload []byte) <-chan error {
	ch := make(chan error, 1)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls++
	if p.fail != nil && p.fail(p.calls) {
		if p.failLate {
			go func() {
				time.Sleep(time.Millisecond)
				ch <- errFakePublish
			}()
			return ch
		}
		ch <- errFakePublish
		return ch
	}
	seq := payloadSeq(payload)
	p.delivered = append(p.delivered, delivery{topic, seq})
	switch {
	case p.hold:
		p.held = append(p.held, ch)
	case p.async:
		d := time.Duration(p.calls%7) * 100 * time.Microsecond
		go func() {
			time.Sleep(d)
			ch <- nil
		}()
	default:
		ch <- nil
	}
	return ch
}

// release acknowledges every held publish.
func (p *fakePublisher) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, ch := range p.held {
		ch <- nil
	}
	p.held = nil
}

func (p *fakePublisher) seqs() []uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]uint64, len(p.delivered))
	for i, d := range p.delivered {
		out[i] = d.seq
	}
	return out
}

// distinct returns the first occurrence of each seq, in delivery order.
func distinct(seqs []uint64) []uint64 {
	seen := map[uint64]bool{}
	var out []uint64
	for _, s := range seqs {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// seqPayload is the payload builder of the tests: a tiny JSON event.
func seqPayload(pad int) func(seq uint64) ([]byte, error) {
	return func(seq uint64) ([]byte, error) {
		return fmt.Appendf(nil, `{"d":{"pad":"%s"},"seq":%d}`, bytes.Repeat([]byte("x"), pad), seq), nil
	}
}

// payloadSeq extracts the seq written by seqPayload.
func payloadSeq(p []byte) uint64 {
	i := bytes.LastIndex(p, []byte(`"seq":`))
	if i < 0 {
		return 0
	}
	v, _ := strconv.ParseUint(string(bytes.TrimSuffix(p[i+6:], []byte("}"))), 10, 64)
	return v
}

func mustAppend(t testing.TB, s *Store, queue string, n, pad int) []uint64 {
	t.Helper()
	var seqs []uint64
	for range n {
		seq, err := s.Append(queue, "iot-2/evt/reading/fmt/json", seqPayload(pad))
		if err != nil {
			t.Fatalf("Append(%q) after %d: %v", queue, len(seqs), err)
		}
		seqs = append(seqs, seq)
	}
	return seqs
}

// testLogger logs to the test at Debug, so failures show the buffer's story.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// captureLogger collects log lines for assertions.
type captureLogger struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (c *captureLogger) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.Write(p)
}

func (c *captureLogger) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

func openTest(t testing.TB, cfg Config) *Store {
	t.Helper()
	s, err := Open(cfg, testLogger(t))
	if err != nil {
		t.Fatalf("Open(%+v): %v", cfg, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// forwardUntil runs Forward on queue until cond holds, then stops it and
// returns Forward's result.
func forwardUntil(t testing.TB, s *Store, queue string, pub Publisher, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Forward(ctx, queue, pub) }()
	testwait.For(t, 20*time.Second, what, cond)
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("Forward(%q) = %v, want nil after cancel", queue, err)
	}
}

// drainAll forwards queue until it is empty and returns the delivered seqs.
func drainAll(t testing.TB, s *Store, queue string) []uint64 {
	t.Helper()
	pub := &fakePublisher{}
	forwardUntil(t, s, queue, pub, "queue "+queue+" empty", func() bool { return s.QueueStats(queue).Len == 0 })
	return pub.seqs()
}

// fakeClock is a settable clock for max_age tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func seqRange(from, to uint64) []uint64 {
	var out []uint64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

type badgerTxn = badger.Txn

func badgerIterOpts(prefix []byte, allVersions bool) badger.IteratorOptions {
	return badger.IteratorOptions{Prefix: prefix, AllVersions: allVersions}
}

// getRaw reads the raw value under an event key.
func getRaw(t testing.TB, s *Store, queue string, seq uint64) []byte {
	t.Helper()
	q, err := s.queue(queue)
	if err != nil {
		t.Fatal(err)
	}
	var v []byte
	err = s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(eventKey(q.qid, seq))
		if err != nil {
			return err
		}
		v, err = item.ValueCopy(nil)
		return err
	})
	if err != nil {
		t.Fatalf("read %s/%d: %v", queue, seq, err)
	}
	return v
}

// diskCursor reads queue's acknowledgement cursor from Badger (0 when none
// was written).
func diskCursor(t testing.TB, s *Store, queue string) uint64 {
	t.Helper()
	q, err := s.queue(queue)
	if err != nil {
		t.Fatal(err)
	}
	var head uint64
	err = s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(headKey(q.qid))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			head = binary.BigEndian.Uint64(v)
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return head
}
