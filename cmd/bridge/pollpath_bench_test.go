package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"fieldbridge/adapters"
	"fieldbridge/config"
	"fieldbridge/internal/mqtttest"
)

// BenchmarkPollPath measures what the buffer costs the bus goroutines: a
// bridge with an on-disk buffer and forwarders publishing at QoS 1 to a real
// Mosquitto, fed by 8 "bus" goroutines that call handleReading (decode,
// map, encode, buffer) for 500 devices × 20 points, as the bus loops do
// (the loops themselves are left out, so that no Modbus time is counted).
// load=max calls as fast as it can (b.N readings); 1s reads each device
// once a second. (Until issue #12's work on it, a same-run baseline
// append=legacy was here; the before/after runs in docs/performance.md name
// the commits they compare instead.)
//
// Metrics: poll_delay = the time one handleReading call held its bus
// goroutine (p99 and max over the run, and the worst per-second p99 — the
// stalls of Badger's flushes and compactions show there); cpu_µs/point =
// CPU time of the whole process (bridge, forwarders, paho; not Mosquitto)
// per point, from the first reading until Mosquitto acknowledged the last
// event; points/s = points handled per second; delivered_points/s
// = points acknowledged by Mosquitto per second, measured until the backlog
// is empty; rss_MiB = VmRSS of the process at the end; allocs/reading and
// sleeps/reading = heap allocations and voluntary context switches of the
// whole process over the same span, per reading.
func BenchmarkPollPath(b *testing.B) {
	for _, load := range []string{"max", "1s"} {
		for _, mode := range []string{"gateway", "device"} {
			b.Run(fmt.Sprintf("load=%s/mode=%s", load, mode), func(b *testing.B) {
				benchPollPath(b, load == "1s", mode == "gateway")
			})
		}
	}
}

const (
	pollPathDevices = 500
	pollPathPoints  = 20
	pollPathBuses   = 8
)

func benchPollPath(b *testing.B, paced, gateway bool) {
	br, readings := startPollPathBridge(b, pollPathDevices, "1h", gateway, bridgeOptions{})
	type sample struct {
		at    time.Duration // since start
		delay time.Duration
	}
	samples := make([][]sample, pollPathBuses)
	per := (b.N + pollPathBuses - 1) / pollPathBuses
	cpu0 := cpuTime()
	switches0 := voluntarySwitches()
	var mem0 runtime.MemStats
	runtime.ReadMemStats(&mem0)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for bus := range pollPathBuses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine := busDevices(bus, pollPathDevices)
			s := make([]sample, 0, per)
			next := time.Now()
			for i := range per {
				if paced {
					next = next.Add(time.Second / time.Duration(len(mine)))
					time.Sleep(time.Until(next))
				}
				r := nextReading(readings, mine, i)
				t0 := time.Now()
				br.handleReading(br.view().devices[r.Device], r)
				s = append(s, sample{t0.Sub(start), time.Since(t0)})
			}
			samples[bus] = s
		}()
	}
	wg.Wait()
	handled := time.Since(start)
	b.StopTimer()
	points := float64(per*pollPathBuses) * pollPathPoints

	// Delivered: wait until Mosquitto acknowledged everything buffered.
	if err := br.store.Flush(); err != nil {
		b.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	waiting := func() (n int64) { // from memory: Stats would read the database per queue
		for _, r := range readings {
			n += br.store.QueueCounters(r.Device).Len
		}
		return n
	}
	for waiting() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	delivered := time.Since(start)
	cpu := cpuTime() - cpu0 // polling, buffering and delivery of every point
	switches := voluntarySwitches() - switches0
	var mem1 runtime.MemStats
	runtime.ReadMemStats(&mem1)
	st := br.store.Stats()
	var acked uint64
	for _, q := range st.Queues {
		if !strings.HasPrefix(q.Queue, "gateway:") {
			acked += q.Acked
		}
	}

	var all []time.Duration
	bySecond := map[int][]time.Duration{}
	for _, s := range samples {
		for _, x := range s {
			all = append(all, x.delay)
			sec := int(x.at / time.Second)
			bySecond[sec] = append(bySecond[sec], x.delay)
		}
	}
	slices.Sort(all)
	worstP99 := worstSecondP99(bySecond)
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "poll_delay_p99_µs")
	b.ReportMetric(float64(all[len(all)-1].Microseconds()), "poll_delay_max_µs")
	b.ReportMetric(float64(worstP99.Microseconds()), "poll_delay_worst_second_p99_µs")
	b.ReportMetric(float64(cpu.Microseconds())/points, "cpu_µs/point")
	b.ReportMetric(points/handled.Seconds(), "points/s")
	b.ReportMetric(float64(acked)*pollPathPoints/delivered.Seconds(), "delivered_points/s")
	b.ReportMetric(float64(st.Dropped+st.Failed), "lost_events")
	b.ReportMetric(rssMiB(), "rss_MiB")
	// Counts, less at the mercy of a busy machine than times: heap
	// allocations and the times a thread of the process went to sleep
	// (futex, epoll, blocking I/O), per reading (one event each).
	readingsHandled := float64(per * pollPathBuses)
	b.ReportMetric(float64(mem1.Mallocs-mem0.Mallocs)/readingsHandled, "allocs/reading")
	b.ReportMetric(float64(switches)/readingsHandled, "sleeps/reading")
}

