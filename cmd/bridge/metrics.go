package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"fieldbridge/adapters"
	"fieldbridge/buffer"
	"fieldbridge/uplink"
)

// bridgeMetrics serves /metrics, /healthz and /readyz on the address of the
// configuration's metrics block. Almost every number is read at scrape
// time from statistics the components keep anyway (the buffer's queue
// statistics, the bus loops' counters, the uplinks' state, the devices'
// last status), so the hot paths carry no metrics code; only the command and
// DM counters below are incremented as things happen.
//
// The library is github.com/VictoriaMetrics/metrics, not
// prometheus/client_golang: at 500 devices a client_golang scrape held
// about 4 MiB more resident memory than none (it builds a protobuf value per
// series), over the 2 MB the issue allows; see docs/performance.md
// ("Metrics"). Both write the same text format.
type bridgeMetrics struct {
	b      *bridge
	drain  *drainProgress
	logger *slog.Logger

	// Commands counts commands from the platform by command name and
	// result ("ok", or a short error class such as "refused", "invalid",
	// "write_failed"). It is the hook for the command wiring: call
	// CountCommand. Command names come from the platform, so callers pass
	// "unknown" for a name the device type does not define, keeping the
	// number of series bounded.
	commands *metrics.Set
	// DMRequests counts device-management requests by request name (as in
	// protocol.md, for example "reboot", "firmware_update") and result; the
	// hook for the dm wiring: call CountDMRequest.
	dmRequests *metrics.Set

	mu sync.Mutex
	ln net.Listener // set by listen
}

func newBridgeMetrics(b *bridge, logger *slog.Logger) *bridgeMetrics {
	threshold := int64(b.cfg.Buffer.InFlight) * int64(max(len(b.view().devices), 1))
	m := &bridgeMetrics{
		b:          b,
		drain:      newDrainProgress(threshold, logger.With("component", "buffer")),
		logger:     logger.With("component", "metrics"),
		commands:   metrics.NewSet(),
		dmRequests: metrics.NewSet(),
	}
	return m
}

// CountCommand counts one command and its result (see commands).
func (m *bridgeMetrics) CountCommand(command, result string) {
	m.commands.GetOrCreateCounter(series("bridge_commands_total", "command", command, "result", result)).Inc()
}

// CountDMRequest counts one device-management request and its result (see
// dmRequests).
func (m *bridgeMetrics) CountDMRequest(request, result string) {
	m.dmRequests.GetOrCreateCounter(series("bridge_dm_requests_total", "request", request, "result", result)).Inc()
}

