package uplink

import (
	"context"
	"fmt"
	"log/slog"
	"testing"

	"fieldbridge/internal/testwait"
)

// TestStats follows a client through unacknowledged publishes, a broker
// outage and a reconnect, and checks Stats at each step.
func TestStats(t *testing.T) {
	b := startBroker(t, nil)
	b.rec.blackhole.Store(true) // nothing is acknowledged: publishes stay in flight
	cfg := testConfig(b.url())
	cfg.MaxInflight = 3
	cfg.CleanSession = true
	idle, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if st := idle.Stats(); st.ClientID != cfg.ClientID || st.Connections != 0 || st.Connected {
		t.Errorf("Stats before running = %+v, want client id %q and no connection", st, cfg.ClientID)
	}
	c, _ := runClient(t, cfg, nil)
	testwait.For(t, waitLong, "connected", c.Connected)
	for i := range 5 {
		_ = c.Publish(context.Background(), DeviceEventTopic("reading", "json"), fmt.Appendf(nil, "%d", i))
	}
	testwait.For(t, waitLong, "3 publishes in flight", func() bool { return c.Stats().InFlight == 3 })
	if st := c.Stats(); !st.Connected || st.Connections != 1 {
		t.Errorf("Stats while connected = %+v, want connected, 1 connection", st)
	}

	b.stop()
	testwait.For(t, waitLong, "disconnected", func() bool { return !c.Stats().Connected })
	if st := c.Stats(); st.InFlight != 0 {
		t.Errorf("Stats while disconnected = %+v, want nothing in flight", st)
	}
	b.rec.blackhole.Store(false)
	b.start()
	testwait.For(t, waitLong, "reconnected", func() bool { st := c.Stats(); return st.Connected && st.Connections == 2 })
}
