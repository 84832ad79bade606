package main

import (
	"context"
	"log/slog"
	"math"
	"sync/atomic"
	"time"
)

// defaultDrainProgressEvery is how often drain progress is measured and,
// while a backlog drains, logged.
const defaultDrainProgressEvery = 10 * time.Second

// drainProgress watches the whole buffer and, while a backlog drains after
// an outage, logs one line per interval with the events left, the rate and
// the estimated time to go; the same numbers are metrics. The buffer's
// forwarders log the same per device; this is the one line an operator of
// 500 devices reads.
//
// A backlog is more than a full send window of every queue (threshold): less
// than that is normal traffic. It drains while events were acknowledged
// during the last interval. While the uplinks are down nothing drains and
// nothing is logged here (the uplink summary says they are down).
type drainProgress struct {
	logger    *slog.Logger
	threshold int64

	// Used only by the goroutine that calls observe.
	draining    bool
	start       time.Time
	sentAtStart uint64
	lastTime    time.Time
	lastSent    uint64

	// Read by the metrics collector.
	active  atomic.Bool
	rate    atomic.Uint64 // float64 bits, events per second
	etaSecs atomic.Uint64 // float64 bits
}

func newDrainProgress(threshold int64, logger *slog.Logger) *drainProgress {
	return &drainProgress{logger: logger, threshold: max(threshold, 1)}
}

// run measures every interval until ctx ends; stats returns the events
// waiting and the events acknowledged so far.
func (d *drainProgress) run(ctx context.Context, every time.Duration, stats func() (left int64, sent uint64)) {
	t := time.NewTicker(every)
	defer t.Stop()
	left, sent := stats()
	d.observe(time.Now(), left, sent)
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			left, sent := stats()
			d.observe(now, left, sent)
		}
	}
}

// observe takes one measurement and logs what changed.
func (d *drainProgress) observe(now time.Time, left int64, sent uint64) {
	if d.lastTime.IsZero() {
		d.lastTime, d.lastSent = now, sent
		return
	}
	rate := 0.0
	if dt := now.Sub(d.lastTime).Seconds(); dt > 0 && sent > d.lastSent {
		rate = float64(sent-d.lastSent) / dt
	}
	prevSent := d.lastSent
	d.lastTime, d.lastSent = now, sent
	switch {
	case d.draining && left <= d.threshold:
		d.draining = false
		d.publish(false, 0, 0)
		d.logger.Info("backlog drained", "events_sent", sent-d.sentAtStart,
			"duration_seconds", roundTo(now.Sub(d.start).Seconds(), 0.1))
	case d.draining && rate == 0:
		d.draining = false
		d.publish(false, 0, 0)
		d.logger.Info("backlog drain paused", "events_left", left)
	case left > d.threshold && rate > 0:
		if !d.draining {
			d.draining, d.start, d.sentAtStart = true, now, prevSent
		}
		eta := float64(left) / rate
		d.publish(true, rate, eta)
		d.logger.Info("backlog draining", "events_left", left, "rate_per_second", roundTo(rate, 1),
			"eta_seconds", roundTo(eta, 1))
	}
}

func (d *drainProgress) publish(active bool, rate, eta float64) {
	d.active.Store(active)
	d.rate.Store(math.Float64bits(rate))
	d.etaSecs.Store(math.Float64bits(eta))
}

// current returns what the last measurement said, for metrics.
func (d *drainProgress) current() (active bool, rate, eta float64) {
	return d.active.Load(), math.Float64frombits(d.rate.Load()), math.Float64frombits(d.etaSecs.Load())
}

func roundTo(v, unit float64) float64 { return math.Round(v/unit) * unit }
