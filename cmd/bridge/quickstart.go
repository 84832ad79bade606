package main

import (
	"context"
	"slices"
	"sync"
	"time"

	"fieldbridge/mapping"
)

// quickstartInterval is the platform's quickstart limit: one event per
// second per device (protocol.md §2.11).
const quickstartInterval = time.Second

// DashboardURL is where quickstart shows a device's events.
const quickstartDashboard = "https://quickstart.internetofthings.ibmcloud.com/#/device/"

// mailbox holds a quickstart device's newest event of each kind. Quickstart
// takes QoS 0 and at most one event per second, so instead of queueing, a
// newer value replaces an older one that is still waiting: a fast poll never
// builds a backlog. These events do not go through the buffer (QoS 0 makes
// no delivery promise to keep).
type mailbox struct {
	mu      sync.Mutex
	pending map[string]mapping.Output // by event name
	order   []string                  // event names in the order they first waited
}

func (m *mailbox) put(o mapping.Output) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.pending == nil {
		m.pending = map[string]mapping.Output{}
	}
	if _, waiting := m.pending[o.Event]; !waiting {
		m.order = append(m.order, o.Event)
	}
	// The mapping reuses an output's fields at its next poll cycle.
	o.Fields = slices.Clone(o.Fields)
	m.pending[o.Event] = o
}

// take removes and returns the event that waited longest.
func (m *mailbox) take() (mapping.Output, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.order) == 0 {
		return mapping.Output{}, false
	}
	name := m.order[0]
	m.order = m.order[1:]
	o := m.pending[name]
	delete(m.pending, name)
	return o, true
}

// runQuickstart sends d's newest waiting event once per second. seq starts
// from the start time in milliseconds times 1000, so it keeps increasing
// across restarts without a store.
func (b *bridge) runQuickstart(ctx context.Context, d *fieldDevice) error {
	seq := uint64(time.Now().UnixMilli()) * 1000
	tick := time.NewTicker(quickstartInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		o, ok := d.mailbox.take()
		if !ok {
			continue
		}
		seq++
		if err := <-d.link.Publish(ctx, d.topic.of(o.Event), o.AppendPayload(nil, seq)); err != nil {
			b.logger.Debug("quickstart event not sent", "device", d.name, "event", o.Event, "err", err)
		}
	}
}
