package modbus_test

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"fieldbridge/adapters"
	"fieldbridge/adapters/modbus"
	"fieldbridge/internal/serialtest"
	"fieldbridge/simulator"

	"fieldbridge/internal/testwait"
)

// serveOnPty links two ptys with socat and serves srv on one end with
// serve (ServeRTU or ServeASCII) until the test ends. It returns the path of
// the other end, for the bus.
func serveOnPty(t *testing.T, srv *simulator.Server, serve func(*simulator.Server, context.Context, *os.File) error) string {
	t.Helper()
	busEnd, devEnd := serialtest.Pair(t)
	f, err := os.OpenFile(devEnd, os.O_RDWR, 0)
	if err != nil {
		t.Fatalf("open device end %s: %v", devEnd, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(srv, ctx, f) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		f.Close()
	})
	return busEnd
}

func serveRTU(s *simulator.Server, ctx context.Context, f *os.File) error { return s.ServeRTU(ctx, f) }
func serveASCII(s *simulator.Server, ctx context.Context, f *os.File) error {
	return s.ServeASCII(ctx, f)
}

func newSim(t *testing.T) *simulator.Server {
	t.Helper()
	srv, err := simulator.New(simulator.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return srv
}

func newRTU(t *testing.T, cfg modbus.RTUConfig) *modbus.RTU {
	t.Helper()
	bus, err := modbus.NewRTU(cfg)
	if err != nil {
		t.Fatalf("NewRTU(%+v): %v", cfg, err)
	}
	t.Cleanup(func() { bus.Close() })
	return bus
}

func holding(unit uint8, addr, n uint16) adapters.Range {
	return adapters.Range{Unit: unit, Table: adapters.HoldingRegister, Address: addr, Count: n}
}

// readOK reads r and compares the registers.
func readOK(t *testing.T, bus adapters.Bus, r adapters.Range, want []uint16) {
	t.Helper()
	b, err := bus.ReadRange(context.Background(), r)
	if err != nil {
		t.Fatalf("ReadRange(%v) = %v", r, err)
	}
	if diff := cmp.Diff(want, b.Registers); diff != "" {
		t.Fatalf("ReadRange(%v) registers (-want +got):\n%s", r, diff)
	}
}

// rtuLine serves units 1, 2 and 17 as RTU slaves on a pty pair and returns
// the simulator and a bus on the other end.
func rtuLine(t *testing.T, timeout time.Duration) (*simulator.Server, *modbus.RTU) {
	t.Helper()
	srv := newSim(t)
	for _, u := range []byte{1, 2, 17} {
		srv.AddUnit(u).SetRegisters(adapters.HoldingRegister, 0, []uint16{uint16(u), uint16(u) * 10, uint16(u) * 100})
	}
	path := serveOnPty(t, srv, serveRTU)
	return srv, newRTU(t, modbus.RTUConfig{Port: path, Baud: 115200, Parity: "even", Timeout: timeout})
}

func TestRTUSeveralUnitsOnOneLine(t *testing.T) {
	srv, bus := rtuLine(t, time.Second)
	bank := srv.Unit(2)
	bank.SetRegisters(adapters.InputRegister, 10, []uint16{0xCAFE, 0xBEEF})
	bank.SetBits(adapters.Coil, 3, []bool{true, false, true})
	bank.SetBits(adapters.DiscreteInput, 0, []bool{false, true})
	for _, u := range []uint8{1, 2, 17, 2, 1} {
		readOK(t, bus, holding(u, 0, 3), []uint16{uint16(u), uint16(u) * 10, uint16(u) * 100})
	}
	readOK(t, bus, adapters.Range{Unit: 2, Table: adapters.InputRegister, Address: 10, Count: 2}, []uint16{0xCAFE, 0xBEEF})
	b, err := bus.ReadRange(context.Background(), adapters.Range{Unit: 2, Table: adapters.Coil, Address: 3, Count: 3})
	if err != nil || !cmp.Equal(b.Bits, []bool{true, false, true}) {
		t.Fatalf("read coils = %v, %v", b.Bits, err)
	}
	b, err = bus.ReadRange(context.Background(), adapters.Range{Unit: 2, Table: adapters.DiscreteInput, Address: 0, Count: 2})
	if err != nil || !cmp.Equal(b.Bits, []bool{false, true}) {
		t.Fatalf("read discrete inputs = %v, %v", b.Bits, err)
	}

	writes := []adapters.WriteRequest{
		{Unit: 17, Table: adapters.HoldingRegister, Address: 100, Registers: []uint16{42}},
		{Unit: 17, Table: adapters.HoldingRegister, Address: 200, Registers: []uint16{1, 2, 3}},
		{Unit: 1, Table: adapters.Coil, Address: 7, Bits: []bool{true}},
		{Unit: 1, Table: adapters.Coil, Address: 20, Bits: []bool{true, true, false, true, false, false, false, false, true}},
	}
	for _, w := range writes {
		if err := bus.WriteRange(context.Background(), w); err != nil {
			t.Fatalf("WriteRange(%+v) = %v", w, err)
		}
		r := adapters.Range{Unit: w.Unit, Table: w.Table, Address: w.Address, Count: uint16(w.Count())}
		b, err := bus.ReadRange(context.Background(), r)
		if err != nil {
			t.Fatal(err)
		}
		if !cmp.Equal(w.Registers, b.Registers) || !cmp.Equal(w.Bits, b.Bits) {
			t.Errorf("read back %v = %v %v, want %v %v", r, b.Registers, b.Bits, w.Registers, w.Bits)
		}
	}
	if st := bus.Stats(); st.Timeouts+st.BadFrames+st.Discarded != 0 || st.Opens != 1 {
		t.Errorf("Stats = %+v, want no failures and one open", st)
	}
}

// A unit that never answers costs one timeout per request, and the units
// beside it on the line are not affected.
func TestRTUSilentUnitCostsOneTimeout(t *testing.T) {
	const timeout = time.Second // the live units must answer within it on a loaded machine
	srv, bus := rtuLine(t, timeout)
	srv.SetFaults(2, simulator.Faults{Silent: true})
	for range 2 {
		start := time.Now()
		_, err := bus.ReadRange(context.Background(), holding(9, 0, 1)) // no such unit
		took := time.Since(start)
		if !errors.Is(err, adapters.ErrTimeout) {
			t.Fatalf("read of a missing unit = %v, want ErrTimeout", err)
		}
		if took < timeout {
			t.Errorf("read of a missing unit gave up after %v, before its timeout (%v)", took, timeout)
		}
		if _, err := bus.ReadRange(context.Background(), holding(2, 0, 1)); !errors.Is(err, adapters.ErrTimeout) {
			t.Fatalf("read of a silent unit = %v, want ErrTimeout", err)
		}
		readOK(t, bus, holding(1, 0, 3), []uint16{1, 10, 100})
		readOK(t, bus, holding(17, 0, 3), []uint16{17, 170, 1700})
	}
	if got := srv.UnitRequests(9); got != 2 {
		t.Errorf("the simulator saw %d requests for unit 9, want 2 (one per read, no retries)", got)
	}
	// Exactly the two reads of each dead unit timed out: the live units'
	// reads right after a timeout were answered within theirs.
	if st := bus.Stats(); st.Timeouts != 4 || st.Opens != 1 {
		t.Errorf("Stats = %+v, want 4 timeouts and the port opened once", st)
	}
}

// Through the bus loop: a dead device with three ranges costs one timeout
// per cycle, and the live device beside it keeps its schedule.
func TestRTUDeadDeviceInLoop(t *testing.T) {
	const timeout = 500 * time.Millisecond // generous: the live unit must never time out on a loaded machine
	srv, bus := rtuLine(t, timeout)
	var mu sync.Mutex
	got := map[string][]adapters.Reading{}
	handler := adapters.ReadingHandlerFunc(func(_ context.Context, r adapters.Reading) {
		mu.Lock()
		got[r.Device] = append(got[r.Device], r)
		mu.Unlock()
	})
	plan := func(u uint8) []adapters.Range {
		return []adapters.Range{holding(u, 0, 1), holding(u, 1, 1), holding(u, 2, 1)}
	}
	loop := adapters.NewLoop(bus, adapters.LoopConfig{
		Bus:        "rs485",
		Devices:    []adapters.Device{{Name: "live", Interval: 50 * time.Millisecond, Plan: plan(1)}, {Name: "dead", Interval: 50 * time.Millisecond, Plan: plan(33)}},
		Handler:    handler,
		MinBackoff: time.Hour, // one failed cycle of the dead device, then it waits
	}, discardLogger())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- loop.Run(ctx) }()
	defer func() { cancel(); <-done }()
	testwait.NoError(t, 5*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(got["dead"]) < 1 || len(got["live"]) < 5 {
			return errors.New("waiting for one dead cycle and five live ones")
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	dead := got["dead"][0]
	for i, b := range dead.Blocks {
		if !errors.Is(b.Err, adapters.ErrTimeout) {
			t.Errorf("dead device range %d: err %v, want ErrTimeout", i, b.Err)
		}
	}
	if n := srv.UnitRequests(33); n != 1 {
		t.Errorf("the dead unit got %d requests in its cycle, want 1", n)
	}
	for _, r := range got["live"] {
		if err := r.Err(); err != nil {
			t.Errorf("live device cycle failed: %v", err)
		}
	}
}

func TestRTUException(t *testing.T) {
	srv, bus := rtuLine(t, time.Second)
	srv.Unit(1).MarkUnreadable(adapters.HoldingRegister, 50, 10)
	tests := []struct {
		name   string
		r      adapters.Range
		faults simulator.Faults
		code   byte
	}{
		{"unmapped registers", holding(1, 55, 2), simulator.Faults{}, adapters.ExIllegalAddress},
		{"busy device", holding(2, 0, 1), simulator.Faults{Exception: adapters.ExDeviceBusy}, adapters.ExDeviceBusy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv.SetFaults(tt.r.Unit, tt.faults)
			defer srv.ClearFaults(tt.r.Unit)
			_, err := bus.ReadRange(context.Background(), tt.r)
			var ex *adapters.ExceptionError
			if !errors.As(err, &ex) || ex.Code != tt.code || ex.Function != 3 {
				t.Fatalf("ReadRange(%v) = %v, want exception %d on function 3", tt.r, err, tt.code)
			}
			if adapters.IsTransport(err) {
				t.Errorf("an exception must not count as a transport error")
			}
			readOK(t, bus, holding(17, 0, 1), []uint16{17})
		})
	}
	if st := bus.Stats(); st.Exceptions != 2 {
		t.Errorf("Stats().Exceptions = %d, want 2", st.Exceptions)
	}
}

// Damaged replies are bad frames, reported without waiting for the timeout;
// noise before a good reply is skipped. The timeout is far longer than any
// exchange on a loaded machine, so "before the deadline" means the reader
// did not wait for it.
func TestRTUDamagedReplies(t *testing.T) {
	const timeout = 30 * time.Second
	srv, bus := rtuLine(t, timeout)
	tests := []struct {
		name    string
		faults  simulator.Faults
		wantErr error
	}{
		{"noise before the reply", simulator.Faults{Noise: 23}, nil},
		{"truncated reply", simulator.Faults{Truncate: true}, adapters.ErrBadFrame},
		{"wrong crc", simulator.Faults{Garbage: true}, adapters.ErrBadFrame},
		{"noise and a truncated reply", simulator.Faults{Noise: 7, Truncate: true}, adapters.ErrBadFrame},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv.SetFaults(1, tt.faults)
			before := bus.Stats()
			start := time.Now()
			b, err := bus.ReadRange(context.Background(), holding(1, 0, 3))
			took := time.Since(start)
			srv.ClearFaults(1)
			if tt.wantErr == nil {
				if err != nil || !cmp.Equal(b.Registers, []uint16{1, 10, 100}) {
					t.Fatalf("ReadRange = %v, %v; want the registers", b.Registers, err)
				}
				if d := bus.Stats().Discarded - before.Discarded; d < uint64(tt.faults.Noise) {
					t.Errorf("discarded %d bytes, want at least the %d noise bytes", d, tt.faults.Noise)
				}
			} else {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("ReadRange = %v, want %v", err, tt.wantErr)
				}
				if took >= timeout {
					t.Errorf("the bad frame was reported after %v, at the timeout (%v) instead of when the frame ended", took, timeout)
				}
			}
			// The line recovers at once.
			readOK(t, bus, holding(1, 0, 3), []uint16{1, 10, 100})
			readOK(t, bus, holding(2, 0, 3), []uint16{2, 20, 200})
		})
	}
}

