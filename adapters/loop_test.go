package adapters

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"fieldbridge/internal/testwait"
)

// fakeBus answers reads for unit 1 at once and makes unit 2 time out after
// a delay, recording the order of operations.
type fakeBus struct {
	mu       sync.Mutex
	ops      []string
	deadWait time.Duration
}

func (b *fakeBus) record(op string) {
	b.mu.Lock()
	b.ops = append(b.ops, op)
	b.mu.Unlock()
}

func (b *fakeBus) ReadRange(ctx context.Context, r Range) (Block, error) {
	b.record(fmt.Sprintf("read %d", r.Unit))
	if r.Unit == 2 {
		select {
		case <-time.After(b.deadWait):
		case <-ctx.Done():
		}
		return Block{}, fmt.Errorf("read: %w", ErrTimeout)
	}
	return Block{Registers: make([]uint16, r.Count)}, nil
}

func (b *fakeBus) WriteRange(ctx context.Context, w WriteRequest) error {
	b.record(fmt.Sprintf("write %d", w.Unit))
	return nil
}

type readingLog struct {
	mu       sync.Mutex
	readings []Reading
}

func (l *readingLog) HandleReading(_ context.Context, r Reading) {
	l.mu.Lock()
	l.readings = append(l.readings, r)
	l.mu.Unlock()
}

func (l *readingLog) count(device string, ok bool) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, r := range l.readings {
		if r.Device == device && (r.Err() == nil) == ok {
			n++
		}
	}
	return n
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestLoopDeadDeviceDoesNotStallOthers(t *testing.T) {
	bus := &fakeBus{deadWait: 30 * time.Millisecond}
	log := &readingLog{}
	plan := []Range{{Unit: 1, Table: HoldingRegister, Count: 2}, {Unit: 1, Table: InputRegister, Count: 2}}
	dead := []Range{{Unit: 2, Table: HoldingRegister, Count: 2}, {Unit: 2, Table: InputRegister, Count: 2}, {Unit: 2, Table: Coil, Count: 2}}
	loop := NewLoop(bus, LoopConfig{
		Bus:        "test",
		Devices:    []Device{{Name: "alive", Interval: 20 * time.Millisecond, Plan: plan}, {Name: "dead", Interval: 20 * time.Millisecond, Plan: dead}},
		Handler:    log,
		MinBackoff: 200 * time.Millisecond, MaxBackoff: time.Second,
	}, discard())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- loop.Run(ctx) }()

	testwait.For(t, 5*time.Second, "20 good cycles of the live device", func() bool { return log.count("alive", true) >= 20 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run returned %v, want nil on cancel", err)
	}
	failed := log.count("dead", false)
	if failed < 1 {
		t.Fatalf("dead device reported %d failed cycles, want at least 1", failed)
	}
	// The dead device is backed off: far fewer attempts than the live
	// device's cycles (without backoff they would be as many). Compared
	// with the live count taken now, not with a fixed number: on a loaded
	// machine the 20 live cycles take longer, and the backoff's attempts,
	// which follow the clock, are more.
	alive := log.count("alive", true)
	if failed*4 > alive {
		t.Errorf("dead device polled %d times while the live one did %d cycles; backoff not applied", failed, alive)
	}
	// One timeout per cycle, not one per range.
	bus.mu.Lock()
	deadReads := 0
	for _, op := range bus.ops {
		if op == "read 2" {
			deadReads++
		}
	}
	bus.mu.Unlock()
	// The cancel may cut the last read short: that cycle reports nothing.
	if deadReads != failed && deadReads != failed+1 {
		t.Errorf("dead device: %d reads for %d failed cycles, want one read per cycle", deadReads, failed)
	}
}

func TestLoopWrite(t *testing.T) {
	bus := &fakeBus{}
	log := &readingLog{}
	loop := NewLoop(bus, LoopConfig{Devices: []Device{{Name: "alive", Interval: time.Hour, Plan: []Range{{Unit: 1, Table: HoldingRegister, Count: 1}}}}, Handler: log}, discard())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- loop.Run(ctx) }()
	if err := loop.Write(ctx, WriteRequest{Unit: 1, Table: HoldingRegister, Registers: []uint16{7}}); err != nil {
		t.Fatalf("Write = %v", err)
	}
	cancel()
	<-done
	if err := loop.Write(context.Background(), WriteRequest{Unit: 1, Table: HoldingRegister, Registers: []uint16{7}}); err != ErrClosed {
		t.Errorf("Write after stop = %v, want ErrClosed", err)
	}
}

func TestPollSlotOnTheGrid(t *testing.T) {
	for _, iv := range []time.Duration{time.Second, 1500 * time.Millisecond, 60 * time.Second, 7 * time.Millisecond, 3 * time.Millisecond} {
		slot := min(max(iv/pollSlots, minPollSlot), iv)
		seen := map[time.Duration]bool{}
		for i := range 200 {
			name := fmt.Sprintf("meter-%d", i)
			s := pollSlot(name, iv)
			if s != pollSlot(name, iv) {
				t.Fatalf("pollSlot(%s, %v) is not stable", name, iv)
			}
			if s < 0 || s >= iv || s%slot != 0 {
				t.Fatalf("pollSlot(%s, %v) = %v: not a slot of %v inside the interval", name, iv, s, slot)
			}
			seen[s] = true
		}
		// 200 names must spread over every slot of the grid (or nearly: a
		// hash may miss one).
		if slots := int((iv + slot - 1) / slot); len(seen) < slots-1 {
			t.Errorf("interval %v: 200 devices use %d of %d slots", iv, len(seen), slots)
		}
	}
}

