package uplink

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"runtime/metrics"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"fieldbridge/internal/mqtttest"
	"fieldbridge/internal/testwait"
)

// BenchmarkMemoryPerConnection measures what one connected device-mode
// Client costs in memory (issue 12: device mode has one connection per
// device): the Go heap it keeps, its goroutines' stacks and how many
// goroutines, after each of 200 Clients against Mosquitto subscribed to
// its commands and published b.N rounds of a window of 10 QoS 1 events
// (the platform's in-flight limit for a device), then went idle. The
// "paho" row does the same with bare paho clients with the options
// session.connect sets, so that the difference is what uplink adds; the
// "uplink" row is the whole Client. Run each row in a process of its own,
// with -benchtime 20x (rounds):
//
//	go test -run '^$' -bench 'MemoryPerConnection/client=paho' -benchtime 20x ./uplink
//	go test -run '^$' -bench 'MemoryPerConnection/client=uplink' -benchtime 20x ./uplink
//
// (the runtime keeps the g struct of every goroutine that ended, ~0.4 KiB,
// and gives it to the next one: the second row of one process would reuse
// the first row's and count too little heap).
//
// Both are measured after two forced GCs (the second shrinks stacks that
// use less than a quarter of their size), as the difference of the
// runtime's /memory/classes/heap/objects, /memory/classes/heap/stacks and
// /sched/goroutines before the Clients were made and after.
func BenchmarkMemoryPerConnection(b *testing.B) {
	const conns = 200
	m := mqtttest.NewMosquitto(b)
	b.Run("client=uplink", func(b *testing.B) {
		before := settledMemory()
		var stops []func()
		clients := make([]*Client, conns)
		for i := range conns {
			cfg := testConfig(m.URL())
			cfg.ClientID = DeviceClientID(Identity{Org: "ab12cd", Type: "power-meter", ID: fmt.Sprintf("m-%d", i)})
			cfg.MaxInflight = 10
			cfg.Handler = &inbox{}
			cfg.Subscriptions = []Subscription{{Filter: DeviceCommandTopic("+", "+"), QoS: 1}}
			c, stop := runQuietClient(b, cfg)
			stops = append(stops, stop)
			clients[i] = c
		}
		for _, c := range clients {
			testwait.For(b, waitLong, "connected", c.Connected)
		}
		payload := []byte(`{"d":{"p0":1.5,"p1":2.5,"p2":3.5},"ts":"2026-12-02T07:00:00.000Z","seq":1}`)
		for b.Loop() {
			results := make([]<-chan error, 0, 10*conns)
			for _, c := range clients {
				for range 10 {
					results = append(results, c.Publish(context.Background(), DeviceEventTopic("reading", "json"), payload))
				}
			}
			for _, r := range results {
				if err := result(b, r, waitLong); err != nil {
					b.Fatalf("Publish = %v", err)
				}
			}
		}
		b.StopTimer()
		reportPerConnection(b, before, conns)
		for _, stop := range stops {
			stop()
		}
	})
	b.Run("client=paho", func(b *testing.B) {
		before := settledMemory()
		clients := make([]paho.Client, conns)
		for i := range conns {
			opts := paho.NewClientOptions()
			opts.AddBroker(m.URL())
			opts.SetClientID(DeviceClientID(Identity{Org: "ab12cd", Type: "power-meter", ID: fmt.Sprintf("p-%d", i)}))
			opts.SetUsername(TokenAuthUsername)
			opts.SetPassword("tok")
			opts.SetProtocolVersion(4)
			opts.SetKeepAlive(5 * time.Second)
			opts.SetPingTimeout(5 * time.Second)
			opts.SetWriteTimeout(2 * time.Second)
			opts.SetAutoReconnect(false)
			opts.SetConnectRetry(false)
			opts.SetOrderMatters(true)
			opts.SetAutoAckDisabled(true)
			pc := paho.NewClient(opts)
			if tok := pc.Connect(); !tok.WaitTimeout(waitLong) || tok.Error() != nil {
				b.Fatalf("paho connect: %v", tok.Error())
			}
			if tok := pc.Subscribe(DeviceCommandTopic("+", "+"), 1, nil); !tok.WaitTimeout(waitLong) || tok.Error() != nil {
				b.Fatalf("paho subscribe: %v", tok.Error())
			}
			clients[i] = pc
		}
		payload := []byte(`{"d":{"p0":1.5,"p1":2.5,"p2":3.5},"ts":"2026-12-02T07:00:00.000Z","seq":1}`)
		for b.Loop() {
			tokens := make([]paho.Token, 0, 10*conns)
			for _, pc := range clients {
				for range 10 {
					tokens = append(tokens, pc.Publish(DeviceEventTopic("reading", "json"), 1, false, payload))
				}
			}
			for _, tok := range tokens {
				if !tok.WaitTimeout(waitLong) || tok.Error() != nil {
					b.Fatalf("paho publish: %v", tok.Error())
				}
			}
		}
		b.StopTimer()
		reportPerConnection(b, before, conns)
		for _, pc := range clients {
			pc.Disconnect(0)
		}
	})
}

// runQuietClient runs a Client with a logger that keeps nothing (runClient's
// keeps every line for the test, which would count as the Client's heap)
// but formats every line as the bridge's JSON logs do: formatting takes
// stack, and Run's goroutine must shrink back once it is parked.
func runQuietClient(b *testing.B, cfg Config) (*Client, func()) {
	c, err := New(cfg, slog.New(slog.NewJSONHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	return c, func() {
		cancel()
		if err := <-done; err != nil {
			b.Errorf("Run = %v", err)
		}
	}
}

type memorySample struct{ heap, stacks, goroutines float64 }

// settledMemory collects until the goroutine stacks stop shrinking (each GC
// halves a stack that uses less than a quarter of it; a bridge collects
// about once a second, so its idle stacks are shrunk like this) and reads
// the heap's live objects, the goroutine stacks and the goroutine count.
func settledMemory() memorySample {
	s := []metrics.Sample{
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/stacks:bytes"},
		{Name: "/sched/goroutines:goroutines"},
	}
	var stacks uint64
	for range 10 {
		runtime.GC()
		metrics.Read(s)
		if s[1].Value.Uint64() == stacks {
			break
		}
		stacks = s[1].Value.Uint64()
	}
	return memorySample{float64(s[0].Value.Uint64()), float64(s[1].Value.Uint64()), float64(s[2].Value.Uint64())}
}

func reportPerConnection(b *testing.B, before memorySample, conns int) {
	after := settledMemory()
	n := float64(conns)
	b.ReportMetric((after.heap-before.heap)/n, "heap_B/conn")
	b.ReportMetric((after.stacks-before.stacks)/n, "stack_B/conn")
	b.ReportMetric((after.goroutines-before.goroutines)/n, "goroutines/conn")
}
