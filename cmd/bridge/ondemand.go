package main

import (
	"context"
	"sync"
)

// onDemand runs a forwarder only while its queue has something to send:
// command results are rare, and a parked forwarder per device (500 at 500
// devices, each with its stack) cost memory for nothing. kick starts the
// forwarder unless it runs; the forwarder returns once its queue is idle
// (buffer.Store.ForwardUntilIdle) and is started again by the next kick. A
// kick while it runs makes it look once more before it ends, so an event
// appended as it was finding the queue empty is never left behind.
type onDemand struct {
	mu      sync.Mutex
	forward func(ctx context.Context) error // nil: not started, or stopped
	spawn   func(run func() error)          // runs run in a goroutine its owner waits for
	ctx     context.Context
	running bool
	again   bool
}

// start lets kicks run forward in goroutines made by spawn, until ctx ends
// or stop; and kicks once, for what an earlier run left in the queue.
func (o *onDemand) start(ctx context.Context, spawn func(run func() error), forward func(ctx context.Context) error) {
	o.mu.Lock()
	o.ctx, o.spawn, o.forward = ctx, spawn, forward
	o.mu.Unlock()
	o.kick()
}

// stop makes later kicks do nothing; the caller then ends the forwarder's
// ctx and waits for the goroutines spawn made.
func (o *onDemand) stop() {
	o.mu.Lock()
	o.forward = nil
	o.mu.Unlock()
}

// kick runs the forwarder unless it runs already or o is stopped.
func (o *onDemand) kick() {
	o.mu.Lock()
	defer o.mu.Unlock()
	switch {
	case o.forward == nil || o.ctx.Err() != nil:
	case o.running:
		o.again = true
	default:
		o.running, o.again = true, false
		forward, ctx := o.forward, o.ctx
		o.spawn(func() error { return o.run(ctx, forward) })
	}
}

func (o *onDemand) run(ctx context.Context, forward func(context.Context) error) error {
	for {
		err := forward(ctx)
		o.mu.Lock()
		if err != nil || ctx.Err() != nil || !o.again {
			o.running = false
			o.mu.Unlock()
			return err
		}
		o.again = false
		o.mu.Unlock()
	}
}
