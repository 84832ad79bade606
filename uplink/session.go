package uplink

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
	"github.com/gorilla/websocket"
	"golang.org/x/net/proxy"
)

// session is one network connection and the paho client that owns it. A
// paho client is used for exactly one connection and then dropped, so a
// token can only ever be completed by what happened on that connection.
type session struct {
	pc             mqtt.Client
	sessionPresent bool

	lost     chan struct{} // closed when the connection is gone; cause says why
	lostOnce sync.Once
	cause    error

	down     chan struct{} // closed when the network connection is closed
	downOnce sync.Once

	wake     chan struct{} // the pump may have something to write
	timer    *time.Timer   // AckTimeout of the oldest unsettled request; serve receives
	ctxEnded chan struct{} // a watched ctx ended; serve receives
	drained  chan struct{} // closed once closed, with the pump stopped and nothing in flight

	watchMu   sync.Mutex
	stopWatch func() bool // stops closing the connection when the attempt's ctx ends

	// gather is the connection's write gather, set by the dialer under
	// watchMu before connect returns; the pump (which starts after) corks
	// it while it hands a run of requests to paho.
	gather *writeGather

	// epoch is set under Client.mu before the session accepts publishes
	// and never changes afterwards.
	epoch uint64

	callbacks sync.WaitGroup // ctx watcher callbacks that may run

	// Guarded by Client.mu (see publish.go).
	queue         fifo     // accepted, not yet handed to paho, in call order
	inHand        *request // taken by the pump, inside paho's Publish
	flight        fifo     // handed to paho, token not settled, in write order
	closed        bool     // endSession ran: no more publishes accepted or written
	pumping       bool     // a pump goroutine runs
	drainedClosed bool
	timerArmed    bool
	watches       map[<-chan struct{}]*ctxWatch // by the ctx's Done channel
	idleWatches   int                           // watches without a request (n == 0)
	watchesMade   int                           // watchers made in the session (for tests)
}

func (s *session) markLost(err error) {
	s.lostOnce.Do(func() {
		s.cause = err
		close(s.lost)
	})
}

func stoppedTimer() *time.Timer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}

// connect makes one connection attempt: dial, TLS, CONNECT and CONNACK.
func (c *Client) connect(ctx context.Context) (*session, error) {
	s := &session{
		lost:     make(chan struct{}),
		down:     make(chan struct{}),
		wake:     make(chan struct{}, 1),
		timer:    stoppedTimer(),
		ctxEnded: make(chan struct{}, 1),
		drained:  make(chan struct{}),
	}
	attempt, cancel := context.WithCancel(ctx)
	defer cancel()

	// paho options, and why:
	//   - protocol 3.1.1 explicitly: paho would otherwise retry a refused
	//     CONNECT as 3.1, doubling every attempt (and every auth failure);
	//   - AutoReconnect and ConnectRetry off: Run reconnects with a fresh
	//     paho client, so a lost connection completes nothing as "done"
	//     (paho's auto-reconnect acks QoS 0 publishes it drops and completes
	//     resent QoS 1 tokens before any PUBACK);
	//   - a store that keeps nothing (discardStore): paho would resend from
	//     its store only on a reconnect of the same paho client, which never
	//     happens here; the caller's buffer is the source of truth;
	//   - OrderMatters with AutoAckDisabled: the callback only queues, the
	//     dispatcher acknowledges after the Handler returned;
	//   - WriteTimeout: bounds a stuck socket write and paho's hand-off;
	//   - our own dialer, so that cancelling Run aborts a connect attempt.
	opts := mqtt.NewClientOptions()
	opts.AddBroker(c.cfg.Broker)
	opts.SetClientID(c.cfg.ClientID)
	opts.SetUsername(c.cfg.Username)
	opts.SetPassword(c.cfg.Password)
	opts.SetProtocolVersion(4) // 3.1.1, without paho's silent retry as 3.1
	opts.SetCleanSession(c.cfg.CleanSession)
	opts.SetKeepAlive(c.cfg.KeepAlive)
	opts.SetPingTimeout(min(10*time.Second, c.cfg.KeepAlive))
	opts.SetConnectTimeout(c.cfg.ConnectTimeout)
	opts.SetWriteTimeout(c.cfg.WriteTimeout)
	opts.SetStore(discardStore{})
	opts.SetAutoReconnect(false)
	opts.SetConnectRetry(false)
	opts.SetOrderMatters(true)
	opts.SetAutoAckDisabled(true)
	opts.SetDefaultPublishHandler(c.onMessage(s, ctx.Done()))
	opts.SetConnectionLostHandler(func(_ mqtt.Client, err error) { s.markLost(err) })
	opts.SetCustomOpenConnectionFn(c.dialer(attempt, s))
	s.pc = mqtt.NewClient(opts)

	tok := s.pc.Connect()
	<-tok.Done() // bounded: ConnectTimeout, or at once when attempt is cancelled
	ct, _ := tok.(*mqtt.ConnectToken)
	if err := tok.Error(); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var rc byte = packets.ErrNetworkError
		if ct != nil {
			rc = ct.ReturnCode()
		}
		return nil, connectError(rc, err)
	}
	s.watchMu.Lock()
	stop := s.stopWatch
	s.watchMu.Unlock()
	if stop != nil && !stop() { // ctx ended and closed the connection
		s.pc.Disconnect(0)
		return nil, ctx.Err()
	}
	if ct != nil {
		s.sessionPresent = ct.SessionPresent()
	}
	return s, nil
}