// writeMetrics writes every metric in the Prometheus text format: the
// bridge's own, then the Go runtime's and the process's.
func (m *bridgeMetrics) writeMetrics(w io.Writer) {
	bw := bufio.NewWriterSize(w, 64<<10)
	m.writeBridge(bw)
	metrics.WriteProcessMetrics(bw)
	bw.Flush()
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
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		m.writeMetrics(w)
	})
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
	for _, l := range m.b.view().links {
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

// The metrics the bridge writes at scrape time. Label "bus" is a bus name,
// "device" a device name (for event counters: the buffer queue, which is
// the device name, or "gateway:<id>" for a gateway's own events),
// "connection" an MQTT client id. Every family is written in one piece
// after its HELP and TYPE lines, as the text format requires.
func (m *bridgeMetrics) writeBridge(w io.Writer) {
	b := m.b.view()
	store := m.b.store
	now := time.Now()
	loops := make([]adapters.LoopStats, len(b.loops))
	for i, l := range b.loops {
		loops[i] = l.Stats()
	}
	st := store.Stats()
	links := make([]uplink.Stats, len(b.links))
	for i, l := range b.links {
		links[i] = l.Stats()
	}
	names := make([]string, 0, len(b.devices))
	for name := range b.devices {
		names = append(names, name)
	}
	slices.Sort(names)

	family(w, "bridge_bus_requests_total", "counter", "Reads and writes sent on the bus.")
	for _, l := range loops {
		metrics.WriteCounterUint64(w, series("bridge_bus_requests_total", "bus", l.Bus), l.Requests)
	}
	family(w, "bridge_bus_errors_total", "counter", "Requests on the bus that failed: timeouts, exceptions, bad frames, no connection.")
	for _, l := range loops {
		metrics.WriteCounterUint64(w, series("bridge_bus_errors_total", "bus", l.Bus), l.Errors)
	}
	family(w, "bridge_bus_timeouts_total", "counter", "Requests on the bus the device did not answer in time.")
	for _, l := range loops {
		metrics.WriteCounterUint64(w, series("bridge_bus_timeouts_total", "bus", l.Bus), l.Timeouts)
	}
	family(w, "bridge_bus_request_duration_seconds", "histogram", "How long requests on the bus took, answered or not.")
	for _, l := range loops {
		writeHistogram(w, "bridge_bus_request_duration_seconds", "bus", l)
	}

	family(w, "bridge_device_up", "gauge", "1 when the device answered its last poll cycle, 0 when it is down or has not been polled yet.")
	lastRead := map[string]time.Time{}
	for _, l := range loops {
		for dev, t := range l.LastRead {
			lastRead[dev] = t
		}
	}
	for _, name := range names {
		up := b.devices[name].state.Load() == stateUp
		metrics.WriteGaugeUint64(w, series("bridge_device_up", "device", name), boolValue(up))
	}
	family(w, "bridge_device_last_read_age_seconds", "gauge", "Seconds since a poll cycle last read anything from the device; absent until one has.")
	for _, name := range names {
		if t, ok := lastRead[name]; ok {
			metrics.WriteGaugeFloat64(w, series("bridge_device_last_read_age_seconds", "device", name), max(0, now.Sub(t).Seconds()))
		}
	}

	queueCounters := []struct {
		name, help string
		value      func(buffer.QueueStats) uint64
	}{
		{"bridge_events_appended_total", "Events stored in the buffer since start.", func(q buffer.QueueStats) uint64 { return q.Appended }},
		{"bridge_events_published_total", "Events the broker acknowledged since start (then removed from the buffer).", func(q buffer.QueueStats) uint64 { return q.Acked }},
		{"bridge_events_dropped_total", "Events the buffer dropped by policy since start (on_full or max_age).", func(q buffer.QueueStats) uint64 { return q.Dropped }},
		{"bridge_events_failed_total", "Events the buffer could not keep (disk full, storage error), counted since the buffer directory was created.", func(q buffer.QueueStats) uint64 { return q.Failed }},
		{"bridge_events_corrupt_total", "Buffered events skipped since start because their record did not decode.", func(q buffer.QueueStats) uint64 { return q.Corrupt }},
	}
	for _, c := range queueCounters {
		family(w, c.name, "counter", c.help)
		for _, q := range st.Queues {
			metrics.WriteCounterUint64(w, series(c.name, "device", q.Queue), c.value(q))
		}
	}

	var oldest time.Duration
	for _, q := range st.Queues {
		oldest = max(oldest, q.OldestAge)
	}
	active, rate, eta := m.drain.current()
	for _, g := range []struct {
		name, help string
		value      float64
	}{
		{"bridge_buffer_events", "Events waiting in the buffer, those in flight included.", float64(st.Len)},
		{"bridge_buffer_bytes", "Bytes the waiting events count against max_bytes.", float64(st.Bytes)},
		{"bridge_buffer_max_bytes", "The buffer's max_bytes.", float64(st.MaxBytes)},
		{"bridge_buffer_oldest_age_seconds", "How long the oldest waiting event has waited; 0 when none waits. Exact for queues being forwarded; for a queue whose oldest event was not read lately, the age of an older event of that queue (an upper bound) until the scrape's few database reads get to it.", oldest.Seconds()},
		{"bridge_buffer_open", "1 while the buffer is open.", float64(boolValue(!st.Closed))},
		{"bridge_buffer_fault", "1 while the buffer reports a storage problem (see the log and /readyz).", float64(boolValue(st.Fault != ""))},
		{"bridge_buffer_in_memory", "1 when the buffer runs in memory (demo, or its directory failed).", float64(boolValue(st.InMemory))},
		{"bridge_buffer_draining", "1 while a backlog drains.", float64(boolValue(active))},
		{"bridge_buffer_drain_rate", "Events per second acknowledged while a backlog drains; 0 otherwise.", rate},
		{"bridge_buffer_drain_eta_seconds", "Estimated seconds until the backlog has drained; 0 when none drains.", eta},
	} {
		family(w, g.name, "gauge", g.help)
		metrics.WriteGaugeFloat64(w, g.name, g.value)
	}

	family(w, "bridge_uplink_connected", "gauge", "1 while the MQTT connection is open and accepting publishes.")
	for _, l := range links {
		metrics.WriteGaugeUint64(w, series("bridge_uplink_connected", "connection", l.ClientID), boolValue(l.Connected))
	}
	family(w, "bridge_uplink_reconnects_total", "counter", "Connections after the first one since start.")
	for _, l := range links {
		metrics.WriteCounterUint64(w, series("bridge_uplink_reconnects_total", "connection", l.ClientID), max(l.Connections, 1)-1)
	}
	family(w, "bridge_uplink_in_flight", "gauge", "Publishes written to the connection and waiting for their acknowledgement.")
	for _, l := range links {
		metrics.WriteGaugeUint64(w, series("bridge_uplink_in_flight", "connection", l.ClientID), uint64(l.InFlight))
	}
	family(w, "bridge_commands_total", "counter", "Commands received from the platform, by command and result.")
	m.commands.WritePrometheus(w)
	family(w, "bridge_dm_requests_total", "counter", "Device-management requests received from the platform, by request and result.")
	m.dmRequests.WritePrometheus(w)
}

// family writes the HELP and TYPE lines of a metric family.
func family(w io.Writer, name, typ, help string) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
}

