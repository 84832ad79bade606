package dm_test

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"fieldbridge/adapters"
	"fieldbridge/dm"
	"fieldbridge/internal/testwait"
)

// link is a Publisher that records what the agent publishes and
// acknowledges at once; the agent's own requests are not answered (these
// tests never call Connected, so it sends none).
type link struct {
	mu   sync.Mutex
	msgs []sent
}

func (l *link) Publish(_ context.Context, topic string, payload []byte) <-chan error {
	l.mu.Lock()
	l.msgs = append(l.msgs, sent{topic, append([]byte(nil), payload...)})
	l.mu.Unlock()
	ch := make(chan error, 1)
	ch <- nil
	return ch
}

func (l *link) all() []sent {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]sent(nil), l.msgs...)
}

// answer is a device response as the agent sends it.
type answer struct {
	RC      int             `json:"rc"`
	Message string          `json:"message"`
	ReqID   string          `json:"reqId"`
	D       json.RawMessage `json:"d"`
}

// unit is an agent with one field device "m1" on a recording link.
type unit struct {
	agent *dm.Agent
	link  *link
	cmds  *commands
	ctx   context.Context
}

func startUnit(t *testing.T, dev dm.Device, edit func(*dm.Config)) *unit {
	t.Helper()
	u := &unit{link: &link{}, cmds: &commands{}}
	if dev.Type == "" {
		dev.Type, dev.ID, dev.Name = meterType, "m1", "m1"
	}
	dev.Link = u.link
	cfg := dm.Config{Devices: []dm.Device{dev}, Commands: u.cmds, StagingDir: t.TempDir(), AllowHTTP: true}
	if edit != nil {
		edit(&cfg)
	}
	a, err := dm.NewAgent(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	u.agent = a
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	u.ctx = ctx
	return u
}

// request sends a platform request and waits for the answer with reqID.
func (u *unit) request(t *testing.T, rest, payload string) answer {
	t.Helper()
	var req struct {
		ReqID string `json:"reqId"`
	}
	json.Unmarshal([]byte(payload), &req)
	u.agent.HandleRequest(u.ctx, meterType, "m1", rest, []byte(payload))
	return u.wait(t, req.ReqID)
}

// wait waits for the answer with reqID.
func (u *unit) wait(t *testing.T, reqID string) answer {
	t.Helper()
	var got answer
	testwait.For(t, waitLong, "the answer to "+reqID, func() bool {
		for _, m := range u.link.all() {
			var a answer
			if strings.HasSuffix(m.Topic, "/response") && json.Unmarshal(m.Payload, &a) == nil && a.ReqID == reqID {
				got = a
				return true
			}
		}
		return false
	})
	return got
}

// notifies returns the recorded notify values of field.
func (u *unit) notifies(field string) []string {
	p := &tee{}
	p.msgs = u.link.all()
	var out []string
	for _, v := range p.notifies(field) {
		out = append(out, string(v))
	}
	return out
}

func firmwareDevice(install []string) dm.Device {
	return dm.Device{Type: meterType, ID: "m1", Name: "m1",
		DeviceInfo: map[string]string{"fwVersion": "1.0"},
		Firmware:   &dm.Firmware{Install: dm.Action{Exec: install, Timeout: 5 * time.Second}}}
}

func TestBadRequestsGet400(t *testing.T) {
	u := startUnit(t, dm.Device{Type: meterType, ID: "m1", Name: "m1", Reboot: &dm.Action{Command: "reboot"}}, nil)
	tests := []struct {
		name, rest, payload string
		want                int
	}{
		{"not json", "mgmt/initiate/device/reboot", `{"reqId":"r1",`, 400},
		{"not an object", "observe", `["r2"]`, 400},
		{"missing reqId", "mgmt/initiate/device/reboot", `{}`, 400},
		{"unknown member", "mgmt/initiate/device/reboot", `{"reqId":"r4","x":1}`, 400},
		{"unknown member of d", "observe", `{"reqId":"r5","d":{"fields":[],"more":1}}`, 400},
		{"fields not a list", "observe", `{"reqId":"r6","d":{"fields":{}}}`, 400},
		{"field without name", "observe", `{"reqId":"r7","d":{"fields":[{"value":1}]}}`, 400},
		{"reqId not a string", "observe", `{"reqId":8}`, 400},
		{"oversized", "observe", `{"reqId":"r9","d":{"fields":[{"field":"` + strings.Repeat("x", dm.MaxRequestBytes) + `"}]}}`, 400},
		{"unknown topic", "mgmt/initiate/device/explode", `{"reqId":"r10"}`, 501},
		{"observe without d", "observe", `{"reqId":"r11"}`, 400},
		{"d on reboot", "mgmt/initiate/device/reboot", `{"reqId":"r12","d":{"fields":[]}}`, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u.agent.HandleRequest(u.ctx, meterType, "m1", tt.rest, []byte(tt.payload))
			testwait.For(t, waitLong, "an answer", func() bool { return len(u.link.all()) > 0 })
			msgs := u.link.all()
			u.link.mu.Lock()
			u.link.msgs = nil
			u.link.mu.Unlock()
			var a answer
			if err := json.Unmarshal(msgs[len(msgs)-1].Payload, &a); err != nil {
				t.Fatal(err)
			}
			if a.RC != tt.want || a.Message == "" {
				t.Errorf("%s %s: rc %d %q, want %d with a message", tt.rest, short(tt.payload), a.RC, a.Message, tt.want)
			}
			if msgs[len(msgs)-1].Topic != "iotdevice-1/response" {
				t.Errorf("answered on %s", msgs[len(msgs)-1].Topic)
			}
		})
	}
	if ran := u.cmds.list(); len(ran) != 0 {
		t.Errorf("bad requests ran commands: %v", ran)
	}
}

