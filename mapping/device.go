package mapping

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"fieldbridge/adapters"
)

// Device is the runtime state of one configured device: its read plan, where
// each point sits in it, and what each event last reported. It belongs to the
// goroutine that owns the device's bus.
type Device struct {
	name          string
	typ           *DeviceType
	plan          []adapters.Range
	where         []int // per point: index of the plan range that holds it
	events        []eventState
	status        Status
	seen          bool      // a status was reported at least once
	dropped       uint64    // events the buffer could not keep, as last noted
	dropReportAt  time.Time // reading time of the last status sent only for a new drop count
	droppedBefore uint64    // dropped as the previous cycle saw it
	// missed counts, per point, the cycles in a row its read failed for a
	// transport reason while the device answered other reads.
	missed []int

	// Scratch reused by every Process call, so that a poll cycle whose
	// status did not change allocates nothing: the device belongs to one
	// goroutine, and Process's result lives until its next call.
	values []Value
	errs   []error
	out    []Output
}

// failedAfter is how many cycles in a row a point's read must fail for a
// transport reason (a timeout, a broken reply) while the device answers
// other reads before the status names the point failed. One lost request is
// not a change of the device's state; a range that never answers is.
const failedAfter = 3

type eventState struct {
	def      *Event
	points   []int // indexes into typ.Points
	lastSent time.Time
	last     []Value
	fields   []Field // the Fields of the Output due returns, reused
}

// NewDevice compiles a device type for one device on one unit id.
func NewDevice(name string, typ *DeviceType, unit uint8, opt PlanOptions) (*Device, error) {
	opt.Unreadable = append(opt.Unreadable[:len(opt.Unreadable):len(opt.Unreadable)], typ.Unreadable...)
	d := &Device{name: name, typ: typ, plan: Plan(typ.Points, unit, opt)}
	d.where = make([]int, len(typ.Points))
	d.missed = make([]int, len(typ.Points))
	d.values = make([]Value, len(typ.Points))
	d.errs = make([]error, len(typ.Points))
	for i, p := range typ.Points {
		d.where[i] = -1
		for j, r := range d.plan {
			if r.Table == p.Table && int(p.Address) >= int(r.Address) && int(p.Address)+p.Registers() <= r.End() {
				d.where[i] = j
				break
			}
		}
		if d.where[i] < 0 {
			return nil, fmt.Errorf("point %q is not covered by the read plan", p.Name)
		}
	}
	for i := range typ.Events {
		ev := &typ.Events[i]
		st := eventState{def: ev}
		for _, name := range ev.Points {
			idx := typ.PointIndex(name)
			if idx < 0 {
				return nil, fmt.Errorf("event %q names unknown point %q", ev.Name, name)
			}
			st.points = append(st.points, idx)
		}
		st.fields = make([]Field, len(st.points))
		st.last = make([]Value, 0, len(st.points))
		d.events = append(d.events, st)
	}
	return d, nil
}

// Name returns the device's name.
func (d *Device) Name() string { return d.name }

// Plan returns the ranges to read every poll cycle. The slice must not be changed.
func (d *Device) Plan() []adapters.Range { return d.plan }

// Output is one event that is due, ready to be turned into a payload once
// the buffer has assigned it a sequence number.
type Output struct {
	Event  string
	Time   time.Time
	Fields []Field // event values, in the order of the event's points
	Status *Status // set instead of Fields for a status event
}

// CommandEvent is the event name of command results (built by package dm).
const CommandEvent = "command"

// Field is one named value of an event.
type Field struct {
	Name  string
	Value Value
	Point *Point
}

// Status is what a device's status event reports.
type Status struct {
	Up     bool
	Error  string   // why the device is down, or why some points failed
	Failed []string // points that could not be read while the device is up
	// Dropped counts the device's events the buffer could not keep: dropped
	// by policy (full, too old) or refused (disk full); 0 is not reported.
	Dropped uint64
}

// sameState reports whether s and o describe the same state: up or down,
// the same failed points, the same drop count. The error text is not
// compared: it describes the state and may change while the state does not
// (another timeout, another exception code), and a status event goes out
// only on a real transition.
func (s Status) sameState(o Status) bool {
	return s.Dropped == o.Dropped && s.sameHealth(o)
}

// sameHealth is sameState without the drop count.
func (s Status) sameHealth(o Status) bool {
	return s.Up == o.Up && strings.Join(s.Failed, ",") == strings.Join(o.Failed, ",")
}

// droppedReportEvery spaces status events whose only news is a higher drop
// count while that count keeps growing. While the disk is full every poll
// refuses events (the status event too), and a status per poll would only
// add to what is refused. The count is cumulative: the first cycle without
// new drops (space is back) reports it at once.
const droppedReportEvery = time.Minute

// NoteDropped records how many of the device's events the buffer could not
// keep so far. A change goes out with the next status event; while the count
// keeps growing and nothing else changed, at most one such event per
// droppedReportEvery. Nothing is dropped silently.
func (d *Device) NoteDropped(n uint64) { d.dropped = n }

