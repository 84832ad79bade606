package loadrig

import (
	"strings"
	"testing"
	"time"
)

func TestParseStatCPU(t *testing.T) {
	// The command name may hold spaces and parentheses; utime=250, stime=50.
	stat := "4242 (my (odd) bridge) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 12 0 100 1000000 2000 18446744073709551615"
	got, err := parseStatCPU([]byte(stat))
	if err != nil {
		t.Fatal(err)
	}
	if want := 3 * time.Second; got != want {
		t.Errorf("cpu = %v, want %v", got, want)
	}
	for _, bad := range []string{"", "4242 bridge S 1", "4242 (bridge) S 1 2 3", "4242 (b) S 1 4242 4242 0 -1 0 0 0 0 0 x 50 0"} {
		if _, err := parseStatCPU([]byte(bad)); err == nil {
			t.Errorf("parseStatCPU(%q) = nil error, want one", bad)
		}
	}
}

func TestParseStatusMemory(t *testing.T) {
	status := "Name:\tbridge\nVmPeak:\t  900 kB\nVmHWM:\t   51200 kB\nVmRSS:\t   40960 kB\nThreads:\t9\n"
	rss, hwm, err := parseStatusMemory([]byte(status))
	if err != nil || rss != 40960 || hwm != 51200 {
		t.Errorf("rss %d, hwm %d, err %v; want 40960, 51200, nil", rss, hwm, err)
	}
	if _, _, err := parseStatusMemory([]byte("Name:\tbridge\nVmRSS:\t1 kB\n")); err == nil {
		t.Error("no VmHWM: want an error")
	}
	if _, _, err := parseStatusMemory([]byte("VmRSS:\t1 MB\nVmHWM:\t1 kB\n")); err == nil {
		t.Error("unit MB: want an error")
	}
}

const metricsText = `# HELP x
bridge_buffer_events 17
bridge_events_appended_total{device="m0"} 10
bridge_events_appended_total{device="m1"} 12
bridge_events_published_total{device="m0"} 9
bridge_events_published_total{device="gateway:gw-1"} 2
bridge_events_dropped_total{device="m0"} 1
bridge_events_failed_total{device="m1"} 0
bridge_bus_requests_total{bus="b0"} 99
`

func TestParseMetrics(t *testing.T) {
	m, err := parseMetrics(strings.NewReader(metricsText))
	if err != nil {
		t.Fatal(err)
	}
	if m.backlog != 17 || m.appended != 22 || m.dropped != 1 || m.failed != 0 || m.published["m0"] != 9 || m.published["gateway:gw-1"] != 2 || m.publishedTotal() != 11 {
		t.Errorf("parsed %+v", m)
	}
	if _, err := parseMetrics(strings.NewReader("bridge_events_appended_total 3\n")); err == nil {
		t.Error("no bridge_buffer_events: want an error")
	}
	if _, err := parseMetrics(strings.NewReader("bridge_buffer_events many\n")); err == nil {
		t.Error("a value that is not a number: want an error")
	}
}

func FuzzParseMetrics(f *testing.F) {
	f.Add(metricsText)
	f.Add("bridge_buffer_events 1e3\nbridge_events_published_total{device=\"\"} NaN\n")
	f.Fuzz(func(t *testing.T, text string) {
		m, err := parseMetrics(strings.NewReader(text))
		if err == nil && m.published == nil {
			t.Error("nil published map without an error")
		}
	})
}

