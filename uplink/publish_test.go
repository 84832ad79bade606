package uplink

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/eclipse/paho.mqtt.golang/packets"

	"fieldbridge/internal/testwait"
)

// scriptedBroker is a one-connection MQTT broker on loopback whose test
// decides when each PUBLISH is acknowledged, in any order: it answers
// CONNECT with CONNACK, PINGREQ with PINGRESP, and hands every PUBLISH to
// the test.
type scriptedBroker struct {
	t         *testing.T
	l         net.Listener
	conns     chan net.Conn
	publishes chan *packets.PublishPacket
}

func startScriptedBroker(t *testing.T) *scriptedBroker {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &scriptedBroker{t: t, l: l, conns: make(chan net.Conn, 1), publishes: make(chan *packets.PublishPacket, 64)}
	t.Cleanup(func() { l.Close() })
	go func() {
		conn, err := l.Accept()
		if err != nil {
			return
		}
		t.Cleanup(func() { conn.Close() })
		b.conns <- conn
		for {
			cp, err := packets.ReadPacket(conn)
			if err != nil {
				close(b.publishes)
				return
			}
			switch p := cp.(type) {
			case *packets.ConnectPacket:
				_ = packets.NewControlPacket(packets.Connack).Write(conn)
			case *packets.PingreqPacket:
				_ = packets.NewControlPacket(packets.Pingresp).Write(conn)
			case *packets.PublishPacket:
				b.publishes <- p
			}
		}
	}()
	return b
}

func (b *scriptedBroker) url() string { return "tcp://" + b.l.Addr().String() }

// next returns the next PUBLISH the broker received.
func (b *scriptedBroker) next() *packets.PublishPacket {
	b.t.Helper()
	select {
	case p, ok := <-b.publishes:
		if !ok {
			b.t.Fatal("the connection closed")
		}
		return p
	case <-time.After(waitLong):
		b.t.Fatal("no PUBLISH")
		return nil
	}
}

// ack sends the PUBACK of p.
func (b *scriptedBroker) ack(conn net.Conn, p *packets.PublishPacket) {
	b.t.Helper()
	pa := packets.NewControlPacket(packets.Puback).(*packets.PubackPacket)
	pa.MessageID = p.MessageID
	if err := pa.Write(conn); err != nil {
		b.t.Fatal(err)
	}
}

// noResult fails the test if ch already has a result.
func noResult(t *testing.T, what string, ch <-chan error) {
	t.Helper()
	select {
	case err := <-ch:
		t.Fatalf("%s has a result already: %v", what, err)
	default:
	}
}

// TestOutOfOrderAcks: acknowledgements that come in another order than the
// publishes settle each publish with its own result. A publish acknowledged
// behind an unacknowledged one gets nil (at the latest when the older one's
// deadline passes), the older one ErrAckTimeout; the older one keeps its
// in-flight slot until its own PUBACK arrives, after which the next
// publish is written.
func TestOutOfOrderAcks(t *testing.T) {
	b := startScriptedBroker(t)
	cfg := testConfig(b.url())
	cfg.MaxInflight = 2
	cfg.AckTimeout = 500 * time.Millisecond
	c, _ := runClient(t, cfg, nil)
	testwait.For(t, waitLong, "connected", c.Connected)
	conn := <-b.conns
	topic := DeviceEventTopic("reading", "json")

	// Both acknowledged, the second first.
	first := c.Publish(context.Background(), topic, []byte("1"))
	second := c.Publish(context.Background(), topic, []byte("2"))
	p1, p2 := b.next(), b.next()
	b.ack(conn, p2)
	b.ack(conn, p1)
	for i, ch := range []<-chan error{first, second} {
		if err := result(t, ch, waitLong); err != nil {
			t.Errorf("publish %d acknowledged out of order = %v, want nil", i+1, err)
		}
	}

	// The older one is never acknowledged in time.
	older := c.Publish(context.Background(), topic, []byte("3"))
	newer := c.Publish(context.Background(), topic, []byte("4"))
	p3, p4 := b.next(), b.next()
	b.ack(conn, p4)
	if err := result(t, older, waitLong); !errors.Is(err, ErrAckTimeout) {
		t.Errorf("unacknowledged publish = %v, want ErrAckTimeout", err)
	}
	if err := result(t, newer, waitLong); err != nil {
		t.Errorf("publish acknowledged behind an unacknowledged one = %v, want nil", err)
	}
	// p3 still holds its slot: one more fits, the one after waits for
	// p3's PUBACK.
	fits := c.Publish(context.Background(), topic, []byte("5"))
	waits := c.Publish(context.Background(), topic, []byte("6"))
	p5 := b.next()
	if string(p5.Payload) != "5" {
		t.Fatalf("broker got %q, want 5", p5.Payload)
	}
	select {
	case p := <-b.publishes:
		t.Fatalf("publish %q written while 2 (MaxInflight) were unacknowledged", p.Payload)
	case <-time.After(100 * time.Millisecond):
	}
	b.ack(conn, p3) // late: its caller got ErrAckTimeout, the slot is freed
	p6 := b.next()
	b.ack(conn, p5)
	b.ack(conn, p6)
	for i, ch := range []<-chan error{fits, waits} {
		if err := result(t, ch, waitLong); err != nil {
			t.Errorf("publish %d = %v, want nil", i+5, err)
		}
	}
}

