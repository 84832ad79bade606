package platform

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// postAPI posts body to the API with the test key (or key:token) and
// returns the status and body.
func postAPI(t *testing.T, url, key, token, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url+APIPath, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(key, token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func TestAPIErrors(t *testing.T) {
	p := startPlatform(t, nil)
	srv := httptest.NewServer(p.APIHandler())
	defer srv.Close()
	dev := mustDial(t, p, pump17, tokenAuth, pump17Token)
	dev.mustSubscribe(t, "iotdm-1/#", 1)
	manage(t, dev, `{"d":{"supports":{"deviceActions":true}},"reqId":"m"}`, RCOK)

	reboot := func(id string) string {
		return `{"action":"device/reboot","devices":[{"typeId":"pump","deviceId":"` + id + `"}],"timeout":1}`
	}
	for _, tt := range []struct {
		name, key, token, body string
		status                 int
		message                string
	}{
		{"wrong token", testKey.Key, "nope", reboot("P-17"), 401, "api key"},
		{"not json", testKey.Key, testKey.Token, `{`, 400, "not an API request"},
		{"unknown member", testKey.Key, testKey.Token, `{"action":"device/reboot","devices":[],"x":1}`, 400, "unknown field"},
		{"two devices", testKey.Key, testKey.Token, `{"action":"device/reboot","devices":[{"typeId":"pump","deviceId":"P-17"},{"typeId":"pump","deviceId":"P-18"}]}`, 400, "exactly one device"},
		{"unknown action", testKey.Key, testKey.Token, strings.Replace(reboot("P-17"), "device/reboot", "device/explode", 1), 400, "unknown built-in action"},
		{"bad update value", testKey.Key, testKey.Token, `{"action":"update","parameters":[{"name":"metadata","value":"{"}],"devices":[{"typeId":"pump","deviceId":"P-17"}]}`, 400, "not JSON"},
		{"unknown device", testKey.Key, testKey.Token, reboot("P-99"), 404, "unknown device"},
		{"not managed", testKey.Key, testKey.Token, reboot("P-18"), 409, "not managed"},
		{"no answer", testKey.Key, testKey.Token, reboot("P-17"), 504, "deadline"},
	} {
		status, body := postAPI(t, srv.URL, tt.key, tt.token, tt.body)
		var e APIError
		if status != tt.status || json.Unmarshal(body, &e) != nil || !strings.Contains(e.Message, tt.message) {
			t.Errorf("%s: %d %s, want %d with %q", tt.name, status, body, tt.status, tt.message)
		}
	}
}

func TestAPIRunsActions(t *testing.T) {
	p := startPlatform(t, nil)
	srv := httptest.NewServer(p.APIHandler())
	defer srv.Close()
	dev := mustDial(t, p, pump17, tokenAuth, pump17Token)
	dev.mustSubscribe(t, "iotdm-1/#", 1)
	manage(t, dev, `{"d":{"supports":{"deviceActions":true,"firmwareActions":true}},"reqId":"m"}`, RCOK)

	post := func(body string) <-chan APIResult {
		ch := make(chan APIResult, 1)
		go func() {
			status, b := postAPI(t, srv.URL, testKey.Key, testKey.Token, body)
			var r APIResult
			if status != http.StatusOK || json.Unmarshal(b, &r) != nil {
				t.Errorf("%s: %d %s", body, status, b)
			}
			ch <- r
		}()
		return ch
	}
	done := post(`{"action":"device/reboot","devices":[{"typeId":"pump","deviceId":"P-17"}]}`)
	answer(t, dev, "iotdm-1/mgmt/initiate/device/reboot", "iotdevice-1/response", RCAccepted)
	want := APIResult{Action: "device/reboot", TypeID: "pump", DeviceID: "P-17", RC: RCAccepted}
	if diff := cmp.Diff(want, <-done); diff != "" {
		t.Errorf("reboot result (-want +got):\n%s", diff)
	}

	done = post(`{"action":"firmware/download","parameters":[{"name":"uri","value":"http://127.0.0.1:9/fw.bin"},
		{"name":"verifier","value":"abc"},{"name":"name","value":"fw"},{"name":"version","value":"2.0"}],
		"devices":[{"typeId":"pump","deviceId":"P-17"}]}`)
	firmwareDevice{204, 200, 202, 200, []string{`{"state":1}`, `{"state":2}`}}.run(t, dev, "iotdm-1", "iotdevice-1", "download")
	r := <-done
	wantFW := &FirmwareResult{Action: "firmware/download", UpdateRC: 204, ObserveRC: 200, InitiateRC: 202, InitiateMessage: "m",
		CancelRC: 200, Succeeded: true, Message: "downloaded", Transitions: []FirmwareStatus{{1, 0}, {2, 0}}}
	if diff := cmp.Diff(wantFW, r.Firmware); diff != "" || r.RC != RCAccepted {
		t.Errorf("firmware result rc %d (-want +got):\n%s", r.RC, diff)
	}

	done = post(`{"action":"update","parameters":[{"name":"metadata","value":"{\"site\":\"x\"}"}],"devices":[{"typeId":"pump","deviceId":"P-17"}]}`)
	req := answer(t, dev, "iotdm-1/device/update", "iotdevice-1/response", RCChanged)
	if got, _ := json.Marshal(req["d"]); !bytes.Equal(got, []byte(`{"fields":[{"field":"metadata","value":{"site":"x"}}]}`)) {
		t.Errorf("update d %s", got)
	}
	if r := <-done; r.RC != RCChanged {
		t.Errorf("update rc %d", r.RC)
	}
}
