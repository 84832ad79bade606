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
// before the connection stops reading. The queue holds pointers: device
// mode has a Client per device for the bridge's life, and commands are
// rare, so a message is allocated when it arrives instead of every Client
// keeping room for 64 (3.6 KiB each, 1.8 MiB at 500 devices).
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

	mu          sync.Mutex
	sess        *session        // the connection accepting publishes; nil when there is none
	runCtx      context.Context // Run's ctx, for the Handler
	dispatching bool            // a dispatch goroutine runs
	stopped     bool            // Run is returning: no goroutine starts any more

	inbound chan *inboundMessage
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
		inbound: make(chan *inboundMessage, inboundQueue),
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
	case s.pending() >= c.cfg.MaxPending:
		c.mu.Unlock()
		res <- ErrBusy
		return res
	}
	r := &request{ctx: ctx, deadline: time.Now().Add(c.cfg.AckTimeout), topic: topic, payload: payload, result: res}
	s.queue.push(r)
	c.watch(s, ctx)
	c.armTimer(s)
	start := !s.pumping
	if start {
		s.pumping = true
		c.wg.Add(1) // under mu, while s is the open session: before Run's Wait
	} else if s.inFlight() < c.cfg.MaxInflight {
		c.wakePump(s) // else the pump waits for a slot and finds r then
	}
	c.mu.Unlock()
	if start {
		go c.pump(s)
	}
	return res
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
	c.begin(ctx)
	defer c.end()

	// Run's goroutine spends the connection's life parked in serve, under
	// Run's own frame: Run keeps only the loop's state, and what takes
	// room on the stack (logging, error formatting) is in connectionEnded
	// and connectFailed, which return before serve is called again. In
	// device mode there is one Run per device: with the frames under serve
	// below ~1.2 KiB the GC shrinks the stack to 4 KiB after the logging
	// and connecting grew it to 8 KiB (it halves a stack only when less
	// than a quarter of it is in use), 2 MiB at 500 devices.
	st := retryState{bo: backoff{base: c.cfg.MinBackoff, max: c.cfg.MaxBackoff}}
	for {
		// Taken before the attempt: a connection of another Client while
		// this one is failing means the broker is back.
		reached := c.cfg.Reachable.next()
		var wait time.Duration
		s, err := c.connect(ctx)
		if err == nil {
			began := time.Now()
			err = c.serve(ctx, s)
			if ctx.Err() != nil {
				return nil
			}
			wait, reached, err = c.connectionEnded(&st, s, began, err)
		} else {
			if ctx.Err() != nil {
				return nil
			}
			wait, reached = c.connectFailed(&st, err, reached)
		}
		if st.woken {
			// An early attempt failed although another Client got through:
			// this one waits its own backoff, or a busy broker would see
			// it retry on every other Client's connection.
			reached = nil
		}
		c.notify(false, err)
		var live bool
		if live, st.woken = sleep(ctx, wait, reached, min(c.cfg.MinBackoff, maxWakeSpread)); !live {
			return nil
		}
	}
}

// retryState is what Run's loop carries from one attempt to the next.
type retryState struct {
	bo          backoff
	short       int    // connections in a row closed by the broker within StableAfter
	lastFailure string // the last failed attempt's error, logged at Info once
	woken       bool   // this attempt was started early by another Client's connection
}

// begin and end are Run's start and exit.
func (c *Client) begin(ctx context.Context) {
	if c.cfg.TLS != nil && c.cfg.TLS.InsecureSkipVerify {
		c.log.Warn("uplink tls certificate verification disabled")
	}
	c.mu.Lock()
	c.runCtx = ctx
	c.mu.Unlock()
}

func (c *Client) end() {
	c.mu.Lock()
	c.stopped = true // no dispatcher starts after this
	c.mu.Unlock()
	c.wg.Wait()
}

