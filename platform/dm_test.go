package platform

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// manage publishes a Manage request from c (a device: relative topics) and
// checks the DM server's rc on iotdm-1/response; c must be subscribed to it.
func manage(t *testing.T, c *testClient, payload string, wantRC int) {
	t.Helper()
	if got := dmRequest(t, c, "mgmt/manage", payload); got.RC != wantRC {
		t.Fatalf("manage %s: rc %d (%s), want %d", payload, got.RC, got.Message, wantRC)
	}
}

type dmResponse struct {
	RC      int    `json:"rc"`
	ReqID   string `json:"reqId"`
	Message string `json:"message"`
}

// dmRequest publishes a device's iotdevice-1/<rest> request and returns the
// DM server's response from iotdm-1/response.
func dmRequest(t *testing.T, c *testClient, rest, payload string) dmResponse {
	t.Helper()
	c.publish(t, "iotdevice-1/"+rest, 1, false, []byte(payload))
	return decodeJSON[dmResponse](t, c.nextOn(t, "iotdm-1/response").Payload())
}

func TestManage(t *testing.T) {
	p := startPlatform(t, func(c *Config) { c.ExtensionBundles = []string{"acme-modbus-v1"} })
	dev := mustDial(t, p, pump17, tokenAuth, pump17Token)
	dev.mustSubscribe(t, "iotdm-1/response", 1)

	tests := []struct {
		name, payload string
		want          int
	}{
		{"everything", `{"d":{"lifetime":86400,"supports":{"deviceActions":true,"firmwareActions":false,"acme-modbus-v1":true},
			"deviceInfo":{"serialNumber":"P17-0001","fwVersion":"1.4.2"},"metadata":{"site":"plant-2"}},"reqId":"r1"}`, RCOK},
		{"empty d", `{"reqId":"r2"}`, RCOK},
		{"lifetime 0", `{"d":{"lifetime":0},"reqId":"r3"}`, RCOK},
		{"not json", `{"d":`, RCBadRequest},
		{"not an object", `[1]`, RCBadRequest},
		{"lifetime too short", `{"d":{"lifetime":100},"reqId":"r4"}`, RCBadRequest},
		{"lifetime fraction", `{"d":{"lifetime":3600.5},"reqId":"r5"}`, RCBadRequest},
		{"lifetime string", `{"d":{"lifetime":"3600"},"reqId":"r6"}`, RCBadRequest},
		{"supports not boolean", `{"d":{"supports":{"deviceActions":"yes"}},"reqId":"r7"}`, RCBadRequest},
		{"deviceInfo number", `{"d":{"deviceInfo":{"serialNumber":17}},"reqId":"r8"}`, RCBadRequest},
		{"deviceInfo unknown attribute", `{"d":{"deviceInfo":{"colour":"red"}},"reqId":"r9"}`, RCBadRequest},
		{"metadata not an object", `{"d":{"metadata":[1]},"reqId":"r10"}`, RCBadRequest},
		{"unknown member of d", `{"d":{"lifetme":3600},"reqId":"r11"}`, RCBadRequest},
		{"reqId not a string", `{"reqId":7}`, RCBadRequest},
		{"unknown bundle", `{"d":{"supports":{"deviceActions":true,"other-bundle":true}},"reqId":"r12"}`, RCForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := dmRequest(t, dev, "mgmt/manage", tt.payload)
			if got.RC != tt.want {
				t.Errorf("manage %s: rc %d (%s), want %d", tt.payload, got.RC, got.Message, tt.want)
			}
			var req struct{ ReqID any }
			if json.Unmarshal([]byte(tt.payload), &req) == nil {
				if id, ok := req.ReqID.(string); ok && got.ReqID != id {
					t.Errorf("response reqId %q, want %q", got.ReqID, id)
				}
			}
		})
	}

	// The first request's state: the later failures changed nothing, the
	// later successes replaced it.
	dmRequest(t, dev, "mgmt/manage", tests[0].payload)
	st, managed := p.Managed("pump", "P-17")
	want := DMState{
		Managed: true, ManagedBy: pump17, Lifetime: 24 * time.Hour,
		Supports:   map[string]bool{"deviceActions": true, "firmwareActions": false, "acme-modbus-v1": true},
		DeviceInfo: map[string]string{"serialNumber": "P17-0001", "fwVersion": "1.4.2"},
		Metadata:   json.RawMessage(`{"site":"plant-2"}`),
	}
	if diff := cmp.Diff(want, st, cmpIgnoreDormant); diff != "" || !managed {
		t.Errorf("Managed = %v, state (-want +got):\n%s", managed, diff)
	}
	if d := time.Until(st.DormantAt); d < 23*time.Hour || d > 25*time.Hour {
		t.Errorf("DormantAt in %s, want about 24h", d)
	}
}

