package platform

import (
	"encoding/json"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"fieldbridge/internal/testwait"
)

const (
	testOrg      = "ab12cd"
	pump17       = "d:ab12cd:pump:P-17"
	pump17Token  = "pump-17-token"
	pump18       = "d:ab12cd:pump:P-18"
	pump18Token  = "pump-18-token"
	gw01         = "g:ab12cd:edge-gw:gw-01"
	gw01Token    = "gw-01-token!"
	tokenAuth    = "use-token-auth"
	waitDeadline = 10 * time.Second
)

var testKey = APIKey{Key: "a-ab12cd-q8w7e6r5t4", Token: "app-token-1"}

func testDevices() []Device {
	return []Device{
		{Type: "pump", ID: "P-17", Token: pump17Token},
		{Type: "pump", ID: "P-18", Token: pump18Token},
		{Type: "edge-gw", ID: "gw-01", Token: gw01Token, Gateway: true},
	}
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// startPlatform starts a platform for org ab12cd with testDevices and
// testKey on 127.0.0.1:0; edit may change the config first.
func startPlatform(t *testing.T, edit func(*Config)) *Platform {
	t.Helper()
	cfg := Config{Org: testOrg, Devices: testDevices(), APIKeys: []APIKey{testKey}}
	if edit != nil {
		edit(&cfg)
	}
	p, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	if err := p.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	return p
}

// testClient is a paho MQTT 3.1.1 client that records what happens to it.
type testClient struct {
	paho.Client
	id   string
	lost chan error        // connection lost (capacity 1)
	msgs chan paho.Message // every message received
}

// dial connects to broker ("tcp://host:port", "ws://...", "ssl://...") and
// returns the CONNACK return code; the error is paho's for a refusal.
func dial(t *testing.T, broker, clientID, user, password string, edit ...func(*paho.ClientOptions)) (*testClient, byte, error) {
	t.Helper()
	c := &testClient{id: clientID, lost: make(chan error, 1), msgs: make(chan paho.Message, 256)}
	opts := paho.NewClientOptions().
		AddBroker(broker).
		SetClientID(clientID).
		SetUsername(user).
		SetPassword(password).
		SetProtocolVersion(4).
		SetAutoReconnect(false).
		SetConnectTimeout(waitDeadline).
		SetWriteTimeout(waitDeadline).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			select {
			case c.lost <- err:
			default:
			}
		}).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { c.msgs <- m })
	for _, e := range edit {
		e(opts)
	}
	c.Client = paho.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(waitDeadline) {
		t.Fatalf("connect %s: no CONNACK", clientID)
	}
	rc := tok.(*paho.ConnectToken).ReturnCode()
	if err := tok.Error(); err != nil {
		return nil, rc, err
	}
	t.Cleanup(func() {
		if c.IsConnectionOpen() {
			c.Disconnect(0)
		}
	})
	return c, rc, nil
}

// mustDial connects to the platform's TCP listener or fails the test.
func mustDial(t *testing.T, p *Platform, clientID, user, password string) *testClient {
	t.Helper()
	c, rc, err := dial(t, "tcp://"+p.Addr(), clientID, user, password)
	if err != nil {
		t.Fatalf("connect %s: rc %d: %v", clientID, rc, err)
	}
	return c
}

func (c *testClient) publish(t *testing.T, topic string, qos byte, retained bool, payload []byte) {
	t.Helper()
	tok := c.Publish(topic, qos, retained, payload)
	if !tok.WaitTimeout(waitDeadline) {
		t.Fatalf("%s: publish %s: no PUBACK", c.id, topic)
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("%s: publish %s: %v", c.id, topic, err)
	}
}

