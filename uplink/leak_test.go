package uplink

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"fieldbridge/internal/testwait"
)

// ownGoroutines returns the stacks of goroutines running code of this
// package other than tests.
func ownGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var own []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "fieldbridge/uplink.(*") && !strings.Contains(g, "fieldbridge/uplink.Test") {
			own = append(own, g)
		}
	}
	return own
}

// TestRunLeavesNoGoroutines: every goroutine Run or Publish started (pump,
// dispatcher, paho callbacks into this package) has ended when Run returns,
// after publishes, inbound messages, an outage and a reconnect.
func TestRunLeavesNoGoroutines(t *testing.T) {
	b := startBroker(t, nil)
	cfg := testConfig(b.url())
	cfg.Handler = &inbox{}
	cfg.Subscriptions = []Subscription{{Filter: DeviceCommandTopic("+", "+"), QoS: 1}}
	states := &stateLog{}
	c, stop := runClient(t, cfg, states)
	testwait.For(t, waitLong, "connected", c.Connected)

	b.rec.blackhole.Store(true)
	var pending []<-chan error
	for range 5 {
		pending = append(pending, c.Publish(context.Background(), DeviceEventTopic("reading", "json"), []byte("{}")))
	}
	b.stop()
	for _, ch := range pending {
		<-ch
	}
	b.rec.blackhole.Store(false)
	b.start()
	testwait.For(t, waitLong, "reconnect", func() bool { return states.connects() == 2 && c.Connected() })
	_ = b.server().Publish("iot-2/cmd/x/fmt/json", []byte("{}"), false, 1)
	b.rec.blackhole.Store(true)
	pending = pending[:0]
	for range 3 {
		pending = append(pending, c.Publish(context.Background(), DeviceEventTopic("reading", "json"), []byte("{}")))
	}

	if len(ownGoroutines()) == 0 {
		t.Fatal("ownGoroutines finds nothing while Run is running; the check below would prove nothing")
	}
	stop()
	for _, ch := range pending {
		select {
		case <-ch:
		case <-time.After(time.Second):
			t.Fatal("a Publish got no result by the time Run returned")
		}
	}
	// A goroutine Run waited for may still be on its way out (past its
	// WaitGroup's Done, not yet exited; CI caught a pump "runnable" at its
	// closing brace under load): give those a moment. A leaked one stays.
	deadline := time.Now().Add(2 * time.Second)
	own := ownGoroutines()
	for len(own) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		own = ownGoroutines()
	}
	if len(own) > 0 {
		t.Errorf("%d goroutines of this package still running after Run returned:\n%s", len(own), strings.Join(own, "\n\n"))
	}
}