var cmpIgnoreDormant = cmp.FilterPath(func(p cmp.Path) bool { return p.String() == "DormantAt" }, cmp.Ignore())

func TestManageUnregisteredDevice(t *testing.T) {
	p := startPlatform(t, nil)
	dev := mustDial(t, p, pump18, tokenAuth, pump18Token)
	dev.mustSubscribe(t, "iotdm-1/#", 1)
	p.Unregister("pump", "P-18") // the connection stays
	manage(t, dev, `{"reqId":"x"}`, RCNotFound)
	if _, managed := p.Managed("pump", "P-18"); managed {
		t.Error("unregistered device is managed")
	}
}

func TestDeviceDiagnosticsAndUnmanage(t *testing.T) {
	p := startPlatform(t, nil)
	dev := mustDial(t, p, pump17, tokenAuth, pump17Token)
	dev.mustSubscribe(t, "iotdm-1/#", 1)

	// D3: accepted before Manage.
	steps := []struct{ rest, payload string }{
		{"device/update/location", `{"d":{"latitude":52.37,"longitude":4.89,"elevation":2},"reqId":"l1"}`},
		{"add/diag/errorCodes", `{"d":{"errorCode":7},"reqId":"e1"}`},
		{"add/diag/errorCodes", `{"d":{"errorCode":9},"reqId":"e2"}`},
		{"add/diag/log", `{"d":{"message":"Modbus timeout","timestamp":"2024-05-01T10:21:00Z","data":"AQID","severity":1},"reqId":"g1"}`},
		{"notify", `{"d":{"fields":[{"field":"mgmt.firmware","value":{"state":1}}]},"reqId":"n1"}`},
	}
	for _, s := range steps {
		if got := dmRequest(t, dev, s.rest, s.payload); got.RC != RCOK {
			t.Errorf("%s %s: rc %d (%s), want 200", s.rest, s.payload, got.RC, got.Message)
		}
	}
	st, managed := p.Managed("pump", "P-17")
	want := DMState{
		Location:   json.RawMessage(`{"elevation":2,"latitude":52.37,"longitude":4.89}`),
		ErrorCodes: []int{7, 9},
		Logs:       []DiagLog{{Message: "Modbus timeout", Timestamp: "2024-05-01T10:21:00Z", Severity: 1, Data: []byte{1, 2, 3}}},
	}
	if diff := cmp.Diff(want, st); diff != "" || managed {
		t.Errorf("Managed = %v, state (-want +got):\n%s", managed, diff)
	}

	for _, bad := range []struct{ rest, payload string }{
		{"device/update/location", `{"d":{"latitude":52.37},"reqId":"b1"}`},
		{"device/update/location", `{"d":{"latitude":"north","longitude":4},"reqId":"b2"}`},
		{"add/diag/errorCodes", `{"d":{"errorCode":1.5},"reqId":"b3"}`},
		{"add/diag/log", `{"d":{"severity":1},"reqId":"b4"}`},
		{"add/diag/log", `{"d":{"message":"x","severity":3},"reqId":"b5"}`},
		{"notify", `{"d":{"fields":{}},"reqId":"b6"}`},
	} {
		if got := dmRequest(t, dev, bad.rest, bad.payload); got.RC != RCBadRequest {
			t.Errorf("%s %s: rc %d, want 400", bad.rest, bad.payload, got.RC)
		}
	}

	for _, rest := range []string{"clear/diag/errorCodes", "clear/diag/log"} {
		if got := dmRequest(t, dev, rest, `{"reqId":"c"}`); got.RC != RCOK {
			t.Errorf("%s: rc %d, want 200", rest, got.RC)
		}
	}
	manage(t, dev, `{"reqId":"m"}`, RCOK)
	if _, managed := p.Managed("pump", "P-17"); !managed {
		t.Error("not managed after Manage")
	}
	// D4: Unmanage.
	if got := dmRequest(t, dev, "mgmt/unmanage", `{"reqId":"u"}`); got.RC != RCOK {
		t.Errorf("unmanage: rc %d, want 200", got.RC)
	}
	st, managed = p.Managed("pump", "P-17")
	if managed || st.ErrorCodes != nil || st.Logs != nil {
		t.Errorf("after clear and unmanage: managed %v, error codes %v, logs %v", managed, st.ErrorCodes, st.Logs)
	}
	if _, err := p.DeviceAction(context.Background(), "pump", "P-17", "device/reboot", nil); !errors.Is(err, ErrNotManaged) {
		t.Errorf("DeviceAction after unmanage = %v, want ErrNotManaged", err)
	}
}

