package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/trace"
	"strings"
	"testing"
	"time"
)

// parkOnChannel receives n signals, parking between them.
//
//go:noinline
func parkOnChannel(ch <-chan struct{}, n int) {
	for range n {
		<-ch
	}
}

// wakeParked sends n signals, one per millisecond, so that the receiver
// parks before each.
//
//go:noinline
func wakeParked(ch chan<- struct{}, n int) {
	for range n {
		time.Sleep(time.Millisecond)
		ch <- struct{}{}
	}
}

// TestCountsWakeUpsByPlaceAndWaker traces a goroutine woken 50 times by
// another and checks that both are named, with at most one wake-up per
// send (a send finds the receiver parked unless the machine is so loaded
// that it was not rescheduled within the sender's millisecond sleep).
func TestCountsWakeUpsByPlaceAndWaker(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("needs the go command")
	}
	path := filepath.Join(t.TempDir(), "t.trace")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := trace.Start(f); err != nil {
		t.Fatal(err)
	}
	const n = 50
	ch := make(chan struct{})
	done := make(chan struct{})
	go func() { parkOnChannel(ch, n); close(done) }()
	wakeParked(ch, n)
	<-done
	trace.Stop()
	f.Close()

	out, err := exec.Command("go", "tool", "trace", "-d=parsed", path).Output()
	if err != nil {
		t.Fatal(err)
	}
	c := newCounter()
	if err := c.read(bytes.NewReader(out)); err != nil {
		t.Fatal(err)
	}
	var woken, byWaker int
	for place, k := range c.places {
		if strings.HasPrefix(place, "fieldbridge/scripts/wakeups.parkOnChannel") {
			woken += k
		}
	}
	for waker, k := range c.wakers {
		if strings.HasPrefix(waker, "fieldbridge/scripts/wakeups.wakeParked") {
			byWaker += k
		}
	}
	if woken < n/2 || woken > n {
		t.Errorf("parkOnChannel woken %d times, want about %d; places: %v", woken, n, c.places)
	}
	if byWaker < n/2 || byWaker > n {
		t.Errorf("wakeParked woke %d goroutines, want about %d; wakers: %v", byWaker, n, c.wakers)
	}
	var buf bytes.Buffer
	c.print(&buf, 5)
	if !strings.Contains(buf.String(), "parkOnChannel") {
		t.Errorf("the report does not list parkOnChannel:\n%s", buf.String())
	}
}

// TestPlaceNamesOwnFrames: a place is named by frames outside the runtime
// and the standard library, and the tracer's own goroutines are set apart.
func TestPlaceNamesOwnFrames(t *testing.T) {
	for _, c := range []struct {
		frames []string
		want   string
	}{
		{[]string{"runtime.gopark", "runtime.selectgo", "fieldbridge/buffer.(*Store).writeLoop", "fieldbridge/buffer.Open"},
			"fieldbridge/buffer.(*Store).writeLoop < fieldbridge/buffer.Open"},
		{[]string{"runtime.chanrecv1", "runtime.(*wakeableSleep).sleep", "runtime.traceStartReadCPU.func1"}, tracer},
		{[]string{"runtime.gopark", "runtime.chanrecv1"}, "runtime.gopark"},
		{nil, "?"},
	} {
		if got := place(c.frames, 2); got != c.want {
			t.Errorf("place(%q) = %q, want %q", c.frames, got, c.want)
		}
	}
}