func short(s string) string {
	if len(s) > 60 {
		return s[:60] + "..."
	}
	return s
}

func TestRequestForUnknownDeviceIgnored(t *testing.T) {
	u := startUnit(t, dm.Device{}, nil)
	u.agent.HandleRequest(u.ctx, meterType, "other", "observe", []byte(`{"reqId":"r1","d":{"fields":[{"field":"location"}]}}`))
	u.agent.HandleRequest(u.ctx, "other-type", "m1", "observe", []byte(`{"reqId":"r2","d":{"fields":[{"field":"location"}]}}`))
	// A request for m1 afterwards is answered; the two before it were not.
	if a := u.request(t, "observe", `{"reqId":"r3","d":{"fields":[{"field":"location"}]}}`); a.RC != 200 {
		t.Fatalf("observe: %+v", a)
	}
	if n := len(u.link.all()); n != 1 {
		t.Errorf("%d messages published, want only the answer to m1's request", n)
	}
}

func TestObserveUpdateCancel(t *testing.T) {
	u := startUnit(t, dm.Device{Type: meterType, ID: "m1", Name: "m1", DeviceInfo: map[string]string{"model": "MC-3P"},
		Metadata: json.RawMessage(`{"site":"plant-2"}`)}, nil)

	a := u.request(t, "observe", `{"reqId":"o1","d":{"fields":[{"field":"metadata"},{"field":"deviceInfo.model"}]}}`)
	if a.RC != 200 || string(a.D) != `{"fields":[{"field":"metadata","value":{"site":"plant-2"}},{"field":"deviceInfo.model","value":"MC-3P"}]}` {
		t.Errorf("observe: rc %d d %s", a.RC, a.D)
	}
	a = u.request(t, "observe", `{"reqId":"o2","d":{"fields":[{"field":"metadata"},{"field":"colour"}]}}`)
	if a.RC != 404 || string(a.D) != `{"fields":[{"field":"colour"}]}` {
		t.Errorf("observe unknown: rc %d d %s, want 404 listing colour", a.RC, a.D)
	}
	a = u.request(t, "observe", `{"reqId":"o3","d":{"fields":[{"field":"mgmt.firmware"}]}}`)
	if a.RC != 404 {
		t.Errorf("observe mgmt.firmware on a device without firmware actions: rc %d, want 404", a.RC)
	}

	tests := []struct {
		name, payload string
		want          int
	}{
		{"metadata", `{"reqId":"u1","d":{"fields":[{"field":"metadata","value":{"pollIntervalSec":30}}]}}`, 204},
		{"location", `{"reqId":"u2","d":{"fields":[{"field":"location","value":{"latitude":52.37,"longitude":4.89,"elevation":2}}]}}`, 204},
		{"deviceInfo", `{"reqId":"u3","d":{"fields":[{"field":"deviceInfo","value":{"model":"MC-4","serialNumber":"S1"}}]}}`, 204},
		{"unknown attribute", `{"reqId":"u4","d":{"fields":[{"field":"colour","value":"red"}]}}`, 404},
		{"firmware without firmware actions", `{"reqId":"u5","d":{"fields":[{"field":"mgmt.firmware","value":{}}]}}`, 404},
		{"metadata not an object", `{"reqId":"u6","d":{"fields":[{"field":"metadata","value":[1]}]}}`, 400},
		{"location with an unknown member", `{"reqId":"u7","d":{"fields":[{"field":"location","value":{"latitude":1,"longitude":2,"colour":3}}]}}`, 400},
		{"deviceInfo unknown attribute", `{"reqId":"u8","d":{"fields":[{"field":"deviceInfo","value":{"colour":"red"}}]}}`, 400},
	}
	for _, tt := range tests {
		if a := u.request(t, "device/update", tt.payload); a.RC != tt.want {
			t.Errorf("update %s: rc %d (%s), want %d", tt.name, a.RC, a.Message, tt.want)
		}
	}
	// Without a reqId the platform expects no answer, and gets none.
	before := len(u.link.all())
	u.agent.HandleRequest(u.ctx, meterType, "m1", "device/update", []byte(`{"d":{"fields":[{"field":"metadata","value":{"x":1}}]}}`))
	a = u.request(t, "observe", `{"reqId":"o4","d":{"fields":[{"field":"metadata"},{"field":"location"},{"field":"deviceInfo"}]}}`)
	if len(u.link.all()) != before+1 {
		t.Errorf("an update without reqId was answered")
	}
	want := `{"fields":[{"field":"metadata","value":{"x":1}},{"field":"location","value":{"latitude":52.37,"longitude":4.89,"elevation":2}},{"field":"deviceInfo","value":{"model":"MC-4","serialNumber":"S1"}}]}`
	if a.RC != 200 || string(a.D) != want {
		t.Errorf("observe after updates: rc %d\n got %s\nwant %s", a.RC, a.D, want)
	}
	if a := u.request(t, "cancel", `{"reqId":"c1","d":{"fields":[{"field":"metadata"}]}}`); a.RC != 200 {
		t.Errorf("cancel: rc %d", a.RC)
	}
}

