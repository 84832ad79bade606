package uplink

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/metrics"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"fieldbridge/internal/mqtttest"

	"fieldbridge/internal/testwait"
)

// BenchmarkPublish measures publish throughput and publish-to-acknowledgement
// latency with a window of outstanding publishes (the buffer's forward loop
// keeps such a window), against the in-process mochi broker and against
// Mosquitto, both on loopback. window=10 is the platform's in-flight limit
// for a device connection.
func BenchmarkPublish(b *testing.B) {
	brokers := []struct {
		name  string
		start func(b *testing.B) string
	}{
		{"mochi", func(b *testing.B) string { return startBroker(b, &recorder{quiet: true}).url() }},
		{"mosquitto", func(b *testing.B) string { return mqtttest.NewMosquitto(b).URL() }},
	}
	for _, bk := range brokers {
		for _, qos := range []byte{1, 0} {
			for _, window := range []int{10, 64} {
				b.Run(fmt.Sprintf("broker=%s/qos=%d/window=%d", bk.name, qos, window), func(b *testing.B) {
					benchPublish(b, bk.start(b), qos, window)
				})
			}
		}
	}
}

func benchPublish(b *testing.B, url string, qos byte, window int) {
	cfg := testConfig(url)
	cfg.QoS = qos
	cfg.MaxInflight = window
	cfg.MaxPending = 2 * window
	c, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	testwait.For(b, waitLong, "connected", c.Connected)

	topic := DeviceEventTopic("reading", "json")
	payload := []byte(`{"d":{"voltage_l1":231.4,"voltage_l2":230.9,"voltage_l3":231.1,"current_l1":12.61,"power_kw":8.734,"energy_kwh":18234.5,"breaker_closed":true},"ts":"2026-11-24T10:15:30.120Z","seq":18234}`)

	type inflight struct {
		start time.Time
		res   <-chan error
	}
	sem := make(chan struct{}, window)
	fifo := make(chan inflight, window)
	lat := make([]time.Duration, 0, b.N)
	var failures atomic.Int64
	collected := make(chan struct{})
	go func() {
		defer close(collected)
		for p := range fifo {
			if err := <-p.res; err != nil {
				failures.Add(1)
			}
			lat = append(lat, time.Since(p.start))
			<-sem
		}
	}()

	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	b.ResetTimer()
	begin, cpu0, started0 := time.Now(), cpuTime(b), goroutinesCreated()
	for range b.N {
		sem <- struct{}{}
		fifo <- inflight{time.Now(), c.Publish(ctx, topic, payload)}
	}
	close(fifo)
	<-collected
	elapsed, cpu, started := time.Since(begin), cpuTime(b)-cpu0, goroutinesCreated()-started0
	b.StopTimer()

	if n := failures.Load(); n > 0 {
		b.Fatalf("%d of %d publishes failed", n, b.N)
	}
	slices.Sort(lat)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50_ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99_ms")
	// The whole process: the client, the benchmark's loop and, against
	// mochi, the broker. Against Mosquitto (another process) it is the
	// client's cost per message, plus the loop's.
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu_us/msg")
	b.ReportMetric(float64(started)/float64(b.N), "goroutines/msg")
}

// cpuTime is the user and system CPU time of this process so far.
func cpuTime(b *testing.B) time.Duration {
	ru := rusage(b)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// parks counts the process's voluntary context switches so far: a thread
// that went to sleep (futex) because it had nothing to run, as after every
// goroutine hand-off on an otherwise idle process. Less sensitive than CPU
// time to the other load on a shared machine.
func parks(b *testing.B) int64 { return rusage(b).Nvcsw }

// goroutinesCreated counts the goroutines started by this process so far.
func goroutinesCreated() uint64 {
	m := []metrics.Sample{{Name: "/sched/goroutines-created:goroutines"}}
	metrics.Read(m)
	return m[0].Value.Uint64()
}

func rusage(b *testing.B) syscall.Rusage {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return ru
}

// BenchmarkPublishPaced is device mode's load on the uplink: 100 Clients
// (one per device) against Mosquitto, each publishing one message every
// 100 ms (1000 messages/s in all) and waiting for its result, so every
// publish finds its connection idle. It reports the process's CPU per
// message (the Clients, paho and the benchmark's loop; Mosquitto is another
// process) and the publish-to-acknowledgement latency.
func BenchmarkPublishPaced(b *testing.B) {
	for _, qos := range []byte{1, 0} {
		b.Run(fmt.Sprintf("qos=%d", qos), func(b *testing.B) { benchPublishPaced(b, qos) })
	}
}

func benchPublishPaced(b *testing.B, qos byte) {
	const clients = 100
	const every = 100 * time.Millisecond
	url := mqtttest.NewMosquitto(b).URL()
	ctx, cancel := context.WithCancel(context.Background())
	var running sync.WaitGroup
	defer func() {
		cancel()
		running.Wait()
	}()
	links := make([]*Client, clients)
	for i := range links {
		cfg := testConfig(url)
		cfg.ClientID = DeviceClientID(Identity{Org: "ab12cd", Type: "power-meter", ID: fmt.Sprintf("paced-%d", i)})
		cfg.QoS = qos
		c, err := New(cfg, slog.New(slog.DiscardHandler))
		if err != nil {
			b.Fatal(err)
		}
		running.Add(1)
		go func() { defer running.Done(); _ = c.Run(ctx) }()
		links[i] = c
	}
	for _, c := range links {
		testwait.For(b, waitLong, "connected", c.Connected)
	}
	topic := DeviceEventTopic("reading", "json")
	payload := []byte(`{"d":{"voltage_l1":231.4,"current_l1":12.11,"energy_kwh":18234.5,"breaker_closed":true},"seq":1}`)
	per := (b.N + clients - 1) / clients
	lat := make([][]time.Duration, clients)
	var failures atomic.Int64
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	begin, cpu0, parks0, started0 := time.Now(), cpuTime(b), parks(b), goroutinesCreated()
	for i, c := range links {
		wg.Add(1)
		go func() {
			defer wg.Done()
			next := time.Now().Add(time.Duration(i) * every / clients) // spread the clients
			for range per {
				time.Sleep(time.Until(next))
				next = next.Add(every)
				at := time.Now()
				if err := <-c.Publish(ctx, topic, payload); err != nil {
					failures.Add(1)
				}
				lat[i] = append(lat[i], time.Since(at))
			}
		}()
	}
	wg.Wait()
	elapsed, cpu, parked, started := time.Since(begin), cpuTime(b)-cpu0, parks(b)-parks0, goroutinesCreated()-started0
	b.StopTimer()
	if n := failures.Load(); n > 0 {
		b.Fatalf("%d publishes failed", n)
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(len(all)), "cpu_us/msg")
	b.ReportMetric(float64(parked)/float64(len(all)), "parks/msg")
	// Less the benchmark's own goroutine per Client.
	b.ReportMetric(float64(started-clients)/float64(len(all)), "goroutines/msg")
	b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50_ms")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99_ms")
}
