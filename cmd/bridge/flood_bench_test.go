package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"fieldbridge/config"
	"fieldbridge/internal/mqtttest"
)

// BenchmarkCommandFlood measures what a flood of commands does to
// telemetry (issue 10): 20 devices on 2 Modbus TCP buses, polled every
// 50 ms (400 readings/s), in gateway mode through the on-disk buffer into
// Mosquitto. Reading latency is the time from the poll (the event's ts) to
// its arrival at a subscriber, so it includes the bus, the buffer and the
// broker. First b.N readings are measured idle, then b.N readings while an
// application sends 1 000 commands/s (each a register write with readback,
// spread over the devices, with or without readback). Reported: p50 and p99 of both phases, their p99
// ratio (issue target: ≤ 2), and how many command results came back per
// second. With readback each command costs two requests on its bus (write,
// read), without it one. ts has millisecond resolution, so latencies carry up to 1 ms of
// truncation; compare the ratio, not single milliseconds.
func BenchmarkCommandFlood(b *testing.B) {
	for _, readback := range []bool{false, true} {
		b.Run(fmt.Sprintf("readback=%v", readback), func(b *testing.B) { benchmarkCommandFlood(b, readback) })
	}
}

func benchmarkCommandFlood(b *testing.B, readback bool) {
	const buses, perBus = 2, 10
	var src strings.Builder
	src.WriteString(`platform {
  org  = "bench1"
  tls  = false
  mode = "gateway"
  gateway {
    type  = "edge-gw"
    id    = "gw-1"
    token = "gateway-token"
  }
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
  point "limit" {
    table    = "holding"
    address  = 10
    type     = "uint16"
    writable = true
  }
  event "reading" {
    points = ["v"]
  }
  command "set_limit" {
    write "limit" { value = "$.d.value" }
    readback = READBACK
  }
}
`)
	var names []string
	for bus := range buses {
		fmt.Fprintf(&src, "bus \"b%d\" {\n  modbus_tcp { address = \"127.0.0.1:0\" }\n}\n", bus)
		for u := range perBus {
			name := fmt.Sprintf("m%d-%d", bus, u)
			names = append(names, name)
			fmt.Fprintf(&src, "device %q {\n  type = \"meter\"\n  bus = \"b%d\"\n  unit = %d\n  poll = \"50ms\"\n}\n", name, bus, u+1)
		}
	}
	cfg, diags := config.Parse("bench.hcl", []byte(strings.Replace(src.String(), "READBACK", fmt.Sprint(readback), 1)), noEnv)
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

	// The application: subscribes to readings and results, sends commands.
	var mu sync.Mutex
	var lat []time.Duration
	recording := atomic.Bool{}
	var results atomic.Uint64
	opts := mqtt.NewClientOptions().AddBroker(broker.URL()).SetClientID("a:bench1:flood").SetAutoReconnect(false)
	app := mqtt.NewClient(opts)
	if tok := app.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		b.Fatalf("connect: %v", tok.Error())
	}
	defer app.Disconnect(100)
	if tok := app.Subscribe("iot-2/type/+/id/+/evt/+/fmt/json", 1, func(_ mqtt.Client, m mqtt.Message) {
		now := time.Now()
		if strings.HasSuffix(m.Topic(), "/evt/command/fmt/json") {
			results.Add(1)
			return
		}
		if !strings.HasSuffix(m.Topic(), "/evt/reading/fmt/json") || !recording.Load() {
			return
		}
		var p struct{ TS time.Time }
		if json.Unmarshal(m.Payload(), &p) != nil {
			return
		}
		mu.Lock()
		lat = append(lat, now.Sub(p.TS))
		mu.Unlock()
	}); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		b.Fatalf("subscribe: %v", tok.Error())
	}

	br, err := newBridge(cfg, bridgeOptions{Broker: broker.URL(), Drain: time.Second}, quietLogger())
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- br.Run(ctx) }()
	simCtx, stopSims := context.WithCancel(context.Background())
	simDone := make(chan error, 1)
	go func() { simDone <- sims.Run(simCtx) }()
	defer func() { cancel(); <-done; stopSims(); <-simDone }()

	// measure collects n readings' latencies and returns them sorted.
	measure := func(n int) []time.Duration {
		mu.Lock()
		lat = lat[:0]
		mu.Unlock()
		recording.Store(true)
		defer recording.Store(false)
		for {
			mu.Lock()
			got := len(lat)
			mu.Unlock()
			if got >= n {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		mu.Lock()
		defer mu.Unlock()
		out := slices.Clone(lat)
		slices.Sort(out)
		return out
	}
	pct := func(d []time.Duration, p int) float64 { return float64(d[len(d)*p/100].Microseconds()) / 1000 }

	measure(100) // warm up: every device connected and polled
	b.ResetTimer()
	idle := measure(b.N)

	stopFlood := make(chan struct{})
	var sent atomic.Uint64
	var flooding sync.WaitGroup
	flooding.Add(1)
	go func() { // 1 000 commands/s, round robin over the devices
		defer flooding.Done()
		start := time.Now()
		for i := 0; ; {
			select {
			case <-stopFlood:
				return
			default:
			}
			due := int(time.Since(start) / time.Millisecond)
			for ; i < due; i++ {
				dev := names[i%len(names)]
				topic := "iot-2/type/meter/id/" + dev + "/cmd/set_limit/fmt/json"
				app.Publish(topic, 1, false, fmt.Sprintf(`{"d":{"value":%d},"reqId":"f%d"}`, i%1000, i))
				sent.Add(1)
			}
			time.Sleep(time.Millisecond)
		}
	}()
	resultsBefore := results.Load()
	floodStart := time.Now()
	flood := measure(b.N)
	floodTime := time.Since(floodStart)
	close(stopFlood)
	flooding.Wait()
	b.StopTimer()

	b.ReportMetric(pct(idle, 50), "idle_p50_ms")
	b.ReportMetric(pct(idle, 99), "idle_p99_ms")
	b.ReportMetric(pct(flood, 50), "flood_p50_ms")
	b.ReportMetric(pct(flood, 99), "flood_p99_ms")
	b.ReportMetric(pct(flood, 99)/pct(idle, 99), "p99_ratio")
	b.ReportMetric(float64(sent.Load())/floodTime.Seconds(), "commands/s")
	b.ReportMetric(float64(results.Load()-resultsBefore)/floodTime.Seconds(), "results/s")
	st := br.view().commands.exec.Stats()
	b.ReportMetric(float64(st.Refused), "refused")
}
