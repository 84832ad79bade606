package uplink

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/mochi-mqtt/server/v2/packets"

	"fieldbridge/internal/testwait"

	"fieldbridge/internal/testpki"
)

const waitLong = 10 * time.Second

func TestConnectFieldsAndPublishQoS1(t *testing.T) {
	b := startBroker(t, nil)
	sub := newSubscriber(t, b.url(), "iot-2/#")
	cfg := testConfig(b.url())
	cfg.CleanSession = false
	states := &stateLog{}
	c, _ := runClient(t, cfg, states)
	testwait.For(t, waitLong, "connected", c.Connected)

	got := b.rec.connectList()
	want := []connectInfo{{
		ClientID:        "d:ab12cd:power-meter:meter-7",
		Username:        "use-token-auth",
		Password:        "tok-S3cret!xyz",
		Clean:           false,
		Keepalive:       5,
		ProtocolVersion: 4,
	}}
	// The subscriber connected first.
	if len(got) != 2 {
		t.Fatalf("CONNECTs = %+v, want the subscriber's and the client's", got)
	}
	if diff := cmp.Diff(want, got[1:]); diff != "" {
		t.Errorf("CONNECT fields (-want +got):\n%s", diff)
	}

	topic := DeviceEventTopic("reading", "json")
	payload := []byte(`{"d":{"voltage_l1":231.4},"seq":1}`)
	if err := result(t, c.Publish(context.Background(), topic, payload), waitLong); err != nil {
		t.Fatalf("Publish = %v, want nil", err)
	}
	pubs := b.rec.publishList()
	if len(pubs) != 1 || pubs[0].Topic != topic || pubs[0].QoS != 1 || pubs[0].Retain || !bytes.Equal(pubs[0].Payload, payload) {
		t.Errorf("broker saw %+v, want one QoS 1 non-retained publish on %s", pubs, topic)
	}
	testwait.For(t, waitLong, "subscriber to receive the event", func() bool { return len(sub.list()) == 1 })
	m := sub.list()[0]
	if m.Topic() != topic || m.Retained() || m.Qos() != 1 || !bytes.Equal(m.Payload(), payload) {
		t.Errorf("subscriber got topic %s retained %v qos %d payload %s", m.Topic(), m.Retained(), m.Qos(), m.Payload())
	}
	// Connected() turns true just before Run's goroutine calls
	// OnStateChange(true), so the call may still be on its way.
	testwait.For(t, waitLong, "OnStateChange(true)", func() bool { return states.connects() > 0 })
	if n := states.connects(); n != 1 {
		t.Errorf("OnStateChange(true) called %d times, want 1", n)
	}
}

func TestPublishQoS0(t *testing.T) {
	b := startBroker(t, nil)
	cfg := testConfig(b.url())
	cfg.QoS = 0
	c, _ := runClient(t, cfg, nil)
	testwait.For(t, waitLong, "connected", c.Connected)
	if err := result(t, c.Publish(context.Background(), DeviceEventTopic("reading", "json"), []byte("{}")), waitLong); err != nil {
		t.Fatalf("Publish = %v, want nil", err)
	}
	testwait.For(t, waitLong, "broker to see the publish", func() bool { return len(b.rec.publishList()) == 1 })
	if p := b.rec.publishList()[0]; p.QoS != 0 || p.Retain {
		t.Errorf("broker saw %+v, want QoS 0, not retained", p)
	}

	// paho reports QoS 0 publishes as done while it reconnects; uplink never
	// does: nothing is nil once the connection is gone.
	b.stop()
	testwait.For(t, waitLong, "Connected() to turn false", func() bool { return !c.Connected() })
	for range 10 {
		if err := result(t, c.Publish(context.Background(), DeviceEventTopic("reading", "json"), []byte("{}")), waitLong); !errors.Is(err, ErrNotConnected) {
			t.Fatalf("QoS 0 Publish while the broker is down = %v, want ErrNotConnected", err)
		}
	}
}