// discardStore is paho's message store for a paho client that sees one
// connection: it keeps nothing. paho's default, a MemoryStore per client,
// put every outbound publish (and subscribe) into a map until its
// acknowledgement and took it out again, under a lock, only to offer them
// for a resend on a reconnect of the same client (and, with a durable
// session, at connect): Run never reconnects a paho client, and each one
// starts with an empty store, so nothing was ever read back. What must be
// resent after a lost connection is the caller's to resend (the buffer
// keeps every event until its nil result). Inbound QoS 1 messages are not
// kept either: they are acknowledged once the Handler returned, and a
// durable session gets an unacknowledged one again from the broker.
type discardStore struct{}

func (discardStore) Open()                             {}
func (discardStore) Put(string, packets.ControlPacket) {}
func (discardStore) Get(string) packets.ControlPacket  { return nil }
func (discardStore) All() []string                     { return nil }
func (discardStore) Del(string)                        {}
func (discardStore) Close()                            {}
func (discardStore) Reset()                            {}

// connectError translates a failed CONNECT into our errors. Neither the
// password nor anything derived from it is part of the message.
func connectError(rc byte, err error) error {
	switch rc {
	case packets.ErrRefusedNotAuthorised, packets.ErrRefusedBadUsernameOrPassword:
		return fmt.Errorf("%w (CONNACK return code %d)", ErrNotAuthorized, rc)
	case packets.ErrRefusedIDRejected:
		return fmt.Errorf("%w (CONNACK return code %d)", ErrIdentifierRejected, rc)
	case packets.ErrRefusedBadProtocolVersion, packets.ErrRefusedServerUnavailable:
		return fmt.Errorf("uplink: broker refused the connection: %s (CONNACK return code %d)", packets.ConnackReturnCodes[rc], rc)
	}
	return fmt.Errorf("uplink: connect: %v", err)
}

