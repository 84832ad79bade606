package simulator

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"sync"
	"time"
)

// Generator produces the changing value of one simulated point. Next is
// called once per tick with the tick's time and returns the value for it;
// the owner encodes the value into a Bank. Generators that depend on
// elapsed time measure it from the t of their first Next call, so a
// sequence of calls with the same times always yields the same values.
//
// The generators of this package are safe for concurrent use.
type Generator interface {
	Next(t time.Time) float64
}

// GeneratorFunc adapts a function to the Generator interface.
type GeneratorFunc func(t time.Time) float64

// Next returns f(t).
func (f GeneratorFunc) Next(t time.Time) float64 { return f(t) }

// Fixed returns a generator that always yields v.
func Fixed(v float64) Generator {
	return GeneratorFunc(func(time.Time) float64 { return v })
}

// Counter returns a generator that starts at start and grows by step: once
// per Next call when per is zero (a tick counter), or once per whole period
// per of elapsed time when per is positive (a rate: Counter(0, 1,
// time.Second) counts seconds). It does not wrap; the encoding into
// registers decides what happens past the type's range.
func Counter(start, step float64, per time.Duration) Generator {
	return &counter{start: start, step: step, per: per}
}

type counter struct {
	start, step float64
	per         time.Duration

	mu    sync.Mutex
	n     int64     // calls so far (per == 0)
	first time.Time // time of the first call (per > 0)
	began bool
}

func (c *counter) Next(t time.Time) float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.per <= 0 {
		v := c.start + c.step*float64(c.n)
		c.n++
		return v
	}
	if !c.began {
		c.first, c.began = t, true
	}
	steps := max(t.Sub(c.first)/c.per, 0)
	return c.start + c.step*float64(steps)
}

// Sine returns a generator that swings around offset by amplitude with the
// given period: offset + amplitude·sin(2π·elapsed/period), starting at offset.
// A period of zero or less yields offset.
func Sine(amplitude float64, period time.Duration, offset float64) Generator {
	return &sine{amplitude: amplitude, period: period, offset: offset}
}

type sine struct {
	amplitude, offset float64
	period            time.Duration

	mu    sync.Mutex
	first time.Time
	began bool
}

func (s *sine) Next(t time.Time) float64 {
	if s.period <= 0 {
		return s.offset
	}
	s.mu.Lock()
	if !s.began {
		s.first, s.began = t, true
	}
	elapsed := t.Sub(s.first)
	s.mu.Unlock()
	// Reduce modulo the period in integer nanoseconds so the phase stays
	// exact over long runs.
	phase := float64(elapsed%s.period) / float64(s.period)
	return s.offset + s.amplitude*math.Sin(2*math.Pi*phase)
}

// RandomWalk returns a generator that starts at start (clamped to
// [lo, hi]) and then moves by a uniform random amount in [-step, step] per
// Next call, staying within [lo, hi] by reflecting at the bounds. The
// sequence depends only on seed and the number of calls. When lo > hi the
// two are swapped.
func RandomWalk(start, step, lo, hi float64, seed uint64) Generator {
	if lo > hi {
		lo, hi = hi, lo
	}
	return &randomWalk{
		v:    min(max(start, lo), hi),
		step: math.Abs(step),
		lo:   lo,
		hi:   hi,
		rng:  rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
	}
}

type randomWalk struct {
	step, lo, hi float64

	mu    sync.Mutex
	v     float64
	rng   *rand.Rand
	began bool
}

func (w *randomWalk) Next(time.Time) float64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.began {
		w.began = true
		return w.v
	}
	v := w.v + (2*w.rng.Float64()-1)*w.step
	if v > w.hi {
		v = 2*w.hi - v
	}
	if v < w.lo {
		v = 2*w.lo - v
	}
	w.v = min(max(v, w.lo), w.hi) // a step wider than the band still stays inside
	return w.v
}

// Every calls update at once and then every interval with the tick's time,
// until ctx is done; it returns nil then. Ticks that update misses while it
// runs long are dropped, as with time.Ticker. update runs on the calling
// goroutine, never concurrently with itself.
func Every(ctx context.Context, interval time.Duration, update func(now time.Time)) error {
	if interval <= 0 {
		return errors.New("tick interval must be positive")
	}
	if ctx.Err() != nil {
		return nil
	}
	update(time.Now())
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			if ctx.Err() != nil {
				return nil
			}
			update(now)
		}
	}
}
