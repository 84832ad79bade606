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
		Managed: true, ManagedBy: pump17, Lifetime: 24 * time.Hour, Manages: 4, // every 200 of the table, and this one
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
		Attributes: map[string]json.RawMessage{"mgmt.firmware": json.RawMessage(`{"state":1}`)},
		Firmware:   Firmware{State: FirmwareDownloading},
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
		{"notify", `{"d":{"fields":[]},"reqId":"b7"}`},
		{"notify", `{"d":{"fields":[{"field":"mgmt.firmware"}]},"reqId":"b8"}`},
		{"notify", `{"d":{"fields":[{"field":"mgmt.firmware","value":{"state":3}}]},"reqId":"b9"}`},
		{"notify", `{"d":{"fields":[{"field":"mgmt.firmware","value":{"colour":"red"}}]},"reqId":"b10"}`},
		{"notify", `{"d":{"fields":[{"field":"mgmt.firmware.updateStatus","value":"4"}]},"reqId":"b11"}`},
		{"notify", `{"d":{"field":"mgmt.firmware","value":{"state":1}},"reqId":"b12"}`}, // the Python SDK's form, not the docs'
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

	if _, ok := findViolation(p, pump17, "D2"); ok {
		t.Error("documented answers recorded as D2")
	}
	// An undocumented rc is returned and recorded.
	done0 := startAction(p, "pump", "P-17", "device/reboot", nil)
	answer(t, dev, "iotdm-1/mgmt/initiate/device/reboot", "iotdevice-1/response", RCOK)
	if r := <-done0; r.rc != RCOK {
		t.Errorf("reboot answered 200: DeviceAction = %d, %v", r.rc, r.err)
	}
	if v, ok := findViolation(p, pump17, "D2"); !ok || v.Action != ActionRecorded {
		t.Errorf("reboot answered 200: violation %+v, %v; want D2 recorded", v, ok)
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
	check("unknown bundle", err, ErrInvalidAction)
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
	manage(t, dev, `{"d":{"lifetime":3600,"supports":{"deviceActions":true},"deviceInfo":{"model":"X"}},"reqId":"m"}`, RCOK)
	if _, managed := p.Managed("pump", "P-17"); !managed {
		t.Fatal("not managed after Manage")
	}
	clock.advance(3599 * time.Second)
	if _, managed := p.Managed("pump", "P-17"); !managed {
		t.Fatal("dormant before its lifetime passed")
	}
	clock.advance(2 * time.Second)
	st, managed := p.Managed("pump", "P-17")
	if managed || !st.Dormant || st.Supports != nil || st.DeviceInfo["model"] != "X" {
		t.Errorf("after its lifetime: managed %v, dormant %v, supports %v, deviceInfo %v; want dormant, mgmt.* gone, deviceInfo kept",
			managed, st.Dormant, st.Supports, st.DeviceInfo)
	}
	if _, err := p.DeviceAction(context.Background(), "pump", "P-17", "device/reboot", nil); !errors.Is(err, ErrNotManaged) {
		t.Errorf("DeviceAction on a dormant device = %v, want ErrNotManaged", err)
	}
	// A new Manage ends dormancy.
	manage(t, dev, `{"d":{"lifetime":3600},"reqId":"m2"}`, RCOK)
	if st, managed := p.Managed("pump", "P-17"); !managed || st.Dormant || st.Manages != 2 {
		t.Errorf("after Manage: managed %v, dormant %v, manages %d", managed, st.Dormant, st.Manages)
	}
}

