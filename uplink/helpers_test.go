package uplink

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// result waits for one Publish result.
func result(t testing.TB, ch <-chan error, timeout time.Duration) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(timeout):
		t.Fatalf("no Publish result within %v", timeout)
		return nil
	}
}

// connectInfo is what a CONNECT carried.
type connectInfo struct {
	ClientID, Username, Password string
	Clean                        bool
	Keepalive                    uint16
	ProtocolVersion              byte
}

// publishInfo is what a client PUBLISH carried.
type publishInfo struct {
	Client  string
	Topic   string
	QoS     byte
	Retain  bool
	Payload []byte
}

// recorder is a mochi hook that records CONNECTs, client publishes and
// subscriptions, and decides authentication: it allows everything like
// mochi's auth.AllowHook (whose package needs a yaml module that go.sum does
// not carry), or, with deny set, refuses every CONNECT (CONNACK 5 for MQTT
// 3.1.1). With blackhole set it swallows publishes without a PUBACK.
type recorder struct {
	mochi.HookBase
	deny      bool
	quiet     bool // do not record publishes (benchmarks)
	blackhole atomic.Bool

	mu         sync.Mutex
	connects   []connectInfo
	publishes  []publishInfo
	subscribes []string
}

func (r *recorder) ID() string { return "recorder" }

func (r *recorder) Provides(b byte) bool {
	switch b {
	case mochi.OnConnect, mochi.OnPublish, mochi.OnSubscribe, mochi.OnConnectAuthenticate, mochi.OnACLCheck:
		return true
	}
	return false
}

func (r *recorder) OnConnect(cl *mochi.Client, pk packets.Packet) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.connects = append(r.connects, connectInfo{
		ClientID:        pk.Connect.ClientIdentifier,
		Username:        string(pk.Connect.Username),
		Password:        string(pk.Connect.Password),
		Clean:           pk.Connect.Clean,
		Keepalive:       pk.Connect.Keepalive,
		ProtocolVersion: pk.ProtocolVersion,
	})
	return nil
}

func (r *recorder) OnConnectAuthenticate(*mochi.Client, packets.Packet) bool { return !r.deny }
func (r *recorder) OnACLCheck(*mochi.Client, string, bool) bool              { return !r.deny }

func (r *recorder) OnPublish(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline || r.quiet {
		return pk, nil
	}
	r.mu.Lock()
	r.publishes = append(r.publishes, publishInfo{
		Client:  cl.ID,
		Topic:   pk.TopicName,
		QoS:     pk.FixedHeader.Qos,
		Retain:  pk.FixedHeader.Retain,
		Payload: bytes.Clone(pk.Payload),
	})
	r.mu.Unlock()
	if r.blackhole.Load() {
		return pk, packets.ErrRejectPacket
	}
	return pk, nil
}

func (r *recorder) OnSubscribe(cl *mochi.Client, pk packets.Packet) packets.Packet {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, f := range pk.Filters {
		r.subscribes = append(r.subscribes, f.Filter)
	}
	return pk
}

func (r *recorder) connectList() []connectInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]connectInfo(nil), r.connects...)
}

func (r *recorder) publishList() []publishInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]publishInfo(nil), r.publishes...)
}

func (r *recorder) subscribeList() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.subscribes...)
}

// broker is an in-process mochi broker on a loopback port that can be
// stopped and started again on the same port. Sessions live in memory, so a
// restart forgets them (like a broker without persistence).
type broker struct {
	t    testing.TB
	addr string
	rec  *recorder
	tls  *tls.Config
	ws   bool

	mu  sync.Mutex
	srv *mochi.Server
}

type brokerOption func(*broker)

func withTLS(cfg *tls.Config) brokerOption { return func(b *broker) { b.tls = cfg } }
func withWebsocket() brokerOption          { return func(b *broker) { b.ws = true } }

