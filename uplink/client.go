package uplink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// maxWakeSpread bounds how far apart Clients woken by a Reachability dial:
// spread over up to a second, hundreds of device connections do not hit the
// broker in the same millisecond, and all are back within that second.
const maxWakeSpread = time.Second

// inboundQueue is how many received messages may wait for the Handler
// before the connection stops reading.
const inboundQueue = 64

// Client is one MQTT connection to the platform (or any MQTT 3.1.1 broker),
// kept up by Run. Publish, Connected and Run are safe for concurrent use.
type Client struct {
	cfg Config
	log *slog.Logger

	started atomic.Bool
	// epoch counts connections: it is incremented each time a new connection
	// starts accepting publishes. A publish remembers the epoch of the
	// connection it was sent on, and is acknowledged only if the token
	// completed while that connection was still the latest.
	epoch atomic.Uint64

	mu   sync.Mutex
	sess *session // the connection accepting publishes; nil when there is none

	inbound chan inboundMessage
	wg      sync.WaitGroup // every goroutine Run starts
}

type inboundMessage struct {
	topic   string
	payload []byte
	ack     func()
	s       *session // the connection it arrived on
}

// New validates cfg, fills in defaults and returns a Client. It does no I/O;
// Run connects. A nil logger discards logs.
func New(cfg Config, logger *slog.Logger) (*Client, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Client{
		cfg:     cfg,
		log:     logger.With("client_id", cfg.ClientID, "broker", cfg.Broker),
		inbound: make(chan inboundMessage, inboundQueue),
	}, nil
}

// Connected reports whether a connection is open and accepting publishes
// (connected, and the subscriptions confirmed).
func (c *Client) Connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sess != nil
}

// Publish sends payload to topic at Config.QoS, never retained, and returns
// at once. The returned channel (buffered) receives exactly one value and is
// never closed:
//
//   - nil only when the broker acknowledged the message (PUBACK at QoS 1;
//     at QoS 0: written to the open connection) on the same connection it was
//     sent on;
//   - ErrNotConnected at once when there is no open connection;
//   - ErrConnectionLost when that connection ended first;
//   - ErrTooLarge, ErrInvalidTopic or ErrBusy at once (nothing sent);
//   - ctx.Err() when ctx ended first, ErrAckTimeout after Config.AckTimeout.
//
// Any error means "not known to be delivered": the caller keeps the message
// and may publish it again (the receiver must tolerate duplicates).
// Messages go on the wire in the order of the Publish calls. Publish keeps
// payload until its result arrives; the caller must not modify it before.
func (c *Client) Publish(ctx context.Context, topic string, payload []byte) <-chan error {
	res := make(chan error, 1)
	if len(payload) > MaxPayload {
		res <- fmt.Errorf("%w (%d bytes)", ErrTooLarge, len(payload))
		return res
	}
	if err := validateTopicName(topic); err != nil {
		res <- err
		return res
	}
	if err := ctx.Err(); err != nil {
		res <- err
		return res
	}

	c.mu.Lock()
	s := c.sess
	switch {
	case s == nil:
		c.mu.Unlock()
		res <- ErrNotConnected
		return res
	case s.pending >= c.cfg.MaxPending:
		c.mu.Unlock()
		res <- ErrBusy
		return res
	}
	r := newRequest(ctx, c.cfg.AckTimeout, topic, payload, res)
	s.queue = append(s.queue, r)
	s.pending++
	c.mu.Unlock()

	select {
	case s.wake <- struct{}{}:
	default:
	}
	return res
}

// request is one Publish call waiting for its result.
type request struct {
	parent  context.Context
	ctx     context.Context // parent with the AckTimeout deadline
	cancel  context.CancelFunc
	stop    func() bool // unregisters the ctx watcher
	topic   string
	payload []byte
	result  chan error
	done    atomic.Bool
}

func newRequest(parent context.Context, timeout time.Duration, topic string, payload []byte, result chan error) *request {
	ctx, cancel := context.WithTimeout(parent, timeout)
	r := &request{parent: parent, ctx: ctx, cancel: cancel, topic: topic, payload: payload, result: result}
	r.stop = context.AfterFunc(ctx, r.expire)
	return r
}

