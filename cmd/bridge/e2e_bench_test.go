package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"fieldbridge/config"
	"fieldbridge/internal/mqtttest"
)

// BenchmarkEndToEnd runs simulator -> bridge -> on-disk buffer -> Mosquitto
// at QoS 1 in device mode with 40 devices on 8 Modbus TCP buses, each
// polled every millisecond (more than the machine can produce), and reports
// the events the broker acknowledged per second over b.N events and the
// backlog left in the buffer (flat when the uplink keeps up).
func BenchmarkEndToEnd(b *testing.B) {
	var src strings.Builder
	src.WriteString(`platform {
  org = "bench1"
  tls = false
}
buffer {
  sync = "1s"
}
device_type "meter" {
  point "v" {
    table   = "input"
    address = 0
    type    = "float32"
  }
  point "i" {
    table   = "input"
    address = 2
    type    = "float32"
  }
  point "e" {
    table   = "input"
    address = 4
    type    = "uint32"
    scale   = 0.1
  }
}
`)
	for bus := range 8 {
		fmt.Fprintf(&src, "bus \"b%d\" {\n  modbus_tcp { address = \"127.0.0.1:0\" }\n}\n", bus)
		for u := range 5 {
			fmt.Fprintf(&src, "device \"m%d-%d\" {\n  type = \"meter\"\n  bus = \"b%d\"\n  unit = %d\n  poll = \"1ms\"\n  token = \"bench-token\"\n}\n", bus, u, bus, u+1)
		}
	}
	cfg, diags := config.Parse("bench.hcl", []byte(src.String()), noEnv)
	if diags.HasErrors() {
		b.Fatal(diags)
	}
	cfg.Buffer.Dir = b.TempDir()
	sims, err := startSimulators(cfg, func(*config.Bus) string { return "127.0.0.1:0" }, quietLogger())
	if err != nil {
		b.Fatal(err)
	}
	defer sims.Close()
	sims.pointBuses(cfg)
	broker := mqtttest.NewMosquitto(b)
	br, err := newBridge(cfg, bridgeOptions{Broker: broker.URL(), Drain: time.Second}, quietLogger())
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- br.Run(ctx) }()
	acked := func() (n uint64) {
		for _, q := range br.store.Stats().Queues {
			n += q.Acked
		}
		return n
	}
	for acked() < 1000 { // warm up: connections up, first cycles done
		time.Sleep(time.Millisecond)
	}
	b.ResetTimer()
	start, from := time.Now(), acked()
	for acked()-from < uint64(b.N) {
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(acked()-from)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(br.store.Stats().Len), "backlog")
	cancel()
	<-done
}
