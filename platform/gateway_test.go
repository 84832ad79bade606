package platform

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"fieldbridge/internal/testwait"
)

const (
	gw02      = "g:ab12cd:edge-gw:gw-02"
	gw02Token = "gw-02-token!"
	gwNotify  = "iot-2/type/edge-gw/id/gw-01/notify"
)

// withGateway2 registers a second gateway, edge-gw/gw-02.
func withGateway2(c *Config) {
	c.Devices = append(c.Devices, Device{Type: "edge-gw", ID: "gw-02", Token: gw02Token, Gateway: true})
}

// standardGateway gives gw-01 the standard role (no auto-registration).
func standardGateway(c *Config) { c.Devices[2].Role = RoleStandard }

func TestGatewayPublishesForItselfAndChildren(t *testing.T) {
	p := startPlatform(t, nil)
	events := mustSubscribePlatform(t, p, "iot-2/type/+/id/+/evt/+/fmt/+")
	dmMsgs := mustSubscribePlatform(t, p, "iotdevice-1/#")
	app := mustDial(t, p, "a:ab12cd:dashboard", testKey.Key, testKey.Token)
	app.mustSubscribe(t, "iot-2/type/+/id/+/evt/+/fmt/+", 1)
	gw := mustDial(t, p, gw01, tokenAuth, gw01Token)

	for _, topic := range []string{
		"iot-2/type/pump/id/P-17/evt/reading/fmt/json",    // a child
		"iot-2/type/edge-gw/id/gw-01/evt/health/fmt/json", // itself
	} {
		gw.publish(t, topic, 1, true, []byte(`{"v":1}`))
		if m := recv(t, events); m.Topic != topic || m.ClientID != gw01 || m.Retain {
			t.Errorf("Subscribe got %q from %q (retain %v), want %q from the gateway, not retained", m.Topic, m.ClientID, m.Retain, topic)
		}
		if m := app.next(t); m.Topic() != topic || m.Retained() {
			t.Errorf("application got %q (retained %v), want %q", m.Topic(), m.Retained(), topic)
		}
	}
	gw.publish(t, "iotdevice-1/type/pump/id/P-17/add/diag/errorCodes", 1, false, []byte(`{"d":{"errorCode":3}}`))
	if m := recv(t, dmMsgs); m.Topic != "iotdevice-1/type/pump/id/P-17/add/diag/errorCodes" {
		t.Errorf("dm message on %q", m.Topic)
	}
	if got := p.Stats().Notifications; got != 0 {
		t.Errorf("Stats().Notifications = %d, want 0", got)
	}
}