// TestAckTimeoutPerPublish: the session's one timer gives each publish its
// own deadline, AckTimeout after its call: a publish made later than
// another times out later, not together with it.
func TestAckTimeoutPerPublish(t *testing.T) {
	b := startBroker(t, nil)
	b.rec.blackhole.Store(true)
	cfg := testConfig(b.url())
	cfg.AckTimeout = time.Second
	c, _ := runClient(t, cfg, nil)
	testwait.For(t, waitLong, "connected", c.Connected)
	topic := DeviceEventTopic("reading", "json")

	early := c.Publish(context.Background(), topic, []byte("early"))
	time.Sleep(cfg.AckTimeout / 2)
	late := c.Publish(context.Background(), topic, []byte("late"))
	if err := result(t, early, waitLong); !errors.Is(err, ErrAckTimeout) {
		t.Fatalf("early publish = %v, want ErrAckTimeout", err)
	}
	noResult(t, "the publish made half an AckTimeout later", late)
	if err := result(t, late, waitLong); !errors.Is(err, ErrAckTimeout) {
		t.Errorf("late publish = %v, want ErrAckTimeout", err)
	}

	// Queued publishes (behind a full window) time out as well.
	var queued []<-chan error
	for i := range 3 * cfg.MaxInflight {
		queued = append(queued, c.Publish(context.Background(), topic, fmt.Appendf(nil, "%d", i)))
	}
	for i, ch := range queued {
		if err := result(t, ch, waitLong); !errors.Is(err, ErrAckTimeout) {
			t.Errorf("publish %d = %v, want ErrAckTimeout", i, err)
		}
	}
}