// TestRebootCompletesWithManage: rule D6.
func TestRebootCompletesWithManage(t *testing.T) {
	p := startPlatform(t, nil)
	dev := mustDial(t, p, pump17, tokenAuth, pump17Token)
	dev.mustSubscribe(t, "iotdm-1/#", 1)
	manage(t, dev, `{"d":{"supports":{"deviceActions":true}},"reqId":"m"}`, RCOK)
	done := startAction(p, "pump", "P-17", "device/factoryReset", nil)
	answer(t, dev, "iotdm-1/mgmt/initiate/device/factory_reset", "iotdevice-1/response", RCAccepted)
	if r := <-done; r.rc != RCAccepted {
		t.Fatalf("factory reset: %d %v", r.rc, r.err)
	}
	if st, _ := p.Managed("pump", "P-17"); st.PendingAction != "device/factoryReset" {
		t.Errorf("PendingAction %q after 202, want device/factoryReset", st.PendingAction)
	}
	manage(t, dev, `{"d":{"supports":{"deviceActions":true}},"reqId":"m2"}`, RCOK)
	if st, _ := p.Managed("pump", "P-17"); st.PendingAction != "" || st.Manages != 2 {
		t.Errorf("after Manage: PendingAction %q, Manages %d; want none, 2", st.PendingAction, st.Manages)
	}

	// A device that is back at once: its 202 and its Manage follow each
	// other before the caller of DeviceAction runs again.
	done = startAction(p, "pump", "P-17", "device/reboot", nil)
	req := decodeJSON[map[string]any](t, dev.nextOn(t, "iotdm-1/mgmt/initiate/device/reboot").Payload())
	dev.publish(t, "iotdevice-1/response", 1, false, []byte(`{"rc":202,"reqId":"`+req["reqId"].(string)+`"}`))
	manage(t, dev, `{"d":{"supports":{"deviceActions":true}},"reqId":"m3"}`, RCOK)
	<-done
	if st, _ := p.Managed("pump", "P-17"); st.PendingAction != "" || st.Manages != 3 {
		t.Errorf("after a quick reboot: PendingAction %q, Manages %d; want none, 3", st.PendingAction, st.Manages)
	}
}

// reply reads one DM request of c on topic and answers on respTopic with
// resp plus the request's reqId; it returns the request.
func reply(t *testing.T, c *testClient, topic, respTopic string, resp map[string]any) map[string]any {
	t.Helper()
	req := decodeJSON[map[string]any](t, c.nextOn(t, topic).Payload())
	resp["reqId"] = req["reqId"]
	b, _ := json.Marshal(resp)
	c.publish(t, respTopic, 1, false, b)
	return req
}

// notifyFirmware publishes a notify of mgmt.firmware with value.
func notifyFirmware(t *testing.T, c *testClient, topic, value string) {
	t.Helper()
	c.publish(t, topic, 1, false, []byte(`{"d":{"fields":[{"field":"mgmt.firmware","value":`+value+`}]}}`))
}

