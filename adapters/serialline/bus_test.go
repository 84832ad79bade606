package serialline_test

import (
	"context"
	"errors"
	"math"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"fieldbridge/adapters"
	"fieldbridge/adapters/serialline"
	"fieldbridge/internal/serialtest"
	"fieldbridge/simulator"

	"fieldbridge/internal/testwait"
)

// scale is a scale that prints "ST,GS,+0001.500,kg" lines.
var scaleConfig = serialline.Config{
	Framing: serialline.Framing{Delimiter: "\r\n"},
	Parser:  serialline.Parser{Separator: ","},
	Fields: []serialline.Field{
		{Name: "status", Column: 1, Type: serialline.Text, Length: 1},
		{Name: "weight", Column: 3},
		{Name: "unit", Column: 4, Type: serialline.Text, Length: 1},
	},
}

// weight and status as the mapping would decode them from a block.
func reading(t *testing.T, b adapters.Block) (status string, weight float64) {
	t.Helper()
	if len(b.Registers) < 5 {
		t.Fatalf("block has %d registers, want at least 5", len(b.Registers))
	}
	status = strings.TrimRight(string([]byte{byte(b.Registers[0] >> 8), byte(b.Registers[0])}), "\x00")
	var bits uint64
	for _, r := range b.Registers[1:5] {
		bits = bits<<16 | uint64(r)
	}
	return status, math.Float64frombits(bits)
}

var all = adapters.Range{Unit: 1, Table: adapters.HoldingRegister, Address: 0, Count: 6}

// instrumentOnPty serves in on one end of a socat pty pair until the test
// ends and returns the other end's path.
func instrumentOnPty(t *testing.T, in *simulator.Instrument) string {
	t.Helper()
	busEnd, devEnd := serialtest.Pair(t)
	port, err := simulator.OpenSerial(simulator.SerialConfig{Port: devEnd, Baud: 9600, Parity: "none"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Serve(ctx, port) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("instrument: %v", err)
		}
		port.Close()
	})
	return busEnd
}

func newBus(t *testing.T, cfg serialline.Config) *serialline.Bus {
	t.Helper()
	bus, err := serialline.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { bus.Close() })
	return bus
}

