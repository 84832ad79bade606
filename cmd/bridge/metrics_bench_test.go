package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"fieldbridge/config"
)

// manyDevicesConfig is a configuration of n devices on buses of 100, each
// with one 3-point event.
func manyDevicesConfig(n int) string {
	var sb strings.Builder
	sb.WriteString(`platform {
  org = "bench1"
  tls = false
}
device_type "meter" {
  point "a" {
    table   = "holding"
    address = 0
    type    = "uint16"
  }
  point "b" {
    table   = "holding"
    address = 1
    type    = "uint16"
  }
  point "c" {
    table   = "holding"
    address = 2
    type    = "uint16"
  }
}
`)
	for bus := range (n + 99) / 100 {
		fmt.Fprintf(&sb, "bus \"b%d\" {\n  modbus_tcp { address = \"127.0.0.1:1\" }\n}\n", bus)
	}
	for i := range n {
		fmt.Fprintf(&sb, "device \"dev-%d\" {\n  type  = \"meter\"\n  bus   = \"b%d\"\n  unit  = %d\n  token = \"token-%08d\"\n}\n", i, i/100, i%100+1, i)
	}
	return sb.String()
}

// discardResponse is an http.ResponseWriter that counts the body and
// keeps nothing, as a socket would.
type discardResponse struct {
	header http.Header
	n      int
}

func (d *discardResponse) Header() http.Header { return d.header }
func (d *discardResponse) WriteHeader(int)     {}
func (d *discardResponse) Write(p []byte) (int, error) {
	d.n += len(p)
	return len(p), nil
}

// procStatus reads a size field of /proc/self/status ("VmRSS", "VmHWM").
func procStatus(tb testing.TB, field string) float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		tb.Skipf("no /proc/self/status: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb * 1024
		}
	}
	tb.Skipf("no %s in /proc/self/status", field)
	return 0
}

// resetPeakRSS returns memory the heap does not use to the system and
// resets the process's peak resident set (VmHWM) to its current size.
func resetPeakRSS(tb testing.TB) {
	debug.FreeOSMemory()
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		tb.Skipf("cannot reset the peak resident set: %v", err)
	}
}

func heapBytes() float64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return float64(ms.HeapAlloc)
}

// BenchmarkMetricsMemory measures what metrics cost with 500 devices: a
// bridge of 500 devices on 5 buses, every device's queue holding events,
// then a registry with every series and b.N scrapes of /metrics. It
// reports the heap that stays allocated, the growth of the resident set
// (at the end and at its peak) over building the metrics and scraping, and
// the time and size of one scrape.
//
//	go test -run '^$' -bench MetricsMemory -benchtime 20x ./cmd/bridge/
//
// (Run it on its own: the resident set is the whole process's.)
func BenchmarkMetricsMemory(b *testing.B) {
	// gc=each collects after every scrape, so the growth of the resident
	// set is what one scrape holds at its peak plus what stays; gc=pacer
	// leaves collection to the runtime, so garbage piles up to GOGC's
	// allowance in a loop that does nothing else.
	for _, gcEach := range []bool{true, false} {
		name := map[bool]string{true: "gc=each", false: "gc=pacer"}[gcEach]
		b.Run(name, func(b *testing.B) { benchmarkMetricsMemory(b, gcEach) })
	}
}

func benchmarkMetricsMemory(b *testing.B, gcEach bool) {
	const devices = 500
	cfg, diags := config.Parse("bench.hcl", []byte(manyDevicesConfig(devices)), noEnv)
	if diags.HasErrors() {
		b.Fatal(diags)
	}
	br, err := newBridge(cfg, bridgeOptions{InMemoryBuffer: true}, quietLogger())
	if err != nil {
		b.Fatal(err)
	}
	defer br.store.Close()
	for _, d := range br.view().devices {
		for range 3 {
			if _, err := br.store.Append(d.name, "iot-2/evt/reading/fmt/json", func(seq uint64) ([]byte, error) {
				return fmt.Appendf(nil, `{"d":{"a":1,"b":2,"c":3},"ts":"2026-12-01T00:00:00.000Z","seq":%d}`, seq), nil
			}); err != nil {
				b.Fatal(err)
			}
		}
		d.state.Store(stateUp)
	}
	heap0 := heapBytes()
	resetPeakRSS(b)
	rss0 := procStatus(b, "VmRSS")
	b.ReportAllocs()

	m := newBridgeMetrics(br, quietLogger())
	handler := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { m.writeMetrics(w) })
	var size int
	start := time.Now()
	b.ResetTimer()
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	for range b.N {
		w := &discardResponse{header: http.Header{}}
		handler.ServeHTTP(w, req)
		size = w.n
		if gcEach {
			runtime.GC()
		}
	}
	b.StopTimer()
	elapsed := time.Since(start)
	rss1, peak := procStatus(b, "VmRSS"), procStatus(b, "VmHWM")
	heap1 := heapBytes()
	runtime.KeepAlive(m)

	b.ReportMetric(float64(elapsed.Microseconds())/float64(b.N)/1000, "ms/scrape")
	b.ReportMetric(float64(size)/1024, "KiB/scrape")
	b.ReportMetric((heap1-heap0)/(1<<20), "heap-retained-MiB")
	b.ReportMetric((rss1-rss0)/(1<<20), "rss-growth-MiB")
	b.ReportMetric((peak-rss0)/(1<<20), "rss-peak-growth-MiB")
}
