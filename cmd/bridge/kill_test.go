package main

import (
	"slices"
	"strings"
	"syscall"
	"testing"

	"fieldbridge/buffer"
	"fieldbridge/internal/testwait"
	"fieldbridge/platform"
)

// collectSeqs records the seq of every device event sub delivers.
func collectSeqs(t *testing.T, sub *platform.Subscription) *receiver {
	rec := &receiver{seqs: map[string][]uint64{}}
	go func() {
		for m := range sub.C {
			if !rec.record(m.Topic, m.Payload) {
				t.Errorf("not a device event with a seq on %s: %s", m.Topic, m.Payload)
			}
		}
	}()
	return rec
}

// distinct returns the device's distinct seqs in order.
func distinct(rec *receiver, device string) []uint64 {
	s := rec.firsts(device)
	slices.Sort(s)
	return s
}

// TestKill9LosesNothing kills `bridge run` with SIGKILL three times while
// it polls and publishes, each time starting it again on the same on-disk
// buffer, then stops it cleanly (which drains the buffer). Every device's
// events reach the platform with every seq from 1 to the last the buffer
// handed out: nothing stored is lost, and no seq is skipped. Duplicates are
// allowed: an event published but not yet deleted when the process died is
// sent again (receivers de-duplicate by seq). It found the drain ending
// while the last events still waited for the buffer's writer.
func TestKill9LosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the bridge four times")
	}
	// Polled every 10 ms, so that each kill finds events being built,
	// committed, published and acknowledged.
	c := startChildBridgeWith(t, func(src string) string { return strings.ReplaceAll(src, `poll  = "100ms"`, `poll  = "10ms"`) })
	got := collectSeqs(t, c.events)
	for kill := range 3 {
		c.waitLog(t, "bridge started")
		before := got.total()
		testwait.For(t, waitTimeout, "events after a (re)start", func() bool { return got.total() >= before+100 })
		if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-c.exited
		t.Logf("kill %d: %d events received so far", kill+1, got.total())
		c.start(t)
	}
	c.waitLog(t, "bridge started")
	before := got.total()
	testwait.For(t, waitTimeout, "events after the last start", func() bool { return got.total() >= before+15 })
	c.stop(t) // SIGTERM, exit 0, buffer drained

	s, err := buffer.Open(buffer.Config{Dir: c.bufferDir}, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	last := map[string]uint64{}
	for _, d := range []string{"m1", "m2", "boiler-9"} {
		last[d] = s.QueueStats(d).NextSeq - 1
	}
	s.Close()
	for d, n := range last {
		if n < 10 {
			t.Errorf("%s: the buffer handed out only %d seqs", d, n)
		}
		testwait.For(t, waitTimeout, "every seq of "+d+" at the platform", func() bool {
			s := distinct(got, d)
			return len(s) > 0 && s[len(s)-1] >= n
		})
		seqs := distinct(got, d)
		for i, s := range seqs {
			if s != uint64(i+1) {
				t.Fatalf("%s: seq %d received where %d was due: seq %d..%d lost (seqs 1..%d handed out)", d, s, i+1, i+1, s-1, n)
			}
		}
		if seqs[len(seqs)-1] != n {
			t.Errorf("%s: last seq received %d, the buffer handed out %d", d, seqs[len(seqs)-1], n)
		}
	}
}
