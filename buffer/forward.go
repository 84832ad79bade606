package buffer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// Publisher hands messages to the uplink. cmd/bridge supplies the MQTT
// client; tests supply fakes. A Publisher that also has a Connected() bool
// method tells Forward whether its connection is up: failures while it is
// not are retried without a "stalled" warning.
type Publisher interface {
	// Publish hands one message to the uplink and returns at once. The
	// returned channel receives exactly one value: nil when the broker
	// acknowledged the message on the same connection it was sent on, an
	// error otherwise (including when ctx ends first). It should be buffered
	// so that the sender never blocks: Forward stops reading it when its ctx
	// ends. Publish must not modify payload; it may keep it until the result
	// is sent. Forward calls Publish from one goroutine per queue.
	Publish(ctx context.Context, topic string, payload []byte) <-chan error
}

var errNoResult = errors.New("buffer: publisher returned no result channel")

func errResult(err error) <-chan error {
	ch := make(chan error, 1)
	ch <- err
	return ch
}

// removal says why a record left the queue.
type removal uint8

const (
	removedAcked removal = iota
	removedCorrupt
	removedExpired
)

// flight is one record in the forward window.
type flight struct {
	seq  uint64
	size int64
	res  <-chan error // nil: settled when read (corrupt or expired)
	why  removal
}

// Forward publishes the records of queue in seq order through pub until ctx
// ends, then returns nil (ErrClosed if the Store is closed first).
//
// At most Config.InFlight results are outstanding. A record is removed only
// after its result was nil. On a failed result Forward stops sending, waits
// for the rest of the window to settle, backs off (50 ms doubling to 2 s,
// reset by the next success) and resends from the first unacknowledged
// record: go-back-N, in order, duplicates possible. The acknowledgement
// cursor is persisted before the window is refilled, so a crash re-sends at
// most one window. When the queue is empty, Forward waits for Append's
// notification and publishes a new record at once. Corrupt records and, if
// MaxAge is set, expired ones are skipped and counted. While a backlog
// drains, progress (events left, rate, estimated time) is logged at Debug
// every 10 s, and the end of the drain at Info: with hundreds of queues the
// bridge logs one progress line for all of them.
//
// At most one Forward may run per queue; a second one returns an error.
func (s *Store) Forward(ctx context.Context, queue string, pub Publisher) error {
	// A small frame, and no further one between this and run: it stays on
	// the stack under run for the forwarder's life (one per queue, two per
	// device in device mode), and the GC shrinks a parked goroutine's stack
	// only while less than a quarter of it is in use (used + 800 B <
	// size/4). With the setup in claim, the frames of a forwarder parked in
	// run are ~1.1 KiB instead of 1.5: one that grew to 8 KiB in a drain
	// (Badger reads, a full window) goes back to 4 KiB.
	f, err := s.claim(queue, pub, false)
	if err != nil {
		return err
	}
	defer f.release()
	return f.run(ctx)
}

// ForwardUntilIdle is Forward for a queue that is mostly empty (command
// results): it returns nil as soon as nothing of the queue is waiting,
// handed to the writer, or in flight, with every acknowledgement's cursor
// persisted. The caller runs it again when it appends to the queue; a
// parked forwarder per such queue would cost a goroutine for nothing.
func (s *Store) ForwardUntilIdle(ctx context.Context, queue string, pub Publisher) error {
	f, err := s.claim(queue, pub, true)
	if err != nil {
		return err
	}
	defer f.release()
	return f.run(ctx)
}

// claim makes f the one forwarder of queue.
//
//go:noinline // its frame must not be part of Forward's (see Forward)
func (s *Store) claim(queue string, pub Publisher, untilIdle bool) (*forwarder, error) {
	if s.isClosed() {
		return nil, ErrClosed
	}
	q, err := s.queue(queue)
	if err != nil {
		return nil, err
	}
	q.mu.Lock()
	if q.forwarding {
		q.mu.Unlock()
		return nil, fmt.Errorf("buffer: queue %q already has a forwarder", queue)
	}
	q.forwarding = true
	q.mu.Unlock()
	return &forwarder{s: s, q: q, pub: pub, log: s.log.With("queue", queue), untilIdle: untilIdle}, nil
}

// release gives the queue back when its forwarder ends.
func (f *forwarder) release() {
	q := f.q
	q.mu.Lock()
	q.forwarding = false
	q.dropFresh()
	q.mu.Unlock()
}

