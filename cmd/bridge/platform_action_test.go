package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"fieldbridge/internal/testpki"
	"fieldbridge/internal/testwait"
)

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

const (
	actionAPIKey   = "a-test01-cli0001"
	actionAPIToken = "cli-token-1"
	actionDevToken = "pump-17-token"
)

// startPlatformCommand runs `bridge platform` on free ports with a registry,
// bundles and a firmware directory holding fw.bin, and returns the MQTT
// address, the HTTP base URL and fw.bin's content.
func startPlatformCommand(t *testing.T, extra ...string) (mqttAddr, httpURL string, image []byte, stdout *syncBuffer) {
	t.Helper()
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	reg := write("registry.txt", "device pump P-17 "+actionDevToken+"\napikey "+actionAPIKey+" "+actionAPIToken+"\n")
	bundles := write("bundles.json", `{"bundleId":"acme-modbus-v1","displayName":{"en_US":"Acme"},
		"actions":{"rescanBus":{"actionDisplayName":{"en_US":"Rescan"},
		"parameters":[{"name":"port","value":"^(rs485-[0-9])$","required":true},{"name":"unitRange","value":"^[0-9]+-[0-9]+$","defaultValue":"1-247"}]}}}`)
	fwDir := filepath.Join(dir, "fw")
	image = bytes.Repeat([]byte("firmware 2.0 "), 1000)
	if err := os.Mkdir(fwDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(fwDir, "fw.bin"), image, 0o600); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	out, errs := &syncBuffer{}, &syncBuffer{}
	done := make(chan int, 1)
	go func() {
		args := []string{"platform", "-org", "test01", "-listen", "127.0.0.1:0", "-http", "127.0.0.1:0",
			"-devices", reg, "-bundles", bundles, "-firmware-dir", fwDir, "-log-level", "error"}
		done <- run(ctx, func() {}, append(args, extra...), out, errs)
	}()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != exitOK {
			t.Errorf("bridge platform exit %d: %s", code, errs.String())
		}
	})
	addrs := regexp.MustCompile(`mqtt listening on (\S+)\n(?s:.*)api listening on (\S+)/api/`)
	var m []string
	testwait.For(t, waitTimeout, "bridge platform listening", func() bool {
		m = addrs.FindStringSubmatch(out.String())
		return m != nil
	})
	return m[1], m[2], image, out
}

// scriptedAgent is a device-side DM agent for pump/P-17, just enough for
// the CLI's round trips: it answers every request, downloads the staged
// firmware over HTTP and checks its sha256 against the verifier.
type scriptedAgent struct {
	t        *testing.T
	c        mqtt.Client
	mu       sync.Mutex
	handlers sync.WaitGroup // the handle goroutines
	uri      string
	verify   string
}

func startAgent(t *testing.T, mqttAddr string) *scriptedAgent {
	t.Helper()
	a := &scriptedAgent{t: t}
	opts := mqtt.NewClientOptions().AddBroker("tcp://" + mqttAddr).SetClientID("d:test01:pump:P-17").
		SetUsername("use-token-auth").SetPassword(actionDevToken).SetAutoReconnect(false)
	a.c = mqtt.NewClient(opts)
	if tok := a.c.Connect(); !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
		t.Fatalf("device connect: %v", tok.Error())
	}
	// Handlers still publishing (an answer whose PUBACK had not come back
	// when the action returned) finish before the connection closes.
	t.Cleanup(func() { a.handlers.Wait(); a.c.Disconnect(100) })
	managed := make(chan struct{}, 1)
	if tok := a.c.Subscribe("iotdm-1/#", 1, func(_ mqtt.Client, m mqtt.Message) {
		if m.Topic() == "iotdm-1/response" {
			managed <- struct{}{}
			return
		}
		a.handlers.Add(1)
		go func() { // not on paho's goroutine: handle publishes and waits
			defer a.handlers.Done()
			a.handle(m.Topic(), m.Payload())
		}()
	}); !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
		t.Fatalf("device subscribe: %v", tok.Error())
	}
	a.publish("iotdevice-1/mgmt/manage", map[string]any{"reqId": "m",
		"d": map[string]any{"supports": map[string]bool{"deviceActions": true, "firmwareActions": true, "acme-modbus-v1": true}}})
	select {
	case <-managed:
	case <-time.After(waitTimeout):
		t.Fatal("no manage response")
	}
	return a
}

func (a *scriptedAgent) publish(topic string, v any) {
	b, _ := json.Marshal(v)
	if tok := a.c.Publish(topic, 1, false, b); !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
		a.t.Errorf("device publish %s: %v", topic, tok.Error())
	}
}