// Process decodes one poll cycle and returns the events that are due: a
// status event first when the device's status changed, then every event
// whose points were all read and whose report policy says it is due. An
// event with a failed point is not sent with stale values; the status event
// names the failed points instead.
//
// The returned slice and the Fields of its outputs are reused by the next
// call: use them (encode, copy) before calling Process again. A poll cycle
// that sends no status event allocates nothing (TestProcessAllocations).
func (d *Device) Process(r adapters.Reading) []Output {
	values, errs := d.values, d.errs
	for i := range d.typ.Points {
		b := &r.Blocks[d.where[i]]
		if b.Err != nil {
			values[i], errs[i] = Value{}, b.Err
			continue
		}
		values[i], errs[i] = d.typ.Points[i].decode(b)
	}

	out := d.out[:0]
	defer func() { d.out = out }()
	st := d.statusOf(r, errs)
	st.Dropped = d.dropped
	defer func() { d.droppedBefore = d.dropped }()
	if d.statusDue(st, r.Time) {
		if st.sameHealth(d.status) {
			d.dropReportAt = r.Time
		}
		d.seen, d.status = true, st
		s := st
		out = append(out, Output{Event: StatusEvent, Time: r.Time, Status: &s})
	}
	if !d.status.Up {
		return out
	}
	for i := range d.events {
		if o, ok := d.events[i].due(r.Time, d.typ, values, errs); ok {
			out = append(out, o)
		}
	}
	return out
}

// statusDue reports whether st must go out as a status event at time now.
func (d *Device) statusDue(st Status, now time.Time) bool {
	switch {
	case !d.seen || !st.sameHealth(d.status):
		return true
	case st.Dropped != d.status.Dropped:
		settled := st.Dropped == d.droppedBefore // no new drops since the last cycle
		return settled || d.dropReportAt.IsZero() || now.Sub(d.dropReportAt) >= droppedReportEvery
	}
	return false
}

// statusOf derives the device status: down when no range could be read
// because of transport trouble, up otherwise, with the points that failed:
// refused by the device or undecodable at once, failed for a transport
// reason only after failedAfter cycles in a row.
func (d *Device) statusOf(r adapters.Reading, errs []error) Status {
	down := len(r.Blocks) > 0
	for _, b := range r.Blocks {
		if b.Err == nil || !adapters.IsTransport(b.Err) {
			down = false
			break
		}
	}
	if down {
		clear(d.missed)
		return Status{Up: false, Error: stableError(r.Blocks[0].Err)}
	}
	st := Status{Up: true}
	var first error
	for i, err := range errs {
		if err == nil {
			d.missed[i] = 0
			continue
		}
		if adapters.IsTransport(err) {
			d.missed[i]++
			if d.missed[i] < failedAfter {
				continue
			}
		}
		st.Failed = append(st.Failed, d.typ.Points[i].Name)
		if first == nil {
			first = err
		}
	}
	if first != nil {
		st.Error = stableError(first)
		var ex *adapters.ExceptionError
		if errors.As(first, &ex) {
			st.Error = "device refused a read: " + ex.Error()
		}
	}
	return st
}

// localAddr matches the local half of a connection's "local->remote"
// addresses in a Go net error ("read tcp 127.0.0.1:53422->10.0.0.5:502").
var localAddr = regexp.MustCompile(`[^\s>]+:\d+->`)

// stableError is err's text without a connection's local address, which
// changes with every reconnect: the status event's error must name the
// failure, not the attempt. (Adapters already leave it out; this keeps any
// adapter's status stable.)
func stableError(err error) string {
	return localAddr.ReplaceAllString(err.Error(), "")
}

// due decides whether the event goes out now and builds it.
func (e *eventState) due(t time.Time, typ *DeviceType, values []Value, errs []error) (Output, bool) {
	for _, idx := range e.points {
		if errs[idx] != nil {
			return Output{}, false
		}
	}
	first := e.lastSent.IsZero()
	since := t.Sub(e.lastSent)
	// A tenth of the interval is forgiven so that a poll that comes a little
	// early does not push the event a whole poll later.
	if !first && e.def.Interval > 0 && since < e.def.Interval-e.def.Interval/10 {
		return Output{}, false
	}
	if !first && e.def.OnChange && !e.changed(typ, values) {
		if e.def.MaxSilence <= 0 || since < e.def.MaxSilence {
			return Output{}, false
		}
	}
	o := Output{Event: e.def.Name, Time: t, Fields: e.fields}
	e.last = e.last[:0]
	for i, idx := range e.points {
		p := &typ.Points[idx]
		o.Fields[i] = Field{Name: p.Name, Value: values[idx], Point: p}
		e.last = append(e.last, values[idx])
	}
	e.lastSent = t
	return o, true
}

func (e *eventState) changed(typ *DeviceType, values []Value) bool {
	if len(e.last) != len(e.points) {
		return true
	}
	for i, idx := range e.points {
		if typ.Points[idx].changed(e.last[i], values[idx]) {
			return true
		}
	}
	return false
}
