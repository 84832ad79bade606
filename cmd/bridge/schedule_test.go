package main

import (
	"context"
	"sync"
	"testing"
	"time"

	"fieldbridge/adapters"
	"fieldbridge/adapters/modbus"
	"fieldbridge/simulator"
)

// TestSharedBusDeadUnit: four units on one Modbus TCP bus (a gateway to an
// RS-485 line); one never answers, one answers with exceptions, one is slow.
// The others keep their interval: no gap between two of their cycles is
// longer than the interval plus one timeout of the dead unit (plus slack for
// a loaded machine), and the dead unit is tried again and again.
func TestSharedBusDeadUnit(t *testing.T) {
	srv, err := simulator.NewServer(simulator.Config{}, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	for u := byte(1); u <= 4; u++ {
		srv.AddUnit(u)
	}
	srv.SetFaults(2, simulator.Faults{Silent: true})
	srv.SetFaults(3, simulator.Faults{Exception: adapters.ExDeviceBusy})
	srv.SetFaults(4, simulator.Faults{Delay: 20 * time.Millisecond})

	const (
		interval = 100 * time.Millisecond
		timeout  = 150 * time.Millisecond
	)
	bus, err := modbus.NewTCP(modbus.TCPConfig{Address: srv.Addr(), Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	plan := func(u uint8) []adapters.Range {
		return []adapters.Range{{Unit: u, Table: adapters.HoldingRegister, Count: 4}, {Unit: u, Table: adapters.InputRegister, Count: 2}}
	}
	var mu sync.Mutex
	times := map[string][]time.Time{}
	errs := map[string]int{}
	handler := adapters.ReadingHandlerFunc(func(_ context.Context, r adapters.Reading) {
		mu.Lock()
		defer mu.Unlock()
		times[r.Device] = append(times[r.Device], r.Time)
		if r.Err() != nil {
			errs[r.Device]++
			if r.Device == "ok" || r.Device == "slow" {
				t.Logf("%s: %v", r.Device, r.Err())
			}
		}
	})
	loop := adapters.NewLoop(bus, adapters.LoopConfig{
		Bus: "shared",
		Devices: []adapters.Device{
			{Name: "ok", Interval: interval, Plan: plan(1)},
			{Name: "dead", Interval: interval, Plan: plan(2)},
			{Name: "busy", Interval: interval, Plan: plan(3)},
			{Name: "slow", Interval: interval, Plan: plan(4)},
		},
		Handler:    handler,
		MinBackoff: 200 * time.Millisecond,
		MaxBackoff: 400 * time.Millisecond,
	}, quietLogger())
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := loop.Run(ctx); err != nil {
		t.Fatal(err)
	}

	mu.Lock()
	defer mu.Unlock()
	for _, name := range []string{"ok", "slow", "busy"} {
		ts := times[name]
		if len(ts) < 15 {
			t.Errorf("%s: %d cycles in 3s at a 100ms interval", name, len(ts))
			continue
		}
		for i := 1; i < len(ts); i++ {
			if gap := ts[i].Sub(ts[i-1]); gap > interval+timeout+250*time.Millisecond {
				t.Errorf("%s: %v between cycles %d and %d; the dead unit may cost at most one timeout", name, gap, i-1, i)
			}
		}
	}
	if errs["ok"] != 0 || errs["slow"] != 0 {
		t.Errorf("healthy units reported errors: %v", errs)
	}
	if errs["busy"] != len(times["busy"]) {
		t.Errorf("busy unit: %d errors in %d cycles, want every cycle to report the exception", errs["busy"], len(times["busy"]))
	}
	if n := len(times["dead"]); n < 3 || errs["dead"] != n {
		t.Errorf("dead unit: %d attempts, %d errors; want it retried (backed off) and failing", n, errs["dead"])
	}
	// One timeout per attempt: the dead unit's second range is never asked.
	if got := srv.Requests(2, 4); got != 0 {
		t.Errorf("dead unit was asked for its second range %d times", got)
	}
}
