package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"fieldbridge/config"
	"fieldbridge/internal/mqtttest"
	"fieldbridge/platform"

	"fieldbridge/internal/testwait"
)

// m3Device is a device the simulators serve from the start and a reload
// adds to the bridge.
const m3Device = `
device "m3" {
  type  = "meter"
  bus   = "b1"
  unit  = 3
  poll  = "20ms"
  token = "token-m3-secret"
}
`

// accountant is a durable subscriber: it records every (device, seq) the
// platform delivered, and every connection each client id made.
type accountant struct {
	mu       sync.Mutex
	seqs     map[string][]uint64 // by device, in arrival order
	energy   map[string][]float64
	connects map[string]int // by client id
	gone     map[string]int // disconnects by client id
}

func newAccountant(t *testing.T, p *platform.Platform) *accountant {
	t.Helper()
	a := &accountant{seqs: map[string][]uint64{}, energy: map[string][]float64{}, connects: map[string]int{}, gone: map[string]int{}}
	events, err := p.Subscribe("iot-2/type/+/id/+/evt/+/fmt/+")
	if err != nil {
		t.Fatal(err)
	}
	mon, err := p.Subscribe("iot-2/type/+/id/+/mon")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case m := <-events.C:
				a.event(t, m)
			case m := <-mon.C:
				var s platform.Status
				if err := json.Unmarshal(m.Payload, &s); err != nil {
					t.Errorf("mon %s: %v", m.Topic, err)
					continue
				}
				a.mu.Lock()
				switch s.Action {
				case platform.StatusConnect:
					a.connects[s.ClientID]++
				case platform.StatusDisconnect:
					a.gone[s.ClientID]++
				}
				a.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		if n := events.Dropped() + mon.Dropped(); n > 0 {
			t.Errorf("the accounting subscriber dropped %d messages; the accounting is incomplete", n)
		}
	})
	return a
}

func (a *accountant) event(t *testing.T, m platform.Message) {
	id := strings.Split(m.Topic, "/")[4]
	p := decode(t, m.Payload)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.seqs[id] = append(a.seqs[id], p.Seq)
	if e, ok := p.D["energy"].(float64); ok {
		a.energy[id] = append(a.energy[id], e)
	}
}

func (a *accountant) count(device string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.seqs[device])
}

func (a *accountant) lastEnergy(device string) float64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	if e := a.energy[device]; len(e) > 0 {
		return e[len(e)-1]
	}
	return 0
}

func (a *accountant) connections() map[string]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return maps.Clone(a.connects)
}

func (a *accountant) disconnects(client string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.gone[client]
}

// checkExactly checks that device's seqs arrived as 1..last, each once, in
// order (the platform connection was never lost, so there is no cause for
// a redelivery).
func (a *accountant) checkExactly(t *testing.T, device string, last uint64) {
	t.Helper()
	a.mu.Lock()
	got := slices.Clone(a.seqs[device])
	a.mu.Unlock()
	want := make([]uint64, last)
	for i := range want {
		want[i] = uint64(i + 1)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("%s: seqs (-want +got):\n%s", device, diff)
	}
}

// reloadRig is a bridge in device mode against the local platform, with
// simulators that serve every device any step of a test configures, and a
// second simulator of bus b2 to move it to.
type reloadRig struct {
	addrs  map[string]string // bus -> simulator address
	b2Alt  string
	sims   *simulation
	alt    *simulation
	plat   *platform.Platform
	acct   *accountant
	bridge *bridge
	done   chan error
}

