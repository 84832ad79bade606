package uplink

import (
	"context"
	"math/rand/v2"
	"sync"
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

// sleep waits for d or until ctx ends; live reports whether ctx is still
// live. When reached closes first, the rest of the wait is cut to at most
// soon, jittered, so that clients woken together do not all dial at once;
// woken reports that.
func sleep(ctx context.Context, d time.Duration, reached <-chan struct{}, soon time.Duration) (live, woken bool) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true, false
	case <-ctx.Done():
		return false, false
	case <-reached:
	}
	t.Reset(rand.N(soon + 1))
	select {
	case <-t.C:
		return true, true
	case <-ctx.Done():
		return false, true
	}
}

// Reachability tells the Clients of one broker that one of them has just
// connected, so that the others stop waiting out their backoff: after an
// outage the broker is back for all of them at once. The zero value is not
// usable; call NewReachability. A nil *Reachability never signals.
type Reachability struct {
	mu      sync.Mutex
	reached chan struct{} // closed, and replaced, on every connection
}

// NewReachability returns a Reachability to share in Config.Reachable.
func NewReachability() *Reachability {
	return &Reachability{reached: make(chan struct{})}
}

// next returns a channel that is closed at the next connection of any
// Client sharing r; nil (never closed) for a nil r.
func (r *Reachability) next() <-chan struct{} {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reached
}

// connected wakes every Client waiting on next.
func (r *Reachability) connected() {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	close(r.reached)
	r.reached = make(chan struct{})
}