func TestObserveNotifyCancel(t *testing.T) {
	p := startPlatform(t, nil)
	dev := mustDial(t, p, pump17, tokenAuth, pump17Token)
	dev.mustSubscribe(t, "iotdm-1/#", 1)
	manage(t, dev, `{"reqId":"m"}`, RCOK)
	ctx, cancel := context.WithTimeout(context.Background(), waitDeadline)
	defer cancel()

	call := func(f func() (Response, error)) <-chan callResult {
		ch := make(chan callResult, 1)
		go func() { r, err := f(); ch <- callResult{r, err} }()
		return ch
	}
	done := call(func() (Response, error) { return p.Observe(ctx, "pump", "P-17", "location") })
	reply(t, dev, "iotdm-1/observe", "iotdevice-1/response", map[string]any{"rc": 200,
		"d": map[string]any{"fields": []any{map[string]any{"field": "location", "value": map[string]any{"latitude": 1, "longitude": 2}}}}})
	r := <-done
	resp, err := r.resp, r.err
	if err != nil || resp.RC != RCOK || len(resp.Fields) != 1 {
		t.Fatalf("Observe = %+v, %v", resp, err)
	}
	st, _ := p.Managed("pump", "P-17")
	if !st.Observed["location"] || string(st.Attributes["location"]) != `{"latitude":1,"longitude":2}` {
		t.Errorf("after observe: observed %v, attributes %s", st.Observed, st.Attributes)
	}
	// A notify of an observed attribute is fine; a notify of another one is recorded.
	if r := dmRequest(t, dev, "notify", `{"d":{"fields":[{"field":"location","value":{"latitude":3,"longitude":4}}]},"reqId":"n1"}`); r.RC != RCOK {
		t.Errorf("notify: rc %d", r.RC)
	}
	if _, ok := findViolation(p, pump17, "N1"); ok {
		t.Error("notify of an observed attribute recorded as N1")
	}
	if r := dmRequest(t, dev, "notify", `{"d":{"fields":[{"field":"metadata","value":{}}]},"reqId":"n2"}`); r.RC != RCOK {
		t.Errorf("notify: rc %d", r.RC)
	}
	if v, ok := findViolation(p, pump17, "N1"); !ok || v.Action != ActionRecorded {
		t.Errorf("notify of an unobserved attribute: violation %+v, %v", v, ok)
	}

	done = call(func() (Response, error) { return p.Cancel(ctx, "pump", "P-17", "location") })
	reply(t, dev, "iotdm-1/cancel", "iotdevice-1/response", map[string]any{"rc": 200})
	if r := <-done; r.err != nil || r.resp.RC != RCOK {
		t.Fatalf("Cancel = %+v, %v", r.resp, r.err)
	}
	if st, _ := p.Managed("pump", "P-17"); st.Observed["location"] || string(st.Attributes["location"]) != `{"latitude":3,"longitude":4}` {
		t.Errorf("after cancel: observed %v, attributes %s", st.Observed, st.Attributes)
	}

	// device/update: 404 names the unknown attribute.
	done = call(func() (Response, error) {
		return p.UpdateAttributes(ctx, "pump", "P-17", []Field{{Field: "colour", Value: json.RawMessage(`"red"`)}})
	})
	req := reply(t, dev, "iotdm-1/device/update", "iotdevice-1/response", map[string]any{"rc": 404,
		"d": map[string]any{"fields": []any{map[string]any{"field": "colour"}}}})
	if _, ok := req["reqId"].(string); !ok {
		t.Errorf("device/update without a reqId: %v", req)
	}
	r = <-done
	resp, err = r.resp, r.err
	if err != nil || resp.RC != RCNotFound || len(resp.Fields) != 1 || resp.Fields[0].Field != "colour" {
		t.Errorf("UpdateAttributes = %+v, %v; want 404 naming colour", resp, err)
	}
	// Without a reqId: nothing to answer.
	if err := p.PushAttributes("pump", "P-17", []Field{{Field: "metadata", Value: json.RawMessage(`{"site":"x"}`)}}); err != nil {
		t.Fatal(err)
	}
	if m := decodeJSON[map[string]any](t, dev.nextOn(t, "iotdm-1/device/update").Payload()); m["reqId"] != nil {
		t.Errorf("pushed update has a reqId: %v", m)
	}
	for _, bad := range [][]Field{nil, {{Field: "a b", Value: json.RawMessage(`1`)}}, {{Field: "x", Value: json.RawMessage(`{`)}},
		{{Field: "mgmt.firmware", Value: json.RawMessage(`{"state":9}`)}}} {
		if _, err := p.UpdateAttributes(ctx, "pump", "P-17", bad); !errors.Is(err, ErrInvalidAction) {
			t.Errorf("UpdateAttributes(%v) = %v, want ErrInvalidAction", bad, err)
		}
	}
}

type callResult struct {
	resp Response
	err  error
}

// firmwareDevice plays a device's side of one firmware action, scripted:
// the answers to update, observe, initiate and cancel (0: expect no such
// request) and the notify values sent after the 202.
type firmwareDevice struct {
	update, observe, initiate, cancel int
	notifies                          []string
}

func (d firmwareDevice) run(t *testing.T, c *testClient, dm, dev, initiate string) {
	if d.update != 0 {
		req := reply(t, c, dm+"/device/update", dev+"/response", map[string]any{"rc": d.update})
		want := map[string]any{"fields": []any{map[string]any{"field": "mgmt.firmware", "value": map[string]any{
			"uri": "http://127.0.0.1:9/fw.bin", "verifier": "abc", "name": "fw", "version": "2.0",
			"state": float64(0), "updateStatus": float64(0), "updatedDateTime": ""}}}}
		if diff := cmp.Diff(want, req["d"]); diff != "" {
			t.Errorf("staging update d (-want +got):\n%s", diff)
		}
	}
	if d.observe == 0 {
		return
	}
	req := reply(t, c, dm+"/observe", dev+"/response", map[string]any{"rc": d.observe,
		"d": map[string]any{"fields": []any{map[string]any{"field": "mgmt.firmware", "value": map[string]any{"state": 0, "updateStatus": 0}}}}})
	if diff := cmp.Diff(map[string]any{"fields": []any{map[string]any{"field": "mgmt.firmware"}}}, req["d"]); diff != "" {
		t.Errorf("observe d (-want +got):\n%s", diff)
	}
	if d.observe != RCOK {
		return
	}
	reply(t, c, dm+"/mgmt/initiate/firmware/"+initiate, dev+"/response", map[string]any{"rc": d.initiate, "message": "m"})
	for _, v := range d.notifies {
		notifyFirmware(t, c, dev+"/notify", v)
	}
	reply(t, c, dm+"/cancel", dev+"/response", map[string]any{"rc": d.cancel})
}