func TestQueueFullIs409(t *testing.T) {
	block := make(chan struct{})
	slow := &blockingCommands{release: block, started: make(chan struct{}, 1)}
	u := startUnit(t, dm.Device{Type: meterType, ID: "m1", Name: "m1", Reboot: &dm.Action{Command: "reboot"}},
		func(c *dm.Config) { c.Commands, c.QueueSize = slow, 1 })
	u.agent.HandleRequest(u.ctx, meterType, "m1", "mgmt/initiate/device/reboot", []byte(`{"reqId":"r1"}`))
	<-slow.started                                                                                         // the worker is busy with r1
	u.agent.HandleRequest(u.ctx, meterType, "m1", "mgmt/initiate/device/reboot", []byte(`{"reqId":"r2"}`)) // queued
	a := u.request(t, "mgmt/initiate/device/reboot", `{"reqId":"r3"}`)
	if a.RC != 409 {
		t.Errorf("third request with a queue of 1: rc %d, want 409", a.RC)
	}
	close(block)
	for _, id := range []string{"r1", "r2"} {
		if a := u.wait(t, id); a.RC != 202 {
			t.Errorf("request %s: rc %d, want 202", id, a.RC)
		}
	}
}

// blockingCommands blocks every command until release is closed.
type blockingCommands struct {
	release chan struct{}
	started chan struct{}
}