type forwarder struct {
	s   *Store
	q   *queue
	pub Publisher
	log *slog.Logger

	win   []flight   // outstanding, in seq order
	slots []flight   // win's array: win starts over at its front when empty
	acked []flight   // settled successfully, cursor not yet persisted
	items []readItem // fill's scratch for the records taken from memory
	next  uint64     // next seq to read

	untilIdle bool // ForwardUntilIdle: return once the queue is idle

	failing bool // a result failed: settle the window, then go back
	retry   time.Duration
	stalled bool // logged the stall; log the recovery

	tokens   float64 // rate limiter
	lastFill time.Time

	// drain progress
	draining    bool
	drainStart  time.Time
	drainAcked0 uint64 // ackedTotal when the drain started
	ackedTotal  uint64
	ackedMark   uint64 // ackedTotal at the last progress line
	markTime    time.Time
}

func (f *forwarder) run(ctx context.Context) error {
	s, q := f.s, f.q
	inflight := s.cfg.InFlight
	f.slots = make([]flight, 0, min(inflight, windowStart))
	f.win = f.slots[:0]
	q.mu.Lock()
	f.next = q.head + 1
	q.mu.Unlock()
	f.tokens = f.burst()
	f.lastFill = time.Now()

	// Drain progress is looked at whenever the forwarder wakes anyway, at
	// most every progressEvery: a drain wakes it for every result, and an
	// idle forwarder has nothing to report. (A ticker per forwarder woke
	// hundreds of idle goroutines, two per device, for nothing.)
	f.progress(time.Now(), true)
	progressAt := time.Now().Add(s.cfg.progressEvery)

	var timer *time.Timer // rate-limit or back-off wake-up
	var timerC <-chan time.Time
	setTimer := func(d time.Duration) {
		if timer == nil {
			timer = time.NewTimer(d)
		} else {
			timer.Reset(d)
		}
		timerC = timer.C
	}
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()

	for {
		if err := ctx.Err(); err != nil {
			return f.finish()
		}
		if f.isClosed() {
			return ErrClosed
		}
		if now := time.Now(); !now.Before(progressAt) {
			f.progress(now, false)
			progressAt = now.Add(s.cfg.progressEvery)
		}
		// Settle what was acknowledged; the writer commits the cursor.
		if len(f.acked) > 0 {
			if err := f.settle(); err != nil {
				return ErrClosed
			}
		}
		q.mu.Lock()
		head, tail, unsaved := q.head, q.tail, q.persisted < q.head
		q.mu.Unlock()
		if f.next <= head {
			f.next = head + 1 // dropped by policy under us
		}

		// Fill the window, once the cursor is persisted: a kill -9 then
		// re-sends at most one window.
		if !f.failing && len(f.win) < inflight && f.next < tail && unsaved {
			if err := f.awaitCursor(ctx); err != nil {
				if errors.Is(err, ErrClosed) {
					return ErrClosed
				}
				if ctx.Err() != nil {
					return f.finish()
				}
				setTimer(f.backoff())
				if !f.wait(ctx, timerC) {
					return f.finish()
				}
				timerC = nil
			}
			continue
		}
		if !f.failing && len(f.win) < inflight && f.next < tail {
			room := inflight - len(f.win)
			if s.cfg.Rate > 0 {
				avail, wait := f.take(room)
				if avail == 0 {
					setTimer(wait)
				}
				room = avail
			}
			if room > 0 {
				if err := f.fill(ctx, room, tail); err != nil {
					if errors.Is(err, ErrClosed) {
						return ErrClosed
					}
					f.readFailed(err)
					setTimer(f.backoff())
					if !f.wait(ctx, timerC) {
						return f.finish()
					}
					timerC = nil
					continue
				}
			}
		}
		// Records settled at read time need no wait.
		settled := false
		for len(f.win) > 0 && f.win[0].res == nil {
			f.pop(nil)
			settled = true
		}
		if settled {
			continue
		}

		if len(f.win) == 0 {
			if f.failing {
				// The window has settled after a failure: go back.
				f.failing = false
				setTimer(f.backoff())
				if !f.wait(ctx, timerC) {
					return f.finish()
				}
				timerC = nil
				q.mu.Lock()
				f.next = q.head + 1
				q.mu.Unlock()
				continue
			}
			if f.draining && q.len() == 0 {
				f.progress(time.Now(), false)
			}
			if f.next < tail && timerC == nil {
				continue // more to read (the window was full)
			}
			if f.untilIdle && f.next >= tail && timerC == nil && q.pending.Load() == 0 {
				return f.finish()
			}
			select {
			case <-ctx.Done():
				return f.finish()
			case <-s.done:
				return ErrClosed
			case <-q.notify:
			case <-timerC:
				timerC = nil
			}
			continue
		}

		select {
		case err := <-f.win[0].res:
			f.pop(err)
			// Take every further result that is already there, so that one
			// cursor write covers them all.
			f.takeReady()
		case <-q.notify:
		case <-timerC:
			timerC = nil
		case <-ctx.Done():
			return f.finish()
		case <-s.done:
			return ErrClosed
		}
	}
}