func TestFirmwareActions(t *testing.T) {
	spec := FirmwareSpec{URI: "http://127.0.0.1:9/fw.bin", Verifier: "abc", Name: "fw", Version: "2.0"}
	tests := []struct {
		name    string
		gateway bool
		action  string
		spec    FirmwareSpec
		device  firmwareDevice
		want    FirmwareResult
	}{
		{"download", false, "download", spec,
			firmwareDevice{204, 200, 202, 200, []string{`{"state":1}`, `{"state":2}`}},
			FirmwareResult{UpdateRC: 204, ObserveRC: 200, InitiateRC: 202, InitiateMessage: "m", CancelRC: 200, Succeeded: true, Message: "downloaded",
				Transitions: []FirmwareStatus{{1, 0}, {2, 0}}}},
		{"download via gateway", true, "download", spec,
			firmwareDevice{204, 200, 202, 200, []string{`{"state":1}`, `{"state":2}`}},
			FirmwareResult{UpdateRC: 204, ObserveRC: 200, InitiateRC: 202, InitiateMessage: "m", CancelRC: 200, Succeeded: true, Message: "downloaded",
				Transitions: []FirmwareStatus{{1, 0}, {2, 0}}}},
		{"bad checksum", false, "download", spec,
			firmwareDevice{204, 200, 202, 200, []string{`{"state":1}`, `{"state":0,"updateStatus":4}`}},
			FirmwareResult{UpdateRC: 204, ObserveRC: 200, InitiateRC: 202, InitiateMessage: "m", CancelRC: 200,
				Message:     "download failed: updateStatus 4 verification failed",
				Transitions: []FirmwareStatus{{1, 0}, {0, 4}}}},
		{"same firmware", false, "download", spec, firmwareDevice{update: 400},
			FirmwareResult{UpdateRC: 400, Message: "device refused the staged firmware: rc 400 "}},
		{"download refused", false, "download", FirmwareSpec{},
			firmwareDevice{0, 200, 400, 200, nil},
			FirmwareResult{ObserveRC: 200, InitiateRC: 400, InitiateMessage: "m", CancelRC: 200,
				Message: "device did not start firmware/download: rc 400 m"}},
		{"update", true, "update", FirmwareSpec{},
			firmwareDevice{0, 200, 202, 200, []string{`{"updateStatus":1}`, `{"state":0,"updateStatus":0}`}},
			FirmwareResult{ObserveRC: 200, InitiateRC: 202, InitiateMessage: "m", CancelRC: 200, Succeeded: true, Message: "updated",
				Transitions: []FirmwareStatus{{0, 1}, {0, 0}}}},
		{"update with a stray state notify", false, "update", FirmwareSpec{},
			firmwareDevice{0, 200, 202, 200, []string{`{"state":0}`, `{"updateStatus":1}`, `{"state":0,"updateStatus":0}`}},
			FirmwareResult{ObserveRC: 200, InitiateRC: 202, InitiateMessage: "m", CancelRC: 200, Succeeded: true, Message: "updated",
				Transitions: []FirmwareStatus{{0, 0}, {0, 1}, {0, 0}}}},
		{"download with a stray updateStatus notify", false, "download", FirmwareSpec{},
			firmwareDevice{0, 200, 202, 200, []string{`{"updateStatus":0}`, `{"state":1}`, `{"state":2}`}},
			FirmwareResult{ObserveRC: 200, InitiateRC: 202, InitiateMessage: "m", CancelRC: 200, Succeeded: true, Message: "downloaded",
				Transitions: []FirmwareStatus{{0, 0}, {1, 0}, {2, 0}}}},
		{"unsupported image", false, "update", FirmwareSpec{},
			firmwareDevice{0, 200, 202, 200, []string{`{"updateStatus":1}`, `{"updateStatus":5}`}},
			FirmwareResult{ObserveRC: 200, InitiateRC: 202, InitiateMessage: "m", CancelRC: 200, Message: "update failed: updateStatus 5 unsupported image",
				Transitions: []FirmwareStatus{{0, 1}, {0, 5}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := startPlatform(t, nil)
			c, dm, dev := mustDial(t, p, pump17, tokenAuth, pump17Token), "iotdm-1", "iotdevice-1"
			if tt.gateway {
				c, dm, dev = mustDial(t, p, gw01, tokenAuth, gw01Token), "iotdm-1/type/pump/id/P-17", "iotdevice-1/type/pump/id/P-17"
			}
			c.mustSubscribe(t, "iotdm-1/#", 1)
			c.publish(t, dev+"/mgmt/manage", 1, false, []byte(`{"d":{"supports":{"firmwareActions":true}},"reqId":"m"}`))
			c.nextOn(t, dm+"/response")

			type result struct {
				r   FirmwareResult
				err error
			}
			done := make(chan result, 1)
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), waitDeadline)
				defer cancel()
				var r result
				if tt.action == "download" {
					r.r, r.err = p.FirmwareDownload(ctx, "pump", "P-17", tt.spec)
				} else {
					r.r, r.err = p.FirmwareUpdate(ctx, "pump", "P-17", tt.spec)
				}
				done <- r
			}()
			tt.device.run(t, c, dm, dev, tt.action)
			r := <-done
			tt.want.Action = "firmware/" + tt.action
			if diff := cmp.Diff(tt.want, r.r); diff != "" || r.err != nil {
				t.Errorf("%s: error %v, result (-want +got):\n%s", tt.action, r.err, diff)
			}
			st, _ := p.Managed("pump", "P-17")
			if st.Observed["mgmt.firmware"] {
				t.Error("mgmt.firmware still observed after the action")
			}
			if tt.spec != (FirmwareSpec{}) && tt.want.UpdateRC == RCChanged && st.Firmware.URI != tt.spec.URI {
				t.Errorf("staged firmware %+v, want the spec's", st.Firmware)
			}
			if _, ok := findViolation(p, c.id, "N1"); ok {
				t.Error("a firmware notify counted as unobserved")
			}
		})
	}
}

