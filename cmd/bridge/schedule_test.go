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
		// Generous, so that healthy units never time out on a loaded machine
		// (500 ms was not: the slow unit timed out once in the whole suite
		// with -race at load 19 on 2 cores); what the test checks is
		// counted, not timed.
		timeout = time.Second
		// The run ends after this many attempts on the dead unit.
		deadAttempts = 3
	)
	bus, err := modbus.NewTCP(modbus.TCPConfig{Address: srv.Addr(), Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	plan := func(u uint8) []adapters.Range {
		return []adapters.Range{{Unit: u, Table: adapters.HoldingRegister, Count: 4}, {Unit: u, Table: adapters.InputRegister, Count: 2}}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var mu sync.Mutex
	times := map[string][]time.Time{}
	errs := map[string]int{}
	handler := adapters.ReadingHandlerFunc(func(_ context.Context, r adapters.Reading) {
		mu.Lock()
		defer mu.Unlock()
		times[r.Device] = append(times[r.Device], r.Time)
		if r.Device == "dead" && len(times["dead"]) == deadAttempts {
			cancel()
		}
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
		MinBackoff: 2 * timeout, // the healthy units get the bus for twice as long as a dead attempt takes it
		MaxBackoff: 2 * timeout,
	}, quietLogger())
	if err := loop.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if ctx.Err() == context.DeadlineExceeded {
		t.Fatalf("the dead unit had fewer than %d attempts in a minute", deadAttempts)
	}

	mu.Lock()
	defer mu.Unlock()
	// The dead unit costs at most one timeout per attempt and is backed off,
	// so the healthy units keep cycling: each of them gets several times as
	// many cycles as the dead unit gets attempts.
	dead := len(times["dead"])
	t.Logf("cycles: ok %d, slow %d, busy %d; dead attempts %d", len(times["ok"]), len(times["slow"]), len(times["busy"]), dead)
	for _, name := range []string{"ok", "slow", "busy"} {
		if n := len(times[name]); n < 2*dead {
			t.Errorf("%s: %d cycles while the dead unit had %d attempts; the dead unit holds up the bus", name, n, dead)
		}
	}
	if errs["ok"] != 0 || errs["slow"] != 0 {
		t.Errorf("healthy units reported errors: %v", errs)
	}
	if errs["busy"] != len(times["busy"]) {
		t.Errorf("busy unit: %d errors in %d cycles, want every cycle to report the exception", errs["busy"], len(times["busy"]))
	}
	if n := len(times["dead"]); n < deadAttempts || errs["dead"] != n {
		t.Errorf("dead unit: %d attempts, %d errors; want it retried (backed off) and failing", n, errs["dead"])
	}
	// One timeout per attempt: the dead unit's second range is never asked.
	if got := srv.Requests(2, 4); got != 0 {
		t.Errorf("dead unit was asked for its second range %d times", got)
	}
}
