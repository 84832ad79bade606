package uplink

import (
	"context"
	"math/rand/v2"
	"time"
)

// backoff computes capped exponential waits with jitter: the n-th wait (n
// counting from 0) lies in [d/2, d] where d = min(base·2ⁿ, max).
type backoff struct {
	base, max time.Duration
	n         int
}

func (b *backoff) next() time.Duration {
	d := b.max
	if b.n < 62 && b.base<<b.n > 0 && b.base<<b.n < b.max {
		d = b.base << b.n
	}
	b.n++
	return jitter(d)
}

func (b *backoff) reset() { b.n = 0 }

// jitter returns a duration in [d/2, d], so that many clients that lost the
// same broker do not come back in lockstep.
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	half := d / 2
	return half + rand.N(d-half+1)
}

// sleep waits for d or until ctx ends; it reports whether the full wait
// elapsed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
