package simulator

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var t0 = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)

// at returns t0 plus each offset.
func at(offsets ...time.Duration) []time.Time {
	ts := make([]time.Time, len(offsets))
	for i, d := range offsets {
		ts[i] = t0.Add(d)
	}
	return ts
}

func TestGenerators(t *testing.T) {
	const s = time.Second
	tests := []struct {
		name  string
		gen   Generator
		times []time.Time
		want  []float64
	}{
		{"fixed", Fixed(3.5), at(0, s, time.Hour), []float64{3.5, 3.5, 3.5}},
		{"counter per tick", Counter(10, 2, 0), at(0, 0, 0, 0), []float64{10, 12, 14, 16}},
		{"counter per tick ignores time", Counter(0, 1, 0), at(time.Hour, 0, -time.Hour), []float64{0, 1, 2}},
		{"counter per second", Counter(100, 1, s), at(0, 500*time.Millisecond, s, 2500*time.Millisecond, 10*s),
			[]float64{100, 100, 101, 102, 110}},
		{"counter per minute step 0.5", Counter(0, 0.5, time.Minute), at(0, time.Minute, 3*time.Minute), []float64{0, 0.5, 1.5}},
		{"counter before first call", Counter(5, 1, s), at(10*s, 0), []float64{5, 5}},
		{"sine quarter periods", Sine(10, 4*s, 50), at(0, s, 2*s, 3*s, 4*s, 5*s), []float64{50, 60, 50, 40, 50, 60}},
		{"sine starts at first call", Sine(1, 4*s, 0), at(time.Hour, time.Hour+s), []float64{0, 1}},
		{"sine without period", Sine(10, 0, 7), at(0, s), []float64{7, 7}},
		{"random walk starts at start", RandomWalk(20, 1, 0, 100, 1), at(0), []float64{20}},
		{"random walk clamps start", RandomWalk(200, 1, 0, 100, 1), at(0), []float64{100}},
		{"random walk without step", RandomWalk(20, 0, 0, 100, 1), at(0, s, 2*s), []float64{20, 20, 20}},
		{"func", GeneratorFunc(func(t time.Time) float64 { return float64(t.Sub(t0) / time.Second) }), at(0, 3*s), []float64{0, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []float64
			for _, ts := range tt.times {
				got = append(got, tt.gen.Next(ts))
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateApprox(0, 1e-9)); diff != "" {
				t.Errorf("Next over %v (-want +got):\n%s", tt.times, diff)
			}
		})
	}
}

func TestRandomWalkDeterministic(t *testing.T) {
	walk := func(seed uint64, step, lo, hi float64) []float64 {
		g := RandomWalk(50, step, lo, hi, seed)
		out := make([]float64, 1000)
		for i := range out {
			out[i] = g.Next(t0)
		}
		return out
	}
	a, b, other := walk(42, 3, 0, 100), walk(42, 3, 0, 100), walk(43, 3, 0, 100)
	if diff := cmp.Diff(a, b); diff != "" {
		t.Errorf("same seed, different walks (-first +second):\n%s", diff)
	}
	if cmp.Equal(a, other) {
		t.Error("seeds 42 and 43 gave the same walk")
	}
	tests := []struct {
		name           string
		step, lo, hi   float64
		wantLo, wantHi float64
	}{
		{"narrow step", 3, 0, 100, 0, 100},
		{"step wider than band", 500, 40, 60, 40, 60},
		{"bounds swapped", 1, 60, 40, 40, 60},
		{"negative step", -2, 0, 100, 0, 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			moved := false
			for i, v := range walk(7, tt.step, tt.lo, tt.hi) {
				if v < tt.wantLo || v > tt.wantHi || math.IsNaN(v) {
					t.Fatalf("value %d = %v, outside [%v, %v]", i, v, tt.wantLo, tt.wantHi)
				}
				if i > 0 && v != 50 {
					moved = true
				}
			}
			if !moved {
				t.Error("the walk never moved")
			}
		})
	}
}

func TestEvery(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var calls []time.Time
	err := Every(ctx, time.Millisecond, func(now time.Time) {
		calls = append(calls, now)
		if len(calls) == 3 {
			cancel()
		}
	})
	if err != nil {
		t.Fatalf("Every = %v, want nil after cancel", err)
	}
	if len(calls) != 3 {
		t.Fatalf("update called %d times, want 3", len(calls))
	}
	for i := 1; i < len(calls); i++ {
		if !calls[i].After(calls[i-1]) {
			t.Errorf("tick %d at %v, not after tick %d at %v", i, calls[i], i-1, calls[i-1])
		}
	}
}

func TestEveryStops(t *testing.T) {
	t.Run("cancelled before start", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		called := false
		if err := Every(ctx, time.Millisecond, func(time.Time) { called = true }); err != nil || called {
			t.Errorf("Every on a cancelled context = %v, called %v; want nil, false", err, called)
		}
	})
	t.Run("bad interval", func(t *testing.T) {
		if err := Every(t.Context(), 0, func(time.Time) {}); err == nil {
			t.Error("Every with interval 0: no error")
		}
	})
	t.Run("cancel while waiting", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		started := make(chan struct{})
		go func() {
			done <- Every(ctx, time.Hour, func(time.Time) { close(started) })
		}()
		<-started
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Every = %v, want nil", err)
		}
	})
}