// finish delivers err as the result unless one was delivered already.
func (r *request) finish(err error) {
	if r.done.CompareAndSwap(false, true) {
		r.result <- err
		r.stop()
		r.cancel()
	}
}

// expire runs when the request's context ends: the caller's context or the
// ack timeout, whichever came first.
func (r *request) expire() {
	if r.done.CompareAndSwap(false, true) {
		err := r.parent.Err()
		if err == nil {
			err = ErrAckTimeout
		}
		r.result <- err
		r.cancel()
	}
}

// Run connects and keeps the connection up until ctx ends, reconnecting
// after a capped, jittered backoff (paho's own reconnect is off). Each
// connection gets a fresh paho client, sends the subscriptions, and only
// then accepts publishes. When ctx ends, Run stops accepting publishes,
// gives in-flight ones a short moment to be acknowledged, disconnects,
// waits for its goroutines and returns nil. Run returns an error only when
// called a second time.
//
// Run normally returns within a fraction of a second of ctx ending. It
// takes up to Config.WriteTimeout when a connection broke while paho was
// taking a message: paho's Publish cannot be interrupted, and Run waits for
// the goroutine inside it. It also waits for a running Handler.
func (c *Client) Run(ctx context.Context) error {
	if !c.started.CompareAndSwap(false, true) {
		return errors.New("uplink: Run called twice")
	}
	if c.cfg.TLS != nil && c.cfg.TLS.InsecureSkipVerify {
		c.log.Warn("uplink tls certificate verification disabled")
	}
	c.wg.Add(1)
	go c.dispatch(ctx)
	defer c.wg.Wait()

	bo := backoff{base: c.cfg.MinBackoff, max: c.cfg.MaxBackoff}
	short := 0 // connections in a row closed by the broker within StableAfter
	lastFailure := ""
	woken := false // this attempt was started early by another Client's connection
	for {
		var wait time.Duration
		// Taken before the attempt: a connection of another Client while
		// this one is failing means the broker is back.
		reached := c.cfg.Reachable.next()
		s, err := c.connect(ctx)
		if err == nil {
			began := time.Now()
			err = c.serve(ctx, s)
			if ctx.Err() != nil {
				return nil
			}
			// serve signalled this connection itself; wait for the next.
			reached, woken = c.cfg.Reachable.next(), false
			lived := time.Since(began)
			if lived >= c.cfg.StableAfter {
				bo.reset()
				short = 0
			} else if closedByPeer(s.cause) {
				short++
			}
			wait = bo.next()
			if short >= takeoverThreshold {
				err = fmt.Errorf("%w: %d connections in a row closed within %v (last: %v)", ErrTakeover, short, c.cfg.StableAfter, s.cause)
				short = 0
				wait = jitter(c.cfg.LongBackoff)
				reached = nil
				c.log.Error("uplink client id taken over", "err", err, "retry_in_seconds", wait.Seconds())
			} else {
				// Info, not Warn: the owner hears of the state change through
				// OnStateChange and reports it once (the bridge logs "uplink
				// down"); these lines are the details.
				c.log.Info("uplink connection lost", "err", err, "connected_seconds", lived.Seconds(), "retry_in_seconds", wait.Seconds())
			}
			lastFailure = ""
		} else {
			if ctx.Err() != nil {
				return nil
			}
			wait = bo.next()
			refused := errors.Is(err, ErrNotAuthorized) || errors.Is(err, ErrIdentifierRejected)
			if !refused {
				// The broker could not be reached: the connections it
				// closed before were lost to an outage (a restart, a
				// network failure), not taken over by another client with
				// our id, which needs the broker up. Counting them would
				// make a few restarts in a row look like a takeover.
				short = 0
			}
			switch {
			case refused:
				wait = jitter(c.cfg.LongBackoff)
				reached = nil // the broker is there and said no: wait it out
				c.log.Error("uplink connection refused", "err", err, "username", c.cfg.Username, "retry_in_seconds", wait.Seconds())
			case err.Error() != lastFailure:
				c.log.Info("uplink connect failed", "err", err, "retry_in_seconds", wait.Seconds())
			default:
				c.log.Debug("uplink connect failed", "err", err, "retry_in_seconds", wait.Seconds())
			}
			lastFailure = err.Error()
		}
		if woken {
			// An early attempt failed although another Client got through:
			// this one waits its own backoff, or a busy broker would see
			// it retry on every other Client's connection.
			reached = nil
		}
		c.notify(false, err)
		var live bool
		if live, woken = sleep(ctx, wait, reached, min(c.cfg.MinBackoff, maxWakeSpread)); !live {
			return nil
		}
	}
}