func TestFirmwareActionErrors(t *testing.T) {
	p := startPlatform(t, nil)
	dev := mustDial(t, p, pump17, tokenAuth, pump17Token)
	dev.mustSubscribe(t, "iotdm-1/#", 1)
	ctx := context.Background()
	if _, err := p.FirmwareDownload(ctx, "pump", "P-17", FirmwareSpec{}); !errors.Is(err, ErrNotManaged) {
		t.Errorf("before Manage: %v, want ErrNotManaged", err)
	}
	manage(t, dev, `{"d":{"supports":{"deviceActions":true}},"reqId":"m"}`, RCOK)
	if _, err := p.FirmwareUpdate(ctx, "pump", "P-17", FirmwareSpec{}); !errors.Is(err, ErrUnsupportedAction) {
		t.Errorf("without firmwareActions: %v, want ErrUnsupportedAction", err)
	}
	manage(t, dev, `{"d":{"supports":{"firmwareActions":true}},"reqId":"m2"}`, RCOK)
	first, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { _, err := p.FirmwareDownload(first, "pump", "P-17", FirmwareSpec{}); done <- err }()
	dev.nextOn(t, "iotdm-1/observe") // the first action is running
	if _, err := p.FirmwareDownload(ctx, "pump", "P-17", FirmwareSpec{}); !errors.Is(err, ErrBusy) {
		t.Errorf("second action: %v, want ErrBusy", err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled action: %v", err)
	}
}