// A reply from another unit is never taken as the answer: when nothing else
// comes, it is a bad frame (at the timeout, since the right reply could
// still have followed it), and the line recovers.
func TestRTUReplyFromAnotherUnit(t *testing.T) {
	srv, bus := rtuLine(t, 500*time.Millisecond)
	srv.SetFaults(1, simulator.Faults{WrongTransactionID: true}) // unit 1 answers as unit 2
	_, err := bus.ReadRange(context.Background(), holding(1, 0, 3))
	if !errors.Is(err, adapters.ErrBadFrame) || !strings.Contains(err.Error(), "reply from unit 2 to a request for unit 1") {
		t.Fatalf("ReadRange = %v, want ErrBadFrame naming unit 2", err)
	}
	srv.ClearFaults(1)
	readOK(t, bus, holding(1, 0, 3), []uint16{1, 10, 100})
	readOK(t, bus, holding(2, 0, 3), []uint16{2, 20, 200})
}

// A reply that comes after its timeout, while the next unit is being asked,
// is recognised as another unit's and skipped, however long the pause before
// the right reply (the simulator answers unit 2 only after unit 1's late
// reply; on a loaded machine the two are often more than a 3.5-character
// time apart). The late reply comes 300 ms into unit 2's 1 s timeout: late
// enough that unit 2's request has gone out, early enough that its reply
// still fits in its timeout.
func TestRTULateReplyFromAnotherUnit(t *testing.T) {
	const timeout = time.Second
	srv, bus := rtuLine(t, timeout)
	srv.SetFaults(1, simulator.Faults{LateReply: timeout + 300*time.Millisecond})
	if _, err := bus.ReadRange(context.Background(), holding(1, 0, 3)); !errors.Is(err, adapters.ErrTimeout) {
		t.Fatalf("first read = %v, want ErrTimeout", err)
	}
	readOK(t, bus, holding(2, 0, 3), []uint16{2, 20, 200})
	readOK(t, bus, holding(1, 0, 3), []uint16{1, 10, 100})
	const lateReply = 3 + 6 + 2 // unit, function, byte count, 3 registers, crc
	if st := bus.Stats(); st.Discarded < lateReply || st.BadFrames != 0 {
		t.Errorf("Stats = %+v, want the %d bytes of the late reply discarded and no bad frame", st, lateReply)
	}
}

