package main

import (
	"context"
	"errors"
	"testing"
	"time"

	"fieldbridge/config"
	"fieldbridge/mapping"
	"fieldbridge/platform"
	"fieldbridge/uplink"

	"fieldbridge/internal/mqtttest"
	"fieldbridge/internal/testwait"
)

func TestNotifyBacksOffTheDevice(t *testing.T) {
	g := newGateway(uplink.Identity{Org: "ab12cd", Type: "edge-gw", ID: "gw-1"}, 0, quietLogger())
	known := func(typ, id string) bool { return typ == "meter" && id == "m1" }
	g.handleNotify([]byte(`{"Request":"publish","Topic":"iot-2/type/meter/id/m1/evt/reading/fmt/json","Type":"meter","Id":"m1","Message":"Device type is not valid"}`), known)
	g.handleNotify([]byte(`not json`), known)
	g.handleNotify([]byte(`{"Request":"publish","Type":"other","Id":"x","Message":"?"}`), known)

	if why, _ := g.rejection("m1"); why != "Device type is not valid" {
		t.Fatalf("rejection(m1) = %q", why)
	}
	if why, _ := g.rejection("m2"); why != "" {
		t.Errorf("rejection(m2) = %q, want none", why)
	}
	err := <-gatewayPublisher{g: g, device: "m1"}.Publish(context.Background(), "t", nil)
	if !errors.Is(err, errRejected) {
		t.Errorf("publish for a rejected device = %v, want errRejected (events stay buffered)", err)
	}
	if got := g.rejectedDevices(); got["m1"] == "" || len(got) != 1 {
		t.Errorf("rejectedDevices = %v", got)
	}
	g.accepted("m1")
	if why, _ := g.rejection("m1"); why != "" {
		t.Errorf("still refused after an accepted publish: %q", why)
	}
}

