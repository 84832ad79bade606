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
	// The dead device is backed off: far fewer attempts than the live device's cycles.
	if failed > 5 {
		t.Errorf("dead device polled %d times while the live one did 20 cycles; backoff not applied", failed)
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
	if deadReads != failed {
		t.Errorf("dead device: %d reads for %d cycles, want one read per cycle", deadReads, failed)
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

func TestStartOffsetStable(t *testing.T) {
	a, b := startOffset("meter-1", time.Second), startOffset("meter-1", time.Second)
	if a != b || a < 0 || a >= time.Second {
		t.Fatalf("startOffset = %v, %v", a, b)
	}
	if startOffset("meter-1", time.Second) == startOffset("meter-2", time.Second) {
		t.Log("two names share an offset (possible, but unlikely)")
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
