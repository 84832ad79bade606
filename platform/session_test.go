package platform

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"fieldbridge/internal/testwait"
)

// goOffline disconnects c cleanly and waits until the platform has processed
// it, so that what follows is sent while the client is offline.
func goOffline(t *testing.T, p *Platform, c *testClient) {
	t.Helper()
	c.Disconnect(100)
	testwait.For(t, waitDeadline, c.id+" offline", func() bool { return p.Stats().Connected == 0 })
}

// topicsOf returns the topics and payloads of n messages of c.
func topicsOf(t *testing.T, c *testClient, n int) []string {
	t.Helper()
	var got []string
	for range n {
		m := c.next(t)
		got = append(got, m.Topic()+" "+string(m.Payload()))
	}
	return got
}

func TestDurableDeviceGetsCommandsSentWhileOffline(t *testing.T) {
	p := startPlatform(t, nil)
	dev := mustDialWith(t, p, pump17, tokenAuth, pump17Token, durableSession)
	dev.mustSubscribe(t, "iot-2/cmd/+/fmt/+", 1)
	goOffline(t, p, dev)

	for _, c := range []string{"first", "second", "third"} {
		if err := p.SendCommand("pump", "P-17", c, "json", []byte(`"`+c+`"`)); err != nil {
			t.Fatal(err)
		}
	}
	if got := p.Stats().Queued; got != 3 {
		t.Fatalf("Stats().Queued = %d, want 3", got)
	}

	dev = mustDialWith(t, p, pump17, tokenAuth, pump17Token, durableSession)
	want := []string{ // R2: relative topics, in the order sent
		`iot-2/cmd/first/fmt/json "first"`,
		`iot-2/cmd/second/fmt/json "second"`,
		`iot-2/cmd/third/fmt/json "third"`,
	}
	if diff := cmp.Diff(want, topicsOf(t, dev, 3)); diff != "" {
		t.Errorf("commands after reconnect (-want +got):\n%s", diff)
	}
	// Counted after each write, so possibly after the client has the message.
	testwait.For(t, waitDeadline, "3 redelivered", func() bool { return p.Stats().Redelivered == 3 })
	if got := p.Stats().Queued; got != 0 {
		t.Errorf("Stats().Queued = %d, want 0", got)
	}

	// The session and its subscription survived: a live command still arrives.
	if err := p.SendCommand("pump", "P-17", "live", "txt", []byte("x")); err != nil {
		t.Fatal(err)
	}
	dev.nextOn(t, "iot-2/cmd/live/fmt/txt")
}

func TestDurableGatewayGetsCommandsSentWhileOffline(t *testing.T) {
	p := startPlatform(t, nil)
	gw := mustDialWith(t, p, gw01, tokenAuth, gw01Token, durableSession)
	gw.mustSubscribe(t, "iot-2/type/+/id/+/cmd/+/fmt/+", 1)
	goOffline(t, p, gw)

	if err := p.SendCommand("pump", "P-17", "start", "json", []byte(`1`)); err != nil {
		t.Fatal(err)
	}
	if err := p.SendCommand("edge-gw", "gw-01", "restart", "json", []byte(`2`)); err != nil {
		t.Fatal(err)
	}
	app := mustDial(t, p, "a:ab12cd:ops", testKey.Key, testKey.Token)
	app.publish(t, "iot-2/type/pump/id/P-18/cmd/stop/fmt/json", 1, false, []byte(`3`))
	// mochi acknowledges a QoS 1 publish before it hands it to the
	// subscribers; had the gateway reconnected in between, it would get the
	// command straight away as well as from the queue (failed 3 in 300 runs:
	// 3 first). It handles one client's packets in order, so the SUBACK of
	// a later SUBSCRIBE means the command has gone to the queue only.
	app.mustSubscribe(t, "iot-2/type/pump/id/P-18/evt/+/fmt/+", 1)
	app.Disconnect(100)
	testwait.For(t, waitDeadline, "three queued commands", func() bool { return p.Stats().Queued == 3 })

	gw = mustDialWith(t, p, gw01, tokenAuth, gw01Token, durableSession)
	want := []string{ // qualified topics, in order
		"iot-2/type/pump/id/P-17/cmd/start/fmt/json 1",
		"iot-2/type/edge-gw/id/gw-01/cmd/restart/fmt/json 2",
		"iot-2/type/pump/id/P-18/cmd/stop/fmt/json 3",
	}
	if diff := cmp.Diff(want, topicsOf(t, gw, 3)); diff != "" {
		t.Errorf("commands after reconnect (-want +got):\n%s", diff)
	}
}

func TestCleanSessionDiscardsTheOldSession(t *testing.T) {
	p := startPlatform(t, nil)
	dev := mustDialWith(t, p, pump17, tokenAuth, pump17Token, durableSession)
	dev.mustSubscribe(t, "iot-2/cmd/+/fmt/+", 1)
	goOffline(t, p, dev)
	if err := p.SendCommand("pump", "P-17", "stale", "json", nil); err != nil {
		t.Fatal(err)
	}
	if got := p.Stats().Queued; got != 1 {
		t.Fatalf("Stats().Queued = %d, want 1", got)
	}

	dev = mustDial(t, p, pump17, tokenAuth, pump17Token) // clean session
	if got := p.Stats().Queued; got != 0 {
		t.Errorf("Stats().Queued after a clean connect = %d, want 0", got)
	}
	// The subscription is gone too: this command reaches nobody ...
	if err := p.SendCommand("pump", "P-17", "unsubscribed", "json", nil); err != nil {
		t.Fatal(err)
	}
	// ... and the first message after subscribing again is the next one.
	dev.mustSubscribe(t, "iot-2/cmd/+/fmt/+", 1)
	if err := p.SendCommand("pump", "P-17", "fresh", "json", nil); err != nil {
		t.Fatal(err)
	}
	dev.nextOn(t, "iot-2/cmd/fresh/fmt/json")
	if got := p.Stats().Redelivered; got != 0 {
		t.Errorf("Stats().Redelivered = %d, want 0", got)
	}
}

