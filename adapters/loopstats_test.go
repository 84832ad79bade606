package adapters

import (
	"context"
	"testing"
	"time"

	"fieldbridge/internal/testwait"
)

// TestLoopStatsCountRequests runs a live and a dead device and checks the
// loop's counters against the operations the bus saw.
func TestLoopStatsCountRequests(t *testing.T) {
	bus := &fakeBus{deadWait: time.Millisecond}
	log := &readingLog{}
	plan := []Range{{Unit: 1, Table: HoldingRegister, Count: 2}}
	dead := []Range{{Unit: 2, Table: HoldingRegister, Count: 2}}
	loop := NewLoop(bus, LoopConfig{
		Bus:        "line1",
		Devices:    []Device{{Name: "alive", Interval: 10 * time.Millisecond, Plan: plan}, {Name: "dead", Interval: 10 * time.Millisecond, Plan: dead}},
		Handler:    log,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 40 * time.Millisecond,
	}, discard())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- loop.Run(ctx) }()
	testwait.For(t, 5*time.Second, "5 good and 2 failed cycles", func() bool {
		return log.count("alive", true) >= 5 && log.count("dead", false) >= 2
	})
	if err := loop.Write(ctx, WriteRequest{Unit: 1, Table: HoldingRegister, Registers: []uint16{7}}); err != nil {
		t.Fatalf("Write = %v", err)
	}
	cancel()
	<-done

	st := loop.Stats()
	bus.mu.Lock()
	ops := len(bus.ops)
	timeouts := 0
	for _, op := range bus.ops {
		if op == "read 2" {
			timeouts++
		}
	}
	bus.mu.Unlock()
	if st.Bus != "line1" || st.Requests != uint64(ops) {
		t.Errorf("Stats() = bus %q, %d requests; want line1, %d (every read and write the bus saw)", st.Bus, st.Requests, ops)
	}
	if st.Errors != uint64(timeouts) || st.Timeouts != uint64(timeouts) {
		t.Errorf("Stats() errors=%d timeouts=%d, want both %d (the dead device's reads)", st.Errors, st.Timeouts, timeouts)
	}
	var inBuckets uint64
	for _, n := range st.LatencyCounts {
		inBuckets += n
	}
	if len(st.LatencyCounts) != len(LatencyBuckets)+1 || inBuckets != st.Requests {
		t.Errorf("latency histogram holds %d requests in %d buckets, want %d in %d", inBuckets, len(st.LatencyCounts), st.Requests, len(LatencyBuckets)+1)
	}
	if st.LatencySum <= 0 {
		t.Errorf("LatencySum = %v, want > 0", st.LatencySum)
	}
	if _, ok := st.LastRead["alive"]; !ok {
		t.Errorf("LastRead has no time for the live device: %v", st.LastRead)
	}
	if got, ok := st.LastRead["dead"]; ok {
		t.Errorf("LastRead[dead] = %v, want none: it never answered", got)
	}
}
