package uplink

import (
	"fmt"
	"testing"
	"time"

	"fieldbridge/internal/mqtttest"

	"fieldbridge/internal/testwait"
)

// TestDefaultBackoffIsCapped checks that with the default settings no wait
// between connection attempts exceeds 10 s, however long the outage.
func TestDefaultBackoffIsCapped(t *testing.T) {
	cfg, err := Config{Broker: "tcp://127.0.0.1:1883", ClientID: "d:ab12cd:t:x"}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxBackoff > 10*time.Second {
		t.Fatalf("default MaxBackoff = %v, want at most 10s", cfg.MaxBackoff)
	}
	bo := backoff{base: cfg.MinBackoff, max: cfg.MaxBackoff}
	for i := range 100 {
		if d := bo.next(); d > 10*time.Second || d < 0 {
			t.Fatalf("wait %d = %v, want within [0, 10s]", i, d)
		}
	}
}

// TestAllReconnectWhenTheBrokerIsBack kills a real Mosquitto under several
// clients that share a Reachability. One client retries every few
// milliseconds; the others wait an hour between attempts, so without the
// shared signal they would stay offline for the rest of the test. When the
// broker is back, the quick client reconnects first and every other one
// follows on its signal.
func TestAllReconnectWhenTheBrokerIsBack(t *testing.T) {
	m := mqtttest.NewMosquitto(t)
	reach := NewReachability()
	const slow = 5
	var states []*stateLog
	for i := range slow + 1 {
		cfg := testConfig(m.URL())
		cfg.ClientID = DeviceClientID(Identity{Org: "ab12cd", Type: "power-meter", ID: fmt.Sprintf("meter-%d", i)})
		cfg.Reachable = reach
		if i > 0 {
			cfg.MinBackoff, cfg.MaxBackoff = time.Hour, time.Hour
		}
		st := &stateLog{}
		runClient(t, cfg, st)
		states = append(states, st)
	}
	allConnected := func(n int) func() bool {
		return func() bool {
			for _, st := range states {
				if st.connects() < n {
					return false
				}
			}
			return true
		}
	}
	testwait.For(t, waitLong, "every client to connect", allConnected(1))

	m.Stop()
	testwait.For(t, waitLong, "every client to see the broker gone", func() bool {
		for _, st := range states {
			if st.count(func(e stateEvent) bool { return !e.connected }) == 0 {
				return false
			}
		}
		return true
	})
	// The quick client fails a few attempts while the broker is down.
	testwait.For(t, waitLong, "the quick client to retry", func() bool {
		return states[0].count(func(e stateEvent) bool { return !e.connected }) >= 3
	})
	m.Start()
	// The slow clients' own waits end in an hour: only the signal of the
	// quick client's connection can bring them back within the timeout.
	testwait.For(t, waitLong, "every client to reconnect", allConnected(2))
}

// TestBrokerRestartsAreNoTakeover restarts a real Mosquitto four times
// under a connected client, each outage long enough for a connection
// attempt to fail. Every connection is closed by the broker soon after it
// began, as in a client id takeover, but a failed attempt shows that the
// broker was gone: the client must not report ErrTakeover (and wait
// LongBackoff, an hour here) but reconnect after each restart.
func TestBrokerRestartsAreNoTakeover(t *testing.T) {
	m := mqtttest.NewMosquitto(t)
	cfg := testConfig(m.URL())
	cfg.StableAfter = time.Hour // every connection is short
	states := &stateLog{}
	c, _ := runClient(t, cfg, states)
	failures := func() int { return states.count(func(e stateEvent) bool { return !e.connected }) }
	for i := range 2 * takeoverThreshold {
		testwait.For(t, waitLong, fmt.Sprintf("connection %d", i+1), func() bool { return states.connects() == i+1 && c.Connected() })
		before := failures()
		m.Stop()
		// The lost connection, then at least one failed attempt.
		testwait.For(t, waitLong, "a failed attempt while the broker is down", func() bool { return failures() >= before+2 })
		m.Start()
	}
	testwait.For(t, waitLong, "the connection after the last restart", func() bool { return c.Connected() })
	if states.has(ErrTakeover) {
		t.Errorf("broker restarts were reported as a takeover: %v", states.list())
	}
}
