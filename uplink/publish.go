package uplink

import (
	"context"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// How a publish travels, and who settles it. Every field named here lives
// in the session and is guarded by Client.mu.
//
//   - Publish appends a request to queue and makes sure a pump runs.
//   - The pump (at most one per session, started by Publish when there is
//     work, gone when there is none) hands requests to paho in call order
//     while fewer than MaxInflight are in flight, and settles the written
//     ones (flight, in write order) from their paho tokens: it waits for the
//     oldest token only, because the broker acknowledges in order.
//   - Run's goroutine (serve) owns the session's one AckTimeout timer, armed
//     for the oldest unsettled request, and fails the requests whose ctx
//     ended: each distinct ctx (by its Done channel) is watched once per
//     session, not once per publish, and its watcher only signals serve.
//
// So a publish costs no goroutine, no timer and no context of its own: one
// pump serves a whole burst (a publish that finds the connection idle, as at
// a paced load, does start one). A request keeps its in-flight slot until its token completes or the
// connection ends, even after its caller got ErrAckTimeout or a ctx error,
// so that the broker never sees more than MaxInflight unacknowledged
// messages.

// request is one Publish call waiting for its result.
type request struct {
	ctx      context.Context
	deadline time.Time // the call's time plus AckTimeout
	topic    string
	payload  []byte
	result   chan error
	tok      mqtt.Token // set once paho took it
	done     bool       // a result was delivered; guarded by Client.mu
}

// finish delivers err as the result unless one was delivered already. The
// caller holds Client.mu; result is buffered, so this never blocks.
func (r *request) finish(err error) {
	if !r.done {
		r.done = true
		r.result <- err
	}
}

// expiredErr is the result of a request whose deadline passed: its ctx's
// error when that ended too, else ErrAckTimeout.
func (r *request) expiredErr() error {
	if err := r.ctx.Err(); err != nil {
		return err
	}
	return ErrAckTimeout
}

// fifo is a growable ring of requests: a queue that does not allocate once
// it has grown to its working size.
type fifo struct {
	buf  []*request
	head int
	n    int
}

func (q *fifo) len() int { return q.n }

func (q *fifo) at(i int) *request { return q.buf[(q.head+i)%len(q.buf)] }

func (q *fifo) peek() *request { return q.buf[q.head] }

func (q *fifo) push(r *request) {
	if q.n == len(q.buf) {
		grown := make([]*request, max(8, 2*len(q.buf)))
		for i := range q.n {
			grown[i] = q.at(i)
		}
		q.buf, q.head = grown, 0
	}
	q.buf[(q.head+q.n)%len(q.buf)] = r
	q.n++
}

func (q *fifo) pop() *request {
	r := q.buf[q.head]
	q.buf[q.head] = nil
	q.head = (q.head + 1) % len(q.buf)
	q.n--
	return r
}

// ctxWatch is the one watcher of a distinct ctx in a session.
type ctxWatch struct {
	n    int // requests of the session with this ctx
	stop func() bool
}

// maxIdleWatches is how many watchers of live contexts without a request a
// session keeps. The usual caller is the buffer's forward loop, which
// publishes with the same ctx for the whole session; in gateway mode every
// device's forwarder shares the one Client, each with a ctx of its own
// (its device can be stopped alone on a reload). With 8 idle watchers, as
// before, 500 devices made a watcher anew (context.AfterFunc, and its
// registration in the parent ctx) for almost every publish: ~4 of the ~87
// allocations per event at 500 devices. A watcher of an idle live ctx costs
// ~200 bytes; a watcher whose ctx ended is dropped at once (retire,
// sweepEnded), so a caller with a ctx per publish does not fill the map
// either. The bound only stops a caller that keeps thousands of live
// contexts from growing it further.
const maxIdleWatches = 4096

// watch counts a request with ctx, watching ctx if it is new to the session.
func (c *Client) watch(s *session, ctx context.Context) {
	done := ctx.Done()
	if done == nil { // never ends
		return
	}
	w := s.watches[done]
	if w == nil {
		if s.watches == nil {
			s.watches = make(map[<-chan struct{}]*ctxWatch)
		}
		w = &ctxWatch{}
		s.callbacks.Add(1)
		w.stop = context.AfterFunc(ctx, func() {
			defer s.callbacks.Done()
			select {
			case s.ctxEnded <- struct{}{}:
			default: // serve has a signal waiting already; it looks at every request
			}
		})
		s.watches[done] = w
		s.watchesMade++
	} else if w.n == 0 {
		s.idleWatches--
	}
	w.n++
}

// retire forgets a request that has its result and left queue and flight.
func (c *Client) retire(s *session, r *request) {
	done := r.ctx.Done()
	if done == nil {
		return
	}
	w := s.watches[done]
	if w == nil { // the session's watchers were stopped already
		return
	}
	w.n--
	if w.n > 0 {
		return
	}
	if isClosed(done) || s.idleWatches >= maxIdleWatches {
		s.dropWatch(done, w)
		return
	}
	s.idleWatches++
}

// dropWatch stops and forgets the watcher of a ctx without requests.
func (s *session) dropWatch(done <-chan struct{}, w *ctxWatch) {
	if w.stop() {
		s.callbacks.Done()
	}
	delete(s.watches, done)
}

// sweepEnded drops the idle watchers whose ctx ended (their callback has
// run). The caller holds Client.mu.
func (s *session) sweepEnded() {
	for done, w := range s.watches {
		if w.n == 0 && isClosed(done) {
			s.dropWatch(done, w)
			s.idleWatches--
		}
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// pending is how many requests count against MaxPending.
func (s *session) pending() int { return s.queue.len() + s.inFlight() }

// inFlight is how many requests hold an in-flight slot.
func (s *session) inFlight() int {
	n := s.flight.len()
	if s.inHand != nil {
		n++
	}
	return n
}

func (s *session) isLost() bool {
	select {
	case <-s.lost:
		return true
	default:
		return false
	}
}

func tokenDone(tok mqtt.Token) bool {
	select {
	case <-tok.Done():
		return true
	default:
		return false
	}
}

// pump hands queued requests to paho in call order while fewer than
// MaxInflight are unacknowledged, and settles written ones from their
// tokens. It returns once nothing is queued or in flight (or the connection
// is gone); Publish starts it again.
//
// Gathering: while more requests are queued behind the one it hands over
// (a forwarder filling its window during a drain), the pump corks the
// connection's writeGather, and it uncorks before it waits or returns: a
// run of requests goes out in one write(2) per 16 KiB instead of one each,
// and a lone request goes out at once. (Yielding before taking the queue, so that the
// forwarders of one poll slot queue theirs first, gathered ~2.5 events per
// write at paced load but cost ~0.3 ms of median latency and no measurable
// CPU: docs/performance.md, "Gateway CPU per point".)
func (c *Client) pump(s *session) {
	defer c.wg.Done()
	corked := false
	for {
		c.mu.Lock()
		c.settleDone(s)
		if r := c.nextToWrite(s); r != nil {
			s.inHand = r
			more := s.queue.len() > 0
			c.mu.Unlock()
			if more && !corked {
				s.gather.cork()
				corked = true
			}
			// paho's Publish waits for its writer to take the packet: at
			// most WriteTimeout, which is why Publish does not call it.
			tok := s.pc.Publish(r.topic, c.cfg.QoS, false, r.payload)
			c.mu.Lock()
			s.inHand = nil
			r.tok = tok
			switch {
			case s.isLost():
				// endSession failed it while it was in hand, or settles
				// the flight without it: settle it here.
				c.settleLostRequest(s, r)
			case s.closed:
				// Shutting down: endSession failed it; its slot no
				// longer matters, nothing more is written.
				c.retire(s, r)
			default:
				s.flight.push(r)
			}
			c.mu.Unlock()
			continue
		}
		if corked {
			// Write the run before anything waits; then look again.
			c.mu.Unlock()
			s.gather.uncork()
			corked = false
			continue
		}
		if s.flight.len() == 0 {
			s.pumping = false
			c.checkDrained(s)
			c.mu.Unlock()
			return
		}
		oldest := s.flight.peek().tok
		c.mu.Unlock()
		select {
		case <-oldest.Done():
		case <-s.wake:
		case <-s.lost:
			c.mu.Lock()
			c.settleLost(s)
			c.mu.Unlock()
		}
	}
}

// nextToWrite takes the next request to hand to paho from the queue, or
// returns nil when there is none or no slot for it.
func (c *Client) nextToWrite(s *session) *request {
	for s.queue.len() > 0 && !s.closed && s.inFlight() < c.cfg.MaxInflight && !s.isLost() {
		r := s.queue.pop()
		if !r.done {
			return r
		}
		c.retire(s, r) // timed out or its ctx ended while it was queued
	}
	return nil
}

// settleDone settles the oldest in-flight requests whose tokens completed.
// It stops at the first that did not: acknowledgements come in order, and a
// token completing behind an unacknowledged one is settled by expire at the
// latest (its result is right, only later).
func (c *Client) settleDone(s *session) {
	for s.flight.len() > 0 && tokenDone(s.flight.peek().tok) {
		r := s.flight.pop()
		r.finish(c.tokenResult(s, r.tok))
		c.retire(s, r)
	}
}

// settleAnyDone settles every in-flight request whose token completed,
// wherever it is in the flight. It reports whether it freed a slot.
func (c *Client) settleAnyDone(s *session) bool {
	n := s.flight.len()
	for range n {
		r := s.flight.pop()
		if tokenDone(r.tok) {
			r.finish(c.tokenResult(s, r.tok))
			c.retire(s, r)
		} else {
			s.flight.push(r) // same order: every entry is popped once
		}
	}
	return s.flight.len() < n
}

// settleLost settles every in-flight request of a connection that is gone.
func (c *Client) settleLost(s *session) {
	for s.flight.len() > 0 {
		c.settleLostRequest(s, s.flight.pop())
	}
}

func (c *Client) settleLostRequest(s *session, r *request) {
	// paho reports a lost connection only after its reader stopped, so a
	// PUBACK that arrived has completed the token by now.
	if tokenDone(r.tok) {
		r.finish(c.tokenResult(s, r.tok))
	} else {
		r.finish(ErrConnectionLost)
	}
	c.retire(s, r)
}

// expire runs when the session's timer fires: it settles tokens that
// completed out of order, fails every request past its deadline, and arms
// the timer for the oldest one left.
func (c *Client) expire(s *session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s.timerArmed = false
	if c.settleAnyDone(s) {
		c.wakePump(s)
	}
	now := time.Now()
	next := func(r *request) bool { // false: r is the oldest unexpired one
		if r.done {
			return true
		}
		if r.deadline.After(now) {
			s.timer.Reset(r.deadline.Sub(now))
			s.timerArmed = true
			return false
		}
		r.finish(r.expiredErr())
		return true
	}
	s.inCallOrder(next)
}

// armTimer makes sure the session's timer fires by the deadline of a new
// request: if it is armed, it fires for an older request, and expire arms
// it again for the next one.
func (c *Client) armTimer(s *session) {
	if !s.timerArmed {
		s.timer.Reset(c.cfg.AckTimeout)
		s.timerArmed = true
	}
}

// failEnded fails every unsettled request whose ctx ended. The slot of one
// in flight stays taken until its token completes.
func (c *Client) failEnded(s *session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s.sweepEnded()
	s.inCallOrder(func(r *request) bool {
		if !r.done {
			if err := r.ctx.Err(); err != nil {
				r.finish(err)
			}
		}
		return true
	})
}

// inCallOrder calls f for the session's unsettled requests in call order
// (the flight was written before the one in hand, which was taken from the
// queue before the rest) until f returns false.
func (s *session) inCallOrder(f func(*request) bool) {
	for i := range s.flight.len() {
		if !f(s.flight.at(i)) {
			return
		}
	}
	if s.inHand != nil && !f(s.inHand) {
		return
	}
	for i := range s.queue.len() {
		if !f(s.queue.at(i)) {
			return
		}
	}
}

// wakePump tells a waiting pump that there may be something to write.
func (c *Client) wakePump(s *session) {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// checkDrained closes s.drained once the session is closed and its pump
// has stopped, with nothing in flight.
func (c *Client) checkDrained(s *session) {
	if s.closed && !s.pumping && !s.drainedClosed {
		s.drainedClosed = true
		close(s.drained)
	}
}

// stopWatching stops the session's timer and ctx watchers and waits for
// watcher callbacks that already started. Every request of the session has
// its result by now.
func (c *Client) stopWatching(s *session) {
	s.timer.Stop()
	c.mu.Lock()
	for _, w := range s.watches {
		if w.stop() {
			s.callbacks.Done()
		}
	}
	s.watches, s.idleWatches = nil, 0
	c.mu.Unlock()
	s.callbacks.Wait()
}
