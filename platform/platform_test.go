package platform

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	pahopackets "github.com/eclipse/paho.mqtt.golang/packets"
	"github.com/google/go-cmp/cmp"

	"fieldbridge/internal/testwait"
)

func TestDeviceEventReachesApplications(t *testing.T) {
	p := startPlatform(t, nil)
	sub, err := p.Subscribe("iot-2/type/+/id/+/evt/+/fmt/+")
	if err != nil {
		t.Fatal(err)
	}
	app := mustDial(t, p, "a:ab12cd:dashboard", testKey.Key, testKey.Token)
	app.mustSubscribe(t, "iot-2/type/+/id/+/evt/+/fmt/+", 1)
	dev := mustDial(t, p, pump17, tokenAuth, pump17Token)

	payload := []byte(`{"flow_m3h":12.6}`)
	dev.publish(t, "iot-2/evt/reading/fmt/json", 1, true, payload) // retained on purpose (P1)

	got := recv(t, sub)
	got.Time = time.Time{}
	want := Message{
		Topic:    "iot-2/type/pump/id/P-17/evt/reading/fmt/json",
		Payload:  payload,
		QoS:      1,
		Retain:   false,
		ClientID: pump17,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Subscribe message (-want +got):\n%s", diff)
	}

	m := app.next(t)
	if m.Topic() != want.Topic || !bytes.Equal(m.Payload(), payload) || m.Retained() {
		t.Errorf("application got topic %q payload %q retained %v, want %q %q false",
			m.Topic(), m.Payload(), m.Retained(), want.Topic, payload)
	}

	// P1: nothing was stored, so a later subscriber gets no retained copy; its
	// first message is the next live one.
	late := mustDial(t, p, "a:ab12cd:late", testKey.Key, testKey.Token)
	late.mustSubscribe(t, "iot-2/type/+/id/+/evt/+/fmt/+", 1)
	dev.publish(t, "iot-2/evt/second/fmt/json", 1, false, []byte(`{}`))
	if m := late.next(t); m.Topic() != "iot-2/type/pump/id/P-17/evt/second/fmt/json" {
		t.Errorf("late subscriber's first message on %q (retained %v), want the live second event", m.Topic(), m.Retained())
	}
	if got := p.Stats().RetainCleared; got != 1 {
		t.Errorf("Stats().RetainCleared = %d, want 1", got)
	}
}

func TestDeviceManagementTopicsAreQualified(t *testing.T) {
	p := startPlatform(t, nil)
	sub, err := p.Subscribe("iotdevice-1/#")
	if err != nil {
		t.Fatal(err)
	}
	dev := mustDial(t, p, pump17, tokenAuth, pump17Token)
	for _, rest := range []string{"mgmt/manage", "mgmt/unmanage", "device/update/location",
		"add/diag/errorCodes", "clear/diag/errorCodes", "add/diag/log", "clear/diag/log", "notify", "response"} {
		dev.publish(t, "iotdevice-1/"+rest, 1, false, []byte(`{"reqId":"1"}`))
		if got, want := recv(t, sub).Topic, "iotdevice-1/type/pump/id/P-17/"+rest; got != want {
			t.Errorf("device published iotdevice-1/%s: application view %q, want %q", rest, got, want)
		}
	}
}

