package mapping

import (
	"fmt"
	"time"

	"fieldbridge/adapters"
)

// Event is one event a device type publishes (topic .../evt/<Name>/fmt/json)
// with the points it carries and when it is due.
type Event struct {
	Name   string
	Points []string

	// Interval is the least time between two events; 0 sends one per poll.
	Interval time.Duration
	// OnChange sends the event only when a value differs from the last one
	// sent (MaxSilence still forces one out now and then).
	OnChange bool
	// MaxSilence sends the event after this long without one, changed or not;
	// 0 means no heartbeat.
	MaxSilence time.Duration
}

// DeviceType is a reusable map: the points and events that many devices share.
type DeviceType struct {
	Name   string
	Points []Point
	Events []Event
	// Unreadable lists addresses the device refuses to read (holes in its
	// map). The read plan never reads across them. Range.Unit is ignored.
	Unreadable []adapters.Range
	// Commands are what the platform may ask a device of this type to do.
	Commands []Command
}

// UnreadablePoint returns the index of a point that lies in an unreadable
// range, or -1.
func (t *DeviceType) UnreadablePoint() (point int, hole adapters.Range) {
	for i, p := range t.Points {
		for _, h := range t.Unreadable {
			if h.Table == p.Table && int(p.Address) < h.End() && int(p.Address)+p.Registers() > int(h.Address) {
				return i, h
			}
		}
	}
	return -1, adapters.Range{}
}

// StatusEvent is the event name of the per-device status reports.
const StatusEvent = "status"

// PointIndex returns the index of the named point, or -1.
func (t *DeviceType) PointIndex(name string) int {
	for i := range t.Points {
		if t.Points[i].Name == name {
			return i
		}
	}
	return -1
}

// Overlap describes two points that share registers but read them differently.
type Overlap struct{ A, B int }

// Overlaps returns every pair of points that share a register and disagree on
// how to read it. Points that read the same registers the same way, or bool
// points that pick different bits of one register, may overlap.
func (t *DeviceType) Overlaps() []Overlap {
	var out []Overlap
	for i := range t.Points {
		for j := i + 1; j < len(t.Points); j++ {
			a, b := &t.Points[i], &t.Points[j]
			if a.Table != b.Table {
				continue
			}
			aEnd, bEnd := int(a.Address)+a.Registers(), int(b.Address)+b.Registers()
			if int(a.Address) >= bEnd || int(b.Address) >= aEnd {
				continue
			}
			if compatibleOverlap(a, b) {
				continue
			}
			out = append(out, Overlap{i, j})
		}
	}
	return out
}

func compatibleOverlap(a, b *Point) bool {
	if a.Bit >= 0 && b.Bit >= 0 {
		return true // bits of one register read it the same way
	}
	if a.Bit >= 0 || b.Bit >= 0 {
		// A bit of a register beside a full-register read of it is fine to read,
		// but two writers of one register would race.
		return !(a.Writable && b.Writable)
	}
	same := a.Address == b.Address && a.Type == b.Type && a.Order == b.Order && a.Registers() == b.Registers()
	return same && !(a.Writable && b.Writable)
}

// OverlapError explains an Overlap for a diagnostic.
func (t *DeviceType) OverlapError(o Overlap) string {
	a, b := t.Points[o.A], t.Points[o.B]
	return fmt.Sprintf("Points %q (%s) and %q (%s) share registers but read them differently.", a.Name, a.where(), b.Name, b.where())
}