func TestRTUCancelEndsTheRequest(t *testing.T) {
	srv, bus := rtuLine(t, 10*time.Second)
	srv.SetFaults(1, simulator.Faults{Silent: true})
	ctx, cancel := context.WithCancel(context.Background())
	tm := time.AfterFunc(50*time.Millisecond, cancel)
	defer tm.Stop()
	start := time.Now()
	_, err := bus.ReadRange(ctx, holding(1, 0, 1))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("ReadRange = %v, want context.Canceled", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("cancelled request took %v", took)
	}
	readOK(t, bus, holding(2, 0, 1), []uint16{2}) // the port is reopened
	if st := bus.Stats(); st.Opens != 2 {
		t.Errorf("Stats().Opens = %d, want 2", st.Opens)
	}
}

// A port that cannot be opened is "not connected"; one that fails under the
// bus (an unplugged adapter) is opened again by the next request.
func TestRTUPortGoneAndBack(t *testing.T) {
	srv := newSim(t)
	srv.AddUnit(1).SetRegisters(adapters.HoldingRegister, 0, []uint16{7})
	path := serveOnPty(t, srv, serveRTU)
	var unplugged atomic.Bool
	unplugged.Store(true)
	var current atomic.Pointer[os.File]
	bus := newRTU(t, modbus.RTUConfig{Port: path, Timeout: time.Second, Open: func() (modbus.Port, error) {
		if unplugged.Load() {
			return nil, &os.PathError{Op: "open", Path: path, Err: os.ErrNotExist}
		}
		f, err := os.OpenFile(path, os.O_RDWR, 0) // the plain-file seam: a pty opened without termios changes
		current.Store(f)
		return f, err
	}})
	r := holding(1, 0, 1)
	if _, err := bus.ReadRange(context.Background(), r); !errors.Is(err, adapters.ErrNotConnected) {
		t.Fatalf("read with the port missing = %v, want ErrNotConnected", err)
	}
	unplugged.Store(false)
	readOK(t, bus, r, []uint16{7})
	current.Load().Close() // the adapter goes away under the bus
	if _, err := bus.ReadRange(context.Background(), r); !errors.Is(err, adapters.ErrNotConnected) {
		t.Fatalf("read on a vanished port = %v, want ErrNotConnected", err)
	}
	readOK(t, bus, r, []uint16{7})
	if st := bus.Stats(); st.Opens != 2 {
		t.Errorf("Stats().Opens = %d, want 2", st.Opens)
	}
}