// windowStart is the room a forwarder's window starts with, and goes back
// to whenever it empties. A live queue has one or two events outstanding
// (one a second, published at once); only a backlog fills the window up to
// Config.InFlight. In device mode each of 500 devices has its forwarder for
// the bridge's life, and a window array of InFlight 64 was 2 KiB each.
const windowStart = 4

// push adds fl at the end of the window. When the array had to grow, the
// larger one is kept for the rest of the window's life (pop gives it back
// once the window is empty): after a reallocation f.win starts at the new
// array's front.
func (f *forwarder) push(fl flight) {
	f.win = append(f.win, fl)
	if cap(f.win) > cap(f.slots) {
		f.slots = f.win[:0]
	}
}

// pop settles the front of the window with its result.
func (f *forwarder) pop(err error) {
	fl := f.win[0]
	f.win = f.win[1:]
	if len(f.win) == 0 {
		// Back to the front, or appends would walk off the array and
		// allocate a new one every window. A window grown in a drain is
		// given back (see windowStart).
		if cap(f.slots) > windowStart {
			f.slots = make([]flight, 0, windowStart)
		}
		f.win = f.slots[:0]
	}
	if f.failing {
		return // go-back-N: everything after a failure is resent
	}
	if fl.res != nil && err != nil {
		f.failing = true
		if !f.stalled && connected(f.pub) {
			f.stalled = true
			f.log.Warn("buffer forward stalled, will resend from the first unacknowledged event",
				"seq", fl.seq, "err", err)
		} else {
			f.log.Debug("buffer publish failed", "seq", fl.seq, "err", err)
		}
		return
	}
	if fl.res != nil {
		f.retry = 0
		if f.stalled {
			f.stalled = false
			f.log.Info("buffer forward resumed", "seq", fl.seq)
		}
	}
	f.acked = append(f.acked, fl)
}

// connected reports whether pub says its connection is up; a Publisher
// that cannot tell counts as connected. A publish that failed while the
// uplink is down is no stall of the forwarder: the uplink reports that
// itself, and the forwarder only retries.
func connected(pub Publisher) bool {
	c, ok := pub.(interface{ Connected() bool })
	return !ok || c.Connected()
}

// takeReady settles the front of the window as far as results are already
// there, without waiting.
func (f *forwarder) takeReady() {
	for len(f.win) > 0 {
		if f.win[0].res == nil {
			f.pop(nil)
			continue
		}
		select {
		case err := <-f.win[0].res:
			f.pop(err)
			continue
		default:
		}
		return
	}
}

// settle hands f.acked to the Store: removed from the queue at once, the
// cursor committed by the writer.
func (f *forwarder) settle() error {
	if err := f.s.settle(f.q, f.acked); err != nil {
		return err
	}
	f.ackedTotal += uint64(len(f.acked))
	f.acked = f.acked[:0]
	return nil
}

// awaitCursor waits until the writer has committed the queue's cursor over
// everything settled, or its attempt failed.
func (f *forwarder) awaitCursor(ctx context.Context) error {
	for {
		wait := f.s.cursorWait(f.q)
		if wait == nil {
			return nil
		}
		select {
		case <-wait:
		case <-ctx.Done():
			return ctx.Err()
		case <-f.s.done:
			return ErrClosed
		}
		if err := f.s.cursorErr(f.q); err != nil {
			return err
		}
	}
}

// finish settles what was acknowledged, waits for its cursor and ends the
// loop cleanly.
func (f *forwarder) finish() error {
	f.takeReady()
	if len(f.acked) > 0 && f.settle() != nil {
		return nil // closed: the writer committed what it could
	}
	if err := f.awaitCursor(context.Background()); err != nil && !errors.Is(err, ErrClosed) {
		f.log.Warn("buffer cursor not saved on stop; the last events will be sent again", "err", err)
	}
	return nil
}

func (f *forwarder) isClosed() bool { return f.s.isClosed() }

// wait blocks until the timer fires (true) or ctx/Store ends (false).
func (f *forwarder) wait(ctx context.Context, timerC <-chan time.Time) bool {
	select {
	case <-timerC:
		return true
	case <-ctx.Done():
		return false
	case <-f.s.done:
		return false
	}
}

func (f *forwarder) backoff() time.Duration {
	if f.retry == 0 {
		f.retry = 50 * time.Millisecond
	} else {
		f.retry = min(2*f.retry, f.s.cfg.retryMax)
	}
	return f.retry
}