func TestRateLimiter(t *testing.T) {
	l := newRateLimiter(50)
	ctx := context.Background()
	start := time.Now()
	for range 11 {
		if err := l.wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// 11 tokens at 50/s with a burst of 5 take at least (11-5)/50 s.
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("11 events at 50/s took %v", d)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	slow := newRateLimiter(0.001)
	slow.wait(ctx)
	if err := slow.wait(cancelled); !errors.Is(err, context.Canceled) {
		t.Errorf("wait with cancelled ctx = %v", err)
	}
}

func TestMailboxKeepsTheNewest(t *testing.T) {
	var m mailbox
	m.put(mapping.Output{Event: "reading", Time: time.Unix(1, 0)})
	m.put(mapping.Output{Event: "status", Time: time.Unix(2, 0)})
	m.put(mapping.Output{Event: "reading", Time: time.Unix(3, 0)})
	o, ok := m.take()
	if !ok || o.Event != "reading" || o.Time != time.Unix(3, 0) {
		t.Errorf("first take = %+v, want the newest reading", o)
	}
	if o, _ := m.take(); o.Event != "status" {
		t.Errorf("second take = %+v", o)
	}
	if _, ok := m.take(); ok {
		t.Error("take from an empty mailbox")
	}
}

// TestQuickstartMode runs the bridge in quickstart mode against the local
// platform in quickstart mode: no credentials, QoS 0, and at most about one
// event per second per device although the devices are polled every 100 ms.
func TestQuickstartMode(t *testing.T) {
	r := startSimulation(t)
	r.cfg.Platform = config.Platform{Org: "quickstart", Mode: config.ModeQuickstart, QoS: 0, KeepAlive: time.Minute}
	r.cfg.Devices = r.cfg.Devices[:1]
	sub := r.startPlatformWith(t, nil) // quickstart registers nobody
	p := r.plat
	r.runBridge(t, "tcp://"+p.Addr())

	start := time.Now()
	var n int
	var lastSeq uint64
	for time.Since(start) < 3500*time.Millisecond {
		select {
		case m := <-sub.C:
			n++
			if m.QoS != 0 || m.ClientID != "d:quickstart:meter:m1" {
				t.Errorf("event at QoS %d from %q", m.QoS, m.ClientID)
			}
			p := decode(t, m.Payload)
			if p.Seq <= lastSeq {
				t.Errorf("seq %d after %d", p.Seq, lastSeq)
			}
			lastSeq = p.Seq
		case <-time.After(100 * time.Millisecond):
		}
	}
	if n < 2 || n > 5 {
		t.Errorf("%d events in 3.5 s from a device polled every 100 ms; want about one per second", n)
	}
	if v := p.Violations(); len(v) > 0 {
		t.Errorf("platform violations: %+v", v)
	}
}

// TestGatewayMode runs the bridge in gateway mode against the local
// platform: one connection as g:<org>:<type>:<id>, every device's events on
// its own qualified topic, and the gateway's health on the gateway's topic.
func TestGatewayMode(t *testing.T) {
	r := startSimulation(t)
	r.cfg.Platform.Mode = config.ModeGateway
	r.cfg.Platform.Gateway = &config.Gateway{Type: "edge-gw", ID: "gw-1", Token: "gateway-token-1"}
	devices := []platform.Device{{Type: "edge-gw", ID: "gw-1", Token: "gateway-token-1", Gateway: true}}
	for _, d := range r.cfg.Devices {
		devices = append(devices, platform.Device{Type: d.Type.Name, ID: d.Name, Token: d.Token})
	}
	sub := r.startPlatformWith(t, devices)
	p := r.plat
	r.runBridge(t, "tcp://"+p.Addr())

	health := "iot-2/type/edge-gw/id/gw-1/evt/health/fmt/json"
	got := collect(t, sub.C, byTopic, map[string]int{
		"iot-2/type/meter/id/m1/evt/reading/fmt/json":        3,
		"iot-2/type/meter/id/m2/evt/reading/fmt/json":        3,
		"iot-2/type/boiler/id/boiler-9/evt/reading/fmt/json": 3,
		health: 1,
	})
	for topic, msgs := range got {
		for _, m := range msgs {
			if m.ClientID != "g:test01:edge-gw:gw-1" || m.Retain {
				t.Errorf("%s: from %q retain=%v", topic, m.ClientID, m.Retain)
			}
		}
	}
	h := decode(t, got[health][0].Payload)
	if h.D["devices"] != float64(3) || h.Seq != 1 {
		t.Errorf("health = %+v", h)
	}
	if v := p.Violations(); len(v) > 0 {
		t.Errorf("platform violations: %+v", v)
	}
}

// TestGatewayNotifyBacksOffRejectedDevice: a standard gateway may not
// register devices, so the platform drops the events of a device it does
// not know and says so on the notify topic. The bridge keeps that device's
// events buffered, backs it off, names it in the gateway health, and the
// other devices go on.
func TestGatewayNotifyBacksOffRejectedDevice(t *testing.T) {
	r := startSimulation(t)
	r.cfg.Platform.Mode = config.ModeGateway
	r.cfg.Platform.Gateway = &config.Gateway{Type: "edge-gw", ID: "gw-1", Token: "gateway-token-1"}
	devices := []platform.Device{{Type: "edge-gw", ID: "gw-1", Token: "gateway-token-1", Gateway: true, Role: platform.RoleStandard}}
	for _, d := range r.cfg.Devices {
		if d.Name != "m2" { // m2 is not registered
			devices = append(devices, platform.Device{Type: d.Type.Name, ID: d.Name, Token: d.Token})
		}
	}
	sub := r.startPlatformWith(t, devices)
	b, err := newBridge(r.cfg, bridgeOptions{Broker: "tcp://" + r.plat.Addr(), InMemoryBuffer: true, Drain: 100 * time.Millisecond}, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	defer func() { cancel(); <-done }()

	testwait.For(t, waitTimeout, "the platform's rejection of m2", func() bool { reason, _ := b.gateway.rejection("m2"); return reason != "" })
	testwait.For(t, waitTimeout, "m2's events piling up in the buffer", func() bool { return b.store.QueueStats("m2").Len >= 5 })
	testwait.For(t, waitTimeout, "a health event naming m2", func() bool {
		for {
			select {
			case m := <-sub.C:
				if m.Topic == "iot-2/type/edge-gw/id/gw-1/evt/health/fmt/json" {
					if rej, ok := decode(t, m.Payload).D["rejected_devices"].(map[string]any); ok && rej["m2"] != nil {
						return true
					}
				}
			default:
				return false
			}
		}
	})
	if n := b.store.QueueStats("m1").Len; n > 20 {
		t.Errorf("m1 has %d events waiting: a rejected device held up the others", n)
	}
}

// TestGatewayPublisherFailsAtOnce: a publish the gateway's link refuses at
// once (here: not connected) has its result in the channel when Publish
// returns, as the link's own has. The forwarder checks for such a failure
// before it publishes the next event; handed on later, by a goroutine, the
// next event could go out first once the link connects, ahead of this
// one's resend (seen as seq 2 arriving before seq 1 in
// TestReloadDuringBrokerOutage).
func TestGatewayPublisherFailsAtOnce(t *testing.T) {
	g := newGateway(uplink.Identity{Org: "ab12cd", Type: "edge-gw", ID: "gw-1"}, 0, quietLogger())
	link, err := uplink.New(uplink.Config{Broker: "tcp://127.0.0.1:1", ClientID: uplink.GatewayClientID(g.id), QoS: 1}, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	g.link = link // never run: not connected
	for range 100 {
		res := gatewayPublisher{g: g, device: "m1"}.Publish(context.Background(), "iot-2/type/meter/id/m1/evt/reading/fmt/json", []byte(`{}`))
		select {
		case err := <-res:
			if !errors.Is(err, uplink.ErrNotConnected) {
				t.Fatalf("result = %v, want ErrNotConnected", err)
			}
		default:
			t.Fatal("the link's immediate failure was not in the channel when Publish returned")
		}
	}
}

// TestAcceptedEventEndsTheBackOff: once a rejected device's back-off is
// over, the acknowledgement of its next event forgets the rejection (the
// next one starts again at the shortest back-off); a device never rejected
// gets the link's own result.
func TestAcceptedEventEndsTheBackOff(t *testing.T) {
	broker := mqtttest.NewMosquitto(t)
	link, err := uplink.New(uplink.Config{Broker: broker.URL(), ClientID: "g:ab12cd:edge-gw:gw-1", QoS: 1}, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); link.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	testwait.For(t, waitTimeout, "the gateway link", link.Connected)

	g := newGateway(uplink.Identity{Org: "ab12cd", Type: "edge-gw", ID: "gw-1"}, 0, quietLogger())
	g.link = link
	g.handleNotify([]byte(`{"Request":"publish","Type":"meter","Id":"m1","Message":"Device type is not valid"}`), func(string, string) bool { return true })
	g.mu.Lock()
	g.rejected["m1"].until = time.Now().Add(-time.Second) // the back-off is over
	g.mu.Unlock()

	if err := <-(gatewayPublisher{g: g, device: "m2"}).Publish(ctx, "iot-2/type/meter/id/m2/evt/e/fmt/json", []byte("{}")); err != nil {
		t.Fatalf("publish for m2: %v", err)
	}
	if got := g.rejectedDevices(); len(got) != 1 {
		t.Fatalf("after m2's event: rejected %v, want m1 still remembered", got)
	}
	if err := <-(gatewayPublisher{g: g, device: "m1"}).Publish(ctx, "iot-2/type/meter/id/m1/evt/e/fmt/json", []byte("{}")); err != nil {
		t.Fatalf("publish for m1: %v", err)
	}
	if got := g.rejectedDevices(); len(got) != 0 {
		t.Errorf("after m1's accepted event: rejected %v, want none", got)
	}
}
