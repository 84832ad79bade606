package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"fieldbridge/buffer"
	"fieldbridge/dm"
	"fieldbridge/mapping"
	"fieldbridge/uplink"
)

// Gateway health and the platform's notify messages (protocol.md §5.4).
const (
	healthEvent    = "health"
	healthCheck    = 5 * time.Second // how often the health is looked at
	healthEvery    = time.Minute     // a health event at least this often
	rejectBackoff  = 30 * time.Second
	rejectMaxDelay = 10 * time.Minute
)

// errRejected is the publish result for a device the platform refused.
var errRejected = errors.New("the platform refused this device")

// gateway is the state of gateway mode: the gateway's identity, its own
// buffer queue for health events, the devices the platform refused, and
// the optional rate limit of the shared connection.
type gateway struct {
	id      uplink.Identity
	queue   string // buffer queue of the gateway's own events
	topic   string // its health topic
	notify  string // its notify topic
	link    *uplink.Client
	agent   *dm.Agent    // its own device management; nil when off
	limiter *rateLimiter // nil when unlimited
	results onDemand     // the forwarder of its own command results
	logger  *slog.Logger

	mu       sync.Mutex
	rejected map[string]*rejection // by device name
}

type rejection struct {
	until  time.Time
	count  int
	reason string
}

func newGateway(id uplink.Identity, rate float64, logger *slog.Logger) *gateway {
	g := &gateway{
		id:       id,
		queue:    "gateway:" + id.ID, // ':' never appears in a device id
		topic:    uplink.GatewayEventTopic(id, healthEvent, "json"),
		notify:   uplink.GatewayNotifyTopic(id),
		logger:   logger,
		rejected: map[string]*rejection{},
	}
	if rate > 0 {
		g.limiter = newRateLimiter(rate)
	}
	return g
}

// notification is the platform's notify payload (protocol.md §5.4).
type notification struct {
	Request string
	Topic   string
	Type    string
	Id      string
	Message string
}

// handleNotify records a rejection: the device's events stay buffered and
// its forwarder backs off (30s, doubling, at most 10m) instead of
// publishing into the void.
func (g *gateway) handleNotify(payload []byte, known func(typ, id string) bool) {
	var n notification
	if err := json.Unmarshal(payload, &n); err != nil {
		g.logger.Warn("unreadable notify message from the platform", "err", err, "bytes", len(payload))
		return
	}
	if n.Id == "" || !known(n.Type, n.Id) {
		g.logger.Warn("platform rejected a gateway request", "request", n.Request, "topic", n.Topic, "reason", n.Message)
		return
	}
	g.mu.Lock()
	r := g.rejected[n.Id]
	if r == nil {
		r = &rejection{}
		g.rejected[n.Id] = r
	}
	r.count++
	delay := min(rejectBackoff<<min(r.count-1, 10), rejectMaxDelay)
	r.until, r.reason = time.Now().Add(delay), n.Message
	g.mu.Unlock()
	g.logger.Error("platform rejected a device; its events stay buffered", "device", n.Id, "type", n.Type,
		"request", n.Request, "reason", n.Message, "retry_in", delay)
}

// rejection reports why device may not publish now (or ""), and whether
// the platform has rejected it since its last accepted event: then the
// next acknowledgement must reset its back-off.
func (g *gateway) rejection(device string) (reason string, rejected bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	r := g.rejected[device]
	if r == nil {
		return "", false
	}
	if time.Now().Before(r.until) {
		return r.reason, true
	}
	return "", true
}

// accepted forgets a device's rejection once the platform took its event.
func (g *gateway) accepted(device string) {
	g.mu.Lock()
	delete(g.rejected, device)
	g.mu.Unlock()
}

func (g *gateway) rejectedDevices() map[string]string {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := map[string]string{}
	for name, r := range g.rejected {
		out[name] = r.reason
	}
	return out
}

// gatewayPublisher is what a device's forwarder publishes through in
// gateway mode: the shared connection, behind the device's rejection
// back-off and the gateway's rate limit.
type gatewayPublisher struct {
	g      *gateway
	device string
}

// Connected reports whether the gateway's connection is up (for the
// forwarder's logs).
func (p gatewayPublisher) Connected() bool { return p.g.link.Connected() }