// connectionEnded decides the wait after an established connection ended
// with err (serve's result) and logs it. It returns the wait, the channel
// that may cut it short, and the error to report.
//
//go:noinline // its frame must not be part of Run's (see Run)
func (c *Client) connectionEnded(st *retryState, s *session, began time.Time, err error) (time.Duration, <-chan struct{}, error) {
	// serve signalled this connection itself; wait for the next.
	reached := c.cfg.Reachable.next()
	st.woken = false
	lived := time.Since(began)
	if lived >= c.cfg.StableAfter {
		st.bo.reset()
		st.short = 0
	} else if closedByPeer(s.cause) {
		st.short++
	}
	wait := st.bo.next()
	if st.short >= takeoverThreshold {
		err = fmt.Errorf("%w: %d connections in a row closed within %v (last: %v)", ErrTakeover, st.short, c.cfg.StableAfter, s.cause)
		st.short = 0
		wait = jitter(c.cfg.LongBackoff)
		reached = nil
		c.log.Error("uplink client id taken over", "err", err, "retry_in_seconds", wait.Seconds())
	} else {
		// Info, not Warn: the owner hears of the state change through
		// OnStateChange and reports it once (the bridge logs "uplink
		// down"); these lines are the details.
		c.log.Info("uplink connection lost", "err", err, "connected_seconds", lived.Seconds(), "retry_in_seconds", wait.Seconds())
	}
	st.lastFailure = ""
	return wait, reached, err
}

// connectFailed decides the wait after a failed connection attempt and
// logs it. It returns the wait and the channel that may cut it short.
//
//go:noinline // its frame must not be part of Run's (see Run)
func (c *Client) connectFailed(st *retryState, err error, reached <-chan struct{}) (time.Duration, <-chan struct{}) {
	wait := st.bo.next()
	refused := errors.Is(err, ErrNotAuthorized) || errors.Is(err, ErrIdentifierRejected)
	if !refused {
		// The broker could not be reached: the connections it
		// closed before were lost to an outage (a restart, a
		// network failure), not taken over by another client with
		// our id, which needs the broker up. Counting them would
		// make a few restarts in a row look like a takeover.
		st.short = 0
	}
	switch {
	case refused:
		wait = jitter(c.cfg.LongBackoff)
		reached = nil // the broker is there and said no: wait it out
		c.log.Error("uplink connection refused", "err", err, "username", c.cfg.Username, "retry_in_seconds", wait.Seconds())
	case err.Error() != st.lastFailure:
		c.log.Info("uplink connect failed", "err", err, "retry_in_seconds", wait.Seconds())
	default:
		c.log.Debug("uplink connect failed", "err", err, "retry_in_seconds", wait.Seconds())
	}
	st.lastFailure = err.Error()
	return wait, reached
}

// serve runs one established connection: subscribe, accept publishes, and
// wait for the connection to end or ctx to be done. It returns why the
// connection ended (nil when ctx ended and the client disconnected).
func (c *Client) serve(ctx context.Context, s *session) error {
	if opened, err := c.open(ctx, s); !opened {
		return err
	}
	defer c.stopWatching(s)
	for {
		select {
		case <-ctx.Done():
			c.shutdown(s)
			return nil
		case <-s.lost:
			// A pump inside paho's Publish is not waited for here: if the
			// connection broke while paho was taking a message, that takes
			// until WriteTimeout, and the next connection must not wait for
			// it. The pump does nothing more once it returns; Run waits for
			// it at exit.
			c.endSession(s)
			return lostError(s)
		case <-s.timer.C:
			c.expire(s)
		case <-s.ctxEnded:
			c.failEnded(s)
		}
	}
}

