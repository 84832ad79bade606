package platform

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

const maxFuzzInput = 4096

var fuzzBundles = map[string]bool{"acme-modbus-v1": true}

// encodeManage is the inverse of decodeEnvelope + decodeManage for a valid
// request.
func encodeManage(reqID string, m manageRequest) []byte {
	d := map[string]any{"lifetime": int64(m.lifetime / time.Second)}
	if m.supports != nil {
		d["supports"] = m.supports
	}
	if m.deviceInfo != nil {
		d["deviceInfo"] = m.deviceInfo
	}
	if m.metadata != nil {
		d["metadata"] = m.metadata
	}
	b, _ := json.Marshal(map[string]any{"reqId": reqID, "d": d})
	return b
}

func FuzzDecodeManage(f *testing.F) {
	f.Add(`{"d":{"lifetime":86400,"supports":{"deviceActions":true,"acme-modbus-v1":true},"deviceInfo":{"serialNumber":"1"},"metadata":{"a":[1,{"b":null}]}},"reqId":"x"}`)
	f.Add(`{"reqId":"x"}`)
	f.Add(`{"d":null}`)
	f.Add(`{"d":{"lifetime":3599}}`)
	f.Add(`{"d":{"lifetime":1e300}}`)
	f.Add(`{"d":{"supports":{"other":true}}}`)
	f.Add(`{"d":{"deviceInfo":{"model":null}}}`)
	f.Add(`[]`)
	f.Add(`null`)
	f.Add(`{"reqId":"a","reqId":1}`)
	f.Fuzz(func(t *testing.T, in string) {
		if len(in) > maxFuzzInput {
			return
		}
		env, rc, _ := decodeEnvelope([]byte(in))
		if rc != RCOK {
			if rc != RCBadRequest {
				t.Fatalf("envelope rc %d", rc)
			}
			return
		}
		m, rc, msg := decodeManage(env, fuzzBundles)
		switch rc {
		case RCBadRequest, RCForbidden:
			if msg == "" {
				t.Errorf("rc %d without a message", rc)
			}
			return
		case RCOK:
		default:
			t.Fatalf("manage rc %d", rc)
		}
		if l := m.lifetime; l < 0 || l > 0 && l < minLifetime*time.Second {
			t.Errorf("accepted lifetime %s", l)
		}
		for k := range m.supports {
			if k != "deviceActions" && k != "firmwareActions" && !fuzzBundles[k] {
				t.Errorf("accepted supports key %q", k)
			}
		}
		// Anything valid re-encodes to the same request.
		env2, rc, _ := decodeEnvelope(encodeManage(env.reqID, m))
		if rc != RCOK {
			t.Fatalf("re-encoded envelope rc %d", rc)
		}
		m2, rc, msg := decodeManage(env2, fuzzBundles)
		if rc != RCOK || env2.reqID != env.reqID {
			t.Fatalf("re-encoded request: rc %d (%s), reqId %q want %q", rc, msg, env2.reqID, env.reqID)
		}
		if diff := cmp.Diff(m, m2, cmp.AllowUnexported(manageRequest{})); diff != "" {
			t.Errorf("round trip (-first +second):\n%s", diff)
		}
	})
}