func TestGatewayPublishRejectedWithNotify(t *testing.T) {
	p := startPlatform(t, func(c *Config) { standardGateway(c); withGateway2(c) })
	events := mustSubscribePlatform(t, p, "iot-2/type/+/id/+/evt/+/fmt/+")
	gw := mustDial(t, p, gw01, tokenAuth, gw01Token)
	gw.mustSubscribe(t, gwNotify, 0)

	tests := []struct {
		name, topic string
		want        Notification
	}{
		{"unknown device, standard gateway", "iot-2/type/pump/id/P-99/evt/reading/fmt/json",
			Notification{Type: "pump", ID: "P-99", RC: CodeNotAuthorized}},
		{"invalid device type", "iot-2/type/modbus meter/id/m-07/evt/reading/fmt/json",
			Notification{Type: "modbus meter", ID: "m-07", RC: CodeTopicInvalid}},
		{"invalid device id", "iot-2/type/meter/id/" + strings.Repeat("m", 37) + "/evt/reading/fmt/json",
			Notification{Type: "meter", ID: strings.Repeat("m", 37), RC: CodeTopicInvalid}},
		{"another gateway", "iot-2/type/edge-gw/id/gw-02/evt/reading/fmt/json",
			Notification{Type: "edge-gw", ID: "gw-02", RC: CodeNotAuthorized}},
		{"a command", "iot-2/type/pump/id/P-17/cmd/reset/fmt/json",
			Notification{Type: "pump", ID: "P-17", RC: CodeNotAuthorized}},
		{"relative event", "iot-2/evt/reading/fmt/json", Notification{RC: CodeNotAuthorized}},
		{"unknown dm topic", "iotdevice-1/type/pump/id/P-17/mgmt/other", Notification{RC: CodeNotAuthorized}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := time.Now().UTC().Add(-time.Second)
			gw.publish(t, tt.topic, 1, false, []byte(`{}`))
			n := decodeJSON[Notification](t, gw.nextOn(t, gwNotify).Payload())
			tt.want.Request, tt.want.Topic, tt.want.Client = "publish", tt.topic, gw01
			if diff := cmp.Diff(tt.want, n, cmpopts.IgnoreFields(Notification{}, "Time", "Message")); diff != "" {
				t.Errorf("notify message (-want +got):\n%s", diff)
			}
			if n.Message == "" {
				t.Error("notify message without Message")
			}
			if ts, err := time.Parse(timeLayout, n.Time); err != nil || ts.Before(before) || !strings.HasSuffix(n.Time, "Z") {
				t.Errorf("notify Time %q: not a recent UTC ISO 8601 time (%v)", n.Time, err)
			}
			waitViolation(t, p, gw01, "P4", ActionDropped)
			// Dropped: had it been routed, it would arrive before this one.
			gw.publish(t, "iot-2/type/pump/id/P-17/evt/marker/fmt/json", 1, false, []byte(`{}`))
			if m := recv(t, events); m.Topic != "iot-2/type/pump/id/P-17/evt/marker/fmt/json" {
				t.Errorf("rejected publish delivered on %q", m.Topic)
			}
		})
	}
	if _, ok := p.Device("pump", "P-99"); ok {
		t.Error("a standard gateway auto-registered pump/P-99")
	}
	// Counted after the publish, so possibly after the gateway has the message.
	testwait.For(t, waitDeadline, "notifications counted", func() bool { return p.Stats().Notifications == int64(len(tests)) })
}

