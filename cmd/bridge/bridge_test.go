package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/google/go-cmp/cmp"

	"fieldbridge/config"
	"fieldbridge/internal/mqtttest"
	"fieldbridge/platform"

	"fieldbridge/internal/testwait"
)

// testConfig has two device types on two buses with fixed simulated values,
// so the events' values are known exactly. The bus addresses are replaced by
// the simulators' own.
const testConfig = `
platform {
  org = "test01"
  tls = false
}
bus "b1" {
  modbus_tcp {
    address = "127.0.0.1:0"
    timeout = "200ms"
  }
}
bus "b2" {
  modbus_tcp { address = "127.0.0.1:0" }
}
device_type "meter" {
  point "voltage" {
    table      = "input"
    address    = 0
    type       = "float32"
    byte_order = "CDAB"
    simulate {
      mode  = "fixed"
      value = 230.5
    }
  }
  point "energy" {
    table   = "input"
    address = 2
    type    = "uint32"
    scale   = 0.1
    simulate {
      mode  = "fixed"
      value = 1234.5
    }
  }
  point "closed" {
    table   = "discrete"
    address = 0
    type    = "bool"
    simulate {
      mode  = "fixed"
      value = 1
    }
  }
  point "limit" {
    table    = "holding"
    address  = 10
    type     = "uint16"
    writable = true
    max      = 500
  }
  point "alarm_ack" {
    table    = "holding"
    address  = 11
    type     = "bool"
    bit      = 3
    writable = true
  }
  event "reading" {
    points = ["voltage", "energy", "closed"]
  }
  command "set_limit" {
    write "limit" { value = "$.d.value" }
    readback = true
  }
  command "ack" {
    write "alarm_ack" { value = true }
  }
}
device_type "boiler" {
  point "temp" {
    table   = "holding"
    address = 5
    type    = "int16"
    scale   = 0.1
    simulate {
      mode  = "fixed"
      value = -12.5
    }
  }
}
device "m1" {
  type  = "meter"
  bus   = "b1"
  unit  = 1
  poll  = "100ms"
  token = "token-m1-secret"
}
device "m2" {
  type  = "meter"
  bus   = "b1"
  unit  = 2
  poll  = "100ms"
  token = "token-m2-secret"
}
device "boiler-9" {
  type  = "boiler"
  bus   = "b2"
  unit  = 9
  poll  = "100ms"
  token = "token-b9-secret"
}
`

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// rig is a simulator, a bridge and (optionally) a local platform, wired as
// in production but all in this process.
type rig struct {
	cfg  *config.Config
	sims *simulation
	plat *platform.Platform
	b    *bridge // set by the helpers that start the bridge themselves
}

// startSimulation parses testConfig and starts the simulators on free ports.
func startSimulation(t *testing.T) *rig {
	t.Helper()
	return startSimulationOf(t, testConfig)
}

// startSimulationOf is startSimulation with the configuration src.
func startSimulationOf(t *testing.T, src string) *rig {
	t.Helper()
	cfg, diags := config.Parse("test.hcl", []byte(src), noEnv)
	if diags.HasErrors() {
		t.Fatalf("test config: %v", diags)
	}
	sims, err := startSimulators(cfg, func(*config.Bus) string { return "127.0.0.1:0" }, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sims.Close)
	sims.pointBuses(cfg)
	return &rig{cfg: cfg, sims: sims}
}

// startPlatform starts the local platform with the configuration's devices
// registered and subscribes to every event.
func (r *rig) startPlatform(t *testing.T) *platform.Subscription {
	t.Helper()
	return r.startPlatformWith(t, r.registry())
}

// registry is the platform registry of the configuration: its devices and,
// in gateway mode, the gateway.
func (r *rig) registry() []platform.Device {
	var devices []platform.Device
	if g := r.cfg.Platform.Gateway; g != nil && r.cfg.Platform.Mode == config.ModeGateway {
		devices = append(devices, platform.Device{Type: g.Type, ID: g.ID, Token: g.Token, Gateway: true})
	}
	for _, d := range r.cfg.Devices {
		devices = append(devices, platform.Device{Type: d.Type.Name, ID: d.Name, Token: d.Token})
	}
	return devices
}