func TestPayloadLimit(t *testing.T) {
	b := startBroker(t, nil)
	sub := newSubscriber(t, b.url(), "iot-2/#")
	c, _ := runClient(t, testConfig(b.url()), nil)
	testwait.For(t, waitLong, "connected", c.Connected)
	topic := DeviceEventTopic("blob", "bin")

	tooBig := make([]byte, MaxPayload+1)
	if err := result(t, c.Publish(context.Background(), topic, tooBig), time.Second); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Publish(%d bytes) = %v, want ErrTooLarge", len(tooBig), err)
	}
	max := bytes.Repeat([]byte{'x'}, MaxPayload)
	if err := result(t, c.Publish(context.Background(), topic, max), waitLong); err != nil {
		t.Errorf("Publish(%d bytes) = %v, want nil", len(max), err)
	}
	testwait.For(t, waitLong, "subscriber to receive the largest payload", func() bool { return len(sub.list()) == 1 })
	pubs := b.rec.publishList()
	if len(pubs) != 1 || len(pubs[0].Payload) != MaxPayload {
		t.Errorf("broker saw %d publishes (want exactly the %d-byte one)", len(pubs), MaxPayload)
	}
	if !c.Connected() {
		t.Error("client disconnected after the largest payload")
	}
}

func TestPublishInvalidTopic(t *testing.T) {
	b := startBroker(t, nil)
	c, _ := runClient(t, testConfig(b.url()), nil)
	testwait.For(t, waitLong, "connected", c.Connected)
	for _, topic := range []string{"", "iot-2/evt/+/fmt/json", "iot-2/#"} {
		if err := result(t, c.Publish(context.Background(), topic, nil), time.Second); !errors.Is(err, ErrInvalidTopic) {
			t.Errorf("Publish(%q) = %v, want ErrInvalidTopic", topic, err)
		}
	}
	if n := len(b.rec.publishList()); n != 0 {
		t.Errorf("broker saw %d publishes, want none", n)
	}
}

func TestPublishOrder(t *testing.T) {
	b := startBroker(t, nil)
	cfg := testConfig(b.url())
	cfg.MaxInflight = 16
	c, _ := runClient(t, cfg, nil)
	testwait.For(t, waitLong, "connected", c.Connected)
	const n = 300
	results := make([]<-chan error, n)
	for i := range n {
		results[i] = c.Publish(context.Background(), DeviceEventTopic("reading", "json"), fmt.Appendf(nil, "%d", i))
	}
	for i, ch := range results {
		if err := result(t, ch, waitLong); err != nil {
			t.Fatalf("Publish %d = %v, want nil", i, err)
		}
	}
	pubs := b.rec.publishList()
	if len(pubs) != n {
		t.Fatalf("broker saw %d publishes, want %d", len(pubs), n)
	}
	for i, p := range pubs {
		if want := fmt.Sprint(i); string(p.Payload) != want {
			t.Fatalf("publish %d on the wire carried %q, want %q (call order)", i, p.Payload, want)
		}
	}
}

func TestMaxInflightAndAckTimeout(t *testing.T) {
	b := startBroker(t, nil)
	b.rec.blackhole.Store(true) // the broker never acknowledges
	cfg := testConfig(b.url())
	cfg.MaxInflight = 3
	cfg.AckTimeout = 300 * time.Millisecond
	c, _ := runClient(t, cfg, nil)
	testwait.For(t, waitLong, "connected", c.Connected)

	var results []<-chan error
	for i := range 6 {
		results = append(results, c.Publish(context.Background(), DeviceEventTopic("reading", "json"), fmt.Appendf(nil, "%d", i)))
	}
	for i, ch := range results {
		if err := result(t, ch, waitLong); !errors.Is(err, ErrAckTimeout) {
			t.Errorf("Publish %d = %v, want ErrAckTimeout", i, err)
		}
	}
	// The unacknowledged ones keep their slots: only the first 3 were sent.
	if n := len(b.rec.publishList()); n != 3 {
		t.Errorf("broker saw %d publishes, want MaxInflight = 3", n)
	}

	ctx, cancel := context.WithCancel(context.Background())
	ch := c.Publish(ctx, DeviceEventTopic("reading", "json"), []byte("x"))
	cancel()
	if err := result(t, ch, waitLong); !errors.Is(err, context.Canceled) {
		t.Errorf("Publish with a cancelled ctx = %v, want context.Canceled", err)
	}
}

