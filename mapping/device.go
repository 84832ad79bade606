package mapping

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"fieldbridge/adapters"
)

// Device is the runtime state of one configured device: its read plan, where
// each point sits in it, and what each event last reported. It belongs to the
// goroutine that owns the device's bus.
type Device struct {
	name    string
	typ     *DeviceType
	plan    []adapters.Range
	where   []int // per point: index of the plan range that holds it
	events  []eventState
	status  Status
	seen    bool   // a status was reported at least once
	dropped uint64 // events the buffer dropped by policy, as last noted
}

type eventState struct {
	def      *Event
	points   []int // indexes into typ.Points
	lastSent time.Time
	last     []Value
}

// NewDevice compiles a device type for one device on one unit id.
func NewDevice(name string, typ *DeviceType, unit uint8, opt PlanOptions) (*Device, error) {
	opt.Unreadable = append(opt.Unreadable[:len(opt.Unreadable):len(opt.Unreadable)], typ.Unreadable...)
	d := &Device{name: name, typ: typ, plan: Plan(typ.Points, unit, opt)}
	d.where = make([]int, len(typ.Points))
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
	// Dropped counts the device's events the buffer dropped by policy
	// (full, too old) since the bridge started; 0 is not reported.
	Dropped uint64
}

func (s Status) equal(o Status) bool {
	return s.Up == o.Up && s.Error == o.Error && s.Dropped == o.Dropped && strings.Join(s.Failed, ",") == strings.Join(o.Failed, ",")
}

// NoteDropped records how many of the device's events the buffer has
// dropped by policy so far. A change goes out with the next status event,
// so that nothing is dropped silently.
func (d *Device) NoteDropped(n uint64) { d.dropped = n }

// Process decodes one poll cycle and returns the events that are due: a
// status event first when the device's status changed, then every event
// whose points were all read and whose report policy says it is due. An
// event with a failed point is not sent with stale values; the status event
// names the failed points instead.
func (d *Device) Process(r adapters.Reading) []Output {
	values := make([]Value, len(d.typ.Points))
	errs := make([]error, len(d.typ.Points))
	for i := range d.typ.Points {
		b := &r.Blocks[d.where[i]]
		if b.Err != nil {
			errs[i] = b.Err
			continue
		}
		values[i], errs[i] = d.typ.Points[i].decode(b)
	}

	var out []Output
	st := d.statusOf(r, errs)
	st.Dropped = d.dropped
	if !d.seen || !st.equal(d.status) {
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

// statusOf derives the device status: down when no range could be read
// because of transport trouble, up otherwise (with the failed points).
func (d *Device) statusOf(r adapters.Reading, errs []error) Status {
	down := len(r.Blocks) > 0
	for _, b := range r.Blocks {
		if b.Err == nil || !adapters.IsTransport(b.Err) {
			down = false
			break
		}
	}
	if down {
		return Status{Up: false, Error: r.Blocks[0].Err.Error()}
	}
	st := Status{Up: true}
	var first error
	for i, err := range errs {
		if err != nil {
			st.Failed = append(st.Failed, d.typ.Points[i].Name)
			if first == nil {
				first = err
			}
		}
	}
	if first != nil {
		st.Error = first.Error()
		var ex *adapters.ExceptionError
		if errors.As(first, &ex) {
			st.Error = "device refused a read: " + ex.Error()
		}
	}
	return st
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
	o := Output{Event: e.def.Name, Time: t, Fields: make([]Field, len(e.points))}
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
