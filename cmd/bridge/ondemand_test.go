package main

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"fieldbridge/internal/testwait"
)

// TestOnDemandLeavesNothingBehind: writers append (count up) and kick from
// many goroutines; the forwarder, like ForwardUntilIdle, serves what was
// appended when it looked and returns. Once the writers stop, everything
// appended has been served, at most one forwarder ran at a time, and no
// goroutine is left.
func TestOnDemandLeavesNothingBehind(t *testing.T) {
	var appended, served atomic.Int64
	var inside, most atomic.Int32
	var wg sync.WaitGroup
	var o onDemand
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	spawns := atomic.Int32{}
	o.start(ctx, func(run func() error) {
		spawns.Add(1)
		wg.Add(1)
		go func() { defer wg.Done(); run() }()
	}, func(context.Context) error {
		n := inside.Add(1)
		if n > most.Load() {
			most.Store(n)
		}
		seen := appended.Load()
		time.Sleep(time.Duration(seen%3) * 50 * time.Microsecond) // a forward takes a while
		served.Store(max(served.Load(), seen))
		inside.Add(-1)
		return nil
	})
	var writers sync.WaitGroup
	for range 8 {
		writers.Add(1)
		go func() {
			defer writers.Done()
			for range 2000 {
				appended.Add(1)
				o.kick()
			}
		}()
	}
	writers.Wait()
	testwait.For(t, 10*time.Second, "every append served", func() bool { return served.Load() == appended.Load() })
	wg.Wait() // every forwarder goroutine ended by itself (ctx still live)
	if most.Load() != 1 {
		t.Errorf("%d forwarders ran at once, want 1", most.Load())
	}
	// Idle now: one more append and kick starts a forwarder again, which
	// serves it. (Whether the writers above made it idle in between depends
	// on timing, so only this last start is counted.)
	before := spawns.Load()
	appended.Add(1)
	o.kick()
	testwait.For(t, 10*time.Second, "the last append served", func() bool { return served.Load() == appended.Load() })
	wg.Wait()
	if spawns.Load() != before+1 {
		t.Errorf("a kick after the forwarder went idle started %d forwarders, want 1", spawns.Load()-before)
	}
}

// TestOnDemandStop: after stop, or once its ctx ended, a kick starts nothing.
func TestOnDemandStop(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var spawned atomic.Int32
	var wg sync.WaitGroup
	spawn := func(run func() error) {
		spawned.Add(1)
		wg.Add(1)
		go func() { defer wg.Done(); run() }()
	}
	idle := func(context.Context) error { return nil }
	var o onDemand
	o.start(ctx, spawn, idle)
	wg.Wait()
	o.kick()
	wg.Wait()
	if spawned.Load() != 2 { // start kicks once, then this kick
		t.Fatalf("spawned %d times, want 2", spawned.Load())
	}
	o.stop()
	o.kick()
	cancel()
	var p onDemand
	p.start(ctx, spawn, idle)
	p.kick()
	wg.Wait()
	if spawned.Load() != 2 {
		t.Errorf("kicks after stop or a cancelled ctx spawned %d more", spawned.Load()-2)
	}
}