// startPlatformOn starts the local platform of the configuration's org on
// addr ("": a free port) with the given registry, until the test ends.
func (r *rig) startPlatformOn(t *testing.T, addr string, devices []platform.Device) *platform.Platform {
	t.Helper()
	p, err := platform.New(platform.Config{Org: r.cfg.Platform.Org, Addr: addr, Devices: devices}, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatalf("start the platform on %q: %v", addr, err)
	}
	t.Cleanup(func() { p.Close() })
	r.plat = p
	return p
}

// useGateway switches the configuration to gateway mode, as gateway gw-1
// of type edge-gw (startPlatform registers it).
func (r *rig) useGateway() {
	r.cfg.Platform.Mode = config.ModeGateway
	r.cfg.Platform.Gateway = &config.Gateway{Type: "edge-gw", ID: "gw-1", Token: "gateway-token-1"}
}

// startPlatformWith is startPlatform with the given registry.
func (r *rig) startPlatformWith(t *testing.T, devices []platform.Device) *platform.Subscription {
	t.Helper()
	p := r.startPlatformOn(t, "", devices)
	sub, err := p.Subscribe("iot-2/type/+/id/+/evt/+/fmt/+")
	if err != nil {
		t.Fatal(err)
	}
	return sub
}

// runBridge runs a bridge against broker until the test ends.
func (r *rig) runBridge(t *testing.T, broker string) {
	t.Helper()
	b, err := newBridge(r.cfg, bridgeOptions{Broker: broker, InMemoryBuffer: true, Drain: 100 * time.Millisecond}, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	stopWhenDone(t, runInBackground(t, b))
}

// runInBackground runs b until stop is called, or the test ends. stop
// cancels Run and returns its result; the first call waits for it, later
// calls return the same result.
func runInBackground(t *testing.T, b *bridge) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop = func() error {
		once.Do(func() {
			cancel()
			runErr = <-done
		})
		return runErr
	}
	t.Cleanup(func() { stop() })
	return stop
}

// stopWhenDone stops a bridge run by runInBackground when the test ends and
// requires Run to return nil.
func stopWhenDone(t *testing.T, stop func() error) {
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("bridge.Run = %v, want nil after cancel", err)
		}
	})
}

type payload struct {
	D   map[string]any `json:"d"`
	TS  string         `json:"ts"`
	Seq uint64         `json:"seq"`
}

func decode(t *testing.T, b []byte) payload {
	t.Helper()
	var p payload
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatalf("payload %q is not JSON: %v", b, err)
	}
	if _, err := time.Parse("2006-01-02T15:04:05.000Z", p.TS); err != nil {
		t.Errorf("ts %q is not RFC 3339 UTC with milliseconds", p.TS)
	}
	return p
}

// collect reads messages until each key of want has at least want[key] of them.
func collect(t *testing.T, c <-chan platform.Message, key func(platform.Message) string, want map[string]int) map[string][]platform.Message {
	t.Helper()
	got := map[string][]platform.Message{}
	timeout := time.After(15 * time.Second)
	for {
		done := true
		for k, n := range want {
			if len(got[k]) < n {
				done = false
			}
		}
		if done {
			return got
		}
		select {
		case m := <-c:
			got[key(m)] = append(got[key(m)], m)
		case <-timeout:
			counts := map[string]int{}
			for k, v := range got {
				counts[k] = len(v)
			}
			t.Fatalf("timed out: got %v, want at least %v", counts, want)
		}
	}
}

func byTopic(m platform.Message) string { return m.Topic }

