package dm_test

import (
	"fmt"
	"runtime"
	"testing"

	"fieldbridge/dm"
)

// TestExecutorKeepsLittlePerDevice: the Executor keeps a command queue per
// device for the bridge's life (500 devices at the target), and
// commands are rare: the queue holds pointers to waiting commands, not 16
// command structs (~0.9 KiB per device before).
func TestExecutorKeepsLittlePerDevice(t *testing.T) {
	r := newRig(t, dm.ExecutorConfig{})
	const n = 500
	devices := make(map[string]string, n)
	for i := range n {
		devices[fmt.Sprintf("p%d", i)] = "pump"
	}
	cfg := dm.ExecutorConfig{Devices: devices, Planner: planner{}, Field: r.loop, Results: r.results}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	e, err := dm.NewExecutor(cfg, quiet())
	if err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(e)
	perDevice := (after.TotalAlloc - before.TotalAlloc) / n
	t.Logf("NewExecutor allocates %d bytes per device", perDevice)
	if perDevice > 640 {
		t.Errorf("NewExecutor allocates %d bytes per device, want at most 640", perDevice)
	}
}