func TestMaxPending(t *testing.T) {
	b := startBroker(t, nil)
	b.rec.blackhole.Store(true)
	cfg := testConfig(b.url())
	cfg.MaxInflight = 1
	cfg.MaxPending = 2
	c, _ := runClient(t, cfg, nil)
	testwait.For(t, waitLong, "connected", c.Connected)
	topic := DeviceEventTopic("reading", "json")
	_ = c.Publish(context.Background(), topic, []byte("1"))
	_ = c.Publish(context.Background(), topic, []byte("2"))
	if err := result(t, c.Publish(context.Background(), topic, []byte("3")), time.Second); !errors.Is(err, ErrBusy) {
		t.Errorf("third Publish with MaxPending 2 = %v, want ErrBusy", err)
	}
}

// TestBrokerOutage: pending publishes fail with ErrConnectionLost (never
// nil) when the broker goes away, Publish fails fast while it is away, and
// after the broker is back on the same port the client reconnects and
// subscribes again (the restarted broker forgot every session).
func TestBrokerOutage(t *testing.T) {
	b := startBroker(t, nil)
	b.rec.blackhole.Store(true)
	cfg := testConfig(b.url())
	cfg.CleanSession = true
	cmds := &inbox{}
	cfg.Handler = cmds
	cfg.Subscriptions = []Subscription{{Filter: DeviceCommandTopic("+", "+"), QoS: 1}}
	states := &stateLog{}
	c, _ := runClient(t, cfg, states)
	testwait.For(t, waitLong, "connected", c.Connected)

	topic := DeviceEventTopic("reading", "json")
	var pending []<-chan error
	for i := range 5 {
		pending = append(pending, c.Publish(context.Background(), topic, fmt.Appendf(nil, "%d", i)))
	}
	testwait.For(t, waitLong, "the broker to receive the in-flight publishes", func() bool { return len(b.rec.publishList()) >= 5 })

	b.stop()
	for i, ch := range pending {
		if err := result(t, ch, waitLong); !errors.Is(err, ErrConnectionLost) {
			t.Errorf("pending Publish %d after the broker stopped = %v, want ErrConnectionLost", i, err)
		}
	}
	testwait.For(t, waitLong, "Connected() to turn false", func() bool { return !c.Connected() })
	if err := result(t, c.Publish(context.Background(), topic, []byte("down")), time.Second); !errors.Is(err, ErrNotConnected) {
		t.Errorf("Publish while the broker is down = %v, want ErrNotConnected", err)
	}
	testwait.For(t, waitLong, "OnStateChange to report ErrConnectionLost", func() bool { return states.has(ErrConnectionLost) })

	b.rec.blackhole.Store(false)
	b.start()
	testwait.For(t, waitLong, "reconnect", func() bool { return states.connects() >= 2 && c.Connected() })
	if subs := b.rec.subscribeList(); len(subs) != 2 || subs[1] != "iot-2/cmd/+/fmt/+" {
		t.Errorf("SUBSCRIBEs = %q, want the command filter once per connection", subs)
	}
	if err := b.server().Publish("iot-2/cmd/reboot/fmt/json", []byte(`{"now":true}`), false, 1); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, waitLong, "the command to reach the Handler", func() bool { return len(cmds.list()) == 1 })
	if got := cmds.list()[0]; got.Topic != "iot-2/cmd/reboot/fmt/json" || string(got.Payload) != `{"now":true}` {
		t.Errorf("Handler got %s %s", got.Topic, got.Payload)
	}
	if err := result(t, c.Publish(context.Background(), topic, []byte("up")), waitLong); err != nil {
		t.Errorf("Publish after reconnect = %v, want nil", err)
	}
}