func TestSimulatorToBridgeToPlatform(t *testing.T) {
	r := startSimulation(t)
	sub := r.startPlatform(t)
	r.runBridge(t, "tcp://"+r.plat.Addr())

	meterTopic := func(id, ev string) string { return "iot-2/type/meter/id/" + id + "/evt/" + ev + "/fmt/json" }
	boilerReading := "iot-2/type/boiler/id/boiler-9/evt/reading/fmt/json"
	got := collect(t, sub.C, byTopic, map[string]int{
		meterTopic("m1", "reading"): 5, meterTopic("m2", "reading"): 5, boilerReading: 5,
		meterTopic("m1", "status"): 1, meterTopic("m2", "status"): 1, "iot-2/type/boiler/id/boiler-9/evt/status/fmt/json": 1,
	})

	wantD := map[string]map[string]any{
		meterTopic("m1", "reading"): {"voltage": 230.5, "energy": 1234.5, "closed": true},
		meterTopic("m2", "reading"): {"voltage": 230.5, "energy": 1234.5, "closed": true},
		boilerReading:               {"temp": -12.5},
	}
	clientIDs := map[string]string{"m1": "d:test01:meter:m1", "m2": "d:test01:meter:m2", "boiler-9": "d:test01:boiler:boiler-9"}
	for topic, msgs := range got {
		id := strings.Split(topic, "/")[4]
		// seq is per device: status and readings share one sequence.
		for _, m := range msgs {
			if m.Retain {
				t.Errorf("%s: retain flag set", topic)
			}
			if m.QoS != 1 {
				t.Errorf("%s: published at QoS %d, want the configured 1", topic, m.QoS)
			}
			if m.ClientID != clientIDs[id] {
				t.Errorf("%s: client id %q, want %q", topic, m.ClientID, clientIDs[id])
			}
			if want, ok := wantD[topic]; ok {
				if diff := cmp.Diff(want, decode(t, m.Payload).D); diff != "" {
					t.Errorf("%s: d (-want +got):\n%s", topic, diff)
				}
			}
		}
	}
	for id := range clientIDs {
		typ := "meter"
		if id == "boiler-9" {
			typ = "boiler"
		}
		var seqs []uint64
		for _, ev := range []string{"status", "reading"} {
			for _, m := range got["iot-2/type/"+typ+"/id/"+id+"/evt/"+ev+"/fmt/json"] {
				seqs = append(seqs, decode(t, m.Payload).Seq)
			}
		}
		checkContinuous(t, id, seqs)
	}
	if v := r.plat.Violations(); len(v) > 0 {
		t.Errorf("the platform recorded rule violations: %+v", v)
	}
}

// checkContinuous checks that seqs, in any order, are 1..n without gaps or repeats.
func checkContinuous(t *testing.T, device string, seqs []uint64) {
	t.Helper()
	seen := map[uint64]bool{}
	for _, s := range seqs {
		if seen[s] {
			t.Errorf("%s: seq %d delivered twice", device, s)
		}
		seen[s] = true
	}
	for s := uint64(1); s <= uint64(len(seqs)); s++ {
		if !seen[s] {
			t.Errorf("%s: seq %d missing from %v", device, s, seqs)
		}
	}
}

func TestDeviceDownAndUp(t *testing.T) {
	r := startSimulation(t)
	sub := r.startPlatform(t)
	r.runBridge(t, "tcp://"+r.plat.Addr())
	status := "iot-2/type/meter/id/m1/evt/status/fmt/json"
	reading := "iot-2/type/meter/id/m1/evt/reading/fmt/json"

	next := func(topic string, match func(payload) bool) payload {
		t.Helper()
		timeout := time.After(20 * time.Second)
		for {
			select {
			case m := <-sub.C:
				if m.Topic == topic {
					if p := decode(t, m.Payload); match(p) {
						return p
					}
				}
			case <-timeout:
				t.Fatalf("timed out waiting for %s", topic)
			}
		}
	}
	any := func(payload) bool { return true }
	up := func(p payload) bool { return p.D["status"] == "up" }
	next(status, up)
	next(reading, any)

	bus1 := r.sims.servers[0]
	if bus1.bus != "b1" {
		t.Fatalf("first simulator serves %s, want b1", bus1.bus)
	}
	if err := bus1.server.Pause(); err != nil {
		t.Fatal(err)
	}
	down := next(status, func(p payload) bool { return p.D["status"] == "down" })
	if msg, _ := down.D["error"].(string); msg == "" {
		t.Errorf("down status without an error text: %v", down.D)
	}
	if err := bus1.server.Resume(); err != nil {
		t.Fatal(err)
	}
	upAgain := next(status, up)
	if upAgain.Seq <= down.Seq {
		t.Errorf("up seq %d not after down seq %d", upAgain.Seq, down.Seq)
	}
	if p := next(reading, any); p.Seq <= upAgain.Seq {
		t.Errorf("reading seq %d not after the up status %d", p.Seq, upAgain.Seq)
	}
}