func (b *blockingCommands) RunCommand(ctx context.Context, device, command string, payload []byte) error {
	select {
	case b.started <- struct{}{}:
	default:
	}
	select {
	case <-b.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TestOneDeviceDoesNotBlockAnother: a device stuck in a long command does
// not delay another device's requests.
func TestOneDeviceDoesNotBlockAnother(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	slow := &blockingCommands{release: block, started: make(chan struct{}, 1)}
	l := &link{}
	a, err := dm.NewAgent(dm.Config{Commands: slow, Devices: []dm.Device{
		{Type: meterType, ID: "m1", Name: "m1", Link: l, Reboot: &dm.Action{Command: "reboot", Timeout: time.Minute}},
		{Type: meterType, ID: "m2", Name: "m2", Link: l},
	}}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	a.HandleRequest(ctx, meterType, "m1", "mgmt/initiate/device/reboot", []byte(`{"reqId":"r1"}`))
	<-slow.started
	a.HandleRequest(ctx, meterType, "m2", "observe", []byte(`{"reqId":"r2","d":{"fields":[{"field":"metadata"}]}}`))
	testwait.For(t, waitLong, "m2's answer while m1 is busy", func() bool {
		for _, m := range l.all() {
			if strings.Contains(string(m.Payload), `"reqId":"r2"`) {
				return true
			}
		}
		return false
	})
}

func TestDeviceActions(t *testing.T) {
	hookOut := filepath.Join(t.TempDir(), "hook")
	dev := dm.Device{Type: meterType, ID: "m1", Name: "m1",
		Reboot:       &dm.Action{Command: "reboot"},
		FactoryReset: &dm.Action{Exec: []string{"sh", "-c", `echo "$0 $1" > ` + hookOut, "{type}", "{id}"}},
		Custom:       map[string]map[string]*dm.Action{bundle: {"rescan": {Command: "rescan"}}}}
	u := startUnit(t, dev, nil)
	if a := u.request(t, "mgmt/initiate/device/reboot", `{"reqId":"r1"}`); a.RC != 202 {
		t.Errorf("reboot: %+v", a)
	}
	if a := u.request(t, "mgmt/initiate/device/factory_reset", `{"reqId":"r2"}`); a.RC != 202 {
		t.Errorf("factory reset: %+v", a)
	}
	if b, _ := os.ReadFile(hookOut); string(b) != "meter m1\n" {
		t.Errorf("factory reset hook wrote %q, want the placeholders replaced", b)
	}
	a := u.request(t, "mgmt/custom/"+bundle+"/rescan", `{"reqId":"r3","d":{"fields":[{"field":"port","value":"rs485-1"},{"field":"unitRange","value":"1-32"}]}}`)
	if a.RC != 200 {
		t.Errorf("custom action: %+v", a)
	}
	if a := u.request(t, "mgmt/custom/"+bundle+"/other", `{"reqId":"r4","d":{"fields":[]}}`); a.RC != 501 {
		t.Errorf("unmapped custom action: rc %d, want 501", a.RC)
	}
	if a := u.request(t, "mgmt/custom/other-bundle/rescan", `{"reqId":"r5","d":{"fields":[]}}`); a.RC != 501 {
		t.Errorf("custom action of an unknown bundle: rc %d, want 501", a.RC)
	}
	if a := u.request(t, "mgmt/initiate/firmware/download", `{"reqId":"r6"}`); a.RC != 501 {
		t.Errorf("firmware download without firmware actions: rc %d, want 501", a.RC)
	}
	want := []string{`m1/reboot {"d":{}}`, `m1/rescan {"d":{"port":"rs485-1","unitRange":"1-32"}}`}
	if got := u.cmds.list(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("commands run: %q, want %q", got, want)
	}

	u.cmds.mu.Lock()
	u.cmds.fail = fmt.Errorf("device refused: %w", &adapters.ExceptionError{Function: 5, Code: 2})
	u.cmds.mu.Unlock()
	if a := u.request(t, "mgmt/initiate/device/reboot", `{"reqId":"r7"}`); a.RC != 500 || !strings.Contains(a.Message, "exception 2") {
		t.Errorf("reboot refused by the device: %+v, want 500 with the reason", a)
	}
}

func TestNotMappedIs501(t *testing.T) {
	u := startUnit(t, dm.Device{}, nil)
	for _, rest := range []string{"mgmt/initiate/device/reboot", "mgmt/initiate/device/factory_reset", "mgmt/initiate/firmware/download", "mgmt/initiate/firmware/update"} {
		if a := u.request(t, rest, `{"reqId":"`+rest+`"}`); a.RC != 501 {
			t.Errorf("%s on a device that maps nothing: rc %d, want 501", rest, a.RC)
		}
	}
}

func TestHookTimeoutAndFailure(t *testing.T) {
	dev := dm.Device{Type: meterType, ID: "m1", Name: "m1",
		Reboot:       &dm.Action{Exec: []string{"sleep", "30"}, Timeout: 50 * time.Millisecond},
		FactoryReset: &dm.Action{Exec: []string{"sh", "-c", "echo no flash today >&2; exit 3"}}}
	u := startUnit(t, dev, nil)
	if a := u.request(t, "mgmt/initiate/device/reboot", `{"reqId":"r1"}`); a.RC != 500 || !strings.Contains(a.Message, "timeout") {
		t.Errorf("hook over its timeout: %+v, want 500 saying so", a)
	}
	if a := u.request(t, "mgmt/initiate/device/factory_reset", `{"reqId":"r2"}`); a.RC != 500 || !strings.Contains(a.Message, "no flash today") {
		t.Errorf("failing hook: %+v, want 500 with its output", a)
	}
}

func TestBusDownFailsFast(t *testing.T) {
	dev := dm.Device{Type: meterType, ID: "m1", Name: "m1", Reboot: &dm.Action{Command: "reboot", Timeout: time.Hour}}
	u := startUnit(t, dev, nil)
	u.cmds.fail = fmt.Errorf("write: %w", adapters.ErrNotConnected)
	if a := u.request(t, "mgmt/initiate/device/reboot", `{"reqId":"r1"}`); a.RC != 500 || !strings.Contains(a.Message, "unreachable") {
		t.Errorf("reboot with the bus down: %+v, want 500 device unreachable", a)
	}
	// Once the poll loop reported the device down, the command is not even tried.
	u.agent.NoteReading(adapters.Reading{Device: "m1", Blocks: []adapters.Block{{Err: adapters.ErrTimeout}}})
	u.cmds.mu.Lock()
	u.cmds.fail = nil
	u.cmds.mu.Unlock()
	if a := u.request(t, "mgmt/initiate/device/reboot", `{"reqId":"r2"}`); a.RC != 500 || !strings.Contains(a.Message, "unreachable") {
		t.Errorf("reboot of a device known down: %+v, want 500", a)
	}
	if ran := u.cmds.list(); len(ran) != 0 {
		t.Errorf("commands were sent to a device known down: %v", ran)
	}
}

// firmwareServer serves image at /fw.bin; /big declares a huge length.
func firmwareServer(t *testing.T, image []byte, tls bool) *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("/fw.bin", func(w http.ResponseWriter, r *http.Request) { w.Write(image) })
	mux.HandleFunc("/cut", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(len(image)*2))
		w.Write(image)
		// The handler returns early: the client sees the body end short.
	})
	var srv *httptest.Server
	if tls {
		srv = httptest.NewTLSServer(mux)
	} else {
		srv = httptest.NewServer(mux)
	}
	t.Cleanup(srv.Close)
	return srv
}