func TestConnectRefused(t *testing.T) {
	p := startPlatform(t, nil)
	long := strings.Repeat("x", 37)
	tests := []struct {
		name, clientID, user, password string
		wantRC                         byte
		wantRule                       string
	}{
		{"bad token", pump17, tokenAuth, "wrong-token", pahopackets.ErrRefusedNotAuthorised, "C4"},
		{"no credentials", pump17, "", "", pahopackets.ErrRefusedNotAuthorised, "C4"},
		{"wrong user name", pump17, "pump", pump17Token, pahopackets.ErrRefusedNotAuthorised, "C4"},
		{"unknown device", "d:ab12cd:pump:P-99", tokenAuth, pump17Token, pahopackets.ErrRefusedNotAuthorised, "C4"},
		{"gateway as device", "d:ab12cd:edge-gw:gw-01", tokenAuth, gw01Token, pahopackets.ErrRefusedNotAuthorised, "C4"},
		{"device as gateway", "g:ab12cd:pump:P-18", tokenAuth, pump18Token, pahopackets.ErrRefusedNotAuthorised, "C4"},
		{"wrong org", "d:zz99zz:pump:P-17", tokenAuth, pump17Token, pahopackets.ErrRefusedNotAuthorised, "C3"},
		{"bad api token", "a:ab12cd:dash", testKey.Key, "wrong", pahopackets.ErrRefusedNotAuthorised, "C5"},
		{"unknown api key", "a:ab12cd:dash2", "a-ab12cd-unknown", testKey.Token, pahopackets.ErrRefusedNotAuthorised, "C5"},
		{"no class", "pump-17", tokenAuth, pump17Token, pahopackets.ErrRefusedIDRejected, "C3"},
		{"unknown class", "x:ab12cd:pump:P-17", tokenAuth, pump17Token, pahopackets.ErrRefusedIDRejected, "C3"},
		{"device id missing", "d:ab12cd:pump", tokenAuth, pump17Token, pahopackets.ErrRefusedIDRejected, "C3"},
		{"extra segment", "d:ab12cd:pump:P-17:x", tokenAuth, pump17Token, pahopackets.ErrRefusedIDRejected, "C3"},
		{"empty org", "d::pump:P-17", tokenAuth, pump17Token, pahopackets.ErrRefusedIDRejected, "C3"},
		{"bad character", "d:ab12cd:pu mp:P-17", tokenAuth, pump17Token, pahopackets.ErrRefusedIDRejected, "C3"},
		{"segment too long", "d:ab12cd:pump:" + long, tokenAuth, pump17Token, pahopackets.ErrRefusedIDRejected, "C3"},
		{"app with type", "a:ab12cd:app:extra", testKey.Key, testKey.Token, pahopackets.ErrRefusedIDRejected, "C3"},
		{"shared app too long", "A:ab12cd:app:inst:x", testKey.Key, testKey.Token, pahopackets.ErrRefusedIDRejected, "C3"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, rc, err := dial(t, "tcp://"+p.Addr(), tt.clientID, tt.user, tt.password)
			if err == nil || rc != tt.wantRC {
				t.Fatalf("connect %q: rc %d, err %v; want rc %d", tt.clientID, rc, err, tt.wantRC)
			}
			v, ok := findViolation(p, tt.clientID, tt.wantRule)
			if !ok || v.Action != ActionRefused {
				t.Errorf("no %s refusal recorded for %q; violations %+v", tt.wantRule, tt.clientID, p.Violations())
			}
			if strings.Contains(v.Detail, pump17Token) || strings.Contains(v.Detail, testKey.Token) {
				t.Errorf("violation detail leaks a token: %q", v.Detail)
			}
			if got := p.Stats().Refused; got != int64(i+1) {
				t.Errorf("Stats().Refused = %d, want %d", got, i+1)
			}
		})
	}
	if got := p.Stats().Connected; got != 0 {
		t.Errorf("Stats().Connected = %d, want 0", got)
	}
}

func TestConnectAccepted(t *testing.T) {
	p := startPlatform(t, nil)
	for _, c := range []struct{ id, user, password string }{
		{pump17, tokenAuth, pump17Token},
		{gw01, tokenAuth, gw01Token},
		{"a:ab12cd:dashboard", testKey.Key, testKey.Token},
		{"A:ab12cd:workers", testKey.Key, testKey.Token},
		{"A:ab12cd:workers:inst-1", testKey.Key, testKey.Token},
	} {
		mustDial(t, p, c.id, c.user, c.password)
	}
	testwait.For(t, waitDeadline, "5 connected clients", func() bool { return p.Stats().Connected == 5 })
}