// TestAgainstMosquitto runs the bridge against a real third-party broker
// and checks from a subscriber's side what arrived.
func TestAgainstMosquitto(t *testing.T) {
	addr := mqtttest.StartMosquitto(t)
	r := startSimulation(t)
	// One device: against a plain broker device-mode topics are relative and
	// say nothing about who sent them.
	r.cfg.Devices = r.cfg.Devices[:1]

	type msg struct {
		topic  string
		retain bool
		qos    byte
		body   []byte
	}
	var mu sync.Mutex
	var msgs []msg
	opts := mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("subscriber").SetAutoReconnect(false)
	sub := mqtt.NewClient(opts)
	if tok := sub.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscriber connect: %v", tok.Error())
	}
	t.Cleanup(func() { sub.Disconnect(100) })
	if tok := sub.Subscribe("#", 1, func(_ mqtt.Client, m mqtt.Message) {
		mu.Lock()
		msgs = append(msgs, msg{m.Topic(), m.Retained(), m.Qos(), m.Payload()})
		mu.Unlock()
	}); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	r.runBridge(t, "tcp://"+addr)

	deadline := time.Now().Add(15 * time.Second)
	for {
		mu.Lock()
		n := len(msgs)
		mu.Unlock()
		if n >= 10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("got %d messages from mosquitto, want 10", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	var seqs []uint64
	for _, m := range msgs {
		if m.retain {
			t.Errorf("%s: retained", m.topic)
		}
		if m.qos != 1 {
			t.Errorf("%s: delivered at QoS %d, want 1", m.topic, m.qos)
		}
		p := decode(t, m.body)
		switch m.topic {
		case "iot-2/evt/status/fmt/json":
			if p.D["status"] != "up" {
				t.Errorf("status %v", p.D)
			}
		case "iot-2/evt/reading/fmt/json":
			if diff := cmp.Diff(map[string]any{"voltage": 230.5, "energy": 1234.5, "closed": true}, p.D); diff != "" {
				t.Errorf("reading d (-want +got):\n%s", diff)
			}
		default:
			t.Errorf("unexpected topic %q", m.topic)
		}
		seqs = append(seqs, p.Seq)
	}
	for i, s := range seqs {
		if s != uint64(i+1) {
			t.Fatalf("seqs arrived as %v, want 1, 2, 3, ... in order", seqs)
		}
	}
}

func TestBrokerURL(t *testing.T) {
	tests := []struct {
		p    config.Platform
		want string
	}{
		{config.Platform{Org: "ab12cd", Domain: config.DefaultDomain, TLS: true, Port: 8883, Transport: "tcp"}, "ssl://ab12cd.messaging.internetofthings.ibmcloud.com:8883"},
		{config.Platform{Org: "quickstart", Domain: config.DefaultDomain, Port: 1883, Transport: "tcp"}, "tcp://quickstart.messaging.internetofthings.ibmcloud.com:1883"},
		{config.Platform{Org: "ab12cd", Host: "10.1.2.3", TLS: true, Port: 443, Transport: "websocket"}, "wss://10.1.2.3:443/mqtt"},
	}
	for _, tt := range tests {
		if got := brokerURL(tt.p); got != tt.want {
			t.Errorf("brokerURL(%+v) = %q, want %q", tt.p, got, tt.want)
		}
	}
}

func TestFormatEvent(t *testing.T) {
	m := platform.Message{Topic: "iot-2/type/meter/id/m1/evt/reading/fmt/json", Payload: []byte(`{"d":{"v":1},"ts":"2026-01-01T00:00:00.000Z","seq":7}`), Time: time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)}
	got := formatEvent(m)
	want := fmt.Sprintf("10:00:00.000  %-22s %-10s seq=%-5d %s", "meter/m1", "reading", 7, `{"v":1}`)
	if got != want {
		t.Errorf("formatEvent = %q\nwant          %q", got, want)
	}
}

