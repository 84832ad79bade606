package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"fieldbridge/adapters"
	"fieldbridge/buffer"
)

// bridgeMetrics serves /metrics, /healthz and /readyz on the address of the
// configuration's metrics block. Almost every number is read at scrape
// time from statistics the components keep anyway (the buffer's queue
// statistics, the bus loops' counters, the uplinks' state, the devices'
// last status), so the hot paths carry no metrics code; only the command and
// DM counters below are incremented as things happen.
type bridgeMetrics struct {
	b        *bridge
	registry *prometheus.Registry
	drain    *drainProgress
	logger   *slog.Logger

	// Commands counts commands from the platform by command name and
	// result ("ok", or a short error class such as "refused", "invalid",
	// "write_failed"). It is the hook for the command wiring: call
	// CountCommand. Command names come from the platform, so callers pass
	// "unknown" for a name the device type does not define, keeping the
	// number of series bounded.
	commands *prometheus.CounterVec
	// DMRequests counts device-management requests by request name (as in
	// protocol.md, for example "reboot", "firmware_update") and result; the
	// hook for the dm wiring: call CountDMRequest.
	dmRequests *prometheus.CounterVec

	mu sync.Mutex
	ln net.Listener // set by listen
}

func newBridgeMetrics(b *bridge, logger *slog.Logger) *bridgeMetrics {
	threshold := int64(b.cfg.Buffer.InFlight) * int64(max(len(b.devices), 1))
	m := &bridgeMetrics{
		b:        b,
		registry: prometheus.NewRegistry(),
		drain:    newDrainProgress(threshold, logger.With("component", "buffer")),
		logger:   logger.With("component", "metrics"),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bridge_commands_total",
			Help: "Commands received from the platform, by command and result.",
		}, []string{"command", "result"}),
		dmRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bridge_dm_requests_total",
			Help: "Device-management requests received from the platform, by request and result.",
		}, []string{"request", "result"}),
	}
	m.registry.MustRegister(
		bridgeCollector{m},
		m.commands,
		m.dmRequests,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// CountCommand counts one command and its result (see commands).
func (m *bridgeMetrics) CountCommand(command, result string) {
	m.commands.WithLabelValues(command, result).Inc()
}

// CountDMRequest counts one device-management request and its result (see
// dmRequests).
func (m *bridgeMetrics) CountDMRequest(request, result string) {
	m.dmRequests.WithLabelValues(request, result).Inc()
}

// listen opens the listener; an empty address leaves metrics off.
func (m *bridgeMetrics) listen(addr string) error {
	if addr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics listener: %w", err)
	}
	m.mu.Lock()
	m.ln = ln
	m.mu.Unlock()
	m.logger.Info("metrics listening", "address", ln.Addr().String())
	return nil
}

// addr is the listener's address, "" when metrics are off.
func (m *bridgeMetrics) addr() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ln == nil {
		return ""
	}
	return m.ln.Addr().String()
}

// serve answers HTTP requests on the listener until ctx ends, then returns
// nil. Without a listener it returns at once.
func (m *bridgeMetrics) serve(ctx context.Context) error {
	m.mu.Lock()
	ln := m.ln
	m.mu.Unlock()
	if ln == nil {
		return nil
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(m.logger.Handler(), slog.LevelWarn)}))
	mux.HandleFunc("GET /healthz", m.healthz)
	mux.HandleFunc("GET /readyz", m.readyz)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	stop := context.AfterFunc(ctx, func() { srv.Close() })
	defer stop()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics listener: %w", err)
	}
	return nil
}

// healthz answers 200 while the process runs: it says nothing about the
// devices or the broker, so a supervisor restarting on it never restarts a
// bridge that is only waiting for its network.
func (m *bridgeMetrics) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"status": "alive", "version": version})
}

// readiness is the body of /readyz.
type readiness struct {
	Ready  bool   `json:"ready"`
	Reason string `json:"reason,omitempty"`
	Buffer struct {
		Open             bool    `json:"open"`
		Events           int64   `json:"events"`
		Bytes            int64   `json:"bytes"`
		MaxBytes         int64   `json:"max_bytes"`
		OldestAgeSeconds float64 `json:"oldest_age_seconds"`
		MaxAgeSeconds    float64 `json:"max_age_seconds"`
		Fault            string  `json:"fault,omitempty"`
		WithinLimits     bool    `json:"within_limits"`
	} `json:"buffer"`
	Uplinks struct {
		Connected int `json:"connected"`
		Total     int `json:"total"`
	} `json:"uplinks"`
}

// limitShare is the part of max_bytes and max_age a backlog may use and
// still count as "within limits": past it the buffer will soon drop events
// (the same 80 % at which an operator should look, style C18).
const limitShare = 0.8