// TestDurableSession: with CleanSession false, a QoS 1 command published
// while the client is disconnected arrives after it reconnects.
func TestDurableSession(t *testing.T) {
	b := startBroker(t, nil)
	cfg := testConfig(b.url())
	cfg.CleanSession = false
	cfg.MinBackoff, cfg.MaxBackoff = time.Second, time.Second // a window in which the client is away
	cmds := &inbox{}
	cfg.Handler = cmds
	cfg.Subscriptions = []Subscription{{Filter: DeviceCommandTopic("+", "+"), QoS: 1}}
	states := &stateLog{}
	c, _ := runClient(t, cfg, states)
	testwait.For(t, waitLong, "connected", c.Connected)

	srv := b.server()
	cl, ok := srv.Clients.Get(cfg.ClientID)
	if !ok {
		t.Fatal("broker does not know the client")
	}
	_ = srv.DisconnectClient(cl, packets.ErrAdministrativeAction) // the platform drops us
	testwait.For(t, waitLong, "the client to notice", func() bool { return !c.Connected() })
	if b.connectedClient(cfg.ClientID) {
		t.Fatal("the broker still has a live connection")
	}
	if err := srv.Publish("iot-2/cmd/setSpeed/fmt/json", []byte(`{"rpm":1450}`), false, 1); err != nil {
		t.Fatal(err)
	}
	if n := len(b.rec.connectList()); n != 1 {
		t.Fatalf("the client reconnected before the command was queued (%d CONNECTs); the test proves nothing", n)
	}
	testwait.For(t, waitLong, "the queued command to arrive after reconnect", func() bool { return len(cmds.list()) == 1 })
	if got := cmds.list()[0]; got.Topic != "iot-2/cmd/setSpeed/fmt/json" || string(got.Payload) != `{"rpm":1450}` {
		t.Errorf("Handler got %s %s", got.Topic, got.Payload)
	}
	// The queued command may reach the Handler before OnStateChange(true):
	// subscriptions (and redelivery) come first.
	testwait.For(t, waitLong, "the second connection to be reported", func() bool { return states.connects() == 2 })
}

// TestTakeover: two clients with the same client id knock each other off;
// uplink reports ErrTakeover and backs off instead of storming.
func TestTakeover(t *testing.T) {
	b := startBroker(t, nil)
	cfg := testConfig(b.url())
	cfg.StableAfter = 10 * time.Second
	statesA, statesB := &stateLog{}, &stateLog{}
	logger, logs := newTestLogger(t, cfg.Password)
	a, err := New(cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	a.cfg.OnStateChange = statesA.record
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	})
	testwait.For(t, waitLong, "first client connected", a.Connected)
	_, _ = runClient(t, cfg, statesB)

	testwait.For(t, waitLong, "ErrTakeover to be reported", func() bool {
		return statesA.has(ErrTakeover) || statesB.has(ErrTakeover)
	})
	// The storm stops: one client waits LongBackoff (1h), the other stays connected.
	time.Sleep(200 * time.Millisecond)
	before := len(b.rec.connectList())
	time.Sleep(500 * time.Millisecond)
	after := len(b.rec.connectList())
	if after != before {
		t.Errorf("CONNECTs went on after ErrTakeover: %d -> %d", before, after)
	}
	if after > 4*takeoverThreshold {
		t.Errorf("%d CONNECTs before the takeover was detected, want a handful", after)
	}
	if !b.connectedClient(cfg.ClientID) {
		t.Error("neither client is connected after the storm")
	}
	if !strings.Contains(logs.String(), `"msg":"uplink client id taken over"`) && !statesB.has(ErrTakeover) {
		t.Errorf("takeover not logged:\n%s", logs.String())
	}
}

