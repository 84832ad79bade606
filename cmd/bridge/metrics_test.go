package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"fieldbridge/config"
	"fieldbridge/internal/testwait"
	"fieldbridge/platform"
)

// sample is one line of the text format.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// scrape is one parsed /metrics answer.
type scrape []sample

// scrapeMetrics fetches /metrics from addr and parses the text format.
func scrapeMetrics(t *testing.T, addr string) scrape {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("GET /metrics Content-Type = %q, want the text format", ct)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	s, err := parseText(string(body))
	if err != nil {
		t.Fatalf("/metrics is not the Prometheus text format: %v", err)
	}
	return s
}

// parseText parses the Prometheus text format, checking what scrapers
// insist on: one TYPE line per family, before its samples, and every
// family's samples in one piece.
func parseText(text string) (scrape, error) {
	var out scrape
	typed := map[string]bool{}
	done := map[string]bool{} // families whose samples ended
	current := ""
	familyOf := func(name string) string {
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suffix); ok && typed[base] {
				return base
			}
		}
		return name
	}
	for i, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			name := strings.Fields(rest)[0]
			if typed[name] {
				return nil, fmt.Errorf("line %d: second TYPE line for %s", i+1, name)
			}
			typed[name] = true
			continue
		}
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		sm, err := parseSample(line)
		if err != nil {
			return nil, fmt.Errorf("line %d %q: %v", i+1, line, err)
		}
		if fam := familyOf(sm.name); fam != current {
			if done[fam] {
				return nil, fmt.Errorf("line %d: samples of %s are not in one piece", i+1, fam)
			}
			done[current], current = true, fam
		}
		out = append(out, sm)
	}
	return out, nil
}

// parseSample parses name{k="v",...} value.
func parseSample(line string) (sample, error) {
	sm := sample{labels: map[string]string{}}
	i := strings.IndexAny(line, "{ ")
	if i <= 0 {
		return sm, fmt.Errorf("no metric name")
	}
	sm.name, line = line[:i], line[i:]
	if line[0] == '{' {
		line = line[1:]
		for line[0] != '}' {
			eq := strings.Index(line, `="`)
			if eq <= 0 {
				return sm, fmt.Errorf("bad label")
			}
			key := line[:eq]
			line = line[eq+2:]
			var val strings.Builder
			for {
				if line == "" {
					return sm, fmt.Errorf("unterminated label value")
				}
				c := line[0]
				line = line[1:]
				if c == '"' {
					break
				}
				if c == '\\' {
					switch line[0] {
					case 'n':
						c = '\n'
					default:
						c = line[0]
					}
					line = line[1:]
				}
				val.WriteByte(c)
			}
			sm.labels[key] = val.String()
			line = strings.TrimPrefix(line, ",")
		}
		line = line[1:]
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(line), 64)
	if err != nil {
		return sm, err
	}
	sm.value = v
	return sm, nil
}

// value returns the value of the series of name whose labels include
// labels ("k", "v" pairs); ok is false when there is none.
func (s scrape) value(name string, labels ...string) (v float64, ok bool) {
next:
	for _, sm := range s {
		if sm.name != name {
			continue
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if sm.labels[labels[i]] != labels[i+1] {
				continue next
			}
		}
		return sm.value, true
	}
	return 0, false
}

// must is value that fails the test when the series is missing.
func (s scrape) must(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	v, ok := s.value(name, labels...)
	if !ok {
		t.Fatalf("/metrics has no series %s%v", name, labels)
	}
	return v
}

// getJSON fetches path and decodes its JSON body.
func getJSON(t *testing.T, addr, path string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("GET %s: body %q is not JSON: %v", path, body, err)
	}
	return resp.StatusCode, m
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// startMetricsBridge runs a bridge with metrics on a free port until the
// test ends and returns it once the listener is up.
func startMetricsBridge(t *testing.T, cfg *config.Config, opts bridgeOptions, logger *slog.Logger) *bridge {
	t.Helper()
	cfg.Metrics.Listen = "127.0.0.1:0"
	opts.InMemoryBuffer = true
	if opts.Drain == 0 {
		opts.Drain = 100 * time.Millisecond
	}
	b, err := newBridge(cfg, opts, logger)
	if err != nil {
		t.Fatal(err)
	}
	stopWhenDone(t, runInBackground(t, b))
	testwait.For(t, waitTimeout, "the metrics listener", func() bool { return b.metrics.addr() != "" })
	return b
}