// TestCtxEndFailsItsPublishes: when a ctx ends, the publishes made with it
// (in flight or queued) report its error at once, and the others go on. A
// session watches each distinct ctx once, however many publishes use it.
func TestCtxEndFailsItsPublishes(t *testing.T) {
	b := startBroker(t, nil)
	b.rec.blackhole.Store(true)
	cfg := testConfig(b.url())
	cfg.MaxInflight = 2
	c, _ := runClient(t, cfg, nil)
	testwait.For(t, waitLong, "connected", c.Connected)
	topic := DeviceEventTopic("reading", "json")

	ctxA, cancelA := context.WithCancel(context.Background())
	defer cancelA()
	ctxB, cancelB := context.WithCancel(context.Background())
	defer cancelB()
	var a, bs []<-chan error
	a = append(a, c.Publish(ctxA, topic, []byte("a1")), c.Publish(ctxA, topic, []byte("a2"))) // in flight
	bs = append(bs, c.Publish(ctxB, topic, []byte("b1")))                                     // queued
	a = append(a, c.Publish(ctxA, topic, []byte("a3")))                                       // queued
	bs = append(bs, c.Publish(ctxB, topic, []byte("b2")))
	testwait.For(t, waitLong, "two publishes on the wire", func() bool { return len(b.rec.publishList()) == 2 })
	c.mu.Lock()
	watches := len(c.sess.watches)
	c.mu.Unlock()
	if watches != 2 {
		t.Errorf("session watches %d contexts, want 2 (one per distinct ctx)", watches)
	}

	cancelA()
	for i, ch := range a {
		if err := result(t, ch, waitLong); !errors.Is(err, context.Canceled) {
			t.Errorf("publish a%d after its ctx ended = %v, want context.Canceled", i+1, err)
		}
	}
	for i, ch := range bs {
		noResult(t, fmt.Sprintf("publish b%d (its ctx is live)", i+1), ch)
	}
	// a1 and a2 keep their slots until acknowledged: b1 is not written.
	if n := len(b.rec.publishList()); n != 2 {
		t.Errorf("broker saw %d publishes, want 2 (MaxInflight)", n)
	}
	cancelB()
	for i, ch := range bs {
		if err := result(t, ch, waitLong); !errors.Is(err, context.Canceled) {
			t.Errorf("publish b%d = %v, want context.Canceled", i+1, err)
		}
	}
}

// TestCtxWatchesStayBounded: many publishes with one ctx use one watcher,
// and publishes with a fresh ctx each, ended after their result, leave no
// watcher behind.
func TestCtxWatchesStayBounded(t *testing.T) {
	b := startBroker(t, &recorder{quiet: true})
	c, _ := runClient(t, testConfig(b.url()), nil)
	testwait.For(t, waitLong, "connected", c.Connected)
	topic := DeviceEventTopic("reading", "json")
	watches := func() int {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.sess.watches)
	}

	shared, cancel := context.WithCancel(context.Background())
	defer cancel()
	for range 100 {
		if err := result(t, c.Publish(shared, topic, []byte("{}")), waitLong); err != nil {
			t.Fatal(err)
		}
	}
	if n := watches(); n != 1 {
		t.Errorf("100 publishes with one ctx: %d watchers, want 1", n)
	}
	for range 100 {
		ctx, cancel := context.WithCancel(context.Background())
		err := result(t, c.Publish(ctx, topic, []byte("{}")), waitLong)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	testwait.For(t, waitLong, "the watchers of the ended contexts dropped", func() bool { return watches() == 1 })
	if err := result(t, c.Publish(shared, topic, []byte("{}")), waitLong); err != nil {
		t.Errorf("publish with the shared ctx after the others = %v", err)
	}
}

// TestCtxWatchPerLiveContext: publishers that each keep a ctx of their own
// (gateway mode: a forwarder per device on one Client) get one watcher per
// ctx for the session, not one per publish. With the former limit of 8 idle
// watchers, 50 such contexts made a watcher (context.AfterFunc) for almost
// every publish.
func TestCtxWatchPerLiveContext(t *testing.T) {
	b := startBroker(t, &recorder{quiet: true})
	c, _ := runClient(t, testConfig(b.url()), nil)
	testwait.For(t, waitLong, "connected", c.Connected)
	topic := DeviceEventTopic("reading", "json")
	const publishers, rounds = 50, 4
	ctxs := make([]context.Context, publishers)
	for i := range ctxs {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		ctxs[i] = ctx
	}
	for range rounds {
		for _, ctx := range ctxs {
			if err := result(t, c.Publish(ctx, topic, []byte("{}")), waitLong); err != nil {
				t.Fatal(err)
			}
		}
	}
	c.mu.Lock()
	made, kept := c.sess.watchesMade, len(c.sess.watches)
	c.mu.Unlock()
	if made != publishers || kept != publishers {
		t.Errorf("%d publishes from %d live contexts: %d watchers made, %d kept; want %d and %d",
			publishers*rounds, publishers, made, kept, publishers, publishers)
	}
}

