package uplink

import (
	"context"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"fieldbridge/internal/mqtttest"
	"fieldbridge/internal/testwait"
)

// goroutinesByCreator counts the running goroutines by the function that
// started them ("created by" in their stack), each counted as ours (this
// package, or the test's goroutine running Run) or paho's.
func goroutinesByCreator() map[string]int {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	by := map[string]int{}
	for _, g := range strings.Split(string(buf), "\n\n") {
		creator := "unknown"
		if i := strings.Index(g, "\ncreated by "); i >= 0 {
			creator = strings.Fields(g[i+len("\ncreated by "):])[0]
		}
		switch {
		case strings.Contains(g, "fieldbridge/uplink.(*Client).Run("):
			creator = "uplink: Run (the caller's goroutine)"
		case strings.Contains(creator, "fieldbridge/uplink."):
			creator = "uplink: " + strings.TrimPrefix(creator, "fieldbridge/uplink.")
		case strings.Contains(creator, "eclipse/paho"):
			creator = "paho: " + creator[strings.LastIndex(creator, "/")+1:]
		}
		by[creator]++
	}
	return by
}

// TestGoroutinesPerClient counts the goroutines of connected, idle Clients
// (against Mosquitto, so that no broker goroutine is in the count) and pins
// them per Client, ours and paho's apart, so that a change that adds one per
// connection shows here. Device mode has one Client per device, each with a
// command subscription; 500 devices cost 500 times these numbers.
func TestGoroutinesPerClient(t *testing.T) {
	m := mqtttest.NewMosquitto(t)
	tests := []struct {
		name               string
		subscribe          bool
		wantOurs, wantPaho int
	}{
		// Ours: Run (the caller's goroutine). The pump runs only while a
		// publish is queued or unacknowledged, the dispatcher only while a
		// received message waits for the Handler. paho's, per connection,
		// with no option to drop any: keepalive, the outbound redirector
		// and the comms error loop (startCommsWorkers), the router
		// (matchAndDispatch), the socket reader (startIncoming), the
		// incoming and outgoing comms loops, and three forwarders of
		// startComms.
		{"device with a command subscription", true, 1, 10},
		{"publishing only", false, 1, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const clients = 20
			// The Clients of earlier tests have returned from Run, but
			// the goroutines of their paho clients may still be on their
			// way out (paho's outgoing loop ends after Disconnect
			// returned): counted in before and gone by the end, one of
			// them made this test see 9.9 goroutines of paho's per Client.
			testwait.For(t, waitLong, "no paho goroutine left from earlier tests", func() bool {
				for k, n := range goroutinesByCreator() {
					if strings.HasPrefix(k, "paho: ") && n > 0 {
						return false
					}
				}
				return true
			})
			before := goroutinesByCreator()
			for i := range clients {
				cfg := testConfig(m.URL())
				cfg.ClientID = DeviceClientID(Identity{Org: "ab12cd", Type: "power-meter", ID: fmt.Sprintf("g-%d", i)})
				if tt.subscribe {
					cfg.Handler = &inbox{}
					cfg.Subscriptions = []Subscription{{Filter: DeviceCommandTopic("+", "+"), QoS: 1}}
				}
				c, stop := runClient(t, cfg, nil)
				defer stop()
				testwait.For(t, waitLong, "connected", c.Connected)
				// A publish and its acknowledgement: whatever it started
				// has stopped once the Client is idle again.
				if err := result(t, c.Publish(context.Background(), DeviceEventTopic("reading", "json"), []byte("{}")), waitLong); err != nil {
					t.Fatalf("Publish = %v", err)
				}
			}
			var ours, paho int
			var report []string
			// Goroutines that just delivered a result may still be on their
			// way out: wait for the count to settle.
			settled := func() bool {
				after := goroutinesByCreator()
				ours, paho, report = 0, 0, report[:0]
				for _, k := range slices.Sorted(maps.Keys(after)) {
					d := after[k] - before[k]
					if d == 0 {
						continue
					}
					report = append(report, fmt.Sprintf("%+d %s", d, k))
					switch {
					case strings.HasPrefix(k, "uplink: "):
						ours += d
					case strings.HasPrefix(k, "paho: "):
						paho += d
					}
				}
				return ours == tt.wantOurs*clients && paho == tt.wantPaho*clients
			}
			for deadline := time.Now().Add(waitLong); !settled() && time.Now().Before(deadline); {
				time.Sleep(20 * time.Millisecond)
			}
			t.Logf("goroutines of %d connected idle Clients (ours %.1f, paho %.1f per Client):\n%s",
				clients, float64(ours)/clients, float64(paho)/clients, strings.Join(report, "\n"))
			if ours != tt.wantOurs*clients || paho != tt.wantPaho*clients {
				t.Errorf("per Client: %.1f goroutines of ours and %.1f of paho's, want %d and %d",
					float64(ours)/clients, float64(paho)/clients, tt.wantOurs, tt.wantPaho)
			}
		})
	}
}
