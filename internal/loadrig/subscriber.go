package loadrig

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// readingEvent is the bridge's per-poll event name (no event blocks in the
// generated device type).
const readingEvent = "reading"

// counter receives every message the system under test publishes and keeps
// the counts, the latencies and the seqs. HandleMessage runs on the
// subscriber's one delivery goroutine; the rest on Run's goroutine.
type counter struct {
	telegraf bool

	points    atomic.Int64 // points (JSON fields) of reading events
	events    atomic.Int64 // reading events
	messages  atomic.Int64 // every message, status events included
	badFormat atomic.Int64 // messages that did not parse
	recording atomic.Bool  // latencies are recorded only while true

	mu      sync.Mutex
	latency histogram
	seqs    seqTracker
}

func newCounter(telegraf bool) *counter {
	return &counter{telegraf: telegraf, seqs: seqTracker{byDevice: map[string]*seqSet{}}}
}

// bridgeMessage is the shape of every bridge event.
type bridgeMessage struct {
	D   map[string]json.RawMessage `json:"d"`
	TS  string                     `json:"ts"`
	Seq *uint64                    `json:"seq"`
}

// telegrafMessage is Telegraf's JSON serializer output for one metric.
type telegrafMessage struct {
	Fields    map[string]json.RawMessage `json:"fields"`
	Timestamp int64                      `json:"timestamp"` // ms (json_timestamp_units)
}

// HandleMessage counts one message. It never fails: a message that does not
// parse is counted as bad format, which the summary reports.
func (c *counter) HandleMessage(_ context.Context, topic string, payload []byte) error {
	arrived := time.Now()
	c.messages.Add(1)
	if c.telegraf {
		c.handleTelegraf(arrived, payload)
	} else {
		c.handleBridge(arrived, topic, payload)
	}
	return nil
}

func (c *counter) handleTelegraf(arrived time.Time, payload []byte) {
	var m telegrafMessage
	if err := json.Unmarshal(payload, &m); err != nil || m.Timestamp == 0 {
		c.badFormat.Add(1)
		return
	}
	c.events.Add(1)
	c.points.Add(int64(len(m.Fields)))
	c.recordLatency(arrived.Sub(time.UnixMilli(m.Timestamp)))
}

func (c *counter) handleBridge(arrived time.Time, topic string, payload []byte) {
	device, event, ok := parseEventTopic(topic)
	if !ok {
		return // not an event (the rig subscribes to iot-2/#)
	}
	var m bridgeMessage
	if err := json.Unmarshal(payload, &m); err != nil || m.Seq == nil {
		c.badFormat.Add(1)
		return
	}
	c.mu.Lock()
	c.seqs.add(device, *m.Seq)
	c.mu.Unlock()
	if event != readingEvent {
		return
	}
	ts, err := time.Parse(time.RFC3339Nano, m.TS)
	if err != nil {
		c.badFormat.Add(1)
		return
	}
	c.events.Add(1)
	c.points.Add(int64(len(m.D)))
	c.recordLatency(arrived.Sub(ts))
}

func (c *counter) recordLatency(d time.Duration) {
	if !c.recording.Load() {
		return
	}
	c.mu.Lock()
	c.latency.add(d)
	c.mu.Unlock()
}

// parseEventTopic returns the device (empty in device mode, where the topic
// does not name it) and the event name of a bridge event topic.
func parseEventTopic(topic string) (device, event string, ok bool) {
	parts := strings.Split(topic, "/")
	switch {
	case len(parts) == 5 && parts[0] == "iot-2" && parts[1] == "evt" && parts[3] == "fmt":
		return "", parts[2], true // iot-2/evt/<event>/fmt/<fmt>
	case len(parts) == 9 && parts[0] == "iot-2" && parts[1] == "type" && parts[3] == "id" && parts[5] == "evt" && parts[7] == "fmt":
		return parts[4], parts[6], true // iot-2/type/<type>/id/<id>/evt/<event>/fmt/<fmt>
	}
	return "", "", false
}

// histogram holds latencies in 100 µs buckets up to 10 s, and the rest in
// one overflow bucket; max is exact.
type histogram struct {
	buckets  []int64
	overflow int64
	n        int64
	max      time.Duration
}

