package mapping

import (
	"fmt"
	"testing"
	"time"

	"fieldbridge/adapters"
)

// statusEvents returns the status events among outs.
func statusEvents(outs []Output) []Status {
	var st []Status
	for _, o := range outs {
		if o.Status != nil {
			st = append(st, *o.Status)
		}
	}
	return st
}

// TestDownDeviceRetriedReportsOnce retries a down device many times, each
// failure with a different error text (as a reset connection gives, with a
// new local port every time): exactly one down status goes out.
func TestDownDeviceRetriedReportsOnce(t *testing.T) {
	d, _ := NewDevice("m1", meterType(), 1, PlanOptions{})
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var all []Status
	for i := range 20 {
		r := meterReading(t0.Add(time.Duration(i)*time.Second), 1, 0)
		err := fmt.Errorf("%w: read tcp 127.0.0.1:%d->127.0.0.1:502: read: connection reset by peer", adapters.ErrNotConnected, 40000+i)
		for j := range r.Blocks {
			r.Blocks[j].Err = err
		}
		all = append(all, statusEvents(d.Process(r))...)
	}
	if len(all) != 1 || all[0].Up {
		t.Fatalf("20 failed cycles gave status events %+v, want exactly one down", all)
	}
	if want := "bus not connected: read tcp 127.0.0.1:502: read: connection reset by peer"; all[0].Error != want {
		t.Errorf("down status error = %q, want %q (no local address)", all[0].Error, want)
	}
	// Back up: one up status, then nothing more while it stays up.
	for i := range 5 {
		all = append(all, statusEvents(d.Process(meterReading(t0.Add(time.Minute+time.Duration(i)*time.Second), 1, 0)))...)
	}
	if len(all) != 2 || !all[1].Up || all[1].Error != "" {
		t.Fatalf("after recovery: status events %+v, want down then up without error", all)
	}
}

// TestSingleFailedRequestIsNoStatusChange fails one request of one cycle of
// an up device for a transport reason (a timeout, the rest of the cycle
// skipped): no status event goes out, neither for the failure nor for the
// next good cycle; only the events of the cycle's failed points wait.
func TestSingleFailedRequestIsNoStatusChange(t *testing.T) {
	d, _ := NewDevice("m1", meterType(), 1, PlanOptions{})
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if st := statusEvents(d.Process(meterReading(t0, 1, 0))); len(st) != 1 || !st[0].Up {
		t.Fatalf("first cycle: status %+v, want up", st)
	}
	r := meterReading(t0.Add(time.Second), 1, 0)
	timeout := fmt.Errorf("read unit 1 holding 10+1: %w", adapters.ErrTimeout)
	r.Blocks[2].Err, r.Blocks[3].Err = timeout, timeout
	outs := d.Process(r)
	if st := statusEvents(outs); len(st) != 0 {
		t.Errorf("one timed-out request: status %+v, want none", st)
	}
	for _, o := range outs {
		if o.Event == "alarm" {
			t.Errorf("alarm event sent although its points were not read: %+v", o)
		}
	}
	if st := statusEvents(d.Process(meterReading(t0.Add(2*time.Second), 1, 0))); len(st) != 0 {
		t.Errorf("good cycle after one failed request: status %+v, want none", st)
	}
}

// TestPersistentPartialTimeoutIsReported keeps one range timing out while
// the others answer: after failedAfter cycles in a row the points are
// reported failed, once, and reported recovered once.
func TestPersistentPartialTimeoutIsReported(t *testing.T) {
	d, _ := NewDevice("m1", meterType(), 1, PlanOptions{})
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	d.Process(meterReading(t0, 1, 0))
	var all []Status
	for i := range 3 * failedAfter {
		r := meterReading(t0.Add(time.Duration(i+1)*time.Second), 1, 0)
		r.Blocks[3].Err = fmt.Errorf("read: %w", adapters.ErrTimeout)
		all = append(all, statusEvents(d.Process(r))...)
	}
	if len(all) != 1 || !all[0].Up || len(all[0].Failed) != 1 || all[0].Failed[0] != "setpoint" {
		t.Fatalf("a range timing out every cycle: status events %+v, want one up with failed_points [setpoint]", all)
	}
	all = statusEvents(d.Process(meterReading(t0.Add(time.Hour), 1, 0)))
	if len(all) != 1 || !all[0].Up || len(all[0].Failed) != 0 {
		t.Fatalf("after recovery: %+v, want one up without failed points", all)
	}
}