func TestParseEventTopic(t *testing.T) {
	for topic, want := range map[string][3]string{
		"iot-2/evt/reading/fmt/json":                     {"", "reading", "true"},
		"iot-2/type/meter/id/m7/evt/status/fmt/json":     {"m7", "status", "true"},
		"iot-2/type/edge-gw/id/gw-1/evt/health/fmt/json": {"gw-1", "health", "true"},
		"iot-2/cmd/reboot/fmt/json":                      {"", "", "false"},
		"iot-2/type/meter/id/m7/cmd/set/fmt/json":        {"", "", "false"},
		"telegraf/m1": {"", "", "false"},
	} {
		d, e, ok := parseEventTopic(topic)
		if got := [3]string{d, e, map[bool]string{true: "true", false: "false"}[ok]}; got != want {
			t.Errorf("parseEventTopic(%q) = %v, want %v", topic, got, want)
		}
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var h histogram
	for i := 1; i <= 1000; i++ {
		h.add(time.Duration(i) * time.Millisecond) // 1 ms .. 1 s
	}
	h.add(20 * time.Second) // overflow
	if got := h.quantile(0.5); got < 500*time.Millisecond || got > 502*time.Millisecond {
		t.Errorf("p50 = %v, want ~501 ms", got)
	}
	if got := h.quantile(0.99); got < 990*time.Millisecond || got > 992*time.Millisecond {
		t.Errorf("p99 = %v, want ~991 ms", got)
	}
	if got := h.quantile(1); got != 20*time.Second || h.max != 20*time.Second {
		t.Errorf("p100 = %v, max %v, want 20s", got, h.max)
	}
	var empty histogram
	if empty.quantile(0.99) != 0 {
		t.Error("empty histogram: want 0")
	}
}

func TestSeqReportGateway(t *testing.T) {
	tr := seqTracker{byDevice: map[string]*seqSet{}}
	for seq := uint64(1); seq <= 5; seq++ {
		tr.add("m0", seq)
	}
	tr.add("m0", 3) // a duplicate
	tr.add("m1", 1) // m1: 1 and 3, 2 missing
	tr.add("m1", 3)
	r := tr.report(map[string]int64{"m0": 5, "m1": 3, "m2": 1}, 3) // m2: acked, never arrived
	if !r.Exact || r.Received != 8 || r.Distinct != 7 || r.Duplicates != 1 || r.Gaps != 1 || r.Lost != 2 {
		t.Errorf("report %+v", r)
	}
}

func TestSeqReportDeviceMode(t *testing.T) {
	tr := seqTracker{byDevice: map[string]*seqSet{}}
	// Two devices: seqs 1..3 and 1..2; seq 1 arrives three times (a duplicate).
	for _, seq := range []uint64{1, 2, 3, 1, 2, 1} {
		tr.add("", seq)
	}
	r := tr.report(map[string]int64{"m0": 3, "m1": 2}, 2)
	if r.Exact || r.Received != 6 || r.Distinct != 5 || r.Duplicates != 1 || r.Lost != 0 {
		t.Errorf("report %+v", r)
	}
	r = tr.report(map[string]int64{"m0": 4, "m1": 2}, 2)
	if r.Lost != 1 {
		t.Errorf("one more acknowledged than arrived: lost %d, want 1", r.Lost)
	}
}

func TestConfigs(t *testing.T) {
	p := plant{devices: 3, points: 2, busAddrs: []string{"127.0.0.1:1001", "127.0.0.1:1002"}, pollEvery: "1s"}
	hcl := bridgeConfig(p, ModeGateway, 1883, "/tmp/buf", "127.0.0.1:9273")
	for _, want := range []string{`mode = "gateway"`, `port = 1883`, `id    = "gw-1"`, `address = 2`, `bus  = "b1"`, `device "m2"`, `unit = 2`} {
		if !strings.Contains(hcl, want) {
			t.Errorf("bridge config lacks %q:\n%s", want, hcl)
		}
	}
	if strings.Contains(hcl, "token = \"rig-token") {
		t.Errorf("gateway mode: devices carry no token:\n%s", hcl)
	}
	toml := telegrafConfig(p, 1883)
	for _, want := range []string{`servers = ["127.0.0.1:1883"]`, `qos = 1`, `layout = "non-batch"`, `data_format = "json"`, `controller = "tcp://127.0.0.1:1002"`, `slave_id = 2`, `{ address = 2, name = "p1", type = "FLOAT32" }`} {
		if !strings.Contains(toml, want) {
			t.Errorf("telegraf config lacks %q:\n%s", want, toml)
		}
	}
	if n := strings.Count(toml, "[[inputs.modbus]]"); n != 3 {
		t.Errorf("%d inputs.modbus, want one per device (3)", n)
	}
}
