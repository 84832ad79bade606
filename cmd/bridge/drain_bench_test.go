package main

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"fieldbridge/buffer"
	"fieldbridge/internal/mqtttest"
	"fieldbridge/uplink"
)

// BenchmarkDrainIntoMosquitto fills an on-disk buffer with b.N events
// spread over queues (devices), then starts one uplink per device against
// a real Mosquitto and measures how fast Forward drains the backlog at
// QoS 1, with the platform's window of 10 unacknowledged messages per
// device connection. Run with -benchtime 1000000x for the design figure.
func BenchmarkDrainIntoMosquitto(b *testing.B) {
	for _, devices := range []int{1, 4, 16} {
		b.Run(fmt.Sprintf("devices=%d", devices), func(b *testing.B) {
			broker := mqtttest.NewMosquitto(b)
			store, err := buffer.Open(buffer.Config{Dir: b.TempDir(), Sync: time.Second, MaxBytes: 4 << 30}, quietLogger())
			if err != nil {
				b.Fatal(err)
			}
			defer store.Close()
			payload := []byte(`{"d":{"voltage_l1":231.4,"current_l1":12.11,"energy_kwh":18234.5,"breaker_closed":true},"ts":"2026-11-24T10:15:30.120Z","seq":`)
			for i := range b.N {
				q := fmt.Sprintf("dev-%d", i%devices)
				if _, err := store.Append(q, "iot-2/evt/reading/fmt/json", func(seq uint64) ([]byte, error) {
					return fmt.Appendf(append([]byte(nil), payload...), "%d}", seq), nil
				}); err != nil {
					b.Fatal(err)
				}
			}
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for d := range devices {
				link, err := uplink.New(uplink.Config{Broker: broker.URL(), ClientID: fmt.Sprintf("d:bench:meter:dev-%d", d), QoS: 1, MaxInflight: platformDeviceInflight}, quietLogger())
				if err != nil {
					b.Fatal(err)
				}
				wg.Add(2)
				go func() { defer wg.Done(); link.Run(ctx) }()
				go func() { defer wg.Done(); store.Forward(ctx, fmt.Sprintf("dev-%d", d), link) }()
			}
			for store.Stats().Len > 0 {
				time.Sleep(time.Millisecond)
			}
			elapsed := time.Since(start)
			b.StopTimer()
			cancel()
			wg.Wait()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
		})
	}
}