// dialer opens the network connection for paho, honouring ctx: a cancelled
// attempt aborts the dial and closes a connection still in its MQTT
// handshake, so Run stops promptly.
func (c *Client) dialer(ctx context.Context, s *session) mqtt.OpenConnectionFunc {
	return func(u *url.URL, _ mqtt.ClientOptions) (net.Conn, error) {
		dctx, cancel := context.WithTimeout(ctx, c.cfg.ConnectTimeout)
		defer cancel()
		// Like paho: a SOCKS proxy from ALL_PROXY/NO_PROXY for TCP and TLS,
		// HTTP(S)_PROXY for websockets.
		pd := proxy.FromEnvironmentUsing(&net.Dialer{})
		dialTCP := func() (net.Conn, error) {
			if cd, ok := pd.(proxy.ContextDialer); ok {
				return cd.DialContext(dctx, "tcp", u.Host)
			}
			return pd.Dial("tcp", u.Host)
		}
		var (
			conn net.Conn
			err  error
		)
		switch strings.ToLower(u.Scheme) {
		case "tcp", "mqtt":
			conn, err = dialTCP()
		case "ssl", "tls", "mqtts", "tcps":
			conn, err = dialTCP()
			if err == nil {
				cfg := c.cfg.TLS
				if cfg.ServerName == "" {
					cfg = cfg.Clone()
					cfg.ServerName = u.Hostname()
				}
				tc := tls.Client(conn, cfg)
				if err = tc.HandshakeContext(dctx); err != nil {
					_ = conn.Close()
				}
				conn = tc
			}
		case "ws":
			conn, err = mqtt.NewWebsocket(u.String(), nil, c.cfg.ConnectTimeout, nil, nil)
		case "wss":
			conn, err = mqtt.NewWebsocket(u.String(), c.cfg.TLS, c.cfg.ConnectTimeout, nil, nil)
		default:
			err = fmt.Errorf("unsupported scheme %q", u.Scheme)
		}
		if err != nil {
			return nil, err
		}
		w := newWatchedConn(conn, s, c.cfg.WriteTimeout)
		stop := context.AfterFunc(ctx, func() { _ = w.Close() })
		s.watchMu.Lock()
		s.stopWatch = stop
		s.gather = w.g
		s.watchMu.Unlock()
		return w, nil
	}
}

// watchedConn tells the session when paho (or the attempt's ctx) closes the
// network connection, so that a goroutine paho waits for while shutting the
// connection down is never left blocked.
//
// Reads go through a small buffer: paho reads each packet's fixed header a
// byte at a time, so an unbuffered PUBACK cost three read calls on the
// socket; buffered, one read call takes every acknowledgement that arrived.
// Only paho's one reader goroutine reads (the CONNACK before it starts).
//
// Writes go through a writeGather (gather.go), which also owns the write
// deadlines.
type watchedConn struct {
	net.Conn
	s *session
	r *bufio.Reader
	g *writeGather
}

// readBuffer holds 128 PUBACKs; larger messages (commands) are read
// straight into paho's buffer once the small one is empty. Small, because
// device mode has one connection per device.
const readBuffer = 512

func newWatchedConn(conn net.Conn, s *session, writeTimeout time.Duration) *watchedConn {
	w := &watchedConn{Conn: conn, s: s, r: bufio.NewReaderSize(conn, readBuffer)}
	w.g = &writeGather{conn: conn, timeout: writeTimeout, close: w.Close}
	return w
}

func (w *watchedConn) Read(p []byte) (int, error) { return w.r.Read(p) }

func (w *watchedConn) Write(p []byte) (int, error) { return w.g.Write(p) }

// SetWriteDeadline is ignored: the gather sets the deadline of each write.
func (w *watchedConn) SetWriteDeadline(time.Time) error { return nil }

// SetDeadline sets the read deadline only, for the same reason.
func (w *watchedConn) SetDeadline(t time.Time) error { return w.Conn.SetReadDeadline(t) }

func (w *watchedConn) Close() error {
	w.s.downOnce.Do(func() { close(w.s.down) })
	return w.Conn.Close()
}

// onMessage is paho's handler for every inbound message. It runs on paho's
// router goroutine, so it only queues the message for dispatch. It gives up
// when the connection closes (the message stays unacknowledged, and a
// durable session redelivers it) or when Run stops.
func (c *Client) onMessage(s *session, stop <-chan struct{}) mqtt.MessageHandler {
	return func(_ mqtt.Client, m mqtt.Message) {
		select {
		case c.inbound <- &inboundMessage{topic: m.Topic(), payload: m.Payload(), ack: m.Ack, s: s}:
		case <-s.down:
			return
		case <-stop:
			return
		}
		c.startDispatch()
	}
}

// closedByPeer reports whether a connection ended because the broker closed
// it (as opposed to a keepalive timeout or a local write error).
func closedByPeer(err error) bool {
	var ce *websocket.CloseError
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.As(err, &ce)
}