func TestDevicePublishForbiddenTopicDisconnects(t *testing.T) {
	p := startPlatform(t, nil)
	sub, err := p.Subscribe("#")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		topic, wantRule string
		wantCode        int
	}{
		{"iot-2/type/pump/id/P-17/evt/reading/fmt/json", "P3", CodeNotAuthorized}, // qualified form
		{"iot-2/type/pump/id/P-18/evt/reading/fmt/json", "P3", CodeNotAuthorized}, // impersonation
		{"iot-2/cmd/reboot/fmt/json", "P3", CodeNotAuthorized},
		{"iotdm-1/response", "P3", CodeNotAuthorized},
		{"iotdevice-1/mgmt/other", "P3", CodeNotAuthorized},
		{"iot-2/evt/reading", "P3", CodeNotAuthorized},
		{"foo/bar", "P3", CodeNotAuthorized},
		{"$SYS/broker/clients", "P3", CodeNotAuthorized}, // mochi alone would drop it silently
		{"iot-2/evt//fmt/json", "P6", CodeTopicInvalid},
		{"iot-2/evt/reading/fmt/json/", "P6", CodeTopicInvalid},
		{"/iot-2/evt/reading/fmt/json", "P6", CodeTopicInvalid},
		{"iot-2/evt/+/fmt/json", "P6", CodeTopicInvalid},
		{"iot-2/evt/#", "P6", CodeTopicInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.topic, func(t *testing.T) {
			dev := mustDial(t, p, pump17, tokenAuth, pump17Token)
			if tok := dev.Publish(tt.topic, 0, false, []byte("x")); !tok.WaitTimeout(waitDeadline) {
				t.Fatal("publish not sent")
			}
			dev.waitLost(t)
			v := waitViolation(t, p, pump17, tt.wantRule, ActionDisconnected)
			if v.Code != tt.wantCode {
				t.Errorf("violation code %d, want %d", v.Code, tt.wantCode)
			}
			if !strings.Contains(v.Detail, tt.topic) {
				t.Errorf("violation detail %q does not name the topic", v.Detail)
			}
			// Delivery is synchronous with the publisher's read loop, which has
			// ended. Status (mon) messages about the connection are expected.
			for drained := false; !drained; {
				select {
				case m := <-sub.C:
					if !strings.HasSuffix(m.Topic, "/mon") {
						t.Errorf("forbidden publish delivered as %q", m.Topic)
					}
				default:
					drained = true
				}
			}
		})
	}
}

func TestPayloadLimit(t *testing.T) {
	p := startPlatform(t, nil)
	sub, err := p.Subscribe("iot-2/type/+/id/+/evt/+/fmt/+")
	if err != nil {
		t.Fatal(err)
	}

	dev := mustDial(t, p, pump17, tokenAuth, pump17Token)
	dev.publish(t, "iot-2/evt/blob/fmt/bin", 1, false, make([]byte, MaxPayload))
	if got := recv(t, sub); len(got.Payload) != MaxPayload {
		t.Errorf("delivered %d bytes, want %d", len(got.Payload), MaxPayload)
	}

	for _, size := range []int{MaxPayload + 1, 300_000} { // the second exceeds mochi's packet backstop
		dev := mustDial(t, p, pump18, tokenAuth, pump18Token)
		if tok := dev.Publish("iot-2/evt/blob/fmt/bin", 0, false, make([]byte, size)); !tok.WaitTimeout(waitDeadline) {
			t.Fatal("publish not sent")
		}
		dev.waitLost(t)
		if v := waitViolation(t, p, pump18, "P2", ActionDisconnected); v.Code != CodeTooLarge {
			t.Errorf("%d bytes: violation code %d, want %d", size, v.Code, CodeTooLarge)
		}
		select {
		case m := <-sub.C:
			t.Errorf("%d bytes: oversize payload delivered (%d bytes)", size, len(m.Payload))
		default:
		}
	}
}

func TestDeviceSubscribe(t *testing.T) {
	p := startPlatform(t, nil)
	t.Run("allowed", func(t *testing.T) {
		dev := mustDial(t, p, pump17, tokenAuth, pump17Token)
		filters := map[string]byte{
			"iot-2/cmd/+/fmt/+":                    1,
			"iot-2/cmd/reboot/fmt/json":            1,
			"iotdm-1/#":                            2,
			"iotdm-1/response":                     1,
			"iotdm-1/device/update":                1,
			"iotdm-1/mgmt/initiate/device/reboot":  1,
			"iotdm-1/mgmt/custom/#":                1,
			"iotdm-1/mgmt/custom/bundle-1/action1": 0,
		}
		got, err := dev.subscribe(t, filters)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]byte{}
		for f, q := range filters {
			want[f] = min(q, 1) // S4: iotdm-1 at QoS ≤ 1
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("SUBACK codes (-want +got):\n%s", diff)
		}
	})

	forbidden := []struct{ filter, rule string }{
		{"iot-2/type/+/id/+/evt/+/fmt/+", "S1"},
		{"iot-2/evt/+/fmt/+", "S1"},
		{"iot-2/type/pump/id/P-17/cmd/+/fmt/+", "S1"},
		{"iotdm-1/type/+/id/+/#", "S1"},
		{"iotdm-1/+", "S1"},
		{"#", "S1"},
		{"$SYS/#", "S1"},
		{"iot-2/cmd//fmt/+", "P6"},
		{"iot-2/cmd/a+/fmt/+", "P6"},
	}
	for _, tt := range forbidden {
		t.Run(tt.filter, func(t *testing.T) {
			dev := mustDial(t, p, pump17, tokenAuth, pump17Token)
			dev.Subscribe(tt.filter, 1, nil) // no SUBACK comes: the platform closes the connection
			dev.waitLost(t)
			waitViolation(t, p, pump17, tt.rule, ActionDisconnected)
		})
	}
}