// startBroker starts a mochi broker on 127.0.0.1 and a free port with rec
// as its only hook.
func startBroker(t testing.TB, rec *recorder, opts ...brokerOption) *broker {
	t.Helper()
	if rec == nil {
		rec = &recorder{}
	}
	b := &broker{t: t, addr: "127.0.0.1:0", rec: rec}
	for _, o := range opts {
		o(b)
	}
	if b.ws { // mochi's websocket listener does not report a port chosen by the kernel
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		b.addr = l.Addr().String()
		l.Close()
	}
	b.start()
	t.Cleanup(b.stop)
	return b
}

func (b *broker) start() {
	b.t.Helper()
	srv := mochi.New(&mochi.Options{
		InlineClient: true,
		Logger:       slog.New(slog.DiscardHandler),
	})
	if err := srv.AddHook(b.rec, nil); err != nil {
		b.t.Fatal(err)
	}
	cfg := listeners.Config{ID: "t", Address: b.addr, TLSConfig: b.tls}
	newListener := func() listeners.Listener {
		if b.ws {
			return safeClose{listeners.NewWebsocket(cfg), srv}
		}
		return safeClose{listeners.NewTCP(cfg), srv}
	}
	l := newListener()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := srv.AddListener(l)
		if err == nil {
			break
		}
		if time.Now().After(deadline) { // the old socket of a restart may linger a moment
			b.t.Fatalf("broker listen on %s: %v", b.addr, err)
		}
		time.Sleep(20 * time.Millisecond)
		l = newListener()
	}
	if err := srv.Serve(); err != nil {
		b.t.Fatal(err)
	}
	b.addr = l.Address()
	b.mu.Lock()
	b.srv = srv
	b.mu.Unlock()
}

// safeClose replaces the client-closing function mochi's Server.Close
// passes to a listener. mochi's own (closeListenerClients, v2.7.9) calls
// Clients.GetByListener, which read-locks the client map and then calls Len,
// which read-locks it again; a client connecting or disconnecting in between
// (Clients.Add or Delete waiting for the write lock) blocks the second read
// lock, and Close hangs for ever. The tests' cleanups disconnect their
// clients just before they stop the broker, so that window is real: it hung
// TestConnectFieldsAndPublishQoS1 once under load. The platform package's
// listener works around the same bug (Platform.disconnectClients).
type safeClose struct {
	listeners.Listener
	srv *mochi.Server
}

func (l safeClose) Close(listeners.CloseFn) {
	l.Listener.Close(func(id string) {
		for _, cl := range l.srv.Clients.GetAll() { // one read lock
			if cl.Net.Listener == id && !cl.Closed() {
				_ = l.srv.DisconnectClient(cl, packets.ErrServerShuttingDown)
			}
		}
	})
}

// stop closes the broker and every client connection.
func (b *broker) stop() {
	b.mu.Lock()
	srv := b.srv
	b.srv = nil
	b.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
}

func (b *broker) server() *mochi.Server {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.srv
}

func (b *broker) url() string {
	switch {
	case b.ws && b.tls != nil:
		return "wss://" + b.addr + "/mqtt"
	case b.ws:
		return "ws://" + b.addr + "/mqtt"
	case b.tls != nil:
		return "ssl://" + b.addr
	}
	return "tcp://" + b.addr
}

// connectedClient reports whether the broker has a live connection for id.
func (b *broker) connectedClient(id string) bool {
	srv := b.server()
	if srv == nil {
		return false
	}
	cl, ok := srv.Clients.Get(id)
	return ok && !cl.Closed()
}

// stateLog records OnStateChange calls.
type stateLog struct {
	mu     sync.Mutex
	events []stateEvent
}

type stateEvent struct {
	connected bool
	err       error
}

func (s *stateLog) record(connected bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, stateEvent{connected, err})
}

func (s *stateLog) list() []stateEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]stateEvent(nil), s.events...)
}

func (s *stateLog) count(match func(stateEvent) bool) int {
	n := 0
	for _, e := range s.list() {
		if match(e) {
			n++
		}
	}
	return n
}