// ready decides readiness: the buffer is open, and events either leave
// (an uplink is connected) or can wait without loss (the buffer is healthy
// and below limitShare of both of its limits).
func (m *bridgeMetrics) ready() readiness {
	var r readiness
	st := m.b.store.Stats()
	maxAge := m.b.cfg.Buffer.MaxAge
	bs := &r.Buffer
	bs.Open, bs.Events, bs.Bytes, bs.MaxBytes, bs.Fault = !st.Closed, st.Len, st.Bytes, st.MaxBytes, st.Fault
	bs.MaxAgeSeconds = maxAge.Seconds()
	var oldest time.Duration
	for _, q := range st.Queues {
		oldest = max(oldest, q.OldestAge)
	}
	bs.OldestAgeSeconds = oldest.Seconds()
	bs.WithinLimits = st.Fault == "" &&
		(st.MaxBytes <= 0 || float64(st.Bytes) <= limitShare*float64(st.MaxBytes)) &&
		(maxAge <= 0 || float64(oldest) <= limitShare*float64(maxAge))
	for _, l := range m.b.links {
		r.Uplinks.Total++
		if l.Connected() {
			r.Uplinks.Connected++
		}
	}
	switch {
	case !bs.Open:
		r.Reason = "buffer closed"
	case r.Uplinks.Connected == 0 && r.Uplinks.Total > 0 && !bs.WithinLimits:
		r.Reason = "no uplink connected and the buffer is beyond its limits"
	default:
		r.Ready = true
	}
	return r
}

// readyz answers 200 when ready, 503 when not, with the detail as JSON.
func (m *bridgeMetrics) readyz(w http.ResponseWriter, _ *http.Request) {
	r := m.ready()
	code := http.StatusOK
	if !r.Ready {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, r)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v) // the client went away: nothing to do
}

// The metrics the bridge collects at scrape time. Label "bus" is a bus
// name, "device" a device name (for event counters: the buffer queue, which
// is the device name, or "gateway:<id>" for a gateway's own events),
// "connection" an MQTT client id.
var (
	descBusRequests = prometheus.NewDesc("bridge_bus_requests_total", "Reads and writes sent on the bus.", []string{"bus"}, nil)
	descBusErrors   = prometheus.NewDesc("bridge_bus_errors_total", "Requests on the bus that failed: timeouts, exceptions, bad frames, no connection.", []string{"bus"}, nil)
	descBusTimeouts = prometheus.NewDesc("bridge_bus_timeouts_total", "Requests on the bus the device did not answer in time.", []string{"bus"}, nil)
	descBusLatency  = prometheus.NewDesc("bridge_bus_request_duration_seconds", "How long requests on the bus took, answered or not.", []string{"bus"}, nil)

	descDeviceUp       = prometheus.NewDesc("bridge_device_up", "1 when the device answered its last poll cycle, 0 when it is down or has not been polled yet.", []string{"device"}, nil)
	descDeviceReadAge  = prometheus.NewDesc("bridge_device_last_read_age_seconds", "Seconds since a poll cycle last read anything from the device; absent until one has.", []string{"device"}, nil)
	descEventsAppended = prometheus.NewDesc("bridge_events_appended_total", "Events stored in the buffer since start.", []string{"device"}, nil)
	descEventsPublish  = prometheus.NewDesc("bridge_events_published_total", "Events the broker acknowledged since start (then removed from the buffer).", []string{"device"}, nil)
	descEventsDropped  = prometheus.NewDesc("bridge_events_dropped_total", "Events the buffer dropped by policy since start (on_full or max_age).", []string{"device"}, nil)
	descEventsFailed   = prometheus.NewDesc("bridge_events_failed_total", "Events the buffer could not keep (disk full, storage error), counted since the buffer directory was created.", []string{"device"}, nil)
	descEventsCorrupt  = prometheus.NewDesc("bridge_events_corrupt_total", "Buffered events skipped since start because their record did not decode.", []string{"device"}, nil)

	descBufferEvents   = prometheus.NewDesc("bridge_buffer_events", "Events waiting in the buffer, those in flight included.", nil, nil)
	descBufferBytes    = prometheus.NewDesc("bridge_buffer_bytes", "Bytes the waiting events count against max_bytes.", nil, nil)
	descBufferMaxBytes = prometheus.NewDesc("bridge_buffer_max_bytes", "The buffer's max_bytes.", nil, nil)
	descBufferOldest   = prometheus.NewDesc("bridge_buffer_oldest_age_seconds", "How long the oldest waiting event has waited; 0 when none waits.", nil, nil)
	descBufferOpen     = prometheus.NewDesc("bridge_buffer_open", "1 while the buffer is open.", nil, nil)
	descBufferFault    = prometheus.NewDesc("bridge_buffer_fault", "1 while the buffer reports a storage problem (see the log and /readyz).", nil, nil)
	descBufferInMemory = prometheus.NewDesc("bridge_buffer_in_memory", "1 when the buffer runs in memory (demo, or its directory failed).", nil, nil)
	descDraining       = prometheus.NewDesc("bridge_buffer_draining", "1 while a backlog drains.", nil, nil)
	descDrainRate      = prometheus.NewDesc("bridge_buffer_drain_rate", "Events per second acknowledged while a backlog drains; 0 otherwise.", nil, nil)
	descDrainETA       = prometheus.NewDesc("bridge_buffer_drain_eta_seconds", "Estimated seconds until the backlog has drained; 0 when none drains.", nil, nil)

	descUplinkConnected  = prometheus.NewDesc("bridge_uplink_connected", "1 while the MQTT connection is open and accepting publishes.", []string{"connection"}, nil)
	descUplinkReconnects = prometheus.NewDesc("bridge_uplink_reconnects_total", "Connections after the first one since start.", []string{"connection"}, nil)
	descUplinkInFlight   = prometheus.NewDesc("bridge_uplink_in_flight", "Publishes written to the connection and waiting for their acknowledgement.", []string{"connection"}, nil)
)