// burst is the rate limiter's bucket size: a tenth of a second of rate, at
// least 1 and at most the window.
func (f *forwarder) burst() float64 {
	return min(max(1, f.s.cfg.Rate/10), float64(f.s.cfg.InFlight))
}

// take returns how many publishes may go now (at most want), or 0 and how
// long until the next one may.
func (f *forwarder) take(want int) (int, time.Duration) {
	now := time.Now()
	rate := f.s.cfg.Rate
	f.tokens = min(f.burst(), f.tokens+now.Sub(f.lastFill).Seconds()*rate)
	f.lastFill = now
	n := min(want, int(math.Floor(f.tokens)))
	if n <= 0 {
		return 0, time.Duration((1 - f.tokens) / rate * float64(time.Second))
	}
	f.tokens -= float64(n)
	return n, 0
}

// fill reads up to room records from f.next (below tail) and publishes them.
func (f *forwarder) fill(ctx context.Context, room int, tail uint64) error {
	s := f.s
	recs, next := s.takeFresh(f.q, f.next, tail, room, f.items[:0])
	f.items = recs[:0]
	defer clear(recs) // the scratch slice must not keep the payloads
	if len(recs) == 0 {
		var err error
		if recs, next, err = s.readRange(f.q, f.next, tail, room); err != nil {
			return err
		}
	}
	f.next = next
	now := s.cfg.now()
	for _, r := range recs {
		if f.failedAlready() {
			// An earlier publish of this window has already failed (for
			// example "not connected" while the uplink was down). Sending
			// more now could let newer events reach the broker before that
			// one is resent, once the uplink is back: stop, settle the
			// window and go back.
			f.next = r.seq
			break
		}
		fl := flight{seq: r.seq, size: r.size}
		switch {
		case r.err != nil:
			fl.why = removedCorrupt
			f.log.Warn("buffer corrupt record skipped", "seq", r.seq, "err", r.err)
		case s.cfg.MaxAge > 0 && now.Sub(r.rec.Appended) > s.cfg.MaxAge:
			fl.why = removedExpired
		default:
			if fl.res = f.pub.Publish(ctx, r.rec.Topic, r.rec.Payload); fl.res == nil {
				fl.res = errResult(errNoResult) // never take "no channel" for an acknowledgement
			}
		}
		f.push(fl)
	}
	if len(recs) == 0 && len(f.win) == 0 && len(f.acked) == 0 {
		// Nothing exists in [head+1, tail): skip the gap.
		f.s.skipGap(f.q, tail-1)
	}
	return nil
}

// failedAlready reports whether the newest or the oldest publish of the
// window has already reported a failure. It looks without waiting and keeps
// the result it saw for the main loop. Only two flights are looked at, so a
// fill stays O(1) per record: the newest catches a burst of immediate
// failures, the oldest one that failed while the window was refilled.
func (f *forwarder) failedAlready() bool {
	failed := false
	if len(f.win) == 0 {
		return false
	}
	for _, i := range []int{len(f.win) - 1, 0} {
		if f.win[i].res == nil {
			continue
		}
		select {
		case err := <-f.win[i].res:
			f.win[i].res = errResult(err)
			failed = failed || err != nil
		default:
		}
	}
	return failed // pop marks the window failing when it reaches that result
}

// progress logs the drain of a backlog.
func (f *forwarder) progress(now time.Time, first bool) {
	n := f.q.len()
	threshold := int64(4 * f.s.cfg.InFlight)
	switch {
	case !f.draining && n > threshold:
		f.draining = true
		f.drainStart, f.drainAcked0 = now, f.ackedTotal
		f.ackedMark, f.markTime = f.ackedTotal, now
		f.log.Debug("buffer backlog draining", "events_left", n, "bytes_left", f.q.size())
	case f.draining && n == 0:
		f.draining = false
		d := now.Sub(f.drainStart)
		f.log.Info("buffer backlog drained", "events_sent", f.ackedTotal-f.drainAcked0,
			"duration_seconds", roundTo(d.Seconds(), 0.1))
	case f.draining && !first:
		dt := now.Sub(f.markTime).Seconds()
		rate := float64(f.ackedTotal-f.ackedMark) / dt
		f.ackedMark, f.markTime = f.ackedTotal, now
		eta := -1.0
		if rate > 0 {
			eta = roundTo(float64(n)/rate, 1)
		}
		f.log.Debug("buffer backlog draining", "events_left", n, "rate_per_second", roundTo(rate, 1),
			"eta_seconds", eta)
	}
}