// open subscribes and then makes s the connection that accepts publishes.
// When the subscription fails it disconnects and returns false with the
// error serve returns.
//
//go:noinline // its frame must not be part of serve's (see Run)
func (c *Client) open(ctx context.Context, s *session) (bool, error) {
	if err := c.subscribe(ctx, s); err != nil {
		s.pc.Disconnect(0)
		s.markLost(err)
		if ctx.Err() != nil {
			return false, nil
		}
		return false, err
	}

	c.mu.Lock()
	s.epoch = c.epoch.Add(1)
	c.sess = s
	c.mu.Unlock()

	c.log.Info("uplink connected", "session_present", s.sessionPresent, "epoch", s.epoch)
	c.cfg.Reachable.connected()
	c.notify(true, nil)
	return true, nil
}

//go:noinline // its frame must not be part of serve's (see Run)
func lostError(s *session) error {
	return fmt.Errorf("%w: %v", ErrConnectionLost, s.cause)
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
	// pump has settled every one of them.
	expired := time.NewTimer(quiesce)
	defer expired.Stop()
wait:
	for {
		select {
		case <-s.drained:
			break wait
		case <-s.lost:
			break wait
		case <-expired.C:
			break wait
		case <-s.timer.C:
			c.expire(s)
		case <-s.ctxEnded:
			c.failEnded(s)
		}
	}

	s.pc.Disconnect(uint(quiesce / time.Millisecond))
	s.markLost(errors.New("client disconnected"))
	c.mu.Lock()
	c.settleLost(s)
	c.mu.Unlock()
	c.log.Info("uplink disconnected")
	c.notify(false, nil)
}

// endSession stops a connection from accepting publishes and fails those
// that were accepted but not yet handed to paho. Publishes already written
// are settled by the pump when their tokens complete, or here when the
// connection is gone.
func (c *Client) endSession(s *session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	if c.sess == s {
		c.sess = nil
	}
	for s.queue.len() > 0 {
		r := s.queue.pop()
		r.finish(ErrConnectionLost)
		c.retire(s, r)
	}
	if s.inHand != nil {
		s.inHand.finish(ErrConnectionLost) // the pump retires it
	}
	if s.isLost() {
		c.settleLost(s)
	}
	c.checkDrained(s)
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

// startDispatch makes sure a dispatcher runs for a message just queued in
// c.inbound. The dispatcher is not kept waiting for commands, which are
// rare: device mode has a Client per device.
func (c *Client) startDispatch() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dispatching || c.stopped {
		return // a stopped Client leaves the message unacknowledged
	}
	c.dispatching = true
	c.wg.Add(1) // under mu, before Run's Wait (stopped is false)
	go c.dispatch(c.runCtx)
}

// dispatch hands inbound messages to the Handler one at a time, in arrival
// order, and acknowledges each after the Handler returned. It returns when
// the queue is empty or ctx ended.
func (c *Client) dispatch(ctx context.Context) {
	defer c.wg.Done()
	for {
		var m *inboundMessage
		select {
		case m = <-c.inbound:
		default:
			// Empty. Checked again under mu: startDispatch, called after
			// each message is queued, finds dispatching still true only
			// while the message can be seen here.
			c.mu.Lock()
			if len(c.inbound) > 0 {
				c.mu.Unlock()
				continue
			}
			c.dispatching = false
			c.mu.Unlock()
			return
		}
		if ctx.Err() != nil {
			c.mu.Lock()
			c.dispatching = false
			c.mu.Unlock()
			return // not acknowledged: a durable session gets it again
		}
		if c.cfg.Handler == nil {
			c.log.Debug("uplink inbound message dropped: no handler", "topic", m.topic)
		} else if err := c.cfg.Handler.HandleMessage(ctx, m.topic, m.payload); err != nil {
			c.log.Warn("uplink inbound message not handled", "topic", m.topic, "err", err)
		}
		if ctx.Err() != nil {
			continue // not acknowledged; the check above ends the loop
		}
		select {
		case <-m.s.lost: // an ack cannot travel on a dead connection
		default:
			m.ack()
		}
	}
}

func (c *Client) notify(connected bool, err error) {
	if c.cfg.OnStateChange != nil {
		c.cfg.OnStateChange(connected, err)
	}
}
