package platform

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"

	"fieldbridge/internal/testwait"
)

// barrier makes the DM server answer c with a fresh location response about
// the device c speaks for on prefix ("iotdevice-1" for a device,
// "iotdevice-1/type/T/id/D" for a gateway) and fails unless that response
// is c's next message: delivery to one client is in order, so nothing the
// platform published earlier reached c unnoticed.
func barrier(t *testing.T, c *testClient, devicePrefix, dmPrefix, reqID string) {
	t.Helper()
	c.publish(t, devicePrefix+"/device/update/location", 1, false,
		[]byte(`{"d":{"latitude":1,"longitude":2},"reqId":"`+reqID+`"}`))
	m := c.nextOn(t, dmPrefix+"/response")
	if r := decodeJSON[dmResponse](t, m.Payload()); r.ReqID != reqID {
		t.Fatalf("%s: response %+v, want the barrier %s", c.id, r, reqID)
	}
}

// TestDMTrafficReachesOnlyTheManager: rule R3. Two gateways and a directly
// connected device all subscribe to every DM topic they may; each sees only
// the DM traffic addressed to it, and a gateway can neither answer nor
// manage the other's device.
func TestDMTrafficReachesOnlyTheManager(t *testing.T) {
	p := startPlatform(t, withGateway2)
	gw1 := mustDial(t, p, gw01, tokenAuth, gw01Token)
	gw2 := mustDial(t, p, gw02, tokenAuth, gw02Token)
	dev := mustDial(t, p, pump17, tokenAuth, pump17Token) // P-17 also connects itself
	gw1.mustSubscribe(t, "iotdm-1/#", 1)
	gw2.mustSubscribe(t, "iotdm-1/type/+/id/+/#", 1)
	gw2.mustSubscribe(t, "iotdm-1/type/pump/id/P-17/response", 1) // concrete, for the other's device
	dev.mustSubscribe(t, "iotdm-1/#", 1)
	all := mustSubscribePlatform(t, p, "iotdm-1/#") // the application view sees everything

	// gw-01 manages P-17, gw-02 manages P-18 and itself.
	gw1.publish(t, "iotdevice-1/type/pump/id/P-17/mgmt/manage", 1, false,
		[]byte(`{"d":{"supports":{"deviceActions":true}},"reqId":"m17"}`))
	if r := decodeJSON[dmResponse](t, gw1.nextOn(t, "iotdm-1/type/pump/id/P-17/response").Payload()); r.RC != RCOK || r.ReqID != "m17" {
		t.Fatalf("gw-01 manage P-17: %+v", r)
	}
	gw2.publish(t, "iotdevice-1/type/pump/id/P-18/mgmt/manage", 1, false,
		[]byte(`{"d":{"supports":{"deviceActions":true}},"reqId":"m18"}`))
	if r := decodeJSON[dmResponse](t, gw2.nextOn(t, "iotdm-1/type/pump/id/P-18/response").Payload()); r.RC != RCOK || r.ReqID != "m18" {
		t.Fatalf("gw-02 manage P-18: %+v", r)
	}
	gw2.publish(t, "iotdevice-1/type/edge-gw/id/gw-02/mgmt/manage", 1, false,
		[]byte(`{"d":{"supports":{"deviceActions":true}},"reqId":"mgw"}`))
	gw2.nextOn(t, "iotdm-1/type/edge-gw/id/gw-02/response")

	// A reboot of P-17 reaches gw-01 only. gw-02 tries to answer it with
	// the right reqId (read from the application view): dropped.
	done := startAction(p, "pump", "P-17", "device/reboot", nil)
	req := gw1.nextOn(t, "iotdm-1/type/pump/id/P-17/mgmt/initiate/device/reboot")
	reqID := decodeJSON[map[string]any](t, req.Payload())["reqId"].(string)
	gw2.publish(t, "iotdevice-1/type/pump/id/P-17/response", 1, false, []byte(`{"rc":500,"reqId":"`+reqID+`"}`))
	waitViolation(t, p, gw02, "R3", ActionDropped)
	gw1.publish(t, "iotdevice-1/type/pump/id/P-17/response", 1, false, []byte(`{"rc":202,"reqId":"`+reqID+`"}`))
	if r := <-done; r.err != nil || r.rc != RCAccepted {
		t.Errorf("reboot of P-17 = %d, %v; want gw-01's 202", r.rc, r.err)
	}

	// gw-02 may not manage P-17 or report for it while gw-01 manages it.
	for _, rest := range []string{"mgmt/manage", "device/update/location"} {
		body := `{"reqId":"steal"}`
		if rest != "mgmt/manage" {
			body = `{"d":{"latitude":1,"longitude":2},"reqId":"steal"}`
		}
		gw2.publish(t, "iotdevice-1/type/pump/id/P-17/"+rest, 1, false, []byte(body))
		if r := decodeJSON[dmResponse](t, gw2.nextOn(t, "iotdm-1/type/pump/id/P-17/response").Payload()); r.RC != RCConflict {
			t.Errorf("gw-02 %s for gw-01's P-17: rc %d, want 409", rest, r.RC)
		}
	}
	if st, _ := p.Managed("pump", "P-17"); st.ManagedBy != gw01 {
		t.Errorf("P-17 managed by %q, want %s", st.ManagedBy, gw01)
	}

	// A reboot of P-18 reaches gw-02 only.
	done = startAction(p, "pump", "P-18", "device/reboot", nil)
	answer(t, gw2, "iotdm-1/type/pump/id/P-18/mgmt/initiate/device/reboot", "iotdevice-1/type/pump/id/P-18/response", RCAccepted)
	if r := <-done; r.err != nil || r.rc != RCAccepted {
		t.Errorf("reboot of P-18 = %d, %v", r.rc, r.err)
	}

	// Nothing else reached anyone: each client's next message is its own
	// barrier response. The device's own location update is answered to
	// the device, not to its gateway.
	barrier(t, gw1, "iotdevice-1/type/pump/id/P-17", "iotdm-1/type/pump/id/P-17", "b1")
	barrier(t, gw2, "iotdevice-1/type/pump/id/P-18", "iotdm-1/type/pump/id/P-18", "b2")
	barrier(t, dev, "iotdevice-1", "iotdm-1", "b3")

	// The application view saw every DM message, in order.
	var got []string
	for len(all.C) > 0 {
		got = append(got, recv(t, all).Topic)
	}
	want := []string{
		"iotdm-1/type/pump/id/P-17/response", "iotdm-1/type/pump/id/P-18/response", "iotdm-1/type/edge-gw/id/gw-02/response",
		"iotdm-1/type/pump/id/P-17/mgmt/initiate/device/reboot",
		"iotdm-1/type/pump/id/P-17/response", "iotdm-1/type/pump/id/P-17/response",
		"iotdm-1/type/pump/id/P-18/mgmt/initiate/device/reboot",
		"iotdm-1/type/pump/id/P-17/response", "iotdm-1/type/pump/id/P-18/response", "iotdm-1/type/pump/id/P-17/response",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("application view of iotdm-1 (-want +got):\n%s", diff)
	}
}