// writeHistogram writes the cumulative buckets, sum and count of one bus's
// request latencies.
func writeHistogram(w io.Writer, name, label string, l adapters.LoopStats) {
	var cumulative uint64
	for i, le := range adapters.LatencyBuckets {
		cumulative += l.LatencyCounts[i]
		metrics.WriteCounterUint64(w, series(name+"_bucket", label, l.Bus, "le", strconv.FormatFloat(le, 'g', -1, 64)), cumulative)
	}
	cumulative += l.LatencyCounts[len(adapters.LatencyBuckets)]
	metrics.WriteCounterUint64(w, series(name+"_bucket", label, l.Bus, "le", "+Inf"), cumulative)
	metrics.WriteCounterFloat64(w, series(name+"_sum", label, l.Bus), l.LatencySum.Seconds())
	metrics.WriteCounterUint64(w, series(name+"_count", label, l.Bus), cumulative)
}

// series returns name{k1="v1",...} with the values escaped as the text
// format requires (backslash, double quote, newline).
func series(name string, labels ...string) string {
	var sb strings.Builder
	sb.Grow(len(name) + 32)
	sb.WriteString(name)
	for i := 0; i+1 < len(labels); i += 2 {
		if i == 0 {
			sb.WriteByte('{')
		} else {
			sb.WriteByte(',')
		}
		sb.WriteString(labels[i])
		sb.WriteString(`="`)
		labelEscaper.WriteString(&sb, labels[i+1])
		sb.WriteByte('"')
	}
	if len(labels) >= 2 {
		sb.WriteByte('}')
	}
	return sb.String()
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

func boolValue(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// drainStats returns the events waiting in the buffer and the events
// acknowledged since start, for drainProgress: counters only, no database
// read (it runs every few seconds, also while a backlog drains).
func (b *bridge) drainStats() (left int64, sent uint64) {
	st := b.store.Counters()
	for _, q := range st.Queues {
		sent += q.Acked
	}
	return st.Len, sent
}
