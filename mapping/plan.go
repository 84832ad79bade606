package mapping

import (
	"sort"

	"fieldbridge/adapters"
)

// PlanOptions bound how points are merged into read requests.
type PlanOptions struct {
	// MaxGap is the number of unused registers (or bits) a request may read
	// and discard to join two points into one request. 0 joins only adjacent
	// or overlapping points, which is safe on devices with holes in their map.
	MaxGap int
	// MaxRegisters caps the registers of one register request; 0 means the
	// protocol limit (125). Some devices accept fewer.
	MaxRegisters int
	// MaxBits caps the bits of one coil or discrete request; 0 means 2000.
	MaxBits int
	// Unreadable addresses are never read to join two points.
	Unreadable []adapters.Range
}

// blocked reports whether reading [from, to) of table t would touch an
// unreadable address.
func (o PlanOptions) blocked(t adapters.Table, from, to int) bool {
	for _, h := range o.Unreadable {
		if h.Table == t && from < h.End() && to > int(h.Address) {
			return true
		}
	}
	return false
}

func (o PlanOptions) limit(t adapters.Table) int {
	max, configured := t.MaxRead(), o.MaxRegisters
	if t.IsBit() {
		configured = o.MaxBits
	}
	if configured > 0 && configured < max {
		return configured
	}
	return max
}

// Plan returns the read requests that cover every point, per table in the
// order coil, discrete, input, holding and by address inside a table.
//
// Points are sorted by address and a request grows greedily while the next
// point starts no more than MaxGap after the request's end and the request
// stays within the size limit. For intervals on a line that is optimal: the
// request that starts at the first uncovered point and reaches as far as the
// rules allow leaves the fewest points for the rest. Unreadable addresses
// only forbid joins, and a join they forbid stays forbidden for every point
// further on, so the argument holds with them too.
func Plan(points []Point, unit uint8, opt PlanOptions) []adapters.Range {
	var ranges []adapters.Range
	for t := adapters.Coil; t <= adapters.HoldingRegister; t++ {
		ranges = planTable(ranges, points, unit, t, opt)
	}
	return ranges
}

func planTable(dst []adapters.Range, points []Point, unit uint8, t adapters.Table, opt PlanOptions) []adapters.Range {
	type span struct{ start, end int }
	var spans []span
	for _, p := range points {
		if p.Table == t {
			spans = append(spans, span{int(p.Address), int(p.Address) + p.Registers()})
		}
	}
	if len(spans) == 0 {
		return dst
	}
	sort.Slice(spans, func(i, j int) bool {
		if spans[i].start != spans[j].start {
			return spans[i].start < spans[j].start
		}
		return spans[i].end < spans[j].end
	})
	limit := opt.limit(t)
	cur := spans[0]
	for _, s := range spans[1:] {
		end := max(cur.end, s.end)
		if s.start-cur.end <= opt.MaxGap && end-cur.start <= limit && !opt.blocked(t, cur.end, s.start) {
			cur.end = end
			continue
		}
		dst = append(dst, adapters.Range{Unit: unit, Table: t, Address: uint16(cur.start), Count: uint16(cur.end - cur.start)})
		cur = s
	}
	return append(dst, adapters.Range{Unit: unit, Table: t, Address: uint16(cur.start), Count: uint16(cur.end - cur.start)})
}