func TestPushModeOnPty(t *testing.T) {
	in, err := simulator.NewInstrument(simulator.InstrumentConfig{
		Template: "ST,GS,{weight:%+09.3f},kg\r\n",
		Values:   map[string]simulator.Generator{"weight": simulator.Counter(1.5, 1, 0)},
		Interval: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg := scaleConfig
	cfg.Port = instrumentOnPty(t, in)
	cfg.MaxAge = 500 * time.Millisecond
	bus := newBus(t, cfg)
	ctx := context.Background()

	b, err := bus.ReadRange(ctx, all)
	if err != nil {
		t.Fatalf("first read = %v", err)
	}
	status, w1 := reading(t, b)
	if status != "ST" || w1 < 1.5 || w1 != math.Trunc(w1)+0.5 {
		t.Fatalf("first read: status %q weight %v", status, w1)
	}
	// Values change as the instrument prints.
	testwait.NoError(t, 5*time.Second, func() error {
		b, err := bus.ReadRange(ctx, all)
		if err != nil {
			return err
		}
		if _, w := reading(t, b); w <= w1 {
			return errors.New("the weight did not change")
		}
		return nil
	})

	// Malformed lines are counted and skipped; good lines keep coming.
	before := bus.Stats()
	in.Malform(2)
	in.Inject("ST,GS\r\n", "\x00\x01noise without a delimiter that is long enough to matter")
	testwait.NoError(t, 5*time.Second, func() error {
		if st := bus.Stats(); st.Malformed < before.Malformed+3 || st.Frames < before.Frames+3 {
			return errors.New("waiting for the malformed lines and more good ones")
		}
		return nil
	})
	if b, err := bus.ReadRange(ctx, all); err != nil {
		t.Fatalf("read after malformed lines = %v", err)
	} else if status, w := reading(t, b); status != "ST" || w < w1 {
		t.Fatalf("read after malformed lines: %q %v", status, w)
	}
	st := bus.Stats()
	if st.LastMalformed == "" || st.Opens != 1 {
		t.Errorf("Stats = %+v, want a reason for the last malformed frame and one open", st)
	}
}

func TestPushModeStaleFrame(t *testing.T) {
	in, err := simulator.NewInstrument(simulator.InstrumentConfig{
		Template: "ST,GS,{weight:%.1f},kg\r\n",
		Values:   map[string]simulator.Generator{"weight": simulator.Fixed(3)},
		Interval: time.Hour, // one frame at once, then silence
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg := scaleConfig
	cfg.Port = instrumentOnPty(t, in)
	cfg.MaxAge = 100 * time.Millisecond
	cfg.Timeout = 50 * time.Millisecond
	bus := newBus(t, cfg)
	if _, err := bus.ReadRange(context.Background(), all); err != nil {
		t.Fatalf("first read = %v", err)
	}
	testwait.NoError(t, 5*time.Second, func() error {
		_, err := bus.ReadRange(context.Background(), all)
		if !errors.Is(err, adapters.ErrTimeout) {
			return errors.New("the frame is not stale yet")
		}
		return nil
	})
	in.Inject("ST,GS,4.0,kg\r\n")
	testwait.NoError(t, 5*time.Second, func() error {
		b, err := bus.ReadRange(context.Background(), all)
		if err != nil {
			return err
		}
		if _, w := reading(t, b); w != 4 {
			return errors.New("no new weight")
		}
		return nil
	})
}

func TestQueryModeOnPty(t *testing.T) {
	weights := map[string]simulator.Generator{"weight": simulator.Counter(10, 1, 0)}
	in, err := simulator.NewInstrument(simulator.InstrumentConfig{
		Template: "\x02US;{weight:%.2f}\x03",
		Values:   weights,
		Request:  "#05W\r",
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg := serialline.Config{
		Port:    instrumentOnPty(t, in),
		Framing: serialline.Framing{Start: "\x02", Delimiter: "\x03"},
		Parser:  serialline.Parser{Regexp: `^(?P<status>\w+);(?P<weight>[-0-9.]+)$`},
		Fields:  []serialline.Field{{Name: "status", Type: serialline.Text, Length: 1}, {Name: "weight"}},
		Request: "#{unit:%02d}W\r",
		Timeout: 200 * time.Millisecond,
		Reuse:   time.Nanosecond, // every read queries
	}
	bus := newBus(t, cfg)
	r := adapters.Range{Unit: 5, Table: adapters.HoldingRegister, Address: 0, Count: 5} // status and weight
	for want := 10.0; want < 13; want++ {
		b, err := bus.ReadRange(context.Background(), r)
		if err != nil {
			t.Fatalf("read = %v", err)
		}
		if status, w := reading(t, b); status != "US" || w != want {
			t.Fatalf("read: %q %v, want US %v", status, w, want)
		}
	}
	// Another unit id gets no answer: one timeout.
	r.Unit = 6
	if _, err := bus.ReadRange(context.Background(), r); !errors.Is(err, adapters.ErrTimeout) {
		t.Fatalf("read of unit 6 = %v, want ErrTimeout", err)
	}
	// A malformed answer is counted and reported as a bad frame.
	r.Unit = 5
	in.Malform(1)
	if _, err := bus.ReadRange(context.Background(), r); !errors.Is(err, adapters.ErrBadFrame) {
		t.Fatalf("read with a malformed reply = %v, want ErrBadFrame", err)
	}
	// Noise and a malformed frame before the good one are skipped.
	in.Inject("noise\x02broken\x03\x02US;99\x03")
	b, err := bus.ReadRange(context.Background(), r)
	if err != nil {
		t.Fatalf("read after noise = %v", err)
	}
	if _, w := reading(t, b); w != 99 {
		t.Fatalf("weight = %v, want 99", w)
	}
	st := bus.Stats()
	if st.Malformed != 2 || st.Queries != 6 || st.Discarded < 5 {
		t.Errorf("Stats = %+v, want 2 malformed frames, 6 queries, the noise discarded", st)
	}
}

// Query mode over net.Pipe: several ranges of one poll share one query,
// and table and range mistakes are exceptions, not transport errors.
func TestQueryModeOnPipe(t *testing.T) {
	busEnd, dev := net.Pipe()
	defer dev.Close()
	cfg := serialline.Config{
		Framing: serialline.Framing{Delimiter: "\n"},
		Parser:  serialline.Parser{Separator: " "},
		Fields:  []serialline.Field{{Name: "a", Column: 1}, {Name: "b", Column: 2}},
		Request: "?\n",
		Reuse:   time.Minute,
		Open:    func() (serialline.Port, error) { return busEnd, nil },
	}
	bus := newBus(t, cfg)
	queries := make(chan struct{}, 10)
	go func() {
		buf := make([]byte, 64)
		for {
			n, err := dev.Read(buf)
			if err != nil {
				return
			}
			if strings.Contains(string(buf[:n]), "?") {
				queries <- struct{}{}
				dev.Write([]byte("1.5 -2\n"))
			}
		}
	}()
	first, err := bus.ReadRange(context.Background(), adapters.Range{Unit: 1, Table: adapters.HoldingRegister, Address: 0, Count: 4})
	if err != nil {
		t.Fatal(err)
	}
	second, err := bus.ReadRange(context.Background(), adapters.Range{Unit: 1, Table: adapters.HoldingRegister, Address: 4, Count: 4})
	if err != nil {
		t.Fatal(err)
	}
	if len(queries) != 1 {
		t.Errorf("%d queries for two ranges of one poll, want 1", len(queries))
	}
	f := func(regs []uint16) float64 {
		var b uint64
		for _, r := range regs {
			b = b<<16 | uint64(r)
		}
		return math.Float64frombits(b)
	}
	if a, b := f(first.Registers), f(second.Registers); a != 1.5 || b != -2 {
		t.Errorf("a, b = %v, %v; want 1.5, -2", a, b)
	}
	for _, r := range []adapters.Range{
		{Unit: 1, Table: adapters.InputRegister, Address: 0, Count: 4},
		{Unit: 1, Table: adapters.HoldingRegister, Address: 6, Count: 4},
	} {
		var ex *adapters.ExceptionError
		if _, err := bus.ReadRange(context.Background(), r); !errors.As(err, &ex) {
			t.Errorf("ReadRange(%v) = %v, want an exception", r, err)
		}
	}
	if err := bus.WriteRange(context.Background(), adapters.WriteRequest{Unit: 1, Table: adapters.HoldingRegister, Registers: []uint16{1}}); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("WriteRange = %v, want ErrUnsupported", err)
	}
}

func TestPortMissing(t *testing.T) {
	cfg := scaleConfig
	cfg.Port = "/dev/does-not-exist-fieldbridge"
	bus := newBus(t, cfg)
	if _, err := bus.ReadRange(context.Background(), all); !errors.Is(err, adapters.ErrNotConnected) {
		t.Fatalf("read = %v, want ErrNotConnected", err)
	}
}

// In push mode, a port that fails under the reader is reported once and
// opened again by the next read.
func TestPushModePortGoneAndBack(t *testing.T) {
	in, err := simulator.NewInstrument(simulator.InstrumentConfig{
		Template: "ST,GS,{w:%.1f},kg\r\n",
		Values:   map[string]simulator.Generator{"w": simulator.Fixed(7)},
		Interval: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	path := instrumentOnPty(t, in)
	var current *os.File
	cfg := scaleConfig
	cfg.Open = func() (serialline.Port, error) {
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		current = f
		return f, err
	}
	bus := newBus(t, cfg)
	if _, err := bus.ReadRange(context.Background(), all); err != nil {
		t.Fatal(err)
	}
	current.Close() // unplugged under the reader goroutine
	testwait.NoError(t, 5*time.Second, func() error {
		_, err := bus.ReadRange(context.Background(), all)
		if !errors.Is(err, adapters.ErrNotConnected) {
			return errors.New("the failure is not reported yet")
		}
		return nil
	})
	b, err := bus.ReadRange(context.Background(), all)
	if err != nil {
		t.Fatalf("read after reopening = %v", err)
	}
	if _, w := reading(t, b); w != 7 {
		t.Errorf("weight = %v, want 7", w)
	}
	if diff := cmp.Diff(uint64(2), bus.Stats().Opens); diff != "" {
		t.Errorf("opens (-want +got):\n%s", diff)
	}
}
