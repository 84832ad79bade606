package uplink

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
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
	begin, cpu0 := time.Now(), cpuTime(b)
	for range b.N {
		sem <- struct{}{}
		fifo <- inflight{time.Now(), c.Publish(ctx, topic, payload)}
	}
	close(fifo)
	<-collected
	elapsed, cpu := time.Since(begin), cpuTime(b)-cpu0
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
}

// cpuTime is the user and system CPU time of this process so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
