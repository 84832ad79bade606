package mapping

import (
	"math/rand/v2"
	"testing"

	"github.com/google/go-cmp/cmp"

	"fieldbridge/adapters"
)

func reg(name string, addr uint16, t DataType) Point {
	return Point{Name: name, Table: adapters.HoldingRegister, Address: addr, Type: t, Bit: -1, Scale: 1}
}

func TestPlan(t *testing.T) {
	tests := []struct {
		name   string
		points []Point
		opt    PlanOptions
		want   []adapters.Range
	}{
		{"adjacent points share a request", []Point{reg("a", 0, TypeUint16), reg("b", 1, TypeFloat32), reg("c", 3, TypeUint16)}, PlanOptions{},
			[]adapters.Range{{Unit: 1, Table: adapters.HoldingRegister, Address: 0, Count: 4}}},
		{"a gap splits without max_gap", []Point{reg("a", 0, TypeUint16), reg("b", 5, TypeUint16)}, PlanOptions{},
			[]adapters.Range{{Unit: 1, Table: adapters.HoldingRegister, Address: 0, Count: 1}, {Unit: 1, Table: adapters.HoldingRegister, Address: 5, Count: 1}}},
		{"max_gap joins", []Point{reg("a", 0, TypeUint16), reg("b", 5, TypeUint16)}, PlanOptions{MaxGap: 4},
			[]adapters.Range{{Unit: 1, Table: adapters.HoldingRegister, Address: 0, Count: 6}}},
		{"max_registers splits", []Point{reg("a", 0, TypeFloat64), reg("b", 4, TypeFloat64)}, PlanOptions{MaxRegisters: 6},
			[]adapters.Range{{Unit: 1, Table: adapters.HoldingRegister, Address: 0, Count: 4}, {Unit: 1, Table: adapters.HoldingRegister, Address: 4, Count: 4}}},
		{"protocol limit of 125", []Point{reg("a", 0, TypeUint16), reg("b", 124, TypeUint16), reg("c", 125, TypeUint16)}, PlanOptions{MaxGap: 200},
			[]adapters.Range{{Unit: 1, Table: adapters.HoldingRegister, Address: 0, Count: 125}, {Unit: 1, Table: adapters.HoldingRegister, Address: 125, Count: 1}}},
		{"tables stay apart", []Point{{Name: "c", Table: adapters.Coil, Address: 0, Type: TypeBool, Bit: -1}, reg("h", 0, TypeUint16)}, PlanOptions{},
			[]adapters.Range{{Unit: 1, Table: adapters.Coil, Address: 0, Count: 1}, {Unit: 1, Table: adapters.HoldingRegister, Address: 0, Count: 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, Plan(tt.points, 1, tt.opt)); diff != "" {
				t.Errorf("Plan (-want +got):\n%s", diff)
			}
		})
	}
}

// TestPlanProperties checks on random maps that every point lies inside one
// request, that no request breaks the limits, and that the request count
// equals the optimum found by exhaustive search over all split points.
func TestPlanProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	types := []DataType{TypeUint16, TypeFloat32, TypeFloat64}
	for iter := range 2000 {
		n := 1 + rng.IntN(8)
		var pts []Point
		for i := range n {
			pts = append(pts, reg("p", uint16(rng.IntN(300)), types[rng.IntN(len(types))]))
			_ = i
		}
		opt := PlanOptions{MaxGap: rng.IntN(20), MaxRegisters: 4 + rng.IntN(122)}
		for range rng.IntN(3) {
			hole := adapters.Range{Table: adapters.HoldingRegister, Address: uint16(rng.IntN(300)), Count: uint16(1 + rng.IntN(5))}
			if !overlapsAny(pts, hole) {
				opt.Unreadable = append(opt.Unreadable, hole)
			}
		}
		plan := Plan(pts, 1, opt)
		for _, r := range plan {
			if int(r.Count) > opt.MaxRegisters {
				t.Fatalf("iter %d: request %v exceeds max_registers %d", iter, r, opt.MaxRegisters)
			}
			if opt.blocked(r.Table, int(r.Address), r.End()) {
				t.Fatalf("iter %d: request %v reads an unreadable range of %v", iter, r, opt.Unreadable)
			}
		}
		for _, p := range pts {
			covered := false
			for _, r := range plan {
				if int(p.Address) >= int(r.Address) && int(p.Address)+p.Registers() <= r.End() {
					covered = true
				}
			}
			if !covered {
				t.Fatalf("iter %d: point at %d not covered by %v", iter, p.Address, plan)
			}
		}
		if best := optimalRequests(pts, opt); len(plan) != best {
			t.Fatalf("iter %d: plan has %d requests, exhaustive search finds %d (points %v, opt %+v)", iter, len(plan), best, pts, opt)
		}
	}
}

// optimalRequests tries every way to cut the address-sorted points into
// consecutive groups and returns the fewest valid groups.
func optimalRequests(pts []Point, opt PlanOptions) int {
	sorted := append([]Point(nil), pts...)
	for i := range sorted {
		for j := i + 1; j < len(sorted); j++ {
			if sorted[j].Address < sorted[i].Address || (sorted[j].Address == sorted[i].Address && sorted[j].Registers() < sorted[i].Registers()) {
				sorted[i], sorted[j] = sorted[j], sorted[i]
			}
		}
	}
	limit := opt.limit(adapters.HoldingRegister)
	n := len(sorted)
	best := n + 1
	for mask := 0; mask < 1<<(n-1); mask++ {
		groups, ok := 0, true
		start, end := 0, 0
		for i := 0; i < n && ok; i++ {
			s, e := int(sorted[i].Address), int(sorted[i].Address)+sorted[i].Registers()
			if i == 0 || mask&(1<<(i-1)) != 0 {
				groups++
				start, end = s, e
				continue
			}
			if s-end > opt.MaxGap || opt.blocked(adapters.HoldingRegister, end, s) {
				ok = false
			}
			end = max(end, e)
			if end-start > limit {
				ok = false
			}
		}
		if ok && groups < best {
			best = groups
		}
	}
	return best
}

func BenchmarkPlan1000Points(b *testing.B) {
	var pts []Point
	for i := range 1000 {
		pts = append(pts, reg("p", uint16(i*3), TypeFloat32))
	}
	b.ReportAllocs()
	var n int
	for b.Loop() {
		n = len(Plan(pts, 1, PlanOptions{MaxGap: 1}))
	}
	b.ReportMetric(float64(n), "requests")
}

func overlapsAny(pts []Point, h adapters.Range) bool {
	for _, p := range pts {
		if int(p.Address) < h.End() && int(p.Address)+p.Registers() > int(h.Address) {
			return true
		}
	}
	return false
}
