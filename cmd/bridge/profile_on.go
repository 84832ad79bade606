//go:build profile

package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"runtime/trace"
	"strings"
	"time"
)

// Built with -tags profile, the bridge writes a CPU profile of its whole run
// to $BRIDGE_CPUPROFILE, and with $BRIDGE_HEAPPROFILE set a heap profile to
// $BRIDGE_HEAPPROFILE.<n> (n = 1, 2, ...) every $BRIDGE_HEAPPROFILE_EVERY
// (a Go duration, default 10s) and a last one at exit: a drain lasts about a
// minute, so a series of snapshots is what shows where the memory goes. Next
// to each, $BRIDGE_HEAPPROFILE.<n>.goroutines lists the goroutines by stack
// (what a slow /metrics scrape waits for). With $BRIDGE_TRACE set it writes
// an execution trace of $BRIDGE_TRACE_FOR (default 10s) starting
// $BRIDGE_TRACE_AFTER (default 10s) into the run: which goroutine wakes
// which, and how often (the fixed per-second costs at small scale, see
// docs/performance.md). Measurements with the load rig; never in a release.
func init() {
	var stops []func()
	if path := os.Getenv("BRIDGE_CPUPROFILE"); path != "" {
		stops = append(stops, startCPUProfile(path))
	}
	if path := os.Getenv("BRIDGE_HEAPPROFILE"); path != "" {
		stops = append(stops, startHeapProfiles(path, os.Getenv("BRIDGE_HEAPPROFILE_EVERY")))
	}
	if path := os.Getenv("BRIDGE_TRACE"); path != "" {
		stops = append(stops, startTrace(path, envDuration("BRIDGE_TRACE_AFTER", 10*time.Second), envDuration("BRIDGE_TRACE_FOR", 10*time.Second)))
	}
	stopProfile = func() {
		for _, stop := range stops {
			stop()
		}
	}
}

func startCPUProfile(path string) (stop func()) {
	f, err := os.Create(path)
	if err != nil {
		panic(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		panic(err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }
}

func envDuration(name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		panic(fmt.Sprintf("%s=%q: want a positive duration", name, v))
	}
	return d
}

// startTrace writes an execution trace of the window [after, after+span)
// of the run, or of its part before stop.
func startTrace(path string, after, span time.Duration) (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		select {
		case <-time.After(after):
		case <-quit:
			return
		}
		f, err := os.Create(path)
		if err != nil {
			panic(err)
		}
		defer f.Close()
		if err := trace.Start(f); err != nil {
			panic(err)
		}
		defer trace.Stop()
		select {
		case <-time.After(span):
		case <-quit:
		}
	}()
	return func() { close(quit); <-done }
}

// startHeapProfiles writes numbered heap profiles until stop, which writes
// the last one and returns once the writer goroutine has ended.
func startHeapProfiles(path, every string) (stop func()) {
	interval := 10 * time.Second
	if every != "" {
		d, err := time.ParseDuration(every)
		if err != nil || d <= 0 {
			panic(fmt.Sprintf("BRIDGE_HEAPPROFILE_EVERY=%q: want a positive duration", every))
		}
		interval = d
	}
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		ticker := time.NewTicker(interval)
		defer ticker.Stop()
		for n := 1; ; n++ {
			select {
			case <-ticker.C:
			case <-quit:
				writeHeapProfile(fmt.Sprintf("%s.%d", path, n))
				return
			}
			writeHeapProfile(fmt.Sprintf("%s.%d", path, n))
		}
	}()
	return func() { close(quit); <-done }
}

// writeHeapProfile writes the heap as of the last completed GC cycle
// (what pprof's inuse figures mean) with the runtime's MemStats at its end.
func writeHeapProfile(path string) {
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "heap profile:", err)
		return
	}
	defer f.Close()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		fmt.Fprintln(os.Stderr, "heap profile:", err)
	}
	if g, err := os.Create(path + ".goroutines"); err == nil {
		_ = pprof.Lookup("goroutine").WriteTo(g, 1)
		g.Close()
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Fprintf(os.Stderr, "heap profile %s: time=%s heap_inuse=%d heap_idle=%d heap_released=%d stack_inuse=%d sys=%d num_gc=%d %s\n",
		path, time.Now().UTC().Format(time.TimeOnly), ms.HeapInuse, ms.HeapIdle, ms.HeapReleased, ms.StackInuse, ms.Sys, ms.NumGC, runtimeMemory())
}

// runtimeMemory names the runtime's memory classes that MemStats lumps
// together (where the anonymous memory beside the heap goes), the size new
// goroutines start their stacks with (it follows the average stack in use:
// GODEBUG adaptivestackstart) and the goroutine count.
func runtimeMemory() string {
	names := []string{
		"/memory/classes/heap/objects:bytes",
		"/memory/classes/heap/unused:bytes",
		"/memory/classes/heap/free:bytes",
		"/memory/classes/heap/released:bytes",
		"/memory/classes/heap/stacks:bytes",
		"/memory/classes/os-stacks:bytes",
		"/memory/classes/metadata/other:bytes",
		"/memory/classes/metadata/mspan/inuse:bytes",
		"/memory/classes/metadata/mcache/inuse:bytes",
		"/memory/classes/profiling/buckets:bytes",
		"/memory/classes/other:bytes",
		"/gc/heap/goal:bytes",
		"/gc/stack/starting-size:bytes",
		"/sched/goroutines:goroutines",
	}
	samples := make([]metrics.Sample, len(names))
	for i, n := range names {
		samples[i].Name = n
	}
	metrics.Read(samples)
	var b strings.Builder
	for _, s := range samples {
		if s.Value.Kind() != metrics.KindUint64 {
			continue
		}
		name := strings.TrimPrefix(s.Name, "/")
		name = name[:strings.IndexByte(name, ':')]
		fmt.Fprintf(&b, " %s=%d", strings.ReplaceAll(name, "/", "."), s.Value.Uint64())
	}
	return strings.TrimSpace(b.String())
}
