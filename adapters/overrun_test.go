package adapters

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"fieldbridge/internal/testwait"
)

// slowBus answers every read; reads for unit 1 take as long as slow says.
type slowBus struct{ slow atomic.Int64 }

func (b *slowBus) ReadRange(ctx context.Context, r Range) (Block, error) {
	if d := time.Duration(b.slow.Load()); r.Unit == 1 && d > 0 {
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return Block{}, ctx.Err()
		}
	}
	return Block{Registers: make([]uint16, r.Count)}, nil
}

func (b *slowBus) WriteRange(context.Context, WriteRequest) error { return nil }

// jsonLog is a JSON slog destination the test reads back.
type jsonLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *jsonLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// lines returns the lines with message msg and device (any device for "").
func (l *jsonLog) lines(msg, device string) []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(l.buf.Bytes()))
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == msg && (device == "" || m["device"] == device) {
			out = append(out, m)
		}
	}
	return out
}

// TestOverrunLoggedOncePerEpisode makes one device's reads slower than its
// interval, then fast, then slow again. Each episode of overruns is logged
// once when it starts, for the slow device and for the device on the same
// bus that had to wait for it, with a duration from the cycle's due time to
// its end, which is longer than the interval; and once when it ends.
func TestOverrunLoggedOncePerEpisode(t *testing.T) {
	const interval = 100 * time.Millisecond
	bus := &slowBus{}
	bus.slow.Store(int64(250 * time.Millisecond))
	readings := &readingLog{}
	var logs jsonLog
	loop := NewLoop(bus, LoopConfig{
		Bus: "b1",
		Devices: []Device{
			{Name: "slow", Interval: interval, Plan: []Range{{Unit: 1, Table: HoldingRegister, Count: 1}}},
			{Name: "quick", Interval: interval, Plan: []Range{{Unit: 2, Table: HoldingRegister, Count: 1}}},
		},
		Handler: readings,
	}, slog.New(slog.NewJSONHandler(&logs, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- loop.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()

	const overran = "poll cycle overran its interval"
	waitCycles := func(what string, n int) {
		t.Helper()
		from := readings.count("slow", true)
		testwait.For(t, 20*time.Second, what, func() bool { return readings.count("slow", true) >= from+n })
	}
	testwait.For(t, 20*time.Second, "the quick device to overrun waiting for the slow one", func() bool { return len(logs.lines(overran, "quick")) > 0 })
	waitCycles("slow cycles", 3)
	bus.slow.Store(0)
	testwait.For(t, 20*time.Second, "the slow device back on schedule", func() bool { return len(logs.lines("poll cycles back on schedule", "slow")) == 1 })
	waitCycles("fast cycles", 5)
	bus.slow.Store(int64(250 * time.Millisecond))
	waitCycles("slow cycles again", 3)

	if got := len(logs.lines(overran, "slow")); got != 2 {
		t.Errorf("slow device: %q logged %d times over two episodes, want 2", overran, got)
	}
	for _, m := range logs.lines(overran, "") {
		d, _ := m["duration_seconds"].(float64)
		if d < interval.Seconds() {
			t.Errorf("%s: overran with duration_seconds %v, want at least the interval %v", m["device"], d, interval.Seconds())
		}
		if _, ok := m["bus"]; !ok {
			t.Errorf("overrun line without the bus: %v", m)
		}
	}
}