func FuzzDecodeDMRequests(f *testing.F) {
	f.Add(`{"d":{"latitude":52.37,"longitude":4.89,"measuredDateTime":"2024-05-01T10:20:00Z"},"reqId":"1"}`)
	f.Add(`{"d":{"errorCode":7}}`)
	f.Add(`{"d":{"message":"m","data":"AQID","severity":2}}`)
	f.Add(`{"d":{"fields":[{"field":"mgmt.firmware","value":{"state":1}}]}}`)
	f.Add(`{"d":{"errorCode":1e10}}`)
	f.Add(`{"d":{"fields":[{"field":"mgmt.firmware","value":{"state":0,"updateStatus":4,"version":"1.2"}}]}}`)
	f.Add(`{"d":{"fields":[{"field":"mgmt.firmware.updateStatus","value":7}]}}`)
	f.Add(`{"d":{"fields":[{"field":"location","value":{"latitude":1}},{"field":"x"}]}}`)
	f.Fuzz(func(t *testing.T, in string) {
		if len(in) > maxFuzzInput {
			return
		}
		env, rc, _ := decodeEnvelope([]byte(in))
		if rc != RCOK {
			return
		}
		if loc, rc, _ := decodeLocation(env); rc == RCOK {
			var v struct{ Latitude, Longitude *float64 }
			if err := json.Unmarshal(loc, &v); err != nil || v.Latitude == nil || v.Longitude == nil {
				t.Errorf("accepted location %s: %v", loc, err)
			}
		}
		decodeErrorCode(env)
		if l, rc, _ := decodeLog(env); rc == RCOK && (l.Severity < 0 || l.Severity > 2) {
			t.Errorf("accepted severity %d", l.Severity)
		}
		if fields, rc, _ := decodeNotify(env); rc == RCOK {
			var fw Firmware
			for _, f := range fields {
				if f.Field == "" || !json.Valid(f.Value) {
					t.Errorf("accepted field %+v", f)
				}
				if err := fw.apply(f); err != nil {
					t.Errorf("accepted notify field %+v that does not apply: %v", f, err)
				}
			}
			if fw.State < 0 || fw.State > 2 || fw.UpdateStatus < 0 || fw.UpdateStatus > 6 {
				t.Errorf("accepted firmware %+v", fw)
			}
		}
	})
}

func FuzzDecodeResponse(f *testing.F) {
	f.Add(`{"rc":202,"reqId":"x"}`)
	f.Add(`{"rc":"200"}`)
	f.Add(`{"rc":2.5e2,"reqId":"x","d":{"fields":[]}}`)
	f.Add(`{"rc":-1}`)
	f.Fuzz(func(t *testing.T, in string) {
		if len(in) > maxFuzzInput {
			return
		}
		_, resp, err := decodeResponse([]byte(in))
		if err != nil {
			return
		}
		if resp.RC < 0 || resp.RC > 999 {
			t.Errorf("accepted rc %d", resp.RC)
		}
		for _, f := range resp.Fields {
			if f.Field == "" || f.Value != nil && !json.Valid(f.Value) {
				t.Errorf("accepted field %+v", f)
			}
		}
	})
}

func FuzzNotification(f *testing.F) {
	f.Add("publish", "iot-2/type/modbus meter/id/m-07/evt/reading/fmt/json", "g:ab12cd:edge-gw:gw-01", 180, "device type is not valid")
	f.Add("subscribe", "iot-2/type/+/id/+/evt/+/fmt/+", "g:o:t:i", 276, "")
	f.Add("publish", "iot-2/evt//fmt/\xff", "g:o:t:\x00", 0, "\"quoted\" <html> \u2028")
	f.Fuzz(func(t *testing.T, request, name, client string, code int, detail string) {
		if len(name)+len(detail) > maxFuzzInput {
			return
		}
		tp, _ := parseTopic(name, strings.ContainsAny(name, "+#"))
		n := newNotification(request, name, tp, client, decision{code: code, detail: detail}, time.Now())
		b, err := json.Marshal(n)
		if err != nil {
			t.Fatal(err)
		}
		var got map[string]any
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("payload %q is not JSON: %v", b, err)
		}
		for _, k := range []string{"Request", "Time", "Topic", "Client", "RC", "Message"} {
			if _, ok := got[k]; !ok {
				t.Errorf("payload %s lacks %s", b, k)
			}
		}
		if _, err := time.Parse(timeLayout, n.Time); err != nil {
			t.Errorf("Time %q: %v", n.Time, err)
		}
		if !utf8.ValidString(request) || !utf8.ValidString(name) || !utf8.ValidString(client) || !utf8.ValidString(detail) {
			return // json.Marshal replaced the invalid bytes
		}
		var back Notification
		if err := json.Unmarshal(b, &back); err != nil || back != n {
			t.Errorf("round trip: %+v, want %+v (%v)", back, n, err)
		}
	})
}