func stage(t *testing.T, u *unit, uri, verifier string) {
	t.Helper()
	p := fmt.Sprintf(`{"reqId":"stage-%s","d":{"fields":[{"field":"mgmt.firmware","value":{"version":"2.0","name":"mc-fw","uri":%q,"verifier":%q,"state":0,"updateStatus":0,"updatedDateTime":""}}]}}`, verifier, uri, verifier)
	if a := u.request(t, "device/update", p); a.RC != 204 {
		t.Fatalf("stage firmware: %+v", a)
	}
}

func sha(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// TestFirmwareDownloadAndInstall drives the sequences of protocol.md §7.7
// and checks every state the agent reports.
func TestFirmwareDownloadAndInstall(t *testing.T) {
	image := []byte("firmware image 2.0")
	installed := filepath.Join(t.TempDir(), "installed")
	u := startUnit(t, firmwareDevice([]string{"cp", "{file}", installed}), nil)
	srv := firmwareServer(t, image, false)

	if a := u.request(t, "mgmt/initiate/firmware/update", `{"reqId":"early"}`); a.RC != 400 {
		t.Errorf("update before a download: rc %d, want 400", a.RC)
	}
	if a := u.request(t, "mgmt/initiate/firmware/download", `{"reqId":"nothing-staged"}`); a.RC != 400 {
		t.Errorf("download with nothing staged: rc %d, want 400", a.RC)
	}
	stage(t, u, srv.URL+"/fw.bin", sha(image))
	if a := u.request(t, "observe", `{"reqId":"obs","d":{"fields":[{"field":"mgmt.firmware"}]}}`); a.RC != 200 ||
		!strings.Contains(string(a.D), `"state":0,"updateStatus":0`) {
		t.Errorf("observe mgmt.firmware: %+v", a)
	}
	if a := u.request(t, "mgmt/initiate/firmware/download", `{"reqId":"dl"}`); a.RC != 202 {
		t.Fatalf("download: %+v", a)
	}
	testwait.For(t, waitLong, "state 2", func() bool { return len(u.notifies("mgmt.firmware")) == 2 })
	got := u.notifies("mgmt.firmware")
	for i, want := range []string{`"state":1,"updateStatus":0`, `"state":2,"updateStatus":0`} {
		if !strings.Contains(got[i], want) {
			t.Errorf("notify %d: %s, want %s", i, got[i], want)
		}
	}
	if a := u.request(t, "mgmt/initiate/firmware/download", `{"reqId":"again"}`); a.RC != 400 {
		t.Errorf("download in state 2: rc %d, want 400", a.RC)
	}
	if a := u.request(t, "cancel", `{"reqId":"cancel1","d":{"fields":[{"field":"mgmt.firmware"}]}}`); a.RC != 200 {
		t.Errorf("cancel: %+v", a)
	}

	if a := u.request(t, "observe", `{"reqId":"obs2","d":{"fields":[{"field":"mgmt.firmware"},{"field":"deviceInfo.fwVersion"}]}}`); a.RC != 200 {
		t.Errorf("observe: %+v", a)
	}
	if a := u.request(t, "mgmt/initiate/firmware/update", `{"reqId":"up"}`); a.RC != 202 {
		t.Fatalf("update: %+v", a)
	}
	testwait.For(t, waitLong, "the install to finish", func() bool { return len(u.notifies("mgmt.firmware")) == 4 })
	got = u.notifies("mgmt.firmware")
	if !strings.Contains(got[2], `"state":2,"updateStatus":1`) || !strings.Contains(got[3], `"state":0,"updateStatus":0`) {
		t.Errorf("install notifies: %s, %s; want updateStatus 1, then state 0 updateStatus 0", got[2], got[3])
	}
	if v := u.notifies("deviceInfo.fwVersion"); len(v) != 1 || v[0] != `"2.0"` {
		t.Errorf("deviceInfo.fwVersion notifies: %v, want \"2.0\"", v)
	}
	if b, err := os.ReadFile(installed); err != nil || string(b) != string(image) {
		t.Errorf("the hook installed %q (%v), want the image", b, err)
	}
}

func TestFirmwareDownloadFailures(t *testing.T) {
	image := []byte("firmware image 2.0")
	srv := firmwareServer(t, image, false)
	tlsSrv := firmwareServer(t, image, true)
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	unreachable := "http://" + closed.Addr().String() + "/fw.bin"
	closed.Close()
	md5sum := md5.Sum(image)

	tests := []struct {
		name, uri, verifier string
		edit                func(*dm.Config)
		wantRC, wantStatus  int // wantStatus: updateStatus after the download (-1: none started)
	}{
		{"good md5", srv.URL + "/fw.bin", hex.EncodeToString(md5sum[:]), nil, 202, 0},
		{"bad checksum", srv.URL + "/fw.bin", sha([]byte("other")), nil, 202, 4},
		{"unreachable", unreachable, sha(image), nil, 202, 6},
		{"not found", srv.URL + "/missing", sha(image), nil, 202, 6},
		{"oversized", srv.URL + "/fw.bin", sha(image), func(c *dm.Config) { c.MaxFirmwareBytes = 8 }, 202, 2},
		{"connection lost", srv.URL + "/cut", sha(image), nil, 202, 3},
		{"https", tlsSrv.URL + "/fw.bin", sha(image), func(c *dm.Config) { c.AllowHTTP, c.HTTPClient = false, tlsSrv.Client() }, 202, 0},
		{"http not allowed", srv.URL + "/fw.bin", sha(image), func(c *dm.Config) { c.AllowHTTP = false }, 400, -1},
		{"not a url", "fw.bin", sha(image), nil, 400, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := startUnit(t, firmwareDevice([]string{"true"}), tt.edit)
			stage(t, u, tt.uri, tt.verifier)
			u.request(t, "observe", `{"reqId":"obs","d":{"fields":[{"field":"mgmt.firmware"}]}}`)
			if a := u.request(t, "mgmt/initiate/firmware/download", `{"reqId":"dl"}`); a.RC != tt.wantRC {
				t.Fatalf("download: %+v, want rc %d", a, tt.wantRC)
			}
			if tt.wantStatus < 0 {
				return
			}
			testwait.For(t, waitLong, "the download to end", func() bool { return len(u.notifies("mgmt.firmware")) == 2 })
			var last struct{ State, UpdateStatus int }
			json.Unmarshal([]byte(u.notifies("mgmt.firmware")[1]), &last)
			wantState := 2
			if tt.wantStatus != 0 {
				wantState = 0
			}
			if last.State != wantState || last.UpdateStatus != tt.wantStatus {
				t.Errorf("after the download: state %d updateStatus %d, want %d and %d", last.State, last.UpdateStatus, wantState, tt.wantStatus)
			}
		})
	}
}

