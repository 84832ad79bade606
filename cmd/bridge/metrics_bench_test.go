package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
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

// rssBytes reads the resident set size of this process from /proc.
func rssBytes(tb testing.TB) float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		tb.Skipf("no /proc/self/status: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb * 1024
		}
	}
	tb.Skip("no VmRSS in /proc/self/status")
	return 0
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
// reports the heap that stays allocated and the growth of the resident
// set over building and scraping, and the time and size of one scrape.
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
	for _, d := range br.devices {
		for range 3 {
			if _, err := br.store.Append(d.name, "iot-2/evt/reading/fmt/json", func(seq uint64) ([]byte, error) {
				return fmt.Appendf(nil, `{"d":{"a":1,"b":2,"c":3},"ts":"2026-12-01T00:00:00.000Z","seq":%d}`, seq), nil
			}); err != nil {
				b.Fatal(err)
			}
		}
		d.state.Store(stateUp)
	}
	heap0, rss0 := heapBytes(), rssBytes(b)
	b.ReportAllocs()

	m := newBridgeMetrics(br, quietLogger())
	handler := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { m.writeMetrics(w) })
	var size int
	start := time.Now()
	b.ResetTimer()
	for range b.N {
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		if rec.Code != http.StatusOK {
			b.Fatalf("scrape: %d", rec.Code)
		}
		size = rec.Body.Len()
		if gcEach {
			runtime.GC()
		}
	}
	b.StopTimer()
	elapsed := time.Since(start)
	rss1 := rssBytes(b)
	heap1 := heapBytes()
	runtime.KeepAlive(m)

	b.ReportMetric(float64(elapsed.Microseconds())/float64(b.N)/1000, "ms/scrape")
	b.ReportMetric(float64(size)/1024, "KiB/scrape")
	b.ReportMetric((heap1-heap0)/(1<<20), "heap-retained-MiB")
	b.ReportMetric((rss1-rss0)/(1<<20), "rss-growth-MiB")
}