// subscribe subscribes to filters (filter → qos) in one SUBSCRIBE and
// returns the SUBACK codes; the token error is returned for a closed
// connection.
func (c *testClient) subscribe(t *testing.T, filters map[string]byte) (map[string]byte, error) {
	t.Helper()
	tok := c.SubscribeMultiple(filters, nil)
	if !tok.WaitTimeout(waitDeadline) {
		return nil, errNoSuback
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	return tok.(*paho.SubscribeToken).Result(), nil
}

func (c *testClient) mustSubscribe(t *testing.T, filter string, qos byte) {
	t.Helper()
	got, err := c.subscribe(t, map[string]byte{filter: qos})
	if err != nil {
		t.Fatalf("%s: subscribe %s: %v", c.id, filter, err)
	}
	if got[filter] != qos {
		t.Fatalf("%s: subscribe %s: SUBACK %#x, want %d", c.id, filter, got[filter], qos)
	}
}

var errNoSuback = errors.New("no SUBACK")

func (c *testClient) next(t *testing.T) paho.Message {
	t.Helper()
	select {
	case m := <-c.msgs:
		return m
	case <-time.After(waitDeadline):
		t.Fatalf("%s: no message", c.id)
		return nil
	}
}

func (c *testClient) waitLost(t *testing.T) {
	t.Helper()
	select {
	case <-c.lost:
	case <-time.After(waitDeadline):
		t.Fatalf("%s: connection not closed by the platform", c.id)
	}
}

func recv(t *testing.T, s *Subscription) Message {
	t.Helper()
	select {
	case m, ok := <-s.C:
		if !ok {
			t.Fatalf("subscription %s closed", s.Filter())
		}
		return m
	case <-time.After(waitDeadline):
		t.Fatalf("subscription %s: no message", s.Filter())
		return Message{}
	}
}

// findViolation returns the latest violation of rule by clientID.
func findViolation(p *Platform, clientID, rule string) (Violation, bool) {
	vs := p.Violations()
	for i := len(vs) - 1; i >= 0; i-- {
		if vs[i].ClientID == clientID && vs[i].Rule == rule {
			return vs[i], true
		}
	}
	return Violation{}, false
}

func waitViolation(t *testing.T, p *Platform, clientID, rule string, action Action) Violation {
	t.Helper()
	var v Violation
	testwait.For(t, waitDeadline, "violation "+rule+" by "+clientID, func() bool {
		var ok bool
		v, ok = findViolation(p, clientID, rule)
		return ok
	})
	if v.Action != action {
		t.Fatalf("violation %s by %s: action %q, want %q (%s)", rule, clientID, v.Action, action, v.Detail)
	}
	return v
}

// durableSession makes a paho client connect with CleanSession false.
func durableSession(o *paho.ClientOptions) { o.SetCleanSession(false) }

// mustDialWith connects like mustDial with extra paho options.
func mustDialWith(t *testing.T, p *Platform, clientID, user, password string, edit ...func(*paho.ClientOptions)) *testClient {
	t.Helper()
	c, rc, err := dial(t, "tcp://"+p.Addr(), clientID, user, password, edit...)
	if err != nil {
		t.Fatalf("connect %s: rc %d: %v", clientID, rc, err)
	}
	return c
}

// testClock is the platform's clock in tests: real time plus an offset the
// test advances.
type testClock struct{ offset atomic.Int64 }

func (c *testClock) now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *testClock) advance(d time.Duration) { c.offset.Add(int64(d)) }

// startPlatformWithClock is startPlatform with a testClock installed before
// Start (so that no goroutine of the platform has read the clock yet).
func startPlatformWithClock(t *testing.T, edit func(*Config)) (*Platform, *testClock) {
	t.Helper()
	clock := &testClock{}
	cfg := Config{Org: testOrg, Devices: testDevices(), APIKeys: []APIKey{testKey}, Now: clock.now}
	if edit != nil {
		edit(&cfg)
	}
	p, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	if err := p.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	return p, clock
}

// decodeJSON decodes b into a new T or fails the test.
func decodeJSON[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return v
}

// mustSubscribePlatform is Platform.Subscribe or fails the test.
func mustSubscribePlatform(t *testing.T, p *Platform, filter string) *Subscription {
	t.Helper()
	s, err := p.Subscribe(filter)
	if err != nil {
		t.Fatalf("Subscribe(%q): %v", filter, err)
	}
	t.Cleanup(s.Close)
	return s
}

// nextOn returns c's next message, failing unless it arrived on topic.
func (c *testClient) nextOn(t *testing.T, topic string) paho.Message {
	t.Helper()
	m := c.next(t)
	if m.Topic() != topic {
		t.Fatalf("%s: message on %q (%s), want one on %q", c.id, m.Topic(), m.Payload(), topic)
	}
	return m
}

// noMessage fails if s holds a message now. Delivery to a Subscription is
// synchronous with the publisher, so this is exact once the publisher's
// publish has been acknowledged.
func noMessage(t *testing.T, s *Subscription) {
	t.Helper()
	select {
	case m := <-s.C:
		t.Errorf("subscription %s: unexpected message on %q: %s", s.Filter(), m.Topic, m.Payload)
	default:
	}
}