// TestInboundOrderAcrossDispatchers: commands arriving in bursts, with the
// dispatcher gone between bursts, reach the Handler once each and in order.
func TestInboundOrderAcrossDispatchers(t *testing.T) {
	b := startBroker(t, nil)
	cfg := testConfig(b.url())
	cmds := &inbox{}
	cfg.Handler = cmds
	cfg.Subscriptions = []Subscription{{Filter: DeviceCommandTopic("+", "+"), QoS: 1}}
	c, _ := runClient(t, cfg, nil)
	testwait.For(t, waitLong, "connected", c.Connected)
	const bursts, size = 5, 20
	for i := range bursts {
		for j := range size {
			if err := b.server().Publish(DeviceCommandTopic("set", "json"), fmt.Appendf(nil, "%d", i*size+j), false, 1); err != nil {
				t.Fatal(err)
			}
		}
		testwait.For(t, waitLong, "the burst to be handled", func() bool { return len(cmds.list()) == (i+1)*size })
		testwait.For(t, waitLong, "the dispatcher to stop", func() bool {
			c.mu.Lock()
			defer c.mu.Unlock()
			return !c.dispatching
		})
	}
	for i, m := range cmds.list() {
		if want := fmt.Sprint(i); string(m.Payload) != want {
			t.Fatalf("command %d carried %q, want %q (arrival order)", i, m.Payload, want)
		}
	}
}

// TestEndedPublishesAreNotWritten: a queued publish whose ctx ended gets
// its result at once and is never written; the next one goes in its place.
func TestEndedPublishesAreNotWritten(t *testing.T) {
	b := startScriptedBroker(t)
	cfg := testConfig(b.url())
	cfg.MaxInflight = 1
	c, _ := runClient(t, cfg, nil)
	testwait.For(t, waitLong, "connected", c.Connected)
	conn := <-b.conns
	topic := DeviceEventTopic("reading", "json")

	ctx, cancel := context.WithCancel(context.Background())
	first := c.Publish(context.Background(), topic, []byte("1"))
	abandoned := c.Publish(ctx, topic, []byte("2"))
	third := c.Publish(context.Background(), topic, []byte("3"))
	p1 := b.next()
	cancel()
	if err := result(t, abandoned, waitLong); !errors.Is(err, context.Canceled) {
		t.Fatalf("queued publish after its ctx ended = %v, want context.Canceled", err)
	}
	b.ack(conn, p1)
	if p := b.next(); string(p.Payload) != "3" {
		t.Errorf("after the first, the broker got %q, want 3 (2 was abandoned)", p.Payload)
	} else {
		b.ack(conn, p)
	}
	for i, ch := range []<-chan error{first, third} {
		if err := result(t, ch, waitLong); err != nil {
			t.Errorf("publish %d = %v, want nil", 2*i+1, err)
		}
	}
}

// TestShutdownWaitsForInflightAcks: when Run's ctx ends, publishes already
// written get their PUBACKs during the short quiesce and report nil; Run
// then disconnects and returns. (The PUBACKs go out within milliseconds of
// the shutdown's start, well inside quiesce, 250 ms.)
func TestShutdownWaitsForInflightAcks(t *testing.T) {
	b := startScriptedBroker(t)
	cfg := testConfig(b.url())
	c, stop := runClient(t, cfg, nil)
	testwait.For(t, waitLong, "connected", c.Connected)
	conn := <-b.conns
	topic := DeviceEventTopic("reading", "json")
	first := c.Publish(context.Background(), topic, []byte("1"))
	second := c.Publish(context.Background(), topic, []byte("2"))
	p1, p2 := b.next(), b.next()

	stopped := make(chan struct{})
	go func() { defer close(stopped); stop() }()
	testwait.For(t, waitLong, "the shutdown to begin", func() bool { return !c.Connected() })
	b.ack(conn, p1)
	b.ack(conn, p2)
	<-stopped
	for i, ch := range []<-chan error{first, second} {
		select {
		case err := <-ch:
			if err != nil {
				t.Errorf("publish %d acknowledged during shutdown = %v, want nil", i+1, err)
			}
		default:
			t.Errorf("publish %d has no result after Run returned", i+1)
		}
	}
}