// serve runs one established connection: subscribe, accept publishes, and
// wait for the connection to end or ctx to be done. It returns why the
// connection ended (nil when ctx ended and the client disconnected).
func (c *Client) serve(ctx context.Context, s *session) error {
	if err := c.subscribe(ctx, s); err != nil {
		s.pc.Disconnect(0)
		s.markLost(err)
		if ctx.Err() != nil {
			return nil
		}
		return err
	}

	c.mu.Lock()
	s.epoch = c.epoch.Add(1)
	c.sess = s
	c.mu.Unlock()
	c.wg.Add(1)
	go c.writeLoop(s)

	c.log.Info("uplink connected", "session_present", s.sessionPresent, "epoch", s.epoch)
	c.cfg.Reachable.connected()
	c.notify(true, nil)

	select {
	case <-ctx.Done():
		c.shutdown(s)
		return nil
	case <-s.lost:
		// The writer is not waited for here: if the connection broke while
		// paho was taking a message, paho's Publish blocks until
		// WriteTimeout, and the next connection must not wait for that. The
		// writer does nothing more once it returns; Run waits for it at exit.
		c.endSession(s)
		return fmt.Errorf("%w: %v", ErrConnectionLost, s.cause)
	}
}

// subscribe sends the configured subscriptions and waits for the SUBACK.
func (c *Client) subscribe(ctx context.Context, s *session) error {
	if len(c.cfg.Subscriptions) == 0 {
		return nil
	}
	filters := make(map[string]byte, len(c.cfg.Subscriptions))
	for _, sub := range c.cfg.Subscriptions {
		filters[sub.Filter] = sub.QoS
	}
	tok := s.pc.SubscribeMultiple(filters, nil)
	t := time.NewTimer(c.cfg.ConnectTimeout)
	defer t.Stop()
	select {
	case <-tok.Done():
	case <-s.lost:
		return fmt.Errorf("%w while subscribing: %v", ErrConnectionLost, s.cause)
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return errors.New("uplink: subscribe: no SUBACK in time")
	}
	if err := tok.Error(); err != nil {
		return fmt.Errorf("uplink: subscribe: %v", err)
	}
	if st, ok := tok.(*mqtt.SubscribeToken); ok {
		for filter, code := range st.Result() {
			if code == 0x80 {
				c.log.Warn("uplink subscription refused", "filter", filter)
			}
		}
	}
	return nil
}

// shutdown ends a healthy connection because Run's context ended.
func (c *Client) shutdown(s *session) {
	c.endSession(s)

	// In-flight publishes get a moment to be acknowledged: wait until the
	// writer has stopped and every in-flight slot is free again.
	expired := make(chan struct{})
	t := time.AfterFunc(quiesce, func() { close(expired) })
	defer t.Stop()
	select {
	case <-s.writerDone:
	case <-s.lost:
	case <-expired:
	}
drain:
	for range cap(s.slots) {
		select {
		case s.slots <- struct{}{}:
		case <-s.lost:
			break drain
		case <-expired:
			break drain
		}
	}

	s.pc.Disconnect(uint(quiesce / time.Millisecond))
	s.markLost(errors.New("client disconnected"))
	c.log.Info("uplink disconnected")
	c.notify(false, nil)
}

// endSession stops a connection from accepting publishes and fails those
// that were accepted but not yet handed to paho. Publishes already written
// are settled by their await goroutine when the token completes or the
// connection is lost.
func (c *Client) endSession(s *session) {
	c.mu.Lock()
	if s.closed {
		c.mu.Unlock()
		return
	}
	s.closed = true
	if c.sess == s {
		c.sess = nil
	}
	queued, inHand := s.queue, s.inHand
	s.queue = nil
	s.pending -= len(queued)
	close(s.ended)
	c.mu.Unlock()

	for _, r := range queued {
		r.finish(ErrConnectionLost)
	}
	if inHand != nil {
		inHand.finish(ErrConnectionLost)
	}
}

