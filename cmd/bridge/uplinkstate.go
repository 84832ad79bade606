package main

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// defaultUplinkSummaryEvery is how often, while any uplink is down, one
// line sums up which.
const defaultUplinkSummaryEvery = time.Minute

// uplinkStates keeps the log of the uplinks' state short: each connection
// logs "uplink down" when it goes down and "uplink up" when it is back, not
// on every failed attempt; while any is down, one summary line every
// interval says how many and since when. With 500 devices and the broker
// gone, that is 500 lines at the start of the outage, 500 at its end, and
// one a minute in between.
type uplinkStates struct {
	logger *slog.Logger
	mu     sync.Mutex
	total  int
	down   map[string]time.Time // connection name -> down since
}

func newUplinkStates(logger *slog.Logger) *uplinkStates {
	return &uplinkStates{logger: logger, down: map[string]time.Time{}}
}

// track returns the OnStateChange function of one connection; logger
// carries the connection's name.
func (u *uplinkStates) track(name string, logger *slog.Logger) func(connected bool, err error) {
	u.mu.Lock()
	u.total++
	u.mu.Unlock()
	return func(connected bool, err error) {
		u.mu.Lock()
		since, wasDown := u.down[name]
		switch {
		case connected:
			delete(u.down, name)
		case err != nil && !wasDown:
			u.down[name] = time.Now()
		}
		u.mu.Unlock()
		switch {
		case connected && wasDown:
			logger.Info("uplink up", "down_seconds", time.Since(since).Round(time.Millisecond).Seconds())
		case !connected && err != nil && !wasDown:
			logger.Warn("uplink down", "err", err)
		}
	}
}

// untrack forgets a connection that was stopped for good (a reload removed
// or replaced it), so that it is neither counted nor reported down.
func (u *uplinkStates) untrack(name string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.total--
	delete(u.down, name)
}

// summarize logs, every interval until ctx ends, how many uplinks are down.
func (u *uplinkStates) summarize(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			u.summary()
		}
	}
}

// summaryNames is how many connection names a summary lists.
const summaryNames = 5

func (u *uplinkStates) summary() {
	u.mu.Lock()
	n, total := len(u.down), u.total
	var oldest time.Time
	names := make([]string, 0, n)
	for name, since := range u.down {
		names = append(names, name)
		if oldest.IsZero() || since.Before(oldest) {
			oldest = since
		}
	}
	u.mu.Unlock()
	if n == 0 {
		return
	}
	slices.Sort(names)
	u.logger.Warn("uplinks down", "down", n, "of", total,
		"longest_down_seconds", time.Since(oldest).Round(time.Second).Seconds(),
		"first", names[:min(len(names), summaryNames)])
}
