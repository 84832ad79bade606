// Package testwait is for tests only: it polls a condition until it holds or
// a timeout passes, so that no test sleeps a fixed time to wait for
// something to happen.
//
// Imports: standard library only. It must not be imported by non-test code.
package testwait

import (
	"testing"
	"time"
)

// step is how often a condition is polled.
const step = 2 * time.Millisecond

// For polls cond until it holds; after timeout it fails the test with
// "timed out after <timeout> waiting for <what>".
func For(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(step)
	}
}

// NoError polls fn until it returns nil; after timeout it fails the test
// with fn's last error.
func NoError(t testing.TB, timeout time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met after %v: %v", timeout, err)
		}
		time.Sleep(step)
	}
}