// writeLoop hands queued publishes to paho one at a time, in order, while at
// most MaxInflight are unacknowledged.
func (c *Client) writeLoop(s *session) {
	defer c.wg.Done()
	defer close(s.writerDone)
	for {
		r := c.take(s)
		if r == nil {
			return
		}
		if r.done.Load() { // its ctx ended while it was queued
			c.release(s)
			continue
		}
		select {
		case s.slots <- struct{}{}:
		case <-r.ctx.Done():
			c.release(s)
			continue
		case <-s.ended: // endSession failed r (it was in hand)
			c.release(s)
			return
		}
		tok := s.pc.Publish(r.topic, c.cfg.QoS, false, r.payload)
		c.wg.Add(1) // while this goroutine still counts in c.wg
		go c.await(s, r, tok)
		c.mu.Lock()
		s.inHand = nil
		c.mu.Unlock()
	}
}

// take removes the next request from the queue, waiting for one; it returns
// nil once the session ended.
func (c *Client) take(s *session) *request {
	for {
		c.mu.Lock()
		if s.closed {
			c.mu.Unlock()
			return nil
		}
		if len(s.queue) > 0 {
			r := s.queue[0]
			s.queue[0] = nil
			s.queue = s.queue[1:]
			s.inHand = r
			c.mu.Unlock()
			return r
		}
		c.mu.Unlock()
		select {
		case <-s.wake:
		case <-s.ended:
			return nil
		}
	}
}

// release accounts for a request that no longer counts against MaxPending.
func (c *Client) release(s *session) {
	c.mu.Lock()
	s.pending--
	c.mu.Unlock()
}

// await settles one written publish from its paho token. It keeps the
// in-flight slot until the token completes or the connection ends, even
// after the caller got ErrAckTimeout or a ctx error, so that the broker never
// sees more than MaxInflight unacknowledged messages.
func (c *Client) await(s *session, r *request, tok mqtt.Token) {
	defer c.wg.Done()
	defer func() {
		<-s.slots
		c.release(s)
	}()
	select {
	case <-tok.Done():
	case <-s.lost:
		// paho reports a lost connection only after its reader stopped, so a
		// PUBACK that arrived has completed the token by now.
		select {
		case <-tok.Done():
		default:
			r.finish(ErrConnectionLost)
			return
		}
	}
	r.finish(c.tokenResult(s, tok))
}

// tokenResult turns a completed paho token into Publish's result.
func (c *Client) tokenResult(s *session, tok mqtt.Token) error {
	if err := tok.Error(); err != nil {
		// A write error, paho's "not connected", or its clean-up at
		// disconnect: in every case the connection is gone or going.
		return fmt.Errorf("%w: %v", ErrConnectionLost, err)
	}
	if c.epoch.Load() != s.epoch {
		// Completed after a newer connection began: paho can report such a
		// token as done without a PUBACK; never take it as an ack.
		return ErrConnectionLost
	}
	return nil
}

// dispatch hands inbound messages to the Handler one at a time and
// acknowledges each after the Handler returned.
func (c *Client) dispatch(ctx context.Context) {
	defer c.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-c.inbound:
			if c.cfg.Handler == nil {
				c.log.Debug("uplink inbound message dropped: no handler", "topic", m.topic)
			} else if err := c.cfg.Handler.HandleMessage(ctx, m.topic, m.payload); err != nil {
				c.log.Warn("uplink inbound message not handled", "topic", m.topic, "err", err)
			}
			if ctx.Err() != nil {
				return // not acknowledged: a durable session gets it again
			}
			select {
			case <-m.s.lost: // an ack cannot travel on a dead connection
			default:
				m.ack()
			}
		}
	}
}

func (c *Client) notify(connected bool, err error) {
	if c.cfg.OnStateChange != nil {
		c.cfg.OnStateChange(connected, err)
	}
}