func TestRTUOverTCP(t *testing.T) {
	srv := newSim(t)
	srv.AddUnit(4).SetRegisters(adapters.HoldingRegister, 0, []uint16{4, 40})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // a serial device server: each connection is the serial line
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				srv.ServeRTU(ctx, c)
			}()
		}
	}()
	t.Cleanup(func() { cancel(); ln.Close(); wg.Wait() })

	bus, err := modbus.NewRTUOverTCP(ln.Addr().String(), 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	readOK(t, bus, holding(4, 0, 2), []uint16{4, 40})
	if err := bus.WriteRange(context.Background(), adapters.WriteRequest{Unit: 4, Table: adapters.HoldingRegister, Address: 1, Registers: []uint16{41}}); err != nil {
		t.Fatal(err)
	}
	readOK(t, bus, holding(4, 0, 2), []uint16{4, 41})
	if _, err := bus.ReadRange(context.Background(), holding(5, 0, 1)); !errors.Is(err, adapters.ErrTimeout) {
		t.Fatalf("read of a missing unit = %v, want ErrTimeout", err)
	}
	srv.SetFaults(4, simulator.Faults{Garbage: true})
	if _, err := bus.ReadRange(context.Background(), holding(4, 0, 1)); !errors.Is(err, adapters.ErrBadFrame) {
		t.Fatalf("read with a wrong crc = %v, want ErrBadFrame", err)
	}
	srv.ClearFaults(4)
	readOK(t, bus, holding(4, 0, 2), []uint16{4, 41})

	bad, err := modbus.NewRTUOverTCP("127.0.0.1:1", 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bad.ReadRange(context.Background(), holding(1, 0, 1)); !errors.Is(err, adapters.ErrNotConnected) {
		t.Fatalf("read from a closed port = %v, want ErrNotConnected", err)
	}
}

func TestASCII(t *testing.T) {
	srv := newSim(t)
	srv.AddUnit(1).SetRegisters(adapters.HoldingRegister, 0, []uint16{0x1234, 0xABCD})
	srv.AddUnit(2).SetBits(adapters.Coil, 0, []bool{true, true, false})
	path := serveOnPty(t, srv, serveASCII)
	bus, err := modbus.NewASCII(modbus.ASCIIConfig{Port: path, Baud: 9600, Timeout: time.Second}) // live replies must fit in it on a loaded machine
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	readOK(t, bus, holding(1, 0, 2), []uint16{0x1234, 0xABCD})
	b, err := bus.ReadRange(context.Background(), adapters.Range{Unit: 2, Table: adapters.Coil, Count: 3})
	if err != nil || !cmp.Equal(b.Bits, []bool{true, true, false}) {
		t.Fatalf("read coils = %v, %v", b.Bits, err)
	}
	if err := bus.WriteRange(context.Background(), adapters.WriteRequest{Unit: 1, Table: adapters.HoldingRegister, Address: 5, Registers: []uint16{9, 8}}); err != nil {
		t.Fatal(err)
	}
	readOK(t, bus, holding(1, 5, 2), []uint16{9, 8})

	tests := []struct {
		name    string
		unit    uint8
		faults  simulator.Faults
		wantErr error
	}{
		{"missing unit", 3, simulator.Faults{}, adapters.ErrTimeout},
		{"wrong lrc", 1, simulator.Faults{Garbage: true}, adapters.ErrBadFrame},
		{"truncated", 1, simulator.Faults{Truncate: true}, adapters.ErrBadFrame},
		{"wrong unit", 1, simulator.Faults{WrongTransactionID: true}, adapters.ErrBadFrame},
		{"noise before", 1, simulator.Faults{Noise: 9}, nil},
		{"exception", 1, simulator.Faults{Exception: adapters.ExDeviceFailure}, &adapters.ExceptionError{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv.SetFaults(tt.unit, tt.faults)
			_, err := bus.ReadRange(context.Background(), holding(tt.unit, 0, 2))
			srv.ClearFaults(tt.unit)
			var ex *adapters.ExceptionError
			switch want := tt.wantErr.(type) {
			case nil:
				if err != nil {
					t.Fatalf("ReadRange = %v", err)
				}
			case *adapters.ExceptionError:
				if !errors.As(err, &ex) || ex.Code != adapters.ExDeviceFailure {
					t.Fatalf("ReadRange = %v, want an exception", err)
				}
			default:
				if !errors.Is(err, want) {
					t.Fatalf("ReadRange = %v, want %v", err, want)
				}
			}
			readOK(t, bus, holding(1, 0, 2), []uint16{0x1234, 0xABCD})
		})
	}
}

// Three timeouts in a row with not a byte on the line reopen the port (a
// re-plugged adapter); a dead unit among live ones never does.
func TestRTUReopensAfterQuietTimeouts(t *testing.T) {
	_, bus := rtuLine(t, time.Second) // a live reply after the reopen must fit in it on a loaded machine
	for range 3 {
		if _, err := bus.ReadRange(context.Background(), holding(9, 0, 1)); !errors.Is(err, adapters.ErrTimeout) {
			t.Fatalf("read of a missing unit = %v, want ErrTimeout", err)
		}
	}
	readOK(t, bus, holding(1, 0, 1), []uint16{1})
	if st := bus.Stats(); st.Opens != 2 || st.Timeouts != 3 {
		t.Errorf("Stats = %+v, want the port opened twice and 3 timeouts", st)
	}
}