// TestDemo runs the README's first command for a few seconds and checks
// that events of all three devices were printed as the platform got them.
func TestDemo(t *testing.T) {
	var out, errs strings.Builder
	code := run(context.Background(), func() {}, []string{"demo", "-duration", "4s"}, &out, &errs)
	if code != exitOK {
		t.Fatalf("demo exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errs.String())
	}
	for _, want := range []string{"power-meter/meter-1", "power-meter/meter-2", "boiler/boiler-1", `"status":"up"`, "voltage_l1", "flow_temp",
		"-> command set_setpoint", `"ok":true,"written":{"setpoint":65.5},"readback":{"setpoint":65.5}`, "<- simulator saw FC6 holding 2 = [655]", `"setpoint":65.5}`,
		"power-meter/meter-1    managed    deviceInfo={\"fwVersion\":\"1.0\",\"manufacturer\":\"Demo Meters\",\"model\":\"DM-3P\"} metadata={\"line\":1,\"site\":\"demo\"}",
		"boiler/boiler-1        managed"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out.String())
		}
	}
}

// TestQuickstartAgainstMosquitto: quickstart mode against a plain broker,
// from a subscriber's side: relative event topics, QoS 0, never retained,
// about one event per second although the device is polled every 100 ms.
func TestQuickstartAgainstMosquitto(t *testing.T) {
	addr := mqtttest.StartMosquitto(t)
	r := startSimulation(t)
	r.cfg.Platform = config.Platform{Org: "quickstart", Mode: config.ModeQuickstart, QoS: 0, KeepAlive: time.Minute}
	r.cfg.Devices = r.cfg.Devices[:1]

	var mu sync.Mutex
	var got []mqtt.Message
	sub := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("subscriber").SetAutoReconnect(false))
	if tok := sub.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscriber connect: %v", tok.Error())
	}
	t.Cleanup(func() { sub.Disconnect(100) })
	if tok := sub.Subscribe("#", 1, func(_ mqtt.Client, m mqtt.Message) {
		mu.Lock()
		got = append(got, m)
		mu.Unlock()
	}); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	start := time.Now()
	r.runBridge(t, "tcp://"+addr)
	testwait.For(t, waitTimeout, "three events", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) >= 3 })
	elapsed := time.Since(start)
	mu.Lock()
	defer mu.Unlock()
	if rate := float64(len(got)) / elapsed.Seconds(); rate > 1.5 {
		t.Errorf("%d events in %v: quickstart allows one per second", len(got), elapsed)
	}
	for _, m := range got {
		if m.Qos() != 0 || m.Retained() || !strings.HasPrefix(m.Topic(), "iot-2/evt/") {
			t.Errorf("event on %s at QoS %d retained=%v", m.Topic(), m.Qos(), m.Retained())
		}
	}
}

// TestGatewayReadAhead: in gateway mode the buffer's forwarders hold at most
// twice the gateway connection's window read ahead (at least 256, at most
// the buffer's default); device mode keeps the default.
func TestGatewayReadAhead(t *testing.T) {
	cfgWith := func(mode string, devices, inflight int) *config.Config {
		cfg := &config.Config{}
		cfg.Platform.Mode = mode
		cfg.Buffer.InFlight = inflight
		for range devices {
			cfg.Devices = append(cfg.Devices, &config.Device{})
		}
		return cfg
	}
	for _, c := range []struct {
		mode              string
		devices, inflight int
		want              int
	}{
		{config.ModeGateway, 500, 64, 2000}, // the connection takes 1 000
		{config.ModeGateway, 3, 64, 512},    // 4 queues × 64 on the wire
		{config.ModeGateway, 1, 1, 256},     // the floor
		{config.ModeDevice, 500, 64, 0},     // the buffer's default
	} {
		if got := bufferConfig(cfgWith(c.mode, c.devices, c.inflight), bridgeOptions{}).ReadAhead; got != c.want {
			t.Errorf("%s mode, %d devices, in_flight %d: ReadAhead = %d, want %d", c.mode, c.devices, c.inflight, got, c.want)
		}
	}
}