func (p gatewayPublisher) Publish(ctx context.Context, topic string, payload []byte) <-chan error {
	reason, rejectedBefore := p.g.rejection(p.device)
	if reason != "" {
		return failed(fmt.Errorf("%w: %s", errRejected, reason))
	}
	if p.g.limiter != nil {
		if err := p.g.limiter.wait(ctx); err != nil {
			return failed(err)
		}
	}
	res := p.g.link.Publish(ctx, topic, payload)
	if !rejectedBefore {
		// Nothing to forget on success: the link's result is the result,
		// without a goroutine per event to relay it (and a failure the link
		// had at once is already in its channel).
		return res
	}
	// A result the link had at once (not connected, busy) is passed on at
	// once: the forwarder looks for such failures before it publishes the
	// next event, and would otherwise send that event ahead of this one's
	// resend as soon as the link is up (seq 2 arriving before seq 1).
	select {
	case err := <-res:
		if err == nil {
			p.g.accepted(p.device)
		}
		return failed(err)
	default:
	}
	out := make(chan error, 1)
	go func() {
		err := <-res
		if err == nil {
			p.g.accepted(p.device)
		}
		out <- err
	}()
	return out
}

func failed(err error) <-chan error {
	ch := make(chan error, 1)
	ch <- err
	return ch
}

// health is the gateway's own event: how its devices and its buffer are.
type health struct {
	Devices       int               `json:"devices"`
	Up            int               `json:"devices_up"`
	Down          int               `json:"devices_down"`
	Buffered      int64             `json:"buffered_events"`
	Dropped       uint64            `json:"dropped_events"`          // every event not kept, for any reason
	Failed        uint64            `json:"failed_events,omitempty"` // the part refused for lack of disk space or a failed write
	Corrupt       uint64            `json:"corrupt_records,omitempty"`
	BufferFault   string            `json:"buffer_fault,omitempty"`
	Rejected      map[string]string `json:"rejected_devices,omitempty"`
	BufferInMem   bool              `json:"buffer_in_memory,omitempty"`
	UptimeSeconds int64             `json:"uptime_seconds"`
}

// same compares what matters for a change (not the counters that move
// with every event).
func (h health) same(o health) bool {
	return h.Up == o.Up && h.Down == o.Down && h.Dropped == o.Dropped && h.Failed == o.Failed && h.BufferFault == o.BufferFault &&
		len(h.Rejected) == len(o.Rejected)
}

// runHealth appends a health event to the gateway's queue at start, when
// something that matters changes, and at least every healthEvery.
func (b *bridge) runHealth(ctx context.Context) error {
	start := time.Now()
	tick := time.NewTicker(healthCheck)
	defer tick.Stop()
	var last health
	var lastSent time.Time
	for {
		h := b.health(start)
		if lastSent.IsZero() || !h.same(last) || time.Since(lastSent) >= healthEvery {
			b.appendHealth(h)
			last, lastSent = h, time.Now()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

func (b *bridge) health(start time.Time) health {
	st := b.store.Counters() // no event ages: they would cost database reads
	devices := b.view().devices
	h := health{
		Devices: len(devices), Buffered: st.Len, Dropped: st.Dropped + st.Failed, Failed: st.Failed, Corrupt: st.Corrupt,
		BufferFault: st.Fault, BufferInMem: st.InMemory && !b.opts.InMemoryBuffer,
		Rejected: b.gateway.rejectedDevices(), UptimeSeconds: int64(time.Since(start).Seconds()),
	}
	for _, d := range devices {
		switch d.state.Load() {
		case stateUp:
			h.Up++
		case stateDown:
			h.Down++
		}
	}
	return h
}

func (b *bridge) appendHealth(h health) {
	now := time.Now()
	_, err := b.store.Append(b.gateway.queue, b.gateway.topic, func(seq uint64) ([]byte, error) {
		d, err := json.Marshal(h)
		if err != nil {
			return nil, err
		}
		p := fmt.Appendf(nil, `{"d":%s,"ts":%q,"seq":%d}`, d, mapping.Timestamp(now), seq)
		if len(p) > mapping.MaxPayload {
			return nil, buffer.ErrTooLarge
		}
		return p, nil
	})
	if err != nil {
		b.logger.Error("gateway health not buffered", "err", err)
	}
}

// rateLimiter is a token bucket shared by the forwarders of one connection.
type rateLimiter struct {
	mu     sync.Mutex
	rate   float64
	tokens float64
	last   time.Time
}

func newRateLimiter(rate float64) *rateLimiter {
	return &rateLimiter{rate: rate, tokens: 1, last: time.Now()}
}

// wait takes one token, waiting for it or for ctx.
func (l *rateLimiter) wait(ctx context.Context) error {
	for {
		l.mu.Lock()
		now := time.Now()
		l.tokens = min(max(1, l.rate/10), l.tokens+now.Sub(l.last).Seconds()*l.rate)
		l.last = now
		if l.tokens >= 1 {
			l.tokens--
			l.mu.Unlock()
			return nil
		}
		delay := time.Duration((1 - l.tokens) / l.rate * float64(time.Second))
		l.mu.Unlock()
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}