// TestNotAuthorized: CONNACK 5 is reported as ErrNotAuthorized and not
// retried before LongBackoff; the token never reaches the log.
func TestNotAuthorized(t *testing.T) {
	b := startBroker(t, &recorder{deny: true})
	cfg := testConfig(b.url())
	states := &stateLog{}
	logger, logs := newTestLogger(t, cfg.Password)
	cfg.OnStateChange = states.record
	c, err := New(cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()

	testwait.For(t, waitLong, "ErrNotAuthorized", func() bool { return states.has(ErrNotAuthorized) })
	time.Sleep(300 * time.Millisecond) // MinBackoff is 20ms: a storm would show by now
	if n := len(b.rec.connectList()); n != 1 {
		t.Errorf("CONNECT attempts = %d, want 1 (LongBackoff is 1h)", n)
	}
	if !strings.Contains(logs.String(), `"level":"ERROR","msg":"uplink connection refused"`) {
		t.Errorf("refusal not logged at error level:\n%s", logs.String())
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return promptly during the long backoff")
	}
	if strings.Contains(logs.String(), cfg.Password) {
		t.Errorf("password in log:\n%s", logs.String())
	}
}

func TestRunTwice(t *testing.T) {
	b := startBroker(t, nil)
	c, _ := runClient(t, testConfig(b.url()), nil)
	testwait.For(t, waitLong, "connected", c.Connected)
	if err := c.Run(context.Background()); err == nil {
		t.Error("second Run = nil, want an error")
	}
}

// TestShutdown: cancelling Run disconnects cleanly, returns nil, and later
// publishes fail with ErrNotConnected.
func TestShutdown(t *testing.T) {
	b := startBroker(t, nil)
	states := &stateLog{}
	c, stop := runClient(t, testConfig(b.url()), states)
	testwait.For(t, waitLong, "connected", c.Connected)
	if err := result(t, c.Publish(context.Background(), "t", nil), waitLong); err != nil {
		t.Fatalf("Publish = %v", err)
	}
	b.rec.blackhole.Store(true) // these stay unacknowledged
	var pending []<-chan error
	for range 3 {
		pending = append(pending, c.Publish(context.Background(), "t", nil))
	}
	testwait.For(t, waitLong, "the broker to receive them", func() bool { return len(b.rec.publishList()) == 4 })
	start := time.Now()
	stop()
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("shutdown took %v", d)
	}
	for i, ch := range pending {
		select {
		case err := <-ch:
			if !errors.Is(err, ErrConnectionLost) {
				t.Errorf("unacknowledged Publish %d at shutdown = %v, want ErrConnectionLost", i, err)
			}
		default:
			t.Errorf("unacknowledged Publish %d has no result after Run returned", i)
		}
	}
	if evs := states.list(); len(evs) != 2 || evs[1].connected || evs[1].err != nil {
		t.Errorf("state changes = %+v, want connected, then (false, nil) at shutdown", evs)
	}
	if c.Connected() {
		t.Error("Connected() after Run returned")
	}
	if err := result(t, c.Publish(context.Background(), "t", nil), time.Second); !errors.Is(err, ErrNotConnected) {
		t.Errorf("Publish after Run = %v, want ErrNotConnected", err)
	}
	testwait.For(t, waitLong, "the broker to see the disconnect", func() bool { return !b.connectedClient(testConfig("").ClientID) })
}

// TestUnreachableBroker: Run keeps retrying a broker that refuses TCP and
// returns promptly when cancelled.
func TestUnreachableBroker(t *testing.T) {
	b := startBroker(t, nil)
	url := b.url()
	b.stop()
	states := &stateLog{}
	c, stop := runClient(t, testConfig(url), states)
	testwait.For(t, waitLong, "several failed attempts", func() bool {
		return states.count(func(e stateEvent) bool { return !e.connected && e.err != nil }) >= 3
	})
	if c.Connected() {
		t.Error("Connected() with no broker")
	}
	start := time.Now()
	stop()
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Run took %v to return", d)
	}
}