func TestSlotAtOrAfter(t *testing.T) {
	iv := time.Second
	for i := range 50 {
		st := &deviceState{dev: Device{Name: fmt.Sprintf("d%d", i), Interval: iv}}
		st.slot = pollSlot(st.dev.Name, iv)
		for _, t0 := range []time.Time{time.Unix(1700000000, 123456789), time.Unix(1700000000, int64(st.slot)), time.Now()} {
			got := st.slotAtOrAfter(t0)
			if got.Before(t0) || !got.Before(t0.Add(iv)) {
				t.Fatalf("slotAtOrAfter(%v) = %v: not within one interval from it", t0, got)
			}
			if pos := time.Duration(got.UnixNano() % int64(iv)); pos != st.slot {
				t.Fatalf("slotAtOrAfter(%v) lies at %v of the interval, want its slot %v", t0, pos, st.slot)
			}
		}
	}
}

// TestScheduleKeepsTheSlot drives schedule with a fixed clock: a device on
// its slot is due exactly one interval later; one that was off its slot
// (after a backoff) or overran its interval goes back to its slot, within
// half an interval of where it would have been.
func TestScheduleKeepsTheSlot(t *testing.T) {
	const iv = time.Second
	dev := Device{Name: "meter-7", Interval: iv, Plan: []Range{{Unit: 1, Table: InputRegister, Count: 2}}}
	ok := Reading{Device: dev.Name, Blocks: []Block{{Registers: []uint16{1, 2}}}}
	var now time.Time
	loop := NewLoop(&slowBus{}, LoopConfig{Bus: "b", Devices: []Device{dev}, Now: func() time.Time { return now }}, nil)
	st := loop.newDeviceState(dev)
	onSlot := func(at time.Time) bool { return time.Duration(at.UnixNano()%int64(iv)) == st.slot }

	due := st.slotAtOrAfter(time.Unix(1700000000, 0))
	now = due.Add(20 * time.Millisecond) // the cycle took 20 ms
	loop.schedule(st, due, due, ok)
	if want := due.Add(iv); !st.next.Equal(want) {
		t.Fatalf("on its slot: next = %v, want %v (one interval on)", st.next, want)
	}

	offSlot := due.Add(317 * time.Millisecond) // as after a backoff
	now = offSlot.Add(20 * time.Millisecond)
	loop.schedule(st, offSlot, offSlot, ok)
	if !onSlot(st.next) || st.next.Before(offSlot.Add(iv/2)) || !st.next.Before(offSlot.Add(3*iv/2)) {
		t.Fatalf("off its slot: next = %v (%v after due), want its slot within half an interval of one interval on", st.next, st.next.Sub(offSlot))
	}

	now = due.Add(2500 * time.Millisecond) // overran: the cycle ended 2.5 intervals after it was due
	loop.schedule(st, due, due, ok)
	if !onSlot(st.next) || st.next.Before(now.Add(iv/2)) || !st.next.Before(now.Add(3*iv/2)) {
		t.Fatalf("after an overrun: next = %v (%v after now), want its slot within half an interval of one interval on", st.next, st.next.Sub(now))
	}
}

// TestWriteFloodDoesNotStarvePolls: while writers keep the loop's write
// queue full without pause, a device with two ranges per cycle is still
// polled, and between its two reads at most maxWritesBetweenReads writes run.
func TestWriteFloodDoesNotStarvePolls(t *testing.T) {
	bus := &fakeBus{}
	log := &readingLog{}
	plan := []Range{{Unit: 1, Table: HoldingRegister, Address: 0, Count: 1}, {Unit: 1, Table: HoldingRegister, Address: 10, Count: 1}}
	loop := NewLoop(bus, LoopConfig{Bus: "b", Devices: []Device{{Name: "d", Interval: time.Millisecond, Plan: plan}}, Handler: log},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); loop.Run(ctx) }()
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				loop.Write(ctx, WriteRequest{Device: "d", Unit: 3, Table: HoldingRegister, Registers: []uint16{1}})
			}
		}()
	}
	testwait.For(t, 10*time.Second, "polls during the flood", func() bool { return log.count("d", true) >= 20 })
	cancel()
	wg.Wait()
	bus.mu.Lock()
	defer bus.mu.Unlock()
	writes, inCycle := 0, false
	for _, op := range bus.ops {
		switch {
		case op == "read 1" && !inCycle:
			inCycle, writes = true, 0
		case op == "read 1":
			if writes > maxWritesBetweenReads {
				t.Fatalf("%d writes between the two reads of a cycle, want at most %d", writes, maxWritesBetweenReads)
			}
			inCycle = false
		case inCycle:
			writes++
		}
	}
}