// bridgeCollector reads the components' statistics at scrape time.
type bridgeCollector struct{ m *bridgeMetrics }

func (c bridgeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		descBusRequests, descBusErrors, descBusTimeouts, descBusLatency,
		descDeviceUp, descDeviceReadAge, descEventsAppended, descEventsPublish, descEventsDropped, descEventsFailed, descEventsCorrupt,
		descBufferEvents, descBufferBytes, descBufferMaxBytes, descBufferOldest, descBufferOpen, descBufferFault, descBufferInMemory,
		descDraining, descDrainRate, descDrainETA,
		descUplinkConnected, descUplinkReconnects, descUplinkInFlight,
	} {
		ch <- d
	}
}

func (c bridgeCollector) Collect(ch chan<- prometheus.Metric) {
	b := c.m.b
	now := time.Now()
	lastRead := map[string]time.Time{}
	for _, l := range b.loops {
		st := l.Stats()
		collectBus(ch, st)
		for dev, t := range st.LastRead {
			lastRead[dev] = t
		}
	}
	for name, d := range b.devices {
		ch <- gauge(descDeviceUp, boolValue(d.state.Load() == stateUp), name)
		if t, ok := lastRead[name]; ok {
			ch <- gauge(descDeviceReadAge, max(0, now.Sub(t).Seconds()), name)
		}
	}
	collectBuffer(ch, b.store.Stats())
	active, rate, eta := c.m.drain.current()
	ch <- gauge(descDraining, boolValue(active))
	ch <- gauge(descDrainRate, rate)
	ch <- gauge(descDrainETA, eta)
	for _, l := range b.links {
		st := l.Stats()
		ch <- gauge(descUplinkConnected, boolValue(st.Connected), st.ClientID)
		ch <- counter(descUplinkReconnects, float64(max(st.Connections, 1)-1), st.ClientID)
		ch <- gauge(descUplinkInFlight, float64(st.InFlight), st.ClientID)
	}
}

func collectBus(ch chan<- prometheus.Metric, st adapters.LoopStats) {
	ch <- counter(descBusRequests, float64(st.Requests), st.Bus)
	ch <- counter(descBusErrors, float64(st.Errors), st.Bus)
	ch <- counter(descBusTimeouts, float64(st.Timeouts), st.Bus)
	buckets := make(map[float64]uint64, len(adapters.LatencyBuckets))
	var cumulative uint64
	for i, le := range adapters.LatencyBuckets {
		cumulative += st.LatencyCounts[i]
		buckets[le] = cumulative
	}
	total := cumulative + st.LatencyCounts[len(adapters.LatencyBuckets)]
	ch <- prometheus.MustNewConstHistogram(descBusLatency, total, st.LatencySum.Seconds(), buckets, st.Bus)
}

func collectBuffer(ch chan<- prometheus.Metric, st buffer.Stats) {
	var oldest time.Duration
	for _, q := range st.Queues {
		oldest = max(oldest, q.OldestAge)
		ch <- counter(descEventsAppended, float64(q.Appended), q.Queue)
		ch <- counter(descEventsPublish, float64(q.Acked), q.Queue)
		ch <- counter(descEventsDropped, float64(q.Dropped), q.Queue)
		ch <- counter(descEventsFailed, float64(q.Failed), q.Queue)
		ch <- counter(descEventsCorrupt, float64(q.Corrupt), q.Queue)
	}
	ch <- gauge(descBufferEvents, float64(st.Len))
	ch <- gauge(descBufferBytes, float64(st.Bytes))
	ch <- gauge(descBufferMaxBytes, float64(st.MaxBytes))
	ch <- gauge(descBufferOldest, oldest.Seconds())
	ch <- gauge(descBufferOpen, boolValue(!st.Closed))
	ch <- gauge(descBufferFault, boolValue(st.Fault != ""))
	ch <- gauge(descBufferInMemory, boolValue(st.InMemory))
}

func gauge(d *prometheus.Desc, v float64, labels ...string) prometheus.Metric {
	return prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func counter(d *prometheus.Desc, v float64, labels ...string) prometheus.Metric {
	return prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// drainStats returns the events waiting in the buffer and the events
// acknowledged since start, for drainProgress.
func (b *bridge) drainStats() (left int64, sent uint64) {
	st := b.store.Stats()
	for _, q := range st.Queues {
		sent += q.Acked
	}
	return st.Len, sent
}