const (
	histStep    = 100 * time.Microsecond
	histBuckets = int(10 * time.Second / histStep)
)

func (h *histogram) add(d time.Duration) {
	if h.buckets == nil {
		h.buckets = make([]int64, histBuckets)
	}
	d = max(d, 0) // ts is truncated to the millisecond, so never later than arrival
	h.n++
	h.max = max(h.max, d)
	if i := int(d / histStep); i < histBuckets {
		h.buckets[i]++
	} else {
		h.overflow++
	}
}

// quantile returns the upper edge of the bucket holding quantile q, or the
// max for the overflow bucket.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := int64(q*float64(h.n-1)) + 1
	var seen int64
	for i, n := range h.buckets {
		seen += n
		if seen >= rank {
			return min(time.Duration(i+1)*histStep, h.max)
		}
	}
	return h.max
}

// seqTracker records the seq of every bridge event. In gateway mode the
// topic names the device, so (device, seq) pairs are exact. In device mode
// every device publishes on the same topic, so the rig can only count how
// many events carried each seq value ("" device): with every device's seqs
// running 1, 2, 3..., a seq seen more often than there are devices is a
// duplicate, and fewer distinct events than the broker acknowledged is a loss.
type seqTracker struct {
	byDevice map[string]*seqSet
}

// seqSet counts how often each seq was seen.
type seqSet struct {
	seen []int32 // index: seq
	min  uint64
	max  uint64
	n    int64
}

func (t *seqTracker) add(device string, seq uint64) {
	s := t.byDevice[device]
	if s == nil {
		s = &seqSet{min: seq}
		t.byDevice[device] = s
	}
	for uint64(len(s.seen)) <= seq {
		s.seen = append(s.seen, make([]int32, max(len(s.seen), 1024))...)
	}
	s.seen[seq]++
	s.n++
	s.min, s.max = min(s.min, seq), max(s.max, seq)
}

// seqReport is the outcome of comparing what arrived with what the bridge
// says the broker acknowledged.
type seqReport struct {
	Received   int64 // events (all kinds) that arrived
	Distinct   int64 // of them, distinct (device, seq)
	Duplicates int64 // Received - Distinct
	Gaps       int64 // seqs missing between a device's first and last (gateway mode)
	Lost       int64 // acknowledged by the broker (bridge metrics) but never arrived
	Exact      bool  // true when devices are named in topics (gateway mode)
}

// report compares the seqs with published (events acknowledged per queue,
// from the bridge's metrics). perSeq is how many devices may share a seq
// value in device mode (the number of devices).
func (t *seqTracker) report(published map[string]int64, perSeq int) seqReport {
	var r seqReport
	if shared, ok := t.byDevice[""]; ok { // device mode
		for _, n := range shared.seen {
			r.Received += int64(n)
			r.Distinct += int64(min(int(n), perSeq))
		}
		var acked int64
		for _, n := range published {
			acked += n
		}
		r.Duplicates = r.Received - r.Distinct
		r.Lost = max(0, acked-r.Distinct)
		return r
	}
	r.Exact = true
	for device, s := range t.byDevice {
		var distinct int64
		for _, n := range s.seen {
			if n > 0 {
				distinct++
			}
		}
		r.Received += s.n
		r.Distinct += distinct
		r.Gaps += int64(s.max-s.min+1) - distinct
		queue := device
		if device == gatewayID {
			queue = "gateway:" + gatewayID
		}
		r.Lost += max(0, published[queue]-distinct)
	}
	for queue, n := range published { // queues of which nothing arrived
		if _, ok := t.byDevice[strings.TrimPrefix(queue, "gateway:")]; !ok {
			r.Lost += n
		}
	}
	r.Duplicates = r.Received - r.Distinct
	return r
}

func (r seqReport) String() string {
	kind := "exact (device, seq)"
	if !r.Exact {
		kind = "device mode: seq counts only"
	}
	return fmt.Sprintf("received %d, distinct %d, duplicates %d, gaps %d, lost %d (%s)", r.Received, r.Distinct, r.Duplicates, r.Gaps, r.Lost, kind)
}