// eventCounter counts, per device, the events the platform delivered.
type eventCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func countEvents(t *testing.T, sub *platform.Subscription) *eventCounter {
	c := &eventCounter{n: map[string]int{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case m := <-sub.C:
				parts := strings.Split(m.Topic, "/") // iot-2/type/<t>/id/<d>/evt/...
				c.mu.Lock()
				c.n[parts[4]]++
				c.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return c
}

func (c *eventCounter) get(device string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[device]
}

// TestMetricsScrape runs the simulator, the bridge and the local platform
// with one device on a bus nobody answers, stops the bus of m1 and m2, and
// checks the scraped names and values against what happened.
func TestMetricsScrape(t *testing.T) {
	r := startSimulation(t)
	deadBus := &config.Bus{Name: "b3", Kind: config.BusModbusTCP, Address: closedAddr(t), Timeout: 200 * time.Millisecond}
	r.cfg.Buses = append(r.cfg.Buses, deadBus)
	boiler := r.cfg.Devices[2]
	dead := *boiler
	dead.Name, dead.Bus, dead.Token = "dead-1", deadBus, "token-dead-secret"
	r.cfg.Devices = append(r.cfg.Devices, &dead)
	received := countEvents(t, r.startPlatform(t))
	b := startMetricsBridge(t, r.cfg, bridgeOptions{Broker: "tcp://" + r.plat.Addr()}, quietLogger())
	addr := b.metrics.addr()

	testwait.For(t, waitTimeout, "events of every live device and requests on the dead bus", func() bool {
		s := scrapeMetrics(t, addr)
		dead, _ := s.value("bridge_bus_requests_total", "bus", "b3")
		return received.get("m1") >= 3 && received.get("boiler-9") >= 3 && dead >= 2
	})
	bus1 := r.sims.servers[0]
	if bus1.bus != "b1" {
		t.Fatalf("first simulator serves %s, want b1", bus1.bus)
	}
	if err := bus1.server.Pause(); err != nil {
		t.Fatal(err)
	}
	// Once m1 is down and its queue is empty, it publishes nothing more:
	// its counters and the platform's count stand still and must agree.
	var s scrape
	testwait.For(t, waitTimeout, "m1 down with nothing left to send", func() bool {
		s = scrapeMetrics(t, addr)
		up1, _ := s.value("bridge_device_up", "device", "m1")
		up2, _ := s.value("bridge_device_up", "device", "m2")
		app, _ := s.value("bridge_events_appended_total", "device", "m1")
		pub, _ := s.value("bridge_events_published_total", "device", "m1")
		// The platform counts an event when it arrives, the bridge once
		// its PUBACK is handled: wait for both to agree (a count that
		// never catches up fails the wait).
		return up1 == 0 && up2 == 0 && app == pub && received.get("m1") == int(pub)
	})
	pub := s.must(t, "bridge_events_published_total", "device", "m1")
	if got := received.get("m1"); got != int(pub) {
		t.Errorf("bridge_events_published_total{device=m1} = %v, the platform received %d", pub, got)
	}

	for dev, want := range map[string]float64{"m1": 0, "m2": 0, "boiler-9": 1, "dead-1": 0} {
		if got := s.must(t, "bridge_device_up", "device", dev); got != want {
			t.Errorf("bridge_device_up{device=%q} = %v, want %v", dev, got, want)
		}
	}
	if _, ok := s.value("bridge_device_last_read_age_seconds", "device", "boiler-9"); !ok {
		t.Errorf("no bridge_device_last_read_age_seconds for boiler-9, which answers")
	}
	if v, ok := s.value("bridge_device_last_read_age_seconds", "device", "dead-1"); ok {
		t.Errorf("bridge_device_last_read_age_seconds{device=dead-1} = %v, want no series: it never answered", v)
	}

	// Every request on the dead bus failed; none on b2.
	req3, err3 := s.must(t, "bridge_bus_requests_total", "bus", "b3"), s.must(t, "bridge_bus_errors_total", "bus", "b3")
	if req3 == 0 || err3 != req3 {
		t.Errorf("bus b3 (nothing listens): %v requests, %v errors; want every request an error", req3, err3)
	}
	if e := s.must(t, "bridge_bus_errors_total", "bus", "b2"); e != 0 || s.must(t, "bridge_bus_requests_total", "bus", "b2") == 0 {
		t.Errorf("bus b2 (healthy): %v errors, want 0 with requests", e)
	}
	if e := s.must(t, "bridge_bus_errors_total", "bus", "b1"); e == 0 {
		t.Errorf("bus b1 (paused simulator): no errors counted")
	}
	if n, inf, req := s.must(t, "bridge_bus_request_duration_seconds_count", "bus", "b2"), s.must(t, "bridge_bus_request_duration_seconds_bucket", "bus", "b2", "le", "+Inf"),
		s.must(t, "bridge_bus_requests_total", "bus", "b2"); n != req || inf != req {
		t.Errorf("bus b2: histogram counts %v requests (+Inf bucket %v), requests_total %v", n, inf, req)
	}
	_ = s.must(t, "bridge_bus_timeouts_total", "bus", "b1")

	for _, d := range r.cfg.Devices {
		conn := "d:test01:" + d.Type.Name + ":" + d.Name
		if v := s.must(t, "bridge_uplink_connected", "connection", conn); v != 1 {
			t.Errorf("bridge_uplink_connected{connection=%q} = %v, want 1", conn, v)
		}
		if v := s.must(t, "bridge_uplink_reconnects_total", "connection", conn); v != 0 {
			t.Errorf("bridge_uplink_reconnects_total{connection=%q} = %v, want 0", conn, v)
		}
		_ = s.must(t, "bridge_uplink_in_flight", "connection", conn)
		for _, name := range []string{"bridge_events_dropped_total", "bridge_events_failed_total", "bridge_events_corrupt_total"} {
			if v := s.must(t, name, "device", d.Name); v != 0 {
				t.Errorf("%s{device=%q} = %v, want 0", name, d.Name, v)
			}
		}
	}
	for _, name := range []string{"bridge_buffer_events", "bridge_buffer_bytes", "bridge_buffer_oldest_age_seconds",
		"bridge_buffer_draining", "bridge_buffer_drain_rate", "bridge_buffer_drain_eta_seconds", "bridge_buffer_fault"} {
		_ = s.must(t, name)
	}
	if v := s.must(t, "bridge_buffer_open"); v != 1 {
		t.Errorf("bridge_buffer_open = %v, want 1", v)
	}
	if v := s.must(t, "bridge_buffer_max_bytes"); v != float64(r.cfg.Buffer.MaxBytes) {
		t.Errorf("bridge_buffer_max_bytes = %v, want %d", v, r.cfg.Buffer.MaxBytes)
	}
	_ = s.must(t, "process_resident_memory_bytes")

	if code, body := getJSON(t, addr, "/healthz"); code != http.StatusOK || body["status"] != "alive" {
		t.Errorf("/healthz = %d %v, want 200 alive", code, body)
	}
	code, body := getJSON(t, addr, "/readyz")
	uplinks, _ := body["uplinks"].(map[string]any)
	if code != http.StatusOK || body["ready"] != true || uplinks["connected"] != float64(len(r.cfg.Devices)) {
		t.Errorf("/readyz = %d %v, want 200, ready, %d uplinks connected", code, body, len(r.cfg.Devices))
	}
}

// TestMetricsCommandCounters checks the hook the command and DM wiring
// uses: what it counts appears with its labels.
func TestMetricsCommandCounters(t *testing.T) {
	r := startSimulation(t)
	r.cfg.Devices = r.cfg.Devices[:1] // m1
	msgs := platformMessages(r.startPlatform(t))
	b := startMetricsBridge(t, r.cfg, bridgeOptions{Broker: "tcp://" + r.plat.Addr()}, quietLogger())
	testwaitReading(t, msgs)
	results := resultWaiter{t, "iot-2/type/meter/id/m1/evt/command/fmt/json", msgs}
	for _, c := range []struct{ command, body string }{
		{"set_limit", `{"d":{"value":77}}`},
		{"set_limit", `{"d":{"value":501}}`}, // out of range
		{"fly", `{}`},                        // not a command of the type
		{"fly2", `{}`},
	} {
		if err := r.plat.SendCommand("meter", "m1", c.command, "json", []byte(c.body)); err != nil {
			t.Fatal(err)
		}
		results.next()
	}
	s := scrapeMetrics(t, b.metrics.addr())
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"bridge_commands_total", []string{"command", "set_limit", "result", "ok"}, 1},
		{"bridge_commands_total", []string{"command", "set_limit", "result", "rejected"}, 1},
		{"bridge_commands_total", []string{"command", "unknown", "result", "rejected"}, 2},
	} {
		if got := s.must(t, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}

// TestReadyzFollowsBrokerAndBuffer starts the bridge with its broker down
// and a small buffer: not ready once the buffer is past its limits, ready
// once the broker is up and the uplinks connect.
func TestReadyzFollowsBrokerAndBuffer(t *testing.T) {
	r := startSimulation(t)
	for _, d := range r.cfg.Devices {
		d.Poll = 10 * time.Millisecond
	}
	// Events older than max_age are dropped: a backlog older than 80 % of
	// it is beyond the buffer's limits.
	r.cfg.Buffer.MaxAge = time.Second
	brokerAddr := closedAddr(t)
	b := startMetricsBridge(t, r.cfg, bridgeOptions{Broker: "tcp://" + brokerAddr}, quietLogger())
	addr := b.metrics.addr()

	var body map[string]any
	testwait.For(t, waitTimeout, "/readyz 503 with the buffer past its limits", func() bool {
		var code int
		code, body = getJSON(t, addr, "/readyz")
		return code == http.StatusServiceUnavailable
	})
	buf, _ := body["buffer"].(map[string]any)
	if body["ready"] != false || buf["within_limits"] != false || buf["open"] != true || !strings.Contains(fmt.Sprint(body["reason"]), "beyond its limits") {
		t.Errorf("/readyz body while not ready = %v", body)
	}
	if code, _ := getJSON(t, addr, "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d while not ready, want 200: the process is alive", code)
	}

	r.startPlatformOn(t, brokerAddr, r.registry())
	testwait.For(t, waitTimeout, "/readyz 200 once the broker is up", func() bool {
		code, _ := getJSON(t, addr, "/readyz")
		return code == http.StatusOK
	})
}

// TestDrainProgressLogged builds a backlog while the broker is down and
// checks that its drain is logged with events left, rate and ETA, and then
// as drained. (TestDrainProgressObserve checks the metrics' numbers.)
func TestDrainProgressLogged(t *testing.T) {
	r := startSimulation(t)
	for _, d := range r.cfg.Devices {
		d.Poll = 10 * time.Millisecond
	}
	r.cfg.Buffer.InFlight = 1
	r.cfg.Buffer.Rate = 200 // per device: the backlog takes a while to drain
	brokerAddr := closedAddr(t)
	logs := &logCapture{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	b := startMetricsBridge(t, r.cfg, bridgeOptions{Broker: "tcp://" + brokerAddr, DrainProgressEvery: 50 * time.Millisecond}, logger)

	testwait.For(t, waitTimeout, "a backlog of 200 events per device", func() bool {
		for _, d := range r.cfg.Devices {
			if b.store.QueueStats(d.Name).Len < 200 {
				return false
			}
		}
		return true
	})
	if n := logs.count("backlog draining", "", ""); n != 0 {
		t.Errorf("%d drain progress lines while the broker is down, want 0: nothing drains", n)
	}
	r.startPlatformOn(t, brokerAddr, r.registry())

	testwait.For(t, waitTimeout, "the backlog drained", func() bool { return logs.count("backlog drained", "", "") > 0 })
	progress := logs.lines("backlog draining")
	if len(progress) == 0 {
		t.Fatalf("no drain progress line before \"backlog drained\"")
	}
	for _, l := range progress {
		left, _ := l["events_left"].(float64)
		rate, _ := l["rate_per_second"].(float64)
		_, hasETA := l["eta_seconds"].(float64)
		if left <= 0 || rate <= 0 || !hasETA {
			t.Errorf("progress line %v: want events_left > 0, rate_per_second > 0 and eta_seconds", l)
		}
	}
	s := scrapeMetrics(t, b.metrics.addr())
	if v := s.must(t, "bridge_buffer_draining"); v != 0 {
		t.Errorf("bridge_buffer_draining = %v after the drain, want 0", v)
	}
}

// TestSeriesEscapesLabels checks that label values from outside (command
// names, device ids) cannot break the text format.
func TestSeriesEscapesLabels(t *testing.T) {
	text := "# TYPE x counter\n" + series("x", "command", "a\"b\\c\nd", "result", "ok") + " 1\n"
	s, err := parseText(text)
	if err != nil {
		t.Fatalf("parseText(%q) = %v", text, err)
	}
	if v, ok := s.value("x", "command", "a\"b\\c\nd", "result", "ok"); !ok || v != 1 {
		t.Errorf("series with escaped labels: parsed %+v from %q", s, text)
	}
}

// TestParseTextRejects makes sure the test parser catches the format
// errors a Prometheus scrape would refuse.
func TestParseTextRejects(t *testing.T) {
	for name, text := range map[string]string{
		"second TYPE":  "# TYPE a gauge\na 1\n# TYPE a gauge\na 2\n",
		"split family": "# TYPE a gauge\na{x=\"1\"} 1\n# TYPE b gauge\nb 1\na{x=\"2\"} 2\n",
		"bad value":    "a one\n",
	} {
		if _, err := parseText(text); err == nil {
			t.Errorf("%s: parseText(%q) = nil error", name, text)
		}
	}
}

// TestReadmeListsEveryMetric compares the metric names in the README's
// "Metrics and health" section with the families /metrics writes, both
// ways, and loads the section's configuration block.
func TestReadmeListsEveryMetric(t *testing.T) {
	block := readmeBlock(t, "hcl", "metrics {")
	cfg, diags := config.Parse("readme.hcl", []byte(`platform { org = "quickstart" }`+"\n"+block), noEnv)
	if diags.HasErrors() || cfg.Metrics.Listen == "" {
		t.Fatalf("README metrics block: listen %q, diagnostics %v", cfg.Metrics.Listen, diags)
	}

	r := startSimulation(t)
	b := startMetricsBridge(t, r.cfg, bridgeOptions{Broker: "tcp://" + closedAddr(t)}, quietLogger())
	resp, err := http.Get("http://" + b.metrics.addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	text, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	served := map[string]bool{}
	for _, line := range strings.Split(string(text), "\n") {
		if rest, ok := strings.CutPrefix(line, "# TYPE bridge_"); ok {
			served["bridge_"+strings.Fields(rest)[0]] = true
		}
	}

	src, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	section := string(src)
	start := strings.Index(section, "## Metrics and health")
	if start < 0 {
		t.Fatal(`README.md has no "## Metrics and health" section`)
	}
	section = section[start:]
	section = section[:strings.Index(section, "\n## ")]
	listed := map[string]bool{}
	for _, name := range regexp.MustCompile("`(bridge_[a-z_]+)").FindAllStringSubmatch(section, -1) {
		listed[name[1]] = true
	}
	for name := range served {
		if !listed[name] {
			t.Errorf("/metrics writes %s; the README does not list it", name)
		}
	}
	for name := range listed {
		if !served[name] {
			t.Errorf("the README lists %s; /metrics does not write it", name)
		}
	}
}

// TestMetricsListenTaken: when the metrics address is taken, Run stops at
// once with an error that names the listener, and closes the buffer.
func TestMetricsListenTaken(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	r := startSimulation(t)
	r.cfg.Metrics.Listen = taken.Addr().String()
	b, err := newBridge(r.cfg, bridgeOptions{Broker: "tcp://" + closedAddr(t), InMemoryBuffer: true}, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	err = b.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "metrics listener") {
		t.Errorf("Run with the metrics address taken = %v, want a metrics listener error", err)
	}
	if !b.store.Stats().Closed {
		t.Errorf("buffer still open after Run returned")
	}
}