func TestForbiddenSubscribeSubackFailure(t *testing.T) {
	p := startPlatform(t, func(c *Config) { c.OnForbiddenSubscribe = SubscribeFailure })
	dev := mustDial(t, p, pump17, tokenAuth, pump17Token)
	other := mustDial(t, p, pump18, tokenAuth, pump18Token)

	got, err := dev.subscribe(t, map[string]byte{
		"iot-2/cmd/+/fmt/+":                   1,
		"iot-2/type/+/id/+/evt/+/fmt/+":       1,
		"iot-2/type/pump/id/P-17/cmd/+/fmt/+": 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]byte{
		"iot-2/cmd/+/fmt/+":                   1,
		"iot-2/type/+/id/+/evt/+/fmt/+":       0x80,
		"iot-2/type/pump/id/P-17/cmd/+/fmt/+": 0x80,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("SUBACK codes (-want +got):\n%s", diff)
	}
	waitViolation(t, p, pump17, "S1", ActionSubackFailure)

	// The refused event filter receives nothing: the other device's event
	// would reach dev before the command that follows it.
	other.publish(t, "iot-2/evt/reading/fmt/json", 1, false, []byte(`{}`))
	if err := p.SendCommand("pump", "P-17", "ping", "txt", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if m := dev.next(t); m.Topic() != "iot-2/cmd/ping/fmt/txt" {
		t.Errorf("first message on %q, want the command on iot-2/cmd/ping/fmt/txt", m.Topic())
	}
	if !dev.IsConnectionOpen() {
		t.Error("connection closed in SUBACK-failure mode")
	}
}

func TestCommandsReachOnlyTheirDevice(t *testing.T) {
	p := startPlatform(t, nil)
	cmds, err := p.Subscribe("iot-2/type/+/id/+/cmd/+/fmt/+")
	if err != nil {
		t.Fatal(err)
	}
	dev17 := mustDial(t, p, pump17, tokenAuth, pump17Token)
	dev17.mustSubscribe(t, "iot-2/cmd/+/fmt/+", 1)
	dev18 := mustDial(t, p, pump18, tokenAuth, pump18Token)
	dev18.mustSubscribe(t, "iot-2/cmd/+/fmt/+", 1)

	if err := p.SendCommand("pump", "P-17", "setSpeed", "json", []byte(`{"rpm":1450}`)); err != nil {
		t.Fatal(err)
	}
	m := dev17.next(t)
	if m.Topic() != "iot-2/cmd/setSpeed/fmt/json" || string(m.Payload()) != `{"rpm":1450}` || m.Qos() != 1 {
		t.Errorf("P-17 got %q %q qos %d, want iot-2/cmd/setSpeed/fmt/json {\"rpm\":1450} qos 1", m.Topic(), m.Payload(), m.Qos())
	}
	// Sent after P-17's command by the same publisher: if P-17's had leaked to
	// P-18, it would arrive first.
	if err := p.SendCommand("pump", "P-18", "stop", "txt", []byte("now")); err != nil {
		t.Fatal(err)
	}
	if m := dev18.next(t); m.Topic() != "iot-2/cmd/stop/fmt/txt" {
		t.Errorf("P-18's first message on %q, want iot-2/cmd/stop/fmt/txt", m.Topic())
	}

	// An MQTT application's command is rewritten the same way.
	app := mustDial(t, p, "a:ab12cd:ops", testKey.Key, testKey.Token)
	app.publish(t, "iot-2/type/pump/id/P-17/cmd/light/fmt/json", 1, false, []byte(`{"on":true}`))
	if m := dev17.next(t); m.Topic() != "iot-2/cmd/light/fmt/json" {
		t.Errorf("P-17 got application command on %q, want iot-2/cmd/light/fmt/json", m.Topic())
	}

	var gotFrom []string
	for range 3 {
		m := recv(t, cmds)
		gotFrom = append(gotFrom, m.Topic+" from "+m.ClientID)
	}
	wantFrom := []string{
		"iot-2/type/pump/id/P-17/cmd/setSpeed/fmt/json from a:ab12cd:platform",
		"iot-2/type/pump/id/P-18/cmd/stop/fmt/txt from a:ab12cd:platform",
		"iot-2/type/pump/id/P-17/cmd/light/fmt/json from a:ab12cd:ops",
	}
	if diff := cmp.Diff(wantFrom, gotFrom); diff != "" {
		t.Errorf("application view of commands (-want +got):\n%s", diff)
	}
	if got := p.Stats().Commands; got != 3 {
		t.Errorf("Stats().Commands = %d, want 3", got)
	}
}

func TestSendCommandErrors(t *testing.T) {
	p := startPlatform(t, nil)
	tests := []struct {
		name                     string
		typ, id, command, format string
		payload                  []byte
		want                     error
	}{
		{"unknown device", "pump", "P-99", "c", "json", nil, ErrUnknownDevice},
		{"slash in command", "pump", "P-17", "set/speed", "json", nil, ErrInvalidTopic},
		{"wildcard format", "pump", "P-17", "c", "+", nil, ErrInvalidTopic},
		{"bad type", "pu mp", "P-17", "c", "json", nil, ErrInvalidTopic},
		{"empty command", "pump", "P-17", "", "json", nil, ErrInvalidTopic},
		{"too large", "pump", "P-17", "c", "bin", make([]byte, MaxPayload+1), ErrPayloadTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := p.SendCommand(tt.typ, tt.id, tt.command, tt.format, tt.payload)
			if !errors.Is(err, tt.want) {
				t.Errorf("SendCommand(%q, %q, %q, %q) = %v, want %v", tt.typ, tt.id, tt.command, tt.format, err, tt.want)
			}
		})
	}
}

func TestClientIDTakeover(t *testing.T) {
	p := startPlatform(t, nil)
	sub, err := p.Subscribe("iot-2/type/+/id/+/evt/+/fmt/+")
	if err != nil {
		t.Fatal(err)
	}
	older := mustDial(t, p, pump17, tokenAuth, pump17Token)
	newer := mustDial(t, p, pump17, tokenAuth, pump17Token)

	older.waitLost(t)
	v := waitViolation(t, p, pump17, "C7", ActionClosedOld)
	if v.Code != CodeClientIDReused {
		t.Errorf("takeover code %d, want %d", v.Code, CodeClientIDReused)
	}
	if got := p.Stats().Takeovers; got != 1 {
		t.Errorf("Stats().Takeovers = %d, want 1", got)
	}
	newer.publish(t, "iot-2/evt/alive/fmt/json", 1, false, []byte(`{}`))
	if m := recv(t, sub); m.ClientID != pump17 {
		t.Errorf("event from %q, want %q", m.ClientID, pump17)
	}
	if !newer.IsConnectionOpen() {
		t.Error("the newer connection was closed")
	}
}

func TestQuickstart(t *testing.T) {
	p := startPlatform(t, func(c *Config) {
		c.Org = QuickstartOrg
		c.Devices, c.APIKeys = nil, nil
	})
	sub, err := p.Subscribe("iot-2/type/+/id/+/evt/+/fmt/+")
	if err != nil {
		t.Fatal(err)
	}
	const dev = "d:quickstart:sensor:s-1"

	t.Run("device without credentials publishes events", func(t *testing.T) {
		c := mustDial(t, p, dev, "", "")
		c.publish(t, "iot-2/evt/temp/fmt/json", 0, false, []byte(`{"t":21}`))
		if m := recv(t, sub); m.Topic != "iot-2/type/sensor/id/s-1/evt/temp/fmt/json" {
			t.Errorf("event on %q", m.Topic)
		}
	})
	t.Run("application without credentials", func(t *testing.T) {
		c := mustDial(t, p, "a:quickstart:viewer", "", "")
		c.mustSubscribe(t, "iot-2/type/sensor/id/s-1/evt/+/fmt/+", 0)
	})
	for _, tt := range []struct {
		name string
		act  func(c *testClient)
	}{
		{"qos 1 event", func(c *testClient) { c.Publish("iot-2/evt/temp/fmt/json", 1, false, []byte("1")) }},
		{"device management", func(c *testClient) { c.Publish("iotdevice-1/mgmt/manage", 0, false, []byte("{}")) }},
		{"subscribe to commands", func(c *testClient) { c.Subscribe("iot-2/cmd/+/fmt/+", 0, nil) }},
	} {
		t.Run(tt.name+" disconnects", func(t *testing.T) {
			c := mustDial(t, p, dev, "", "")
			tt.act(c)
			c.waitLost(t)
			waitViolation(t, p, dev, "C6", ActionDisconnected)
		})
	}
	t.Run("application publishing a command disconnects", func(t *testing.T) {
		c := mustDial(t, p, "a:quickstart:ops", "", "")
		c.Publish("iot-2/type/sensor/id/s-1/cmd/x/fmt/json", 0, false, []byte("{}"))
		c.waitLost(t)
		waitViolation(t, p, "a:quickstart:ops", "C6", ActionDisconnected)
	})
	for _, id := range []string{"g:quickstart:gw:gw-1", "A:quickstart:app"} {
		t.Run(id+" refused", func(t *testing.T) {
			if _, rc, err := dial(t, "tcp://"+p.Addr(), id, "", ""); err == nil || rc != pahopackets.ErrRefusedNotAuthorised {
				t.Errorf("connect %s: rc %d err %v, want rc 5", id, rc, err)
			}
			waitViolation(t, p, id, "C6", ActionRefused)
		})
	}
	if err := p.SendCommand("sensor", "s-1", "c", "json", nil); !errors.Is(err, ErrQuickstart) {
		t.Errorf("SendCommand in quickstart = %v, want ErrQuickstart", err)
	}
}

func TestQuickstartEventRate(t *testing.T) {
	p := startPlatform(t, func(c *Config) {
		c.Org, c.Devices, c.APIKeys = QuickstartOrg, nil, nil
		c.QuickstartEventInterval = time.Hour
	})
	sub, err := p.Subscribe("iot-2/type/+/id/+/evt/+/fmt/+")
	if err != nil {
		t.Fatal(err)
	}
	const dev = "d:quickstart:sensor:s-2"
	c := mustDial(t, p, dev, "", "")
	c.publish(t, "iot-2/evt/temp/fmt/json", 0, false, []byte("1"))
	recv(t, sub)
	c.publish(t, "iot-2/evt/temp/fmt/json", 0, false, []byte("2"))
	waitViolation(t, p, dev, "C6", ActionDropped)
	select {
	case m := <-sub.C:
		t.Errorf("second event within the interval delivered: %q", m.Payload)
	default:
	}
	if !c.IsConnectionOpen() {
		t.Error("rate limit closed the connection")
	}
}

func TestGatewayBasics(t *testing.T) {
	p := startPlatform(t, func(c *Config) { c.Devices[2].Role = RoleStandard }) // gw-01 may not auto-register
	events, err := p.Subscribe("iot-2/type/+/id/+/evt/+/fmt/+")
	if err != nil {
		t.Fatal(err)
	}
	gw := mustDial(t, p, gw01, tokenAuth, gw01Token)
	gw.mustSubscribe(t, "iot-2/type/+/id/+/cmd/+/fmt/+", 1)

	gw.publish(t, "iot-2/type/pump/id/P-17/evt/reading/fmt/json", 1, false, []byte(`{"kWh":1}`))
	if m := recv(t, events); m.Topic != "iot-2/type/pump/id/P-17/evt/reading/fmt/json" || m.ClientID != gw01 {
		t.Errorf("gateway event: topic %q from %q", m.Topic, m.ClientID)
	}
	// Unknown device, standard gateway: acknowledged, dropped, connection kept (P4).
	gw.publish(t, "iot-2/type/pump/id/P-99/evt/reading/fmt/json", 1, false, []byte(`{}`))
	waitViolation(t, p, gw01, "P4", ActionDropped)
	if !gw.IsConnectionOpen() {
		t.Fatal("gateway disconnected for a dropped publish")
	}

	if err := p.SendCommand("pump", "P-17", "reset", "json", nil); err != nil {
		t.Fatal(err)
	}
	if m := gw.next(t); m.Topic() != "iot-2/type/pump/id/P-17/cmd/reset/fmt/json" {
		t.Errorf("gateway got command on %q, want the qualified topic", m.Topic())
	}
	select {
	case m := <-events.C:
		t.Errorf("dropped gateway publish delivered on %q", m.Topic)
	default:
	}
}

func TestWill(t *testing.T) {
	p := startPlatform(t, nil)
	sub, err := p.Subscribe("iot-2/type/+/id/+/evt/+/fmt/+")
	if err != nil {
		t.Fatal(err)
	}
	willOn := func(topic string) func(*paho.ClientOptions) {
		return func(o *paho.ClientOptions) { o.SetBinaryWill(topic, []byte("gone"), 1, true) }
	}

	c, _, err := dial(t, "tcp://"+p.Addr(), pump17, tokenAuth, pump17Token, willOn("iot-2/evt/status/fmt/txt"))
	if err != nil {
		t.Fatal(err)
	}
	c.Publish("foo", 0, false, []byte("x")) // P3: the platform closes the connection, so the will is sent
	c.waitLost(t)
	m := recv(t, sub)
	if m.Topic != "iot-2/type/pump/id/P-17/evt/status/fmt/txt" || m.Retain || string(m.Payload) != "gone" {
		t.Errorf("will: topic %q retain %v payload %q", m.Topic, m.Retain, m.Payload)
	}

	_, rc, err := dial(t, "tcp://"+p.Addr(), pump18, tokenAuth, pump18Token, willOn("iot-2/cmd/x/fmt/txt"))
	if err == nil || rc != pahopackets.ErrRefusedNotAuthorised {
		t.Errorf("will on a command topic: rc %d err %v, want rc 5", rc, err)
	}
	waitViolation(t, p, pump18, "P3", ActionRefused)
}

func TestWebSocket(t *testing.T) {
	p := startPlatform(t, func(c *Config) { c.WSAddr = "127.0.0.1:0" })
	sub, err := p.Subscribe("iot-2/type/+/id/+/evt/+/fmt/+")
	if err != nil {
		t.Fatal(err)
	}
	c, rc, err := dial(t, "ws://"+p.WSAddr()+"/mqtt", pump17, tokenAuth, pump17Token)
	if err != nil {
		t.Fatalf("websocket connect: rc %d: %v", rc, err)
	}
	c.publish(t, "iot-2/evt/reading/fmt/json", 1, false, []byte(`{"ws":true}`))
	if m := recv(t, sub); m.Topic != "iot-2/type/pump/id/P-17/evt/reading/fmt/json" {
		t.Errorf("event on %q", m.Topic)
	}
	c.Publish("iot-2/cmd/x/fmt/json", 0, false, []byte("x"))
	c.waitLost(t)
	waitViolation(t, p, pump17, "P3", ActionDisconnected)
}

func TestRunAndClose(t *testing.T) {
	p, err := New(Config{Org: testOrg, Devices: testDevices()}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Addr(); got != "" {
		t.Errorf("Addr before Start = %q, want empty", got)
	}
	sub, err := p.Subscribe("#")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	testwait.For(t, waitDeadline, "listener", func() bool { return p.Addr() != "" })
	dev := mustDial(t, p, pump17, tokenAuth, pump17Token)

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run after cancel = %v, want nil", err)
		}
	case <-time.After(waitDeadline):
		t.Fatal("Run did not return after cancel")
	}
	dev.waitLost(t)
	drained := make(chan struct{})
	go func() {
		for range sub.C { // status (mon) messages of the connection may be buffered
		}
		close(drained)
	}()
	select {
	case <-drained:
	case <-time.After(waitDeadline):
		t.Error("subscription channel still open after Close")
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	if err := p.Start(); !errors.Is(err, ErrClosed) {
		t.Errorf("Start after Close = %v, want ErrClosed", err)
	}
	if _, err := p.Subscribe("#"); !errors.Is(err, ErrClosed) {
		t.Errorf("Subscribe after Close = %v, want ErrClosed", err)
	}
	if err := p.SendCommand("pump", "P-17", "c", "json", nil); !errors.Is(err, ErrClosed) {
		t.Errorf("SendCommand after Close = %v, want ErrClosed", err)
	}
}

func TestStartFailsOnBusyAddress(t *testing.T) {
	a := startPlatform(t, nil)
	b, err := New(Config{Org: testOrg, Addr: a.Addr()}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if err := b.Start(); err == nil {
		t.Fatal("Start on a busy address succeeded")
	}
	if got := b.Addr(); got != "" {
		t.Errorf("Addr after failed Start = %q", got)
	}
}

func TestSubscriptionDropsWhenFull(t *testing.T) {
	p := startPlatform(t, func(c *Config) { c.SubscriptionBuffer = 1 })
	sub, err := p.Subscribe("iot-2/type/+/id/+/cmd/+/fmt/+")
	if err != nil {
		t.Fatal(err)
	}
	for range 3 { // delivery is synchronous: the broker must not block on the full channel
		if err := p.SendCommand("pump", "P-17", "c", "json", nil); err != nil {
			t.Fatal(err)
		}
	}
	if got := sub.Dropped(); got != 2 {
		t.Errorf("Dropped() = %d, want 2", got)
	}
	sub.Close()
	sub.Close()
	if n := len(sub.C); n != 1 {
		t.Errorf("%d messages buffered, want 1", n)
	}
	if err := p.SendCommand("pump", "P-17", "c", "json", nil); err != nil {
		t.Errorf("SendCommand after Subscription.Close: %v", err)
	}
}

func TestSubscribeInvalidFilter(t *testing.T) {
	p := startPlatform(t, nil)
	for _, f := range []string{"", "a/#/b", "a/b+", "a//b"} {
		if _, err := p.Subscribe(f); !errors.Is(err, ErrInvalidTopic) {
			t.Errorf("Subscribe(%q) = %v, want ErrInvalidTopic", f, err)
		}
	}
}

func TestRegisterAtRuntime(t *testing.T) {
	p := startPlatform(t, nil)
	const id = "d:ab12cd:valve:V-1"
	if _, rc, _ := dial(t, "tcp://"+p.Addr(), id, tokenAuth, "valve-1-token"); rc != pahopackets.ErrRefusedNotAuthorised {
		t.Fatalf("unregistered device: rc %d, want 5", rc)
	}
	if err := p.Register(Device{Type: "valve", ID: "V-1", Token: "valve-1-token"}); err != nil {
		t.Fatal(err)
	}
	mustDial(t, p, id, tokenAuth, "valve-1-token")
	if !p.Unregister("valve", "V-1") {
		t.Error("Unregister reported the device missing")
	}
	if _, rc, _ := dial(t, "tcp://"+p.Addr(), id, tokenAuth, "valve-1-token"); rc != pahopackets.ErrRefusedNotAuthorised {
		t.Errorf("unregistered again: rc %d, want 5", rc)
	}
	if err := p.Register(Device{Type: "valve", ID: "V-2", Token: "short"}); !errors.Is(err, ErrInvalidRegistry) {
		t.Errorf("Register with a short token = %v, want ErrInvalidRegistry", err)
	}
	if err := p.RegisterAPIKey(APIKey{Key: "a-other1-xyz", Token: "t"}); !errors.Is(err, ErrInvalidRegistry) {
		t.Errorf("RegisterAPIKey for another org = %v, want ErrInvalidRegistry", err)
	}
	if err := p.RegisterAPIKey(APIKey{Key: "a-ab12cd-new", Token: "new-token"}); err != nil {
		t.Fatal(err)
	}
	mustDial(t, p, "a:ab12cd:new", "a-ab12cd-new", "new-token")
}

func TestNewRejectsBadConfig(t *testing.T) {
	dup := testDevices()
	dup = append(dup, dup[0])
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no org", Config{}},
		{"bad org", Config{Org: "ab 12"}},
		{"duplicate device", Config{Org: testOrg, Devices: dup}},
		{"short token", Config{Org: testOrg, Devices: []Device{{Type: "t", ID: "i", Token: "1234567"}}}},
		{"token with space", Config{Org: testOrg, Devices: []Device{{Type: "t", ID: "i", Token: "1234 5678"}}}},
		{"bad device id", Config{Org: testOrg, Devices: []Device{{Type: "t", ID: "a/b", Token: "12345678"}}}},
		{"api key of another org", Config{Org: testOrg, APIKeys: []APIKey{{Key: "a-zz99zz-1", Token: "t"}}}},
		{"api key without token", Config{Org: testOrg, APIKeys: []APIKey{{Key: "a-ab12cd-1"}}}},
		{"cert without key", Config{Org: testOrg, TLSCertFile: "c.pem"}},
		{"quickstart with tls", Config{Org: QuickstartOrg, TLSCertFile: "c.pem", TLSKeyFile: "k.pem"}},
		{"bad app id", Config{Org: testOrg, AppID: "a:b"}},
		{"bad subscribe action", Config{Org: testOrg, OnForbiddenSubscribe: 7}},
		{"negative interval", Config{Org: QuickstartOrg, QuickstartEventInterval: -time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.cfg, nil); !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("New(%+v) = %v, want ErrInvalidConfig", tt.cfg, err)
			}
		})
	}
}

func TestCloseEndsConnectionsBeforeConnect(t *testing.T) {
	p := startPlatform(t, func(c *Config) { c.WSAddr = "127.0.0.1:0" })
	for _, addr := range []string{p.Addr(), p.WSAddr()} {
		conn, err := net.Dial("tcp", addr) // never sends CONNECT
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
	}
	closed := make(chan struct{})
	go func() {
		p.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(waitDeadline):
		t.Fatal("Close waits for connections that never sent CONNECT")
	}
}