func TestFirmwareInstallFails(t *testing.T) {
	image := []byte("image")
	srv := firmwareServer(t, image, false)
	u := startUnit(t, firmwareDevice([]string{"false"}), nil)
	stage(t, u, srv.URL+"/fw.bin", sha(image))
	u.request(t, "observe", `{"reqId":"obs","d":{"fields":[{"field":"mgmt.firmware"}]}}`)
	u.request(t, "mgmt/initiate/firmware/download", `{"reqId":"dl"}`)
	testwait.For(t, waitLong, "downloaded", func() bool { return len(u.notifies("mgmt.firmware")) == 2 })
	if a := u.request(t, "mgmt/initiate/firmware/update", `{"reqId":"up"}`); a.RC != 202 {
		t.Fatalf("update: %+v", a)
	}
	testwait.For(t, waitLong, "the install to fail", func() bool { return len(u.notifies("mgmt.firmware")) == 4 })
	if got := u.notifies("mgmt.firmware")[3]; !strings.Contains(got, `"state":2,"updateStatus":5`) {
		t.Errorf("after a failed install: %s, want state 2 (image kept) updateStatus 5", got)
	}
	if a := u.request(t, "device/update", `{"reqId":"bad-verifier","d":{"fields":[{"field":"mgmt.firmware","value":{"verifier":"xyz"}}]}}`); a.RC != 400 {
		t.Errorf("staging a verifier that is no digest: rc %d, want 400", a.RC)
	}
}