func TestGatewayAutoRegistration(t *testing.T) {
	p := startPlatform(t, nil) // gw-01 is privileged, the platform's default
	events := mustSubscribePlatform(t, p, "iot-2/type/+/id/+/evt/+/fmt/+")
	notes := mustSubscribePlatform(t, p, gwNotify)
	gw := mustDial(t, p, gw01, tokenAuth, gw01Token)

	// Publishing for an unknown device registers it and delivers the event.
	gw.publish(t, "iot-2/type/meter/id/m-07/evt/reading/fmt/json", 1, false, []byte(`{"kWh":1}`))
	if m := recv(t, events); m.Topic != "iot-2/type/meter/id/m-07/evt/reading/fmt/json" {
		t.Errorf("event on %q", m.Topic)
	}
	d, ok := p.Device("meter", "m-07")
	if !ok || d.Gateway || d.validate() != nil {
		t.Fatalf("meter/m-07 after auto-registration: %+v, registered %v", d, ok)
	}

	// Subscribing for an unknown device registers it too; its commands arrive.
	gw.mustSubscribe(t, "iot-2/type/valve/id/V-7/cmd/+/fmt/+", 1)
	if _, ok := p.Device("valve", "V-7"); !ok {
		t.Fatal("subscribing for valve/V-7 did not register it")
	}
	if err := p.SendCommand("valve", "V-7", "open", "json", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	gw.nextOn(t, "iot-2/type/valve/id/V-7/cmd/open/fmt/json")

	if got := p.Stats().AutoRegistered; got != 2 {
		t.Errorf("Stats().AutoRegistered = %d, want 2", got)
	}
	noMessage(t, notes)
}

func TestGatewaySubscribe(t *testing.T) {
	p := startPlatform(t, func(c *Config) {
		standardGateway(c)
		withGateway2(c)
		c.OnForbiddenSubscribe = SubscribeFailure
	})
	notes := mustSubscribePlatform(t, p, gwNotify)
	gw := mustDial(t, p, gw01, tokenAuth, gw01Token)
	filters := map[string]byte{
		"iot-2/type/edge-gw/id/gw-01/cmd/+/fmt/+": 1, // own commands
		"iot-2/type/pump/id/P-17/cmd/+/fmt/+":     1, // a child's
		"iot-2/type/meter/id/+/cmd/+/fmt/+":       1, // wildcards
		"iot-2/type/+/id/+/cmd/+/fmt/+":           1,
		gwNotify:                                  0,
		"iot-2/type/+/id/+/mon":                   0,
		"iotdm-1/type/+/id/+/#":                   2, // S4: granted 1
		"iotdm-1/type/pump/id/P-17/response":      1,
		"iotdm-1/#":                               1,
		"iot-2/type/edge-gw/id/gw-02/cmd/+/fmt/+": 1, // another gateway's commands
		"iot-2/type/edge-gw/id/gw-02/notify":      0, // another gateway's notify
		"iot-2/type/edge-gw/id/gw-02/mon":         0,
		"iot-2/type/pump/id/P-99/cmd/+/fmt/+":     1, // unknown device, standard gateway
		"iot-2/type/+/id/+/evt/+/fmt/+":           1, // events
		"iot-2/cmd/+/fmt/+":                       1, // the relative (device) form
		"iotdm-1/response":                        1,
	}
	got, err := gw.subscribe(t, filters)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]byte{}
	refused := 0
	for f, q := range filters {
		switch {
		case strings.Contains(f, "gw-02") || strings.Contains(f, "P-99") || strings.Contains(f, "/evt/") ||
			f == "iot-2/cmd/+/fmt/+" || f == "iotdm-1/response":
			want[f] = 0x80
			refused++
		case strings.HasPrefix(f, "iotdm-1"):
			want[f] = min(q, 1)
		default:
			want[f] = q
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("SUBACK codes (-want +got):\n%s", diff)
	}
	seen := map[string]Notification{}
	for range refused {
		n := decodeJSON[Notification](t, recv(t, notes).Payload)
		seen[n.Topic] = n
	}
	for f, code := range want {
		n, ok := seen[f]
		switch {
		case code == 0x80 && !ok:
			t.Errorf("no notify message for refused filter %q", f)
		case code == 0x80 && (n.Request != "subscribe" || n.Client != gw01):
			t.Errorf("notify for %q: Request %q Client %q, want subscribe from %s", f, n.Request, n.Client, gw01)
		case code != 0x80 && ok:
			t.Errorf("notify message for granted filter %q", f)
		}
	}
	if !gw.IsConnectionOpen() {
		t.Error("connection closed in SUBACK-failure mode")
	}
}

func TestGatewaySubscribeOtherGatewayDisconnects(t *testing.T) {
	p := startPlatform(t, withGateway2) // S3 default: disconnect
	notes := mustSubscribePlatform(t, p, gwNotify)
	gw := mustDial(t, p, gw01, tokenAuth, gw01Token)
	gw.Subscribe("iot-2/type/edge-gw/id/gw-02/cmd/+/fmt/+", 1, nil)
	gw.waitLost(t)
	if v := waitViolation(t, p, gw01, "S2", ActionDisconnected); v.Code != CodeNotAuthorized {
		t.Errorf("violation code %d, want %d", v.Code, CodeNotAuthorized)
	}
	n := decodeJSON[Notification](t, recv(t, notes).Payload)
	if n.Request != "subscribe" || n.Type != "edge-gw" || n.ID != "gw-02" {
		t.Errorf("notify %+v, want a subscribe for edge-gw/gw-02", n)
	}
}

func TestGatewayDeliveryOnlyForPermittedDevices(t *testing.T) {
	p := startPlatform(t, withGateway2)
	gw := mustDial(t, p, gw01, tokenAuth, gw01Token)
	gw.mustSubscribe(t, "iot-2/type/+/id/+/cmd/+/fmt/+", 1)
	app := mustDial(t, p, "a:ab12cd:ops", testKey.Key, testKey.Token)

	// Sent in this order by one publisher: had either of the first two
	// leaked to gw-01, it would arrive before the third.
	if err := p.SendCommand("edge-gw", "gw-02", "reboot", "json", nil); err != nil {
		t.Fatal(err)
	}
	app.publish(t, "iot-2/type/pump/id/P-99/cmd/start/fmt/json", 1, false, []byte(`{}`)) // unregistered
	if err := p.SendCommand("pump", "P-17", "start", "json", nil); err != nil {
		t.Fatal(err)
	}
	gw.nextOn(t, "iot-2/type/pump/id/P-17/cmd/start/fmt/json")
	if _, ok := p.Device("pump", "P-99"); ok {
		t.Error("delivery to a gateway registered pump/P-99")
	}
}