// answer reads one DM request of c on topic and replies with rc on
// respTopic, echoing the reqId; it returns the request payload.
func answer(t *testing.T, c *testClient, topic, respTopic string, rc int) map[string]any {
	t.Helper()
	m := c.nextOn(t, topic)
	req := decodeJSON[map[string]any](t, m.Payload())
	resp, _ := json.Marshal(map[string]any{"rc": rc, "reqId": req["reqId"]})
	c.publish(t, respTopic, 1, false, resp)
	return req
}

// startAction runs DeviceAction in a goroutine.
func startAction(p *Platform, typ, id, action string, params map[string]string) <-chan actionResult {
	done := make(chan actionResult, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitDeadline)
		defer cancel()
		rc, err := p.DeviceAction(ctx, typ, id, action, params)
		done <- actionResult{rc, err}
	}()
	return done
}

type actionResult struct {
	rc  int
	err error
}

func TestDeviceActionRoundTrip(t *testing.T) {
	p := startPlatform(t, nil)
	dev := mustDial(t, p, pump17, tokenAuth, pump17Token)
	dev.mustSubscribe(t, "iotdm-1/#", 1)
	manage(t, dev, `{"d":{"supports":{"deviceActions":true}},"reqId":"m"}`, RCOK)

	for _, tt := range []struct {
		action, topic string
		rc            int
	}{
		{"device/reboot", "iotdm-1/mgmt/initiate/device/reboot", RCAccepted},
		{"device/factoryReset", "iotdm-1/mgmt/initiate/device/factory_reset", RCNotSupported},
	} {
		done := startAction(p, "pump", "P-17", tt.action, nil)
		req := answer(t, dev, tt.topic, "iotdevice-1/response", tt.rc)
		if id, _ := req["reqId"].(string); len(id) != 36 {
			t.Errorf("%s: reqId %q, want a UUID", tt.action, id)
		}
		if r := <-done; r.err != nil || r.rc != tt.rc {
			t.Errorf("DeviceAction(%s) = %d, %v; want %d", tt.action, r.rc, r.err, tt.rc)
		}
	}

	// A response with another reqId is ignored: the action returns the rc of
	// the matching one that follows.
	done := startAction(p, "pump", "P-17", "device/reboot", nil)
	dev.publish(t, "iotdevice-1/response", 1, false, []byte(`{"rc":500,"reqId":"not-this-one"}`))
	answer(t, dev, "iotdm-1/mgmt/initiate/device/reboot", "iotdevice-1/response", RCAccepted)
	if r := <-done; r.err != nil || r.rc != RCAccepted {
		t.Errorf("DeviceAction = %d, %v; want %d", r.rc, r.err, RCAccepted)
	}
}