func TestNewAgentRejectsBadConfig(t *testing.T) {
	l := &link{}
	tests := map[string]dm.Config{
		"short lifetime":       {Lifetime: time.Minute},
		"renew after lifetime": {Lifetime: time.Hour, RenewBefore: 2 * time.Hour},
		"duplicate device":     {Devices: []dm.Device{{Type: "t", ID: "a", Link: l}, {Type: "t", ID: "a", Link: l}}},
		"no link":              {Devices: []dm.Device{{Type: "t", ID: "a"}}},
		"command, no runner":   {Devices: []dm.Device{{Type: "t", ID: "a", Name: "a", Link: l, Reboot: &dm.Action{Command: "x"}}}},
		"empty action":         {Devices: []dm.Device{{Type: "t", ID: "a", Link: l, Reboot: &dm.Action{}}}},
		"firmware, no staging": {Devices: []dm.Device{{Type: "t", ID: "a", Link: l, Firmware: &dm.Firmware{Install: dm.Action{Exec: []string{"x"}}}}}},
	}
	for name, cfg := range tests {
		if _, err := dm.NewAgent(cfg, nil); err == nil {
			t.Errorf("%s: NewAgent accepted %+v", name, cfg)
		}
	}
}

// TestFirmwareInstallByCommand: a type whose devices install firmware by a
// register sequence (a command of the type, no hook) gets the staged
// image's version and name in the command's payload.
func TestFirmwareInstallByCommand(t *testing.T) {
	image := []byte("firmware image 3.1")
	dev := firmwareDevice(nil)
	dev.Firmware.Install.Command = "enter_bootloader"
	u := startUnit(t, dev, nil)
	srv := firmwareServer(t, image, false)
	stage(t, u, srv.URL+"/fw.bin", sha(image))
	if a := u.request(t, "observe", `{"reqId":"obs","d":{"fields":[{"field":"mgmt.firmware"}]}}`); a.RC != 200 {
		t.Fatalf("observe: %+v", a)
	}
	if a := u.request(t, "mgmt/initiate/firmware/download", `{"reqId":"dl"}`); a.RC != 202 {
		t.Fatalf("download: %+v", a)
	}
	testwait.For(t, waitLong, "state 2", func() bool { return len(u.notifies("mgmt.firmware")) == 2 })
	if a := u.request(t, "mgmt/initiate/firmware/update", `{"reqId":"up"}`); a.RC != 202 {
		t.Fatalf("update: %+v", a)
	}
	testwait.For(t, waitLong, "the install to finish", func() bool { return len(u.notifies("mgmt.firmware")) == 4 })
	if got := u.notifies("mgmt.firmware"); !strings.Contains(got[3], `"state":0,"updateStatus":0`) {
		t.Errorf("after the install: %s, want state 0 updateStatus 0", got[3])
	}
	ran := u.cmds.list()
	if len(ran) != 1 || !strings.HasPrefix(ran[0], "m1/enter_bootloader ") || !strings.Contains(ran[0], `"version":"2.0"`) {
		t.Errorf("commands run: %q, want enter_bootloader with the staged version", ran)
	}
}
