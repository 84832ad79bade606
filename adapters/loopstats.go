package adapters

import (
	"errors"
	"sync/atomic"
	"time"
)

// LatencyBuckets are the upper bounds of the request latency histogram of
// LoopStats, in seconds: from a fast Modbus TCP answer to a slow serial
// device near its timeout.
var LatencyBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}

// loopCounters are the loop's counters. The loop's goroutine writes them
// with atomics (a few nanoseconds per request); Stats reads them from any
// goroutine.
type loopCounters struct {
	requests, errors, timeouts atomic.Uint64
	latencyNanos               atomic.Uint64            // sum of request durations
	buckets                    []atomic.Uint64          // len(LatencyBuckets)+1, the last is +Inf
	lastRead                   map[string]*atomic.Int64 // device -> unix nanos of its last answered cycle; keys fixed at NewLoop
}

func newLoopCounters(devs []Device) *loopCounters {
	c := &loopCounters{buckets: make([]atomic.Uint64, len(LatencyBuckets)+1), lastRead: map[string]*atomic.Int64{}}
	for _, d := range devs {
		c.lastRead[d.Name] = new(atomic.Int64)
	}
	return c
}

// request counts one read or write on the bus that took d and ended with err.
func (c *loopCounters) request(d time.Duration, err error) {
	c.requests.Add(1)
	if err != nil {
		c.errors.Add(1)
		if errors.Is(err, ErrTimeout) {
			c.timeouts.Add(1)
		}
	}
	c.latencyNanos.Add(uint64(max(d, 0)))
	s := d.Seconds()
	i := 0
	for i < len(LatencyBuckets) && s > LatencyBuckets[i] {
		i++
	}
	c.buckets[i].Add(1)
}

// LoopStats describes a bus loop since it was built.
type LoopStats struct {
	Bus string
	// Requests counts reads and writes sent on the bus; Errors those that
	// failed (timeouts, exceptions, bad frames, no connection); Timeouts the
	// part of Errors where the device did not answer in time.
	Requests, Errors, Timeouts uint64
	// LatencySum is the total duration of the requests; LatencyCounts[i]
	// counts requests that took at most LatencyBuckets[i] seconds (not
	// cumulative); the last element counts the slower ones.
	LatencySum    time.Duration
	LatencyCounts []uint64
	// LastRead holds, per device, when a cycle last read anything from it
	// (the zero time when none has yet).
	LastRead map[string]time.Time
}

// Stats returns the loop's counters. It is safe for concurrent use.
func (l *Loop) Stats() LoopStats {
	c := l.stats
	st := LoopStats{
		Bus:           l.cfg.Bus,
		Requests:      c.requests.Load(),
		Errors:        c.errors.Load(),
		Timeouts:      c.timeouts.Load(),
		LatencySum:    time.Duration(c.latencyNanos.Load()),
		LatencyCounts: make([]uint64, len(c.buckets)),
		LastRead:      make(map[string]time.Time, len(c.lastRead)),
	}
	for i := range c.buckets {
		st.LatencyCounts[i] = c.buckets[i].Load()
	}
	for name, t := range c.lastRead {
		if n := t.Load(); n != 0 {
			st.LastRead[name] = time.Unix(0, n)
		}
	}
	return st
}