// TestDMRequestQueuedOnlyForTheManager: rule R3 for offline durable
// sessions: a request for a gateway's device is queued for that gateway
// only, not for another gateway subscribed to iotdm-1/#.
func TestDMRequestQueuedOnlyForTheManager(t *testing.T) {
	p := startPlatform(t, withGateway2)
	gw1 := mustDialWith(t, p, gw01, tokenAuth, gw01Token, durableSession)
	gw1.mustSubscribe(t, "iotdm-1/#", 1)
	gw2 := mustDialWith(t, p, gw02, tokenAuth, gw02Token, durableSession)
	gw2.mustSubscribe(t, "iotdm-1/#", 1)
	gw1.publish(t, "iotdevice-1/type/pump/id/P-17/mgmt/manage", 1, false,
		[]byte(`{"d":{"supports":{"deviceActions":true}},"reqId":"m"}`))
	gw1.nextOn(t, "iotdm-1/type/pump/id/P-17/response")
	gw2.Disconnect(100)
	goOffline(t, p, gw1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _, _ = p.DeviceAction(ctx, "pump", "P-17", "device/reboot", nil) }()
	testwait.For(t, waitDeadline, "the request queued", func() bool { return p.Stats().Queued > 0 })
	if n := p.Stats().Queued; n != 1 {
		t.Errorf("Stats().Queued = %d, want 1: only for gw-01", n)
	}

	gw2 = mustDialWith(t, p, gw02, tokenAuth, gw02Token, durableSession)
	gw1 = mustDialWith(t, p, gw01, tokenAuth, gw01Token, durableSession)
	m := gw1.nextOn(t, "iotdm-1/type/pump/id/P-17/mgmt/initiate/device/reboot")
	var req struct{ ReqID string }
	if err := json.Unmarshal(m.Payload(), &req); err != nil || req.ReqID == "" {
		t.Errorf("queued request %s", m.Payload())
	}
	barrier(t, gw2, "iotdevice-1/type/pump/id/P-18", "iotdm-1/type/pump/id/P-18", "b")
}

// TestGatewayTakesOverASelfManagedDevice: R3 refuses a gateway only what
// another gateway manages; a device that managed itself can move behind a
// gateway, and the DM traffic follows the latest Manage.
func TestGatewayTakesOverASelfManagedDevice(t *testing.T) {
	p := startPlatform(t, nil)
	dev := mustDial(t, p, pump17, tokenAuth, pump17Token)
	dev.mustSubscribe(t, "iotdm-1/#", 1)
	manage(t, dev, `{"d":{"supports":{"deviceActions":true}},"reqId":"m"}`, RCOK)
	gw := mustDial(t, p, gw01, tokenAuth, gw01Token)
	gw.mustSubscribe(t, "iotdm-1/#", 1)
	gw.publish(t, "iotdevice-1/type/pump/id/P-17/mgmt/manage", 1, false, []byte(`{"d":{"supports":{"deviceActions":true}},"reqId":"g"}`))
	if r := decodeJSON[dmResponse](t, gw.nextOn(t, "iotdm-1/type/pump/id/P-17/response").Payload()); r.RC != RCOK {
		t.Fatalf("gateway takes over: rc %d (%s)", r.RC, r.Message)
	}
	done := startAction(p, "pump", "P-17", "device/reboot", nil)
	answer(t, gw, "iotdm-1/type/pump/id/P-17/mgmt/initiate/device/reboot", "iotdevice-1/type/pump/id/P-17/response", RCAccepted)
	if r := <-done; r.rc != RCAccepted {
		t.Errorf("reboot after the takeover: %d %v", r.rc, r.err)
	}
	barrier(t, dev, "iotdevice-1", "iotdm-1", "b") // the device saw none of it
}