// voluntarySwitches is how many times the threads of this process gave up
// the CPU to wait (getrusage's ru_nvcsw).
func voluntarySwitches() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Nvcsw
}

// startPollPathBridge runs a bridge for devices meters of pollPathPoints
// float32 points on pollPathBuses buses, with an on-disk buffer and its
// forwarders connected to a fresh Mosquitto, but without bus loops: the
// caller's goroutines are the buses, calling handleReading with the
// readings returned (one per device, in device order, values all zero).
func startPollPathBridge(b *testing.B, devices int, poll string, gateway bool, opts bridgeOptions) (*bridge, []adapters.Reading) {
	var src strings.Builder
	src.WriteString("platform {\n  org = \"bench1\"\n  tls = false\n}\nbuffer {\n  sync = \"1s\"\n}\ndevice_type \"meter\" {\n")
	for p := range pollPathPoints {
		fmt.Fprintf(&src, "  point \"p%d\" {\n    table   = \"input\"\n    address = %d\n    type    = \"float32\"\n  }\n", p, 2*p)
	}
	src.WriteString("}\n")
	for bus := range pollPathBuses {
		fmt.Fprintf(&src, "bus \"b%d\" {\n  modbus_tcp { address = \"127.0.0.1:1\" }\n}\n", bus)
	}
	for d := range devices {
		fmt.Fprintf(&src, "device \"m%d\" {\n  type = \"meter\"\n  bus = \"b%d\"\n  unit = %d\n  poll = %q\n  token = \"bench-token\"\n}\n", d, d%pollPathBuses, d/pollPathBuses+1, poll)
	}
	cfg, diags := config.Parse("bench.hcl", []byte(src.String()), noEnv)
	if diags.HasErrors() {
		b.Fatal(diags)
	}
	cfg.Buffer.Dir = b.TempDir()
	if gateway {
		// Both: a gateway block alone leaves the mode "device" (before this
		// was set, mode=gateway measured 500 device connections too).
		cfg.Platform.Mode = config.ModeGateway
		cfg.Platform.Gateway = &config.Gateway{Type: "edge-gw", ID: "gw-1", Token: "gateway-token-1"}
	}
	broker := mqtttest.NewMosquitto(b)
	opts.Broker, opts.Drain = broker.URL(), time.Second
	br, err := newBridge(cfg, opts, quietLogger())
	if err != nil {
		b.Fatal(err)
	}
	br.view().buses = nil // the caller's goroutines are the buses
	if gateway != (br.gateway != nil) {
		b.Fatalf("gateway mode %v, want %v", br.gateway != nil, gateway)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- br.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-done })
	for _, l := range br.view().links {
		for !l.Connected() {
			time.Sleep(10 * time.Millisecond)
		}
	}
	readings := make([]adapters.Reading, devices)
	for d := range readings {
		name := "m" + strconv.Itoa(d)
		r := adapters.Reading{Device: name}
		for _, rg := range br.view().devices[name].rules.Plan() {
			r.Blocks = append(r.Blocks, adapters.Block{Range: rg, Registers: make([]uint16, rg.Count)})
		}
		readings[d] = r
	}
	return br, readings
}

// cpuTime is the user and system CPU time of this process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rssMiB is VmRSS of this process in MiB (0 where /proc is missing).
func rssMiB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// busDevices returns the devices of bus when devices are spread over
// pollPathBuses round robin, as the benchmarks' configurations do.
func busDevices(bus, devices int) []int {
	var mine []int
	for d := bus; d < devices; d += pollPathBuses {
		mine = append(mine, d)
	}
	return mine
}

// nextReading returns the i-th reading of a bus goroutine serving mine:
// its device's turn in the round, with new register values (so that every
// event is due) and the time of now.
func nextReading(readings []adapters.Reading, mine []int, i int) adapters.Reading {
	r := readings[mine[i%len(mine)]]
	for _, blk := range r.Blocks {
		for k := range blk.Registers {
			blk.Registers[k] = uint16(i + k)
		}
	}
	r.Time = time.Now()
	return r
}