// FuzzMatchFilter checks matchFilter against mochi's topic index, which
// routes the messages the offline queue accounts for.
func FuzzMatchFilter(f *testing.F) {
	f.Add("a/+/c", "a/b/c")
	f.Add("a/#", "a")
	f.Add("#", "x/y")
	f.Add("+/+", "a")
	f.Add("a/b/#", "a/b/c/d")
	f.Fuzz(func(t *testing.T, filter, name string) {
		if len(filter)+len(name) > 512 || strings.HasPrefix(name, "$") ||
			checkTopicSyntax(filter, true) != nil || checkTopicSyntax(name, false) != nil {
			return
		}
		idx := mqtt.NewTopicsIndex()
		idx.Subscribe("c", packets.Subscription{Filter: filter})
		_, want := idx.Subscribers(name).Subscriptions["c"]
		if got := matchFilter(filter, name); got != want {
			t.Errorf("matchFilter(%q, %q) = %v, mochi says %v", filter, name, got, want)
		}
	})
}

// FuzzReadBundles: a bundle file never panics the reader; what it accepts
// is valid, survives a JSON round trip, and every custom action of it
// checks its parameters without panicking.
func FuzzReadBundles(f *testing.F) {
	f.Add(`{"bundleId":"acme-modbus-v1","displayName":{"en_US":"A"},"actions":{"rescanBus":{"actionDisplayName":{"en_US":"R"},
		"parameters":[{"name":"port","value":"^(rs485-[0-9])$","required":true},{"name":"unitRange","value":"^[0-9]+-[0-9]+$","defaultValue":"1-247"}]}}}`)
	f.Add(`[{"bundleId":"b","displayName":{"en":"B"},"actions":{"a":{"actionDisplayName":{"en":"A"}}}}]`)
	f.Add(`{"bundleId":"b","displayName":{"en":"B"},"actions":{"a":{"actionDisplayName":{"en":"A"},"parameters":[{"name":"p","value":"(a|b)*c{2,5}"}]}}}`)
	f.Add(`[]`)
	f.Fuzz(func(t *testing.T, in string) {
		if len(in) > maxFuzzInput {
			return
		}
		bundles, err := ReadBundles(strings.NewReader(in), "fuzz")
		if err != nil {
			return
		}
		for _, b := range bundles {
			if err := b.validate(); err != nil {
				t.Fatalf("accepted invalid bundle %+v: %v", b, err)
			}
			for act := range b.Actions {
				params, err := b.customParams(act, map[string]string{"port": "rs485-1"})
				if err == nil && params == nil {
					t.Errorf("%s/%s: nil parameters without an error", b.ID, act)
				}
			}
		}
		out, _ := json.Marshal(bundles)
		again, err := ReadBundles(strings.NewReader(string(out)), "again")
		if err != nil {
			t.Fatalf("re-encoded bundles rejected: %v\n%s", err, out)
		}
		if diff := cmp.Diff(bundles, again, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("round trip (-first +second):\n%s", diff)
		}
	})
}

// FuzzDecodeAPIRequest: what the API accepts names one valid device, has a
// timeout in range and unique parameter names.
func FuzzDecodeAPIRequest(f *testing.F) {
	f.Add(`{"action":"device/reboot","devices":[{"typeId":"pump","deviceId":"P-17"}]}`)
	f.Add(`{"action":"firmware/download","parameters":[{"name":"uri","value":"http://h/f.bin"}],"devices":[{"typeId":"t","deviceId":"d"}],"timeout":30}`)
	f.Add(`{"action":"acme-modbus-v1/rescanBus","parameters":[{"name":"port","value":"rs485-1"},{"name":"port","value":"x"}],"devices":[{"typeId":"t","deviceId":"d"}]}`)
	f.Add(`{"action":"x","devices":[{"typeId":"a b","deviceId":"d"}],"timeout":-1}`)
	f.Fuzz(func(t *testing.T, in string) {
		if len(in) > maxFuzzInput {
			return
		}
		req, err := decodeAPIRequest([]byte(in))
		if err != nil {
			return
		}
		if len(req.Devices) != 1 || checkIdent(req.Devices[0].TypeID) != nil || checkIdent(req.Devices[0].DeviceID) != nil {
			t.Errorf("accepted devices %+v", req.Devices)
		}
		if req.Action == "" || req.Timeout < 0 || req.Timeout > maxAPITimeout {
			t.Errorf("accepted action %q, timeout %d", req.Action, req.Timeout)
		}
		seen := map[string]bool{}
		for _, p := range req.Parameters {
			if p.Name == "" || seen[p.Name] {
				t.Errorf("accepted parameters %+v", req.Parameters)
			}
			seen[p.Name] = true
		}
	})
}