func TestDeviceActionErrors(t *testing.T) {
	p := startPlatform(t, nil)
	dev := mustDial(t, p, pump17, tokenAuth, pump17Token)
	dev.mustSubscribe(t, "iotdm-1/response", 1)
	ctx := context.Background()

	check := func(name string, err, want error) {
		t.Helper()
		if !errors.Is(err, want) {
			t.Errorf("%s: %v, want %v", name, err, want)
		}
	}
	_, err := p.DeviceAction(ctx, "pump", "P-17", "device/reboot", nil)
	check("before Manage", err, ErrNotManaged)
	manage(t, dev, `{"d":{"supports":{"firmwareActions":true}},"reqId":"m"}`, RCOK)
	_, err = p.DeviceAction(ctx, "pump", "P-17", "device/reboot", nil)
	check("not advertised", err, ErrUnsupportedAction)
	_, err = p.DeviceAction(ctx, "pump", "P-17", "acme/rescan", nil)
	check("unadvertised bundle", err, ErrUnsupportedAction)
	_, err = p.DeviceAction(ctx, "pump", "P-17", "device/explode", nil)
	check("unknown built-in action", err, ErrInvalidAction)
	_, err = p.DeviceAction(ctx, "pump", "P-17", "reboot", nil)
	check("no slash", err, ErrInvalidAction)
	_, err = p.DeviceAction(ctx, "pump", "P-17", "firmware/update", map[string]string{"uri": "x"})
	check("params for a built-in action", err, ErrInvalidAction)
	_, err = p.DeviceAction(ctx, "pump", "P-99", "device/reboot", nil)
	check("unknown device", err, ErrUnknownDevice)

	// Managed, but nobody answers: ctx decides.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, err = p.DeviceAction(short, "pump", "P-17", "firmware/download", nil)
	check("no answer", err, context.DeadlineExceeded)
}

func TestGatewayManagesChild(t *testing.T) {
	p := startPlatform(t, func(c *Config) { c.ExtensionBundles = []string{"acme-modbus-v1"} })
	gw := mustDial(t, p, gw01, tokenAuth, gw01Token)
	gw.mustSubscribe(t, "iotdm-1/type/+/id/+/#", 1)
	gw.publish(t, "iotdevice-1/type/pump/id/P-17/mgmt/manage", 1, false,
		[]byte(`{"d":{"supports":{"acme-modbus-v1":true}},"reqId":"g1"}`))
	if r := decodeJSON[dmResponse](t, gw.nextOn(t, "iotdm-1/type/pump/id/P-17/response").Payload()); r.RC != RCOK || r.ReqID != "g1" {
		t.Errorf("gateway-form manage response %+v, want 200 g1", r)
	}
	if st, managed := p.Managed("pump", "P-17"); !managed || st.ManagedBy != gw01 {
		t.Errorf("P-17 managed %v by %q, want by %s", managed, st.ManagedBy, gw01)
	}

	done := startAction(p, "pump", "P-17", "acme-modbus-v1/rescanBus", map[string]string{"port": "rs485-1", "unitRange": "1-32"})
	req := answer(t, gw, "iotdm-1/type/pump/id/P-17/mgmt/custom/acme-modbus-v1/rescanBus",
		"iotdevice-1/type/pump/id/P-17/response", RCOK)
	wantD := map[string]any{"fields": []any{
		map[string]any{"field": "port", "value": "rs485-1"},
		map[string]any{"field": "unitRange", "value": "1-32"},
	}}
	if diff := cmp.Diff(wantD, req["d"]); diff != "" {
		t.Errorf("custom action request d (-want +got):\n%s", diff)
	}
	if r := <-done; r.err != nil || r.rc != RCOK {
		t.Errorf("DeviceAction = %d, %v; want 200", r.rc, r.err)
	}
}

func TestManagedDeviceGoesDormant(t *testing.T) {
	p, clock := startPlatformWithClock(t, nil)
	dev := mustDial(t, p, pump17, tokenAuth, pump17Token)
	dev.mustSubscribe(t, "iotdm-1/response", 1)
	manage(t, dev, `{"d":{"lifetime":3600,"supports":{"deviceActions":true}},"reqId":"m"}`, RCOK)
	if _, managed := p.Managed("pump", "P-17"); !managed {
		t.Fatal("not managed after Manage")
	}
	clock.advance(2 * time.Hour)
	if _, managed := p.Managed("pump", "P-17"); managed {
		t.Error("still managed after its lifetime")
	}
	if _, err := p.DeviceAction(context.Background(), "pump", "P-17", "device/reboot", nil); !errors.Is(err, ErrNotManaged) {
		t.Errorf("DeviceAction on a dormant device = %v, want ErrNotManaged", err)
	}
}