func TestTLSBroker(t *testing.T) {
	pki := testpki.New(t)
	caFile, serverCert := pki.CAFile, pki.Server
	b := startBroker(t, nil, withTLS(&tls.Config{Certificates: []tls.Certificate{serverCert}, MinVersion: tls.VersionTLS12}))

	tlsCfg, err := NewTLSConfig(caFile, "", "", false)
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(b.url())
	cfg.TLS = tlsCfg
	c, _ := runClient(t, cfg, nil)
	testwait.For(t, waitLong, "connected over TLS", c.Connected)
	if err := result(t, c.Publish(context.Background(), DeviceEventTopic("reading", "json"), []byte("{}")), waitLong); err != nil {
		t.Errorf("Publish over TLS = %v", err)
	}

	// Without the pinned CA the server certificate is not trusted.
	cfg2 := testConfig(b.url())
	cfg2.ClientID = "d:ab12cd:power-meter:other"
	states := &stateLog{}
	_, _ = runClient(t, cfg2, states)
	testwait.For(t, waitLong, "a failed TLS attempt", func() bool {
		return states.count(func(e stateEvent) bool { return e.err != nil && strings.Contains(e.err.Error(), "certificate") }) > 0
	})
	if states.connects() != 0 || states.has(ErrNotAuthorized) {
		t.Errorf("untrusted server: states %+v", states.list())
	}
}

func TestWebsocketBroker(t *testing.T) {
	b := startBroker(t, nil, withWebsocket())
	c, _ := runClient(t, testConfig(b.url()), nil)
	testwait.For(t, waitLong, "connected over websocket", c.Connected)
	if err := result(t, c.Publish(context.Background(), DeviceEventTopic("reading", "json"), []byte("{}")), waitLong); err != nil {
		t.Errorf("Publish over websocket = %v", err)
	}
	if pubs := b.rec.publishList(); len(pubs) != 1 {
		t.Errorf("broker saw %d publishes, want 1", len(pubs))
	}
}

// TestHandlerErrorStillAcks: a Handler error is logged; the message is
// acknowledged and the connection stays up.
func TestHandlerErrorStillAcks(t *testing.T) {
	b := startBroker(t, nil)
	cfg := testConfig(b.url())
	got := make(chan string, 4)
	cfg.Handler = HandlerFunc(func(_ context.Context, topic string, _ []byte) error {
		got <- topic
		return errors.New("unknown command")
	})
	cfg.Subscriptions = []Subscription{{Filter: DeviceCommandTopic("+", "+"), QoS: 1}}
	c, _ := runClient(t, cfg, nil)
	testwait.For(t, waitLong, "connected", c.Connected)
	for _, cmd := range []string{"a", "b"} {
		if err := b.server().Publish(DeviceCommandTopic(cmd, "json"), []byte("{}"), false, 1); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []string{"iot-2/cmd/a/fmt/json", "iot-2/cmd/b/fmt/json"} {
		select {
		case topic := <-got:
			if topic != want {
				t.Errorf("Handler got %s, want %s (arrival order)", topic, want)
			}
		case <-time.After(waitLong):
			t.Fatalf("Handler not called for %s", want)
		}
	}
	if !c.Connected() {
		t.Error("disconnected after a Handler error")
	}
}

// TestCancelDuringConnect: a broker that accepts TCP and never answers
// CONNECT does not hold Run up when it is cancelled (the attempt's
// connection is closed), even with a long ConnectTimeout.
func TestCancelDuringConnect(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 8)
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- conn // hold it open, never answer
		}
	}()
	t.Cleanup(func() {
		for {
			select {
			case conn := <-accepted:
				conn.Close()
			default:
				return
			}
		}
	})
	cfg := testConfig("tcp://" + l.Addr().String())
	cfg.ConnectTimeout = time.Minute
	_, stop := runClient(t, cfg, nil)
	select {
	case conn := <-accepted:
		defer conn.Close()
	case <-time.After(waitLong):
		t.Fatal("no connection attempt")
	}
	start := time.Now()
	stop()
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Run took %v to return while a CONNECT was unanswered", d)
	}
}

// TestBrokerClosesBeforeConnack: a listener that closes every connection
// at once yields failed attempts with backoff, never a connection.
func TestBrokerClosesBeforeConnack(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			conn.Close()
		}
	}()
	states := &stateLog{}
	c, _ := runClient(t, testConfig("tcp://"+l.Addr().String()), states)
	testwait.For(t, waitLong, "three failed attempts", func() bool {
		return states.count(func(e stateEvent) bool { return !e.connected && e.err != nil }) >= 3
	})
	if c.Connected() || states.connects() != 0 {
		t.Errorf("connected to a broker that never sent CONNACK: %+v", states.list())
	}
}
