package dm_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"fieldbridge/dm"
)

type commandLog struct{ got []dm.Command }

func (l *commandLog) HandleCommand(_ context.Context, c dm.Command) { l.got = append(l.got, c) }

type requestLog struct{ got []string }

func (l *requestLog) HandleRequest(_ context.Context, typ, id, rest string, payload []byte) {
	l.got = append(l.got, typ+"|"+id+"|"+rest+"|"+string(payload))
}

// TestMuxRoutes: commands and DM requests in device and gateway form go to
// their handlers with the target's identity; other topics are refused.
func TestMuxRoutes(t *testing.T) {
	cmds, reqs := &commandLog{}, &requestLog{}
	mux, err := dm.NewMux(dm.MuxConfig{SelfType: "edge-gw", SelfID: "gw1", Commands: cmds, Requests: reqs}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, topic := range []string{
		"iot-2/cmd/reset/fmt/json",
		"iot-2/type/pump/id/p1/cmd/set_speed/fmt/json",
		"iot-2/type/edge-gw/id/gw1/cmd/ping/fmt/text",
		"iotdm-1/mgmt/initiate/device/reboot",
		"iotdm-1/type/pump/id/p1/device/update",
		"iotdm-1/response",
	} {
		if err := mux.HandleMessage(ctx, topic, []byte("x")); err != nil {
			t.Errorf("HandleMessage(%s): %v", topic, err)
		}
	}
	wantCmds := []dm.Command{
		{DeviceType: "edge-gw", DeviceID: "gw1", Name: "reset", Format: "json", Payload: []byte("x")},
		{DeviceType: "pump", DeviceID: "p1", Name: "set_speed", Format: "json", Payload: []byte("x")},
		{DeviceType: "edge-gw", DeviceID: "gw1", Name: "ping", Format: "text", Payload: []byte("x")},
	}
	if diff := cmp.Diff(wantCmds, cmds.got); diff != "" {
		t.Errorf("commands (-want +got):\n%s", diff)
	}
	wantReqs := []string{"edge-gw|gw1|mgmt/initiate/device/reboot|x", "pump|p1|device/update|x", "edge-gw|gw1|response|x"}
	if diff := cmp.Diff(wantReqs, reqs.got); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
	for _, topic := range []string{"iot-2/evt/x/fmt/json", "iot-2/cmd/x", "iot-2/type/a/id/b/cmd/c/fmt", "iotdm-1", "other"} {
		if err := mux.HandleMessage(ctx, topic, nil); err == nil {
			t.Errorf("HandleMessage(%s) routed a topic it should refuse", topic)
		}
	}
	if len(cmds.got) != 3 || len(reqs.got) != 3 {
		t.Errorf("refused topics reached a handler")
	}

	// Oversize DM requests are dropped; no RequestHandler means ignored.
	mux.HandleMessage(ctx, "iotdm-1/response", make([]byte, dm.MaxInbound+1))
	if len(reqs.got) != 3 {
		t.Errorf("an oversize request reached the handler")
	}
	bare, _ := dm.NewMux(dm.MuxConfig{SelfType: "t", SelfID: "d", Commands: cmds}, quiet())
	if err := bare.HandleMessage(ctx, "iotdm-1/response", nil); err != nil {
		t.Errorf("no RequestHandler: %v", err)
	}
}

// TestResultPayload: the event's JSON, and a result too large for the
// platform loses its values, not its answer.
func TestResultPayload(t *testing.T) {
	at := time.Date(2026, 12, 1, 10, 0, 0, 120e6, time.UTC)
	r := dm.Result{Command: "c", ReqID: "r", Error: "bad", Time: at}
	p, err := r.Payload(3)
	if want := `{"d":{"command":"c","reqId":"r","ok":false,"error":"bad"},"ts":"2026-12-01T10:00:00.120Z","seq":3}`; err != nil || string(p) != want {
		t.Errorf("Payload = %s, %v; want %s", p, err, want)
	}
	huge := dm.Result{Command: "c", OK: true, Time: at, Written: []dm.NamedValue{{Name: "s", Value: strings.Repeat("x", 200000)}}}
	p, err = huge.Payload(4)
	var ev struct{ D map[string]any }
	if err != nil || len(p) > 131072 || json.Unmarshal(p, &ev) != nil || ev.D["written"] != nil || !strings.Contains(ev.D["error"].(string), "left out") {
		t.Errorf("huge result: %d bytes, %v: %.200s", len(p), err, p)
	}
}

// FuzzReqID: the reqId extraction reads outside bytes; it never panics and
// a string reqId in a valid object is found.
func FuzzReqID(f *testing.F) {
	f.Add([]byte(`{"d":{"value":1},"reqId":"abc"}`))
	f.Add([]byte(`{"reqId":17}`))
	f.Add([]byte(`{"reqId":{"x":1}}`))
	f.Add([]byte(`not json`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		id := dm.ReqID(payload)
		var env map[string]any
		if json.Unmarshal(payload, &env) != nil {
			if id != "" {
				t.Fatalf("ReqID of invalid JSON %q = %q", payload, id)
			}
			return
		}
		if s, ok := env["reqId"].(string); ok && s != id {
			t.Fatalf("ReqID = %q, want %q", id, s)
		}
	})
}
