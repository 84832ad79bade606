package uplink

import (
	"runtime"
	"testing"
)

// TestClientAllocatesLittleBeforeConnecting: device mode makes one Client
// per device (500 at the target), and each lives as long as the
// bridge. New keeps only what every Client needs: the queue of received
// messages holds pointers (a command is rare; its message is allocated
// when it arrives), not 64 message structs (3.6 KiB per Client before).
func TestClientAllocatesLittleBeforeConnecting(t *testing.T) {
	cfg := testConfig("tcp://127.0.0.1:1883")
	cfg.Handler = &inbox{}
	cfg.Subscriptions = []Subscription{{Filter: DeviceCommandTopic("+", "+"), QoS: 1}}
	const n = 100
	keep := make([]*Client, 0, n)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range n {
		c, err := New(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		keep = append(keep, c)
	}
	runtime.ReadMemStats(&after)
	perClient := (after.TotalAlloc - before.TotalAlloc) / n
	t.Logf("New allocates %d bytes per Client", perClient)
	if perClient > 2048 {
		t.Errorf("New allocates %d bytes per Client, want at most 2048", perClient)
	}
	runtime.KeepAlive(keep)
}