func roundTo(v, unit float64) float64 { return math.Round(v/unit) * unit }

func (q *queue) len() int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.count
}

func (q *queue) size() int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.bytes
}

// readItem is one record read for forwarding.
type readItem struct {
	seq  uint64
	size int64
	rec  record
	err  error // corrupt
}

// pointReads is how many records readRange looks up by key before it sets
// up an iterator.
const pointReads = 4

// readRange is the forwarder's read: up to max records of q with seq in
// [from, to), fewer when the forwarders together hold DefaultReadAhead
// records (at least one). next is where the following read starts: after
// the last record returned, or to when the range was exhausted.
func (s *Store) readRange(q *queue, from, to uint64, max int) (items []readItem, next uint64, err error) {
	items, next, err = s.read(q, from, to, s.grantReadAhead(q, from, max))
	s.readAheadDone(q, items)
	return items, next, err
}

// read reads up to max records of q with seq in [from, to) (see readRange).
func (s *Store) read(q *queue, from, to uint64, max int) (items []readItem, next uint64, err error) {
	s.gate.RLock()
	defer s.gate.RUnlock()
	return s.readGated(q, from, to, max)
}

// readGated is read with the gate held for reading.
func (s *Store) readGated(q *queue, from, to uint64, max int) (items []readItem, next uint64, err error) {
	if s.closed {
		return nil, from, ErrClosed
	}
	s.reads.Add(1)
	next = to
	err = s.db.View(func(txn *badger.Txn) error {
		// Records are normally contiguous from the cursor on: look the first
		// few up by key, far cheaper than setting up an iterator over every
		// table for the one or two records a paced forwarder reads. The
		// iterator takes the rest of a long read (a drain), and takes over
		// at the first gap (records dropped or not yet committed).
		seq := from
		for ; seq < to && len(items) < min(max, pointReads); seq++ {
			item, err := txn.Get(eventKey(q.qid, seq))
			if errors.Is(err, badger.ErrKeyNotFound) {
				break
			}
			if err != nil {
				return err
			}
			items = append(items, readItemOf(item, seq))
		}
		switch {
		case seq == to:
			return nil
		case len(items) == max:
			next = seq
			return nil
		}
		// From seq on: the next record not read yet, or a gap.
		it := txn.NewIterator(badger.IteratorOptions{Prefix: q.prefix})
		defer it.Close()
		for it.Seek(eventKey(q.qid, seq)); it.Valid(); it.Next() {
			item := it.Item()
			seq, ok := parseEventKey(item.Key())
			if !ok {
				continue
			}
			if seq >= to {
				break
			}
			if len(items) == max {
				next = seq
				break
			}
			items = append(items, readItemOf(item, seq))
		}
		return nil
	})
	if err != nil {
		return nil, from, fmt.Errorf("buffer: read %q: %v", q.name, err)
	}
	q.mu.Lock()
	q.stamps.noteRead(q.head, from, items, max, s.cfg.InFlight)
	q.mu.Unlock()
	return items, next, nil
}

// readItemOf decodes the record item holds; a record that cannot be read
// or decoded is returned with its error, to be skipped as corrupt.
func readItemOf(item *badger.Item, seq uint64) readItem {
	val, err := item.ValueCopy(nil)
	if err != nil {
		return readItem{seq: seq, size: int64(keyLen + len(val)), err: err}
	}
	return decodeItem(val, seq)
}

// decodeItem decodes the record val stored under seq.
func decodeItem(val []byte, seq uint64) readItem {
	return decodeItemTopic(val, seq, "")
}

// decodeItemTopic is decodeItem that returns topic itself as the record's
// topic when the bytes are equal (no string allocated).
func decodeItemTopic(val []byte, seq uint64, topic string) readItem {
	ri := readItem{seq: seq, size: int64(keyLen + len(val))}
	if ri.rec, ri.err = decodeRecordTopic(val, topic); ri.err == nil && ri.rec.Seq != seq {
		ri.err = fmt.Errorf("record carries seq %d", ri.rec.Seq)
	}
	return ri
}

// skipGap moves q's cursor to upTo when no record exists in (head, upTo].
func (s *Store) skipGap(q *queue, upTo uint64) {
	s.gate.RLock()
	defer s.gate.RUnlock()
	if s.closed {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.count != 0 || upTo <= q.head || upTo >= q.tail {
		return
	}
	if err := s.commitHead(q, upTo, nil); err == nil {
		q.head = upTo
	}
}

// readFailed logs a failed read of the queue.
//
//go:noinline // its frame must not be part of run's (see Forward)
func (f *forwarder) readFailed(err error) {
	f.log.Error("buffer read failed", "err", err)
}