func startReloadRig(t *testing.T, logger *slog.Logger) *reloadRig {
	t.Helper()
	full := parseConfig(t, testConfig+m3Device, nil)
	sims, err := startSimulators(full, func(*config.Bus) string { return "127.0.0.1:0" }, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sims.Close)
	alt, err := startSimulators(full, func(*config.Bus) string { return "127.0.0.1:0" }, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(alt.Close)
	r := &reloadRig{addrs: map[string]string{}, sims: sims, alt: alt}
	for _, s := range sims.servers {
		r.addrs[s.bus] = s.server.Addr()
	}
	r.b2Alt = alt.server("b2").Addr()

	var devices []platform.Device
	for _, d := range full.Devices {
		devices = append(devices, platform.Device{Type: d.Type.Name, ID: d.Name, Token: d.Token})
	}
	p, err := platform.New(platform.Config{Org: full.Platform.Org, Devices: devices, SubscriptionBuffer: 1 << 16}, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	r.plat = p
	r.acct = newAccountant(t, p)

	b, err := newBridge(r.config(t, "", nil), bridgeOptions{Broker: "tcp://" + p.Addr(), InMemoryBuffer: true, Drain: 5 * time.Second}, logger)
	if err != nil {
		t.Fatal(err)
	}
	r.bridge = b
	ctx, cancel := context.WithCancel(context.Background())
	r.done = make(chan error, 1)
	go func() { r.done <- b.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-r.done; err != nil {
			t.Errorf("bridge.Run = %v, want nil after cancel", err)
		}
	})
	return r
}

func (s *simulation) server(bus string) *simBusServer {
	for _, b := range s.servers {
		if b.bus == bus {
			return (*simBusServer)(&b)
		}
	}
	panic("no simulator for bus " + bus)
}

type simBusServer simBus

func (s *simBusServer) Addr() string { return s.server.Addr() }

// parseConfig parses text, points the buses at addrs and polls every 20 ms
// (load), then applies mutate.
func parseConfig(t *testing.T, text string, addrs map[string]string) *config.Config {
	t.Helper()
	cfg, diags := config.Parse("test.hcl", []byte(text), noEnv)
	if diags.HasErrors() {
		t.Fatalf("test config: %v", diags)
	}
	for _, b := range cfg.Buses {
		if a, ok := addrs[b.Name]; ok {
			b.Address = a
		}
	}
	for _, d := range cfg.Devices {
		d.Poll = 20 * time.Millisecond
	}
	return cfg
}

// config is the test configuration, plus extra, as the rig's simulators
// serve it, changed by mutate: what a reload re-reads.
func (r *reloadRig) config(t *testing.T, extra string, mutate func(*config.Config)) *config.Config {
	t.Helper()
	cfg := parseConfig(t, testConfig+extra, r.addrs)
	if mutate != nil {
		mutate(cfg)
	}
	return cfg
}

func (r *reloadRig) reload(t *testing.T, cfg *config.Config) ReloadReport {
	t.Helper()
	rep, err := r.bridge.Reload(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Reload: %v", err)
	}
	return rep
}

// waitMore waits until each device has delivered n more events than now.
func (r *reloadRig) waitMore(t *testing.T, n int, devices ...string) {
	t.Helper()
	for _, d := range devices {
		want := r.acct.count(d) + n
		testwait.For(t, waitTimeout, d+" events", func() bool { return r.acct.count(d) >= want })
	}
}

func device(cfg *config.Config, name string) *config.Device {
	for _, d := range cfg.Devices {
		if d.Name == name {
			return d
		}
	}
	return nil
}

func withoutDevice(name string) func(*config.Config) {
	return func(cfg *config.Config) {
		cfg.Devices = slices.DeleteFunc(cfg.Devices, func(d *config.Device) bool { return d.Name == name })
	}
}

const (
	m1Client = "d:test01:meter:m1"
	m2Client = "d:test01:meter:m2"
	m3Client = "d:test01:meter:m3"
	b9Client = "d:test01:boiler:boiler-9"
)

// TestReloadByDifference reloads a running bridge, under load, with each
// kind of change, and checks from the platform's side: connections of
// devices the change did not touch were never reconnected, and every
// device's seqs arrived once each, in order, without a gap, across every
// reload; a removed device's buffered events all arrived; an added device
// started at seq 1.
func TestReloadByDifference(t *testing.T) {
	r := startReloadRig(t, quietLogger())
	all := []string{"m1", "m2", "boiler-9"}
	r.waitMore(t, 10, all...)
	wantConnects := map[string]int{m1Client: 1, m2Client: 1, b9Client: 1}
	checkConnects := func(step string) {
		t.Helper()
		if diff := cmp.Diff(wantConnects, r.acct.connections()); diff != "" {
			t.Errorf("%s: connections per client id (-want +got):\n%s", step, diff)
		}
	}
	checkConnects("start")

	// The same configuration again: nothing restarts.
	rep := r.reload(t, r.config(t, "", nil))
	if diff := cmp.Diff(ReloadReport{Unchanged: 3}, rep); diff != "" {
		t.Errorf("same configuration: report (-want +got):\n%s", diff)
	}

	// A device's poll changes and a device is added: the bus restarts, no
	// connection of an existing device does.
	rep = r.reload(t, r.config(t, m3Device, func(cfg *config.Config) { device(cfg, "m2").Poll = 30 * time.Millisecond }))
	if diff := cmp.Diff(ReloadReport{Added: []string{"m3"}, Changed: []string{"m2"}, Restarted: []string{"b1"}, Unchanged: 2}, rep); diff != "" {
		t.Errorf("poll change and added device: report (-want +got):\n%s", diff)
	}
	all = append(all, "m3")
	r.waitMore(t, 10, all...)
	wantConnects[m3Client] = 1
	checkConnects("poll change and added device")

	// A point of a type changes (energy's scale): every meter gets new
	// rules, and the readings show the new scale.
	rep = r.reload(t, r.config(t, m3Device, func(cfg *config.Config) {
		device(cfg, "m2").Poll = 30 * time.Millisecond
		meter := device(cfg, "m1").Type
		meter.Points[meter.PointIndex("energy")].Scale = 0.01
	}))
	if diff := cmp.Diff(ReloadReport{Changed: []string{"m1", "m2", "m3"}, Restarted: []string{"b1"}, Unchanged: 1}, rep); diff != "" {
		t.Errorf("type change: report (-want +got):\n%s", diff)
	}
	testwait.For(t, waitTimeout, "readings with the new scale", func() bool { return r.acct.lastEnergy("m1") == 123.45 })
	r.waitMore(t, 10, all...)
	checkConnects("type change")

	// Bus b2 moves to another simulator: its loop restarts there, the
	// device's connection stays.
	before := r.alt.server("b2").server.Requests(9, 3)
	rep = r.reload(t, r.config(t, m3Device, func(cfg *config.Config) {
		device(cfg, "m2").Poll = 30 * time.Millisecond
		meter := device(cfg, "m1").Type
		meter.Points[meter.PointIndex("energy")].Scale = 0.01
		device(cfg, "boiler-9").Bus.Address = r.b2Alt
	}))
	if diff := cmp.Diff(ReloadReport{Restarted: []string{"b2"}, Unchanged: 4}, rep); diff != "" {
		t.Errorf("bus address change: report (-want +got):\n%s", diff)
	}
	testwait.For(t, waitTimeout, "boiler-9 polled at the new address", func() bool { return r.alt.server("b2").server.Requests(9, 3) > before+5 })
	r.waitMore(t, 10, all...)
	checkConnects("bus address change")

	// m2 is removed: it stops; what it buffered arrives; then it disconnects.
	rep = r.reload(t, r.config(t, m3Device, func(cfg *config.Config) {
		meter := device(cfg, "m1").Type
		meter.Points[meter.PointIndex("energy")].Scale = 0.01
		device(cfg, "boiler-9").Bus.Address = r.b2Alt
		withoutDevice("m2")(cfg)
	}))
	if diff := cmp.Diff(ReloadReport{Removed: []string{"m2"}, Restarted: []string{"b1"}, Unchanged: 3}, rep); diff != "" {
		t.Errorf("removed device: report (-want +got):\n%s", diff)
	}
	testwait.For(t, waitTimeout, "m2 disconnected after sending its events", func() bool { return r.acct.disconnects(m2Client) == 1 })
	m2Last := r.bridge.store.QueueStats("m2").NextSeq - 1
	r.waitMore(t, 10, "m1", "m3", "boiler-9")
	checkConnects("removed device")

	// Back to the start: m3 is removed, m2 comes back and continues its
	// queue's seq after the last one it sent.
	r.reload(t, r.config(t, "", nil))
	testwait.For(t, waitTimeout, "m3 disconnected after sending its events", func() bool { return r.acct.disconnects(m3Client) == 1 })
	testwait.For(t, waitTimeout, "m2 back", func() bool { return r.acct.count("m2") > int(m2Last) })
	wantConnects[m2Client] = 2
	r.waitMore(t, 10, "m1", "m2", "boiler-9")
	checkConnects("back to the start")

	// Every device removed: each sends what it buffered, then disconnects;
	// then every seq is accounted for.
	r.reload(t, r.config(t, "", func(cfg *config.Config) { cfg.Devices = nil }))
	for _, c := range []string{m1Client, b9Client} {
		testwait.For(t, waitTimeout, c+" disconnected after sending its events", func() bool { return r.acct.disconnects(c) == 1 })
	}
	testwait.For(t, waitTimeout, "m2 disconnected again", func() bool { return r.acct.disconnects(m2Client) == 2 })
	// The connections of removed devices are no longer counted or reported down.
	testwait.For(t, waitTimeout, "no uplink tracked", func() bool {
		u := r.bridge.uplinks
		u.mu.Lock()
		defer u.mu.Unlock()
		return u.total == 0 && len(u.down) == 0
	})
	for _, d := range []string{"m1", "m2", "m3", "boiler-9"} {
		r.acct.checkExactly(t, d, r.bridge.store.QueueStats(d).NextSeq-1)
	}
	if v := r.plat.Violations(); len(v) > 0 {
		t.Errorf("the platform recorded rule violations: %+v", v)
	}
}

// TestReloadInvalidFileKeepsRunning reloads from a file with an error: the
// diagnostics are logged as validate prints them, and nothing changes.
func TestReloadInvalidFileKeepsRunning(t *testing.T) {
	var logs logCapture
	r := startReloadRig(t, logs.logger())
	r.waitMore(t, 5, "m1", "m2", "boiler-9")
	path := filepath.Join(t.TempDir(), "bridge.hcl")
	bad := strings.Replace(testConfig, `bus   = "b2"`, `bus   = "b3"`, 1)
	if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	before := r.bridge.view()
	r.bridge.reloadFile(context.Background(), path)
	if r.bridge.view() != before {
		t.Error("the running configuration changed after an invalid file")
	}
	var validate bytes.Buffer
	if _, err := loadConfig(path, &validate); err == nil {
		t.Fatal("the invalid file loads")
	}
	diags := logs.lines("configuration diagnostics")
	if len(diags) != 1 || diags[0]["diagnostics"] != validate.String() || diags[0]["level"] != "ERROR" {
		t.Errorf("diagnostics logged: %v, want one ERROR line with what validate prints:\n%s", diags, validate.String())
	}
	if n := len(logs.lines("reload refused: the configuration has errors; the running configuration stays")); n != 1 {
		t.Errorf("%d lines say the reload was refused, want 1", n)
	}
	r.waitMore(t, 5, "m1", "m2", "boiler-9")
	if diff := cmp.Diff(map[string]int{m1Client: 1, m2Client: 1, b9Client: 1}, r.acct.connections()); diff != "" {
		t.Errorf("connections per client id (-want +got):\n%s", diff)
	}
}

// TestReloadNeedsRestart: a changed platform block is reported as needing
// a restart, and the rest of the configuration is applied.
func TestReloadNeedsRestart(t *testing.T) {
	r := startReloadRig(t, quietLogger())
	r.waitMore(t, 5, "m1")
	rep := r.reload(t, r.config(t, "", func(cfg *config.Config) {
		cfg.Platform.KeepAlive *= 2
		cfg.Buffer.MaxBytes *= 2
		withoutDevice("m2")(cfg)
	}))
	if diff := cmp.Diff(ReloadReport{Removed: []string{"m2"}, Restarted: []string{"b1"}, Unchanged: 2, NeedRestart: []string{"platform", "buffer"}}, rep); diff != "" {
		t.Errorf("report (-want +got):\n%s", diff)
	}
	if got, want := r.bridge.view().cfg.Platform.KeepAlive, r.bridge.cfg.Platform.KeepAlive; got != want {
		t.Errorf("applied keep alive %v, want the running %v", got, want)
	}
	r.waitMore(t, 5, "m1", "boiler-9")
}

// TestReloadWhenNotRunning: Reload before Run is refused.
func TestReloadWhenNotRunning(t *testing.T) {
	cfg := parseConfig(t, testConfig, nil)
	b, err := newBridge(cfg, bridgeOptions{InMemoryBuffer: true}, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer b.store.Close()
	if _, err := b.Reload(context.Background(), cfg); err != errNotRunning {
		t.Errorf("Reload before Run = %v, want %v", err, errNotRunning)
	}
}

// TestReloadSameFileIsUnchanged: parsing the same file twice gives devices
// and buses a reload sees as unchanged (nothing in the parsed
// configuration compares unequal by accident, such as a func).
func TestReloadSameFileIsUnchanged(t *testing.T) {
	a, b := parseConfig(t, testConfig, nil), parseConfig(t, testConfig, nil)
	for i := range a.Devices {
		if !sameDevice(a.Devices[i], b.Devices[i]) {
			t.Errorf("device %s differs from itself", a.Devices[i].Name)
		}
	}
	for i := range a.Buses {
		if !reflect.DeepEqual(a.Buses[i], b.Buses[i]) {
			t.Errorf("bus %s differs from itself", a.Buses[i].Name)
		}
	}
}

// TestSIGHUPReload runs the real command as a child process, removes a
// device from its file and sends SIGHUP: the device is removed and the
// others keep publishing; then an invalid file and SIGHUP: the error is
// logged and the bridge keeps running what it had; SIGTERM still drains
// everything and exits 0.
func TestSIGHUPReload(t *testing.T) {
	c := startChildBridge(t)
	c.waitLog(t, "bridge started")
	c.waitEvents(t, 10)
	src, err := os.ReadFile(c.config) // for the invalid reload below
	if err != nil {
		t.Fatal(err)
	}
	c.removeDeviceFromConfig(t, "m2")
	if err := c.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	// The removed device may be done (its queues were empty) before the
	// signal handler logs the reload's report: either line may come first.
	lines := c.waitLogs(t, `"msg":"reloaded"`, "removed device's events sent; disconnected", `"msg":"memory limit set"`)
	line := lines[0]
	// The soft memory limit follows the configuration (GOMEMLIMIT is not set here).
	if !strings.Contains(lines[2], `"devices":2`) {
		t.Errorf("after the reload: %s, want the limit for 2 devices", lines[2])
	}
	var rep struct {
		Removed   []string
		Unchanged int
	}
	if err := json.Unmarshal([]byte(line), &rep); err != nil {
		t.Fatalf("log line %s: %v", line, err)
	}
	if !slices.Equal(rep.Removed, []string{"m2"}) || rep.Unchanged != 2 {
		t.Errorf("reloaded: %s, want m2 removed and 2 devices unchanged", line)
	}
	c.waitEvents(t, 10)

	writeFile(t, c.config, bytes.Replace(src, []byte(`bus   = "b2"`), []byte(`bus   = "b3"`), 1))
	if err := c.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	c.waitLog(t, "Unknown bus")
	c.waitLog(t, "reload refused")
	c.waitEvents(t, 10)
	c.stop(t)
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestReloadDuringBrokerOutage reloads a gateway-mode bridge while the
// broker (a real Mosquitto) is down and a backlog builds: m2 is removed,
// boiler-9's poll changes. When the broker is back, a durable subscriber
// receives every seq of every device, the removed one's included, in order
// per device (duplicates allowed: an outage may cost a resend).
func TestReloadDuringBrokerOutage(t *testing.T) {
	broker := mqtttest.NewPersistentMosquitto(t)
	r := startSimulation(t)
	gatewayMode := func(cfg *config.Config) {
		cfg.Platform.Mode = config.ModeGateway
		cfg.Platform.Gateway = &config.Gateway{Type: "edge-gw", ID: "gw-1", Token: "gateway-token"}
		for _, d := range cfg.Devices {
			d.Poll = 10 * time.Millisecond
		}
	}
	gatewayMode(r.cfg)
	addrs := map[string]string{}
	for _, b := range r.cfg.Buses {
		addrs[b.Name] = b.Address
	}

	rec := startChecker(t, broker.URL())

	b, err := newBridge(r.cfg, bridgeOptions{Broker: broker.URL(), InMemoryBuffer: true, Drain: 20 * time.Second}, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	stop := runInBackground(t, b)

	testwait.For(t, waitTimeout, "events before the outage", func() bool { return len(rec.firsts("m2")) >= 20 })
	broker.Stop()
	outage := time.Now()
	testwait.For(t, waitTimeout, "a backlog", func() bool { return b.store.QueueStats("m2").Len >= 50 })
	next := parseConfig(t, testConfig, addrs)
	gatewayMode(next)
	withoutDevice("m2")(next)
	device(next, "boiler-9").Poll = 30 * time.Millisecond
	rep, err := b.Reload(context.Background(), next)
	if err != nil {
		t.Fatalf("Reload during the outage: %v", err)
	}
	if diff := cmp.Diff(ReloadReport{Removed: []string{"m2"}, Changed: []string{"boiler-9"}, Restarted: []string{"b1", "b2"}, Unchanged: 1}, rep); diff != "" {
		t.Errorf("report (-want +got):\n%s", diff)
	}
	m2Last := b.store.QueueStats("m2").NextSeq - 1
	testwait.For(t, waitTimeout, "a backlog on m1", func() bool {
		return b.store.QueueStats("m1").Len >= 50 && (os.Getenv("SHORT") != "" || time.Since(outage) > time.Second)
	})
	broker.Start()
	testwait.For(t, waitTimeout, "m2's backlog sent", func() bool {
		f := rec.firsts("m2")
		return len(f) > 0 && f[len(f)-1] == m2Last
	})
	if err := stop(); err != nil {
		t.Fatalf("bridge.Run = %v", err)
	}
	if got := b.store.QueueStats("m2").NextSeq - 1; got != m2Last {
		t.Errorf("m2 appended up to seq %d after it was removed at %d", got, m2Last)
	}
	for _, d := range []string{"m1", "m2", "boiler-9"} {
		last := b.store.QueueStats(d).NextSeq - 1
		testwait.For(t, waitTimeout, "every seq of "+d, func() bool {
			f := rec.firsts(d)
			return len(f) > 0 && f[len(f)-1] == last
		})
		got := rec.firsts(d)
		for i, s := range got {
			if s != uint64(i+1) {
				rec.mu.Lock()
				all := rec.seqs[d]
				rec.mu.Unlock()
				t.Fatalf("%s: seq %d arrived where %d was due (first arrivals %v...; all arrivals %v)", d, s, i+1, got[:min(len(got), i+5)], all)
			}
		}
	}
}

// TestReloadManagedDevices: device management stops and starts with the
// device. A removed device is unmanaged (its agent sends Unmanage while its
// connection is still up); devices the reload did not touch send no new
// Manage; a device added back is managed again.
func TestReloadManagedDevices(t *testing.T) {
	for _, gateway := range []bool{false, true} {
		t.Run(map[bool]string{false: "device", true: "gateway"}[gateway], func(t *testing.T) {
			r, dir, stop := startManaged(t, gateway)
			managed := func(id string) platform.DMState {
				typ := "meter"
				if id == "boiler-9" {
					typ = "boiler"
				}
				st, _ := r.plat.Managed(typ, id)
				return st
			}
			for _, id := range []string{"m1", "m2", "boiler-9"} {
				testwait.For(t, waitTimeout, id+" managed", func() bool { return managed(id).Managed })
			}
			// A meter sends Manage again once its firmware version is read.
			for _, id := range []string{"m1", "m2"} {
				testwait.For(t, waitTimeout, id+"'s firmware version", func() bool { return managed(id).DeviceInfo["fwVersion"] == "302" })
			}
			manages := map[string]int{}
			for _, id := range []string{"m1", "m2", "boiler-9"} {
				manages[id] = managed(id).Manages
			}
			reparse := func(without string) *config.Config {
				cfg, diags := config.Parse("test.hcl", []byte(managedConfig(t, dir)), noEnv)
				if diags.HasErrors() {
					t.Fatalf("config: %v", diags)
				}
				for i, b := range cfg.Buses {
					b.Address = r.cfg.Buses[i].Address
				}
				cfg.Platform, cfg.Metrics = r.cfg.Platform, r.cfg.Metrics
				if without != "" {
					withoutDevice(without)(cfg)
				}
				return cfg
			}
			rep, err := r.b.Reload(context.Background(), reparse("m2"))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(ReloadReport{Removed: []string{"m2"}, Restarted: []string{"b1"}, Unchanged: 2}, rep); diff != "" {
				t.Errorf("report (-want +got):\n%s", diff)
			}
			testwait.For(t, waitTimeout, "m2 unmanaged", func() bool { return !managed("m2").Managed })
			if _, err := r.b.Reload(context.Background(), reparse("")); err != nil {
				t.Fatal(err)
			}
			testwait.For(t, waitTimeout, "m2 managed again", func() bool { return managed("m2").Managed && managed("m2").Manages > manages["m2"] })
			for _, id := range []string{"m1", "boiler-9"} {
				if n := managed(id).Manages; n != manages[id] {
					t.Errorf("%s sent Manage %d times, want %d: the reloads did not touch it", id, n, manages[id])
				}
			}
			if err := stop(); err != nil {
				t.Fatalf("Run = %v", err)
			}
		})
	}
}

// TestConcurrentReloads: reloads from two goroutines at once are applied
// one after the other; devices both configurations keep are never
// reconnected and lose or repeat nothing.
func TestConcurrentReloads(t *testing.T) {
	r := startReloadRig(t, quietLogger())
	r.waitMore(t, 5, "m1", "m2", "boiler-9")
	var wg sync.WaitGroup
	for _, without := range []string{"m2", ""} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5 {
				cfg := r.config(t, "", nil)
				if without != "" {
					withoutDevice(without)(cfg)
				}
				if _, err := r.bridge.Reload(context.Background(), cfg); err != nil {
					t.Errorf("Reload: %v", err)
				}
			}
		}()
	}
	wg.Wait()
	r.reload(t, r.config(t, "", nil))
	r.waitMore(t, 10, "m1", "m2", "boiler-9")
	r.reload(t, r.config(t, "", func(cfg *config.Config) { cfg.Devices = nil }))
	for _, c := range []string{m1Client, m2Client, b9Client} {
		testwait.For(t, waitTimeout, c+" disconnected", func() bool {
			r.acct.mu.Lock()
			defer r.acct.mu.Unlock()
			return r.acct.gone[c] == r.acct.connects[c]
		})
	}
	for _, c := range []string{m1Client, b9Client} {
		if n := r.acct.connections()[c]; n != 1 {
			t.Errorf("%s connected %d times, want once", c, n)
		}
	}
	for _, d := range []string{"m1", "boiler-9"} {
		r.acct.checkExactly(t, d, r.bridge.store.QueueStats(d).NextSeq-1)
	}
	// m2 was removed and added back while it drained: its forwarder was
	// replaced with events in flight, which may arrive twice, never not.
	r.acct.mu.Lock()
	seen := map[uint64]bool{}
	for _, s := range r.acct.seqs["m2"] {
		seen[s] = true
	}
	r.acct.mu.Unlock()
	for s := uint64(1); s < r.bridge.store.QueueStats("m2").NextSeq; s++ {
		if !seen[s] {
			t.Errorf("m2: seq %d never arrived", s)
		}
	}
}
