package modbus_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"fieldbridge/adapters"
	"fieldbridge/adapters/modbus"
	"fieldbridge/simulator"
)

func startServer(t *testing.T) *simulator.Server {
	t.Helper()
	srv, err := simulator.New(simulator.Config{Addr: "127.0.0.1:0"}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return srv
}

func newBus(t *testing.T, addr string, timeout time.Duration) *modbus.TCP {
	t.Helper()
	bus, err := modbus.NewTCP(modbus.TCPConfig{Address: addr, Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bus.Close() })
	return bus
}

func TestReadEveryTable(t *testing.T) {
	srv := startServer(t)
	bank := srv.AddUnit(3)
	bank.SetRegisters(adapters.HoldingRegister, 10, []uint16{1, 2, 3})
	bank.SetRegisters(adapters.InputRegister, 0, []uint16{0x8000, 0x4366})
	bank.SetBits(adapters.Coil, 5, []bool{true, false, true})
	bank.SetBits(adapters.DiscreteInput, 0, []bool{false, true})
	bus := newBus(t, srv.Addr(), time.Second)
	ctx := context.Background()

	tests := []struct {
		r        adapters.Range
		wantRegs []uint16
		wantBits []bool
	}{
		{adapters.Range{Unit: 3, Table: adapters.HoldingRegister, Address: 10, Count: 3}, []uint16{1, 2, 3}, nil},
		{adapters.Range{Unit: 3, Table: adapters.InputRegister, Address: 0, Count: 2}, []uint16{0x8000, 0x4366}, nil},
		{adapters.Range{Unit: 3, Table: adapters.Coil, Address: 5, Count: 3}, nil, []bool{true, false, true}},
		{adapters.Range{Unit: 3, Table: adapters.DiscreteInput, Address: 0, Count: 2}, nil, []bool{false, true}},
	}
	for _, tt := range tests {
		b, err := bus.ReadRange(ctx, tt.r)
		if err != nil {
			t.Fatalf("ReadRange(%v) = %v", tt.r, err)
		}
		if diff := cmp.Diff(tt.wantRegs, b.Registers); diff != "" {
			t.Errorf("ReadRange(%v) registers (-want +got):\n%s", tt.r, diff)
		}
		if diff := cmp.Diff(tt.wantBits, b.Bits); diff != "" {
			t.Errorf("ReadRange(%v) bits (-want +got):\n%s", tt.r, diff)
		}
	}
}

func TestWriteThenRead(t *testing.T) {
	srv := startServer(t)
	srv.AddUnit(1)
	bus := newBus(t, srv.Addr(), time.Second)
	ctx := context.Background()
	writes := []adapters.WriteRequest{
		{Unit: 1, Table: adapters.HoldingRegister, Address: 100, Registers: []uint16{42}},
		{Unit: 1, Table: adapters.HoldingRegister, Address: 200, Registers: []uint16{1, 2, 3}},
		{Unit: 1, Table: adapters.Coil, Address: 7, Bits: []bool{true}},
		{Unit: 1, Table: adapters.Coil, Address: 20, Bits: []bool{true, true, false, true}},
	}
	for _, w := range writes {
		if err := bus.WriteRange(ctx, w); err != nil {
			t.Fatalf("WriteRange(%+v) = %v", w, err)
		}
		b, err := bus.ReadRange(ctx, adapters.Range{Unit: 1, Table: w.Table, Address: w.Address, Count: uint16(w.Count())})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(w.Registers, b.Registers); diff != "" {
			t.Errorf("read back registers (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(w.Bits, b.Bits); diff != "" {
			t.Errorf("read back bits (-want +got):\n%s", diff)
		}
	}
}

func TestExceptionIsReportedNotTransport(t *testing.T) {
	srv := startServer(t)
	bank := srv.AddUnit(1)
	bank.MarkUnreadable(adapters.HoldingRegister, 50, 10)
	bus := newBus(t, srv.Addr(), time.Second)
	_, err := bus.ReadRange(context.Background(), adapters.Range{Unit: 1, Table: adapters.HoldingRegister, Address: 55, Count: 2})
	var ex *adapters.ExceptionError
	if !errors.As(err, &ex) || ex.Code != adapters.ExIllegalAddress || ex.Function != 3 {
		t.Fatalf("ReadRange = %v, want illegal data address exception on function 3", err)
	}
	if adapters.IsTransport(err) {
		t.Errorf("an exception must not count as a transport error")
	}
	// The connection is still good.
	if _, err := bus.ReadRange(context.Background(), adapters.Range{Unit: 1, Table: adapters.HoldingRegister, Address: 0, Count: 2}); err != nil {
		t.Fatalf("read after exception = %v", err)
	}
}

// TestLateReplyIsNeverTakenForTheNextAnswer: the device answers the first
// request after the client's timeout. The client must reconnect, so the next
// read returns the register's real value, not the stale reply.
func TestLateReplyIsNeverTakenForTheNextAnswer(t *testing.T) {
	srv := startServer(t)
	bank := srv.AddUnit(1)
	bank.SetRegisters(adapters.HoldingRegister, 0, []uint16{111})
	bank.SetRegisters(adapters.HoldingRegister, 1, []uint16{222})
	// The reads after the timeout must be answered within it on a loaded
	// machine; the late reply comes while they go on.
	bus := newBus(t, srv.Addr(), time.Second)
	ctx := context.Background()

	srv.SetFaults(1, simulator.Faults{LateReply: 1500 * time.Millisecond})
	_, err := bus.ReadRange(ctx, adapters.Range{Unit: 1, Table: adapters.HoldingRegister, Address: 0, Count: 1})
	if !errors.Is(err, adapters.ErrTimeout) {
		t.Fatalf("first read = %v, want ErrTimeout", err)
	}
	for range 3 {
		b, err := bus.ReadRange(ctx, adapters.Range{Unit: 1, Table: adapters.HoldingRegister, Address: 1, Count: 1})
		if err != nil {
			t.Fatalf("read after timeout = %v", err)
		}
		if b.Registers[0] != 222 {
			t.Fatalf("read after timeout returned %d, want 222 (a late reply was taken as the answer)", b.Registers[0])
		}
		time.Sleep(250 * time.Millisecond) // let the late reply arrive while we keep reading
	}
}

func TestGarbageAndWrongTransactionID(t *testing.T) {
	for _, f := range []simulator.Faults{{WrongTransactionID: true}, {Garbage: true}} {
		srv := startServer(t)
		srv.AddUnit(1)
		bus := newBus(t, srv.Addr(), 200*time.Millisecond)
		srv.SetFaults(1, f)
		_, err := bus.ReadRange(context.Background(), adapters.Range{Unit: 1, Table: adapters.HoldingRegister, Address: 0, Count: 4})
		if !adapters.IsTransport(err) {
			t.Errorf("faults %+v: ReadRange = %v, want a transport error (bad frame or timeout)", f, err)
		}
		srv.ClearFaults(1)
		if _, err := bus.ReadRange(context.Background(), adapters.Range{Unit: 1, Table: adapters.HoldingRegister, Address: 0, Count: 4}); err != nil {
			t.Errorf("faults %+v: read after recovery = %v", f, err)
		}
	}
}

func TestDeviceGoneAndBack(t *testing.T) {
	srv := startServer(t)
	srv.AddUnit(1)
	bus := newBus(t, srv.Addr(), 200*time.Millisecond)
	r := adapters.Range{Unit: 1, Table: adapters.HoldingRegister, Address: 0, Count: 1}
	if _, err := bus.ReadRange(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	if err := srv.Pause(); err != nil {
		t.Fatal(err)
	}
	if _, err := bus.ReadRange(context.Background(), r); !adapters.IsTransport(err) {
		t.Fatalf("read while device gone = %v, want a transport error", err)
	}
	if err := srv.Resume(); err != nil {
		t.Fatal(err)
	}
	if _, err := bus.ReadRange(context.Background(), r); err != nil {
		t.Fatalf("read after device is back = %v", err)
	}
}

func TestCancelledContext(t *testing.T) {
	srv := startServer(t)
	srv.AddUnit(1)
	bus := newBus(t, srv.Addr(), time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := bus.ReadRange(ctx, adapters.Range{Unit: 1, Table: adapters.HoldingRegister, Count: 1}); !errors.Is(err, context.Canceled) {
		t.Fatalf("ReadRange with cancelled ctx = %v", err)
	}
}

func TestConnectPause(t *testing.T) {
	srv := startServer(t)
	srv.AddUnit(1)
	bus, err := modbus.NewTCP(modbus.TCPConfig{Address: srv.Addr(), Timeout: time.Second, ConnectPause: 150 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	r := adapters.Range{Unit: 1, Table: adapters.HoldingRegister, Count: 1}
	start := time.Now()
	if _, err := bus.ReadRange(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("first request after connect took %v, want the 150ms pause first", d)
	}
	// A cancelled wait ends at once.
	bus.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := bus.ReadRange(ctx, r); !errors.Is(err, context.Canceled) {
		t.Errorf("read with cancelled ctx during the pause = %v", err)
	}
}