func (s *stateLog) connects() int {
	return s.count(func(e stateEvent) bool { return e.connected })
}

func (s *stateLog) has(target error) bool {
	return s.count(func(e stateEvent) bool { return errors.Is(e.err, target) }) > 0
}

// logBuffer is a JSON slog destination that, when the test ends, checks that
// a secret never appeared in any log line.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func newTestLogger(t testing.TB, secret string) (*slog.Logger, *logBuffer) {
	t.Helper()
	lb := &logBuffer{}
	t.Cleanup(func() {
		if secret != "" && strings.Contains(lb.String(), secret) {
			t.Errorf("the password %q appears in the log:\n%s", secret, lb.String())
		}
		if t.Failed() {
			t.Logf("uplink log:\n%s", lb.String())
		}
	})
	return slog.New(slog.NewJSONHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})), lb
}

// testConfig returns a device-mode configuration for broker URL u with
// short timings suitable for tests.
func testConfig(u string) Config {
	id := Identity{Org: "ab12cd", Type: "power-meter", ID: "meter-7"}
	return Config{
		Broker:         u,
		ClientID:       DeviceClientID(id),
		Username:       TokenAuthUsername,
		Password:       "tok-S3cret!xyz",
		QoS:            1,
		KeepAlive:      5 * time.Second,
		ConnectTimeout: 2 * time.Second,
		MinBackoff:     20 * time.Millisecond,
		MaxBackoff:     100 * time.Millisecond,
		LongBackoff:    time.Hour,
		AckTimeout:     5 * time.Second,
		// Bounds how long a writer can be stuck in paho's Publish when a
		// connection breaks while paho takes a message (Run waits for it).
		WriteTimeout: 2 * time.Second,
	}
}

// runClient builds a Client and runs it until the test ends; Run must return
// nil. The returned stop function cancels Run and waits for it.
func runClient(t testing.TB, cfg Config, states *stateLog) (*Client, func()) {
	t.Helper()
	logger, _ := newTestLogger(t, cfg.Password)
	if states != nil {
		cfg.OnStateChange = states.record
	}
	c, err := New(cfg, logger)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run returned %v, want nil", err)
				}
			case <-time.After(10 * time.Second):
				t.Errorf("Run did not return within 10s of cancel")
			}
		})
	}
	t.Cleanup(stop)
	return c, stop
}

// subscriber is a plain paho client that collects what it receives.
type subscriber struct {
	mu   sync.Mutex
	msgs []paho.Message
}

func (s *subscriber) list() []paho.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]paho.Message(nil), s.msgs...)
}

func newSubscriber(t testing.TB, brokerURL, filter string) *subscriber {
	t.Helper()
	s := &subscriber{}
	opts := paho.NewClientOptions().AddBroker(brokerURL).SetClientID("test-subscriber").
		SetProtocolVersion(4).SetAutoReconnect(false).SetConnectTimeout(5 * time.Second)
	pc := paho.NewClient(opts)
	if tok := pc.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscriber connect: %v", tok.Error())
	}
	t.Cleanup(func() { pc.Disconnect(100) })
	tok := pc.Subscribe(filter, 1, func(_ paho.Client, m paho.Message) {
		s.mu.Lock()
		s.msgs = append(s.msgs, m)
		s.mu.Unlock()
	})
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscriber subscribe: %v", tok.Error())
	}
	return s
}

// inbox is a Handler that collects inbound messages.
type inbox struct {
	mu   sync.Mutex
	msgs []publishInfo
}

func (ib *inbox) HandleMessage(_ context.Context, topic string, payload []byte) error {
	ib.mu.Lock()
	defer ib.mu.Unlock()
	ib.msgs = append(ib.msgs, publishInfo{Topic: topic, Payload: payload})
	return nil
}

func (ib *inbox) list() []publishInfo {
	ib.mu.Lock()
	defer ib.mu.Unlock()
	return append([]publishInfo(nil), ib.msgs...)
}