func TestOfflineQueueLimits(t *testing.T) {
	t.Run("full subscription drops the oldest", func(t *testing.T) {
		p := startPlatform(t, func(c *Config) { c.QueueLimit = 2 })
		dev := mustDialWith(t, p, pump17, tokenAuth, pump17Token, durableSession)
		dev.mustSubscribe(t, "iot-2/cmd/+/fmt/+", 1)
		goOffline(t, p, dev)
		for _, c := range []string{"c1", "c2", "c3", "c4"} {
			if err := p.SendCommand("pump", "P-17", c, "txt", nil); err != nil {
				t.Fatal(err)
			}
		}
		if s := p.Stats(); s.Queued != 2 || s.QueueDropped != 2 {
			t.Errorf("Stats() Queued %d QueueDropped %d, want 2 and 2", s.Queued, s.QueueDropped)
		}
		dev = mustDialWith(t, p, pump17, tokenAuth, pump17Token, durableSession)
		want := []string{"iot-2/cmd/c3/fmt/txt ", "iot-2/cmd/c4/fmt/txt "}
		if diff := cmp.Diff(want, topicsOf(t, dev, 2)); diff != "" {
			t.Errorf("commands after reconnect (-want +got):\n%s", diff)
		}
	})

	t.Run("messages older than QueueMaxAge expire", func(t *testing.T) {
		p, clock := startPlatformWithClock(t, nil)
		dev := mustDialWith(t, p, pump17, tokenAuth, pump17Token, durableSession)
		dev.mustSubscribe(t, "iot-2/cmd/+/fmt/+", 1)
		goOffline(t, p, dev)
		if err := p.SendCommand("pump", "P-17", "old", "txt", nil); err != nil {
			t.Fatal(err)
		}
		clock.advance(defaultQueueMaxAge + time.Minute)
		if err := p.SendCommand("pump", "P-17", "new", "txt", nil); err != nil {
			t.Fatal(err)
		}
		dev = mustDialWith(t, p, pump17, tokenAuth, pump17Token, durableSession)
		dev.nextOn(t, "iot-2/cmd/new/fmt/txt")
		if got := p.Stats().QueueExpired; got != 1 {
			t.Errorf("Stats().QueueExpired = %d, want 1", got)
		}
	})

	t.Run("qos 0 subscriptions queue nothing", func(t *testing.T) {
		p := startPlatform(t, nil)
		dev := mustDialWith(t, p, pump17, tokenAuth, pump17Token, durableSession)
		dev.mustSubscribe(t, "iot-2/cmd/+/fmt/+", 0)
		goOffline(t, p, dev)
		if err := p.SendCommand("pump", "P-17", "lost", "txt", nil); err != nil {
			t.Fatal(err)
		}
		if got := p.Stats().Queued; got != 0 {
			t.Errorf("Stats().Queued = %d, want 0", got)
		}
	})
}

// A DM request started while a managed device with a durable session is
// offline reaches it after reconnect, in relative form, and its answer
// completes the action.
func TestDurableDeviceGetsDeviceActionAfterReconnect(t *testing.T) {
	p := startPlatform(t, nil)
	dev := mustDialWith(t, p, pump17, tokenAuth, pump17Token, durableSession)
	dev.mustSubscribe(t, "iotdm-1/#", 1)
	manage(t, dev, `{"d":{"supports":{"deviceActions":true}},"reqId":"m1"}`, RCOK)
	goOffline(t, p, dev)

	ctx, cancel := context.WithTimeout(context.Background(), waitDeadline)
	defer cancel()
	type result struct {
		rc  int
		err error
	}
	done := make(chan result, 1)
	go func() {
		rc, err := p.DeviceAction(ctx, "pump", "P-17", "device/reboot", nil)
		done <- result{rc, err}
	}()
	testwait.For(t, waitDeadline, "the reboot request queued", func() bool { return p.Stats().Queued == 1 })

	dev = mustDialWith(t, p, pump17, tokenAuth, pump17Token, durableSession)
	m := dev.next(t)
	if m.Topic() == "iotdm-1/response" {
		// The Manage response again: its PUBACK was still on the way when the
		// client disconnected, so mochi resends it (QoS 1 is at least once).
		m = dev.next(t)
	}
	if m.Topic() != "iotdm-1/mgmt/initiate/device/reboot" {
		t.Fatalf("message on %q, want the reboot request", m.Topic())
	}
	req := decodeJSON[struct{ ReqID string }](t, m.Payload())
	resp, _ := json.Marshal(map[string]any{"rc": RCAccepted, "reqId": req.ReqID})
	dev.publish(t, "iotdevice-1/response", 1, false, resp)
	if r := <-done; r.err != nil || r.rc != RCAccepted {
		t.Errorf("DeviceAction = %d, %v; want %d", r.rc, r.err, RCAccepted)
	}
}