func (a *scriptedAgent) notify(state, updateStatus int) {
	a.publish("iotdevice-1/notify", map[string]any{"d": map[string]any{"fields": []any{
		map[string]any{"field": "mgmt.firmware", "value": map[string]int{"state": state, "updateStatus": updateStatus}}}}})
}

func (a *scriptedAgent) handle(topic string, payload []byte) {
	var req struct {
		ReqID string `json:"reqId"`
		D     struct {
			Fields []struct {
				Field string          `json:"field"`
				Value json.RawMessage `json:"value"`
			} `json:"fields"`
		} `json:"d"`
	}
	if err := json.Unmarshal(payload, &req); err != nil {
		a.t.Errorf("device got %s: %v", payload, err)
		return
	}
	respond := func(rc int, d any) {
		resp := map[string]any{"rc": rc, "reqId": req.ReqID}
		if d != nil {
			resp["d"] = d
		}
		a.publish("iotdevice-1/response", resp)
	}
	switch topic {
	case "iotdm-1/device/update":
		for _, f := range req.D.Fields {
			var fw struct{ URI, Verifier string }
			if f.Field == "mgmt.firmware" && json.Unmarshal(f.Value, &fw) == nil {
				a.mu.Lock()
				a.uri, a.verify = fw.URI, fw.Verifier
				a.mu.Unlock()
			}
		}
		respond(204, nil)
	case "iotdm-1/observe":
		respond(200, map[string]any{"fields": []any{map[string]any{"field": "mgmt.firmware", "value": map[string]int{"state": 0, "updateStatus": 0}}}})
	case "iotdm-1/cancel", "iotdm-1/mgmt/custom/acme-modbus-v1/rescanBus":
		respond(200, nil)
	case "iotdm-1/mgmt/initiate/device/reboot":
		respond(202, nil)
	case "iotdm-1/mgmt/initiate/firmware/update":
		respond(202, nil)
		a.publish("iotdevice-1/notify", map[string]any{"d": map[string]any{"fields": []any{
			map[string]any{"field": "mgmt.firmware.updateStatus", "value": 1}}}})
		a.notify(0, 0)
	case "iotdm-1/mgmt/initiate/firmware/download":
		respond(202, nil)
		a.notify(1, 0)
		a.mu.Lock()
		uri, verify := a.uri, a.verify
		a.mu.Unlock()
		resp, err := http.Get(uri)
		if err == nil && resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			a.notify(0, 6) // invalid URI
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if sum := sha256.Sum256(body); hex.EncodeToString(sum[:]) != verify {
			a.notify(0, 4)
			return
		}
		a.notify(2, 0)
	default:
		respond(501, nil)
	}
}

func TestPlatformActionCommand(t *testing.T) {
	mqttAddr, api, image, platformOut := startPlatformCommand(t)
	startAgent(t, mqttAddr)
	sum := sha256.Sum256(image)
	verifier := hex.EncodeToString(sum[:])

	action := func(args ...string) (int, string, string) {
		t.Helper()
		var out, errs bytes.Buffer
		common := []string{"platform", "action", "-api", api, "-key", actionAPIKey, "-token", actionAPIToken, "-type", "pump", "-id", "P-17", "-timeout", "20s"}
		code := run(context.Background(), func() {}, append(common, args...), &out, &errs)
		return code, out.String(), errs.String()
	}
	for _, tt := range []struct {
		name string
		args []string
		code int
		want []string // lines of stdout, or of stderr for a failure
	}{
		{"reboot", []string{"reboot"}, exitOK, []string{"device/reboot pump/P-17: rc 202"}},
		{"firmware download", []string{"firmware-download", "-uri", api + "/firmware/fw.bin", "-verifier", verifier, "-name", "fw", "-version", "2.0"}, exitOK, []string{
			"firmware/download pump/P-17: rc 202",
			"  update rc 204, observe rc 200, initiate rc 202, cancel rc 200",
			"  mgmt.firmware state 1 (downloading) updateStatus 0 (success)",
			"  mgmt.firmware state 2 (downloaded) updateStatus 0 (success)",
			"  succeeded: downloaded",
		}},
		{"bad checksum", []string{"firmware-download", "-uri", api + "/firmware/fw.bin", "-verifier", "00", "-version", "2.1"}, exitRuntime, []string{
			"  mgmt.firmware state 1 (downloading) updateStatus 0 (success)",
			"  mgmt.firmware state 0 (idle) updateStatus 4 (verification failed)",
			"  failed: download failed: updateStatus 4 verification failed",
		}},
		{"missing file", []string{"firmware-download", "-uri", api + "/firmware/none.bin", "-verifier", verifier, "-version", "2.2"}, exitRuntime, []string{
			"  mgmt.firmware state 0 (idle) updateStatus 6 (invalid URI)",
		}},
		{"firmware update", []string{"firmware-update"}, exitOK, []string{
			"firmware/update pump/P-17: rc 202",
			"  update rc 0, observe rc 200, initiate rc 202, cancel rc 200",
			"  mgmt.firmware state 0 (idle) updateStatus 1 (in progress)",
			"  mgmt.firmware state 0 (idle) updateStatus 0 (success)",
			"  succeeded: updated",
		}},
		{"custom", []string{"custom", "-bundle", "acme-modbus-v1", "-action", "rescanBus", "-field", "port=rs485-1"}, exitOK,
			[]string{"acme-modbus-v1/rescanBus pump/P-17: rc 200"}},
		{"observe", []string{"observe", "-field", "mgmt.firmware"}, exitOK,
			[]string{"observe pump/P-17: rc 200", `  field mgmt.firmware = {"state":0,"updateStatus":0}`}},
		{"update", []string{"update", "-field", `metadata={"site":"plant-2"}`}, exitOK, []string{"update pump/P-17: rc 204"}},
		{"factory reset not supported by the agent", []string{"factory-reset"}, exitRuntime, []string{"device/factoryReset pump/P-17: rc 501"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errs := action(tt.args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d; stdout:\n%s\nstderr:\n%s", code, tt.code, out, errs)
			}
			for _, line := range tt.want {
				if !strings.Contains(out, line+"\n") {
					t.Errorf("stdout lacks %q:\n%s", line, out)
				}
			}
		})
	}

	// The platform printed the DM traffic as it passed (-print).
	for _, want := range []string{
		`  iotdm-1/type/pump/id/P-17/mgmt/initiate/device/reboot  {"reqId":"`,
		`  iotdevice-1/type/pump/id/P-17/notify  {"d":{"fields":[{"field":"mgmt.firmware","value":{"state":2,"updateStatus":0}}]}}`,
	} {
		if !strings.Contains(platformOut.String(), want) {
			t.Errorf("bridge platform's output lacks %q", want)
		}
	}

	for _, tt := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unknown action", []string{"explode"}, exitConfig, `unknown action "explode"`},
		{"custom value does not match", []string{"custom", "-bundle", "acme-modbus-v1", "-action", "rescanBus", "-field", "port=usb0"}, exitRuntime, "does not match"},
		{"custom unknown bundle", []string{"custom", "-bundle", "nope", "-action", "x"}, exitRuntime, "unknown extension bundle"},
		{"update value not json", []string{"update", "-field", "metadata={"}, exitConfig, "must be JSON"},
		{"observe with a value", []string{"observe", "-field", "a=1"}, exitConfig, "attribute names only"},
		{"firmware flags elsewhere", []string{"reboot", "-uri", "x"}, exitConfig, "belong to firmware actions"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errs := action(tt.args...)
			if code != tt.code || !strings.Contains(errs, tt.want) {
				t.Errorf("exit %d, want %d with %q; stdout:\n%s\nstderr:\n%s", code, tt.code, tt.want, out, errs)
			}
		})
	}
}

// TestPlatformHTTPS: with a certificate the API and the firmware files are
// served over HTTPS, and the action command trusts the platform through -ca.
func TestPlatformHTTPS(t *testing.T) {
	pki := testpki.New(t)
	_, api, image, _ := startPlatformCommand(t, "-http-tls-cert", pki.CertFile, "-http-tls-key", pki.KeyFile)
	if !strings.HasPrefix(api, "https://") {
		t.Fatalf("api on %s, want https", api)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pki.Pool}}}
	resp, err := client.Get(api + "/firmware/fw.bin")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(got, image) {
		t.Errorf("firmware over https: %d bytes, want the %d of fw.bin", len(got), len(image))
	}

	for _, tt := range []struct {
		name string
		ca   []string
		want string
	}{
		{"trusted", []string{"-ca", pki.CAFile}, "409 Conflict: platform: device is not managed"},
		{"untrusted", nil, "certificate"},
	} {
		var out, errs bytes.Buffer
		args := append([]string{"platform", "action", "-api", api, "-key", actionAPIKey, "-token", actionAPIToken,
			"-type", "pump", "-id", "P-17"}, tt.ca...)
		code := run(context.Background(), func() {}, append(args, "reboot"), &out, &errs)
		if code != exitRuntime || !strings.Contains(errs.String(), tt.want) {
			t.Errorf("%s: exit %d, stderr %q; want %d with %q", tt.name, code, errs.String(), exitRuntime, tt.want)
		}
	}
}
