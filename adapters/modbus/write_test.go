package modbus_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"fieldbridge/adapters"
	"fieldbridge/simulator"
)

// TestWriteFunctionCodes: one coil is FC5, one register FC6, several FC15
// and FC16; with SetWriteMultiple every write is FC15/FC16. The simulator
// records what arrived.
func TestWriteFunctionCodes(t *testing.T) {
	for _, multiple := range []bool{false, true} {
		srv := startServer(t)
		bank := srv.AddUnit(1)
		bus := newBus(t, srv.Addr(), time.Second)
		bus.SetWriteMultiple(multiple)
		writes := []adapters.WriteRequest{
			{Unit: 1, Table: adapters.Coil, Address: 3, Bits: []bool{true}},
			{Unit: 1, Table: adapters.HoldingRegister, Address: 10, Registers: []uint16{0xBEEF}},
			{Unit: 1, Table: adapters.Coil, Address: 20, Bits: []bool{true, false, true}},
			{Unit: 1, Table: adapters.HoldingRegister, Address: 30, Registers: []uint16{1, 2}},
		}
		for _, w := range writes {
			if err := bus.WriteRange(context.Background(), w); err != nil {
				t.Fatalf("multiple=%v: write %v: %v", multiple, w, err)
			}
		}
		single := map[bool][2]byte{false: {simulator.FuncWriteSingleCoil, simulator.FuncWriteSingleRegister},
			true: {simulator.FuncWriteMultipleCoils, simulator.FuncWriteMultipleRegisters}}[multiple]
		want := []simulator.Write{
			{Function: single[0], Table: adapters.Coil, Address: 3, Bits: []bool{true}},
			{Function: single[1], Table: adapters.HoldingRegister, Address: 10, Registers: []uint16{0xBEEF}},
			{Function: simulator.FuncWriteMultipleCoils, Table: adapters.Coil, Address: 20, Bits: []bool{true, false, true}},
			{Function: simulator.FuncWriteMultipleRegisters, Table: adapters.HoldingRegister, Address: 30, Registers: []uint16{1, 2}},
		}
		if diff := cmp.Diff(want, bank.Writes()); diff != "" {
			t.Errorf("multiple=%v: writes seen by the simulator (-want +got):\n%s", multiple, diff)
		}
	}
}

func startLoop(t *testing.T, bus adapters.Bus, devs []adapters.Device, h adapters.ReadingHandlerFunc) *adapters.Loop {
	t.Helper()
	if h == nil {
		h = func(context.Context, adapters.Reading) {}
	}
	loop := adapters.NewLoop(bus, adapters.LoopConfig{Bus: "test", Devices: devs, Handler: h, MinBackoff: time.Hour, MaxBackoff: time.Hour},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); loop.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return loop
}

// TestReadModifyWriteWhilePolling: sixteen callers each set one bit of one
// register with a masked write while the loop polls that register as fast
// as it can. Every read-modify-write runs as one job on the bus owner, so
// none loses another's bit, and the bits outside the masks never change.
func TestReadModifyWriteWhilePolling(t *testing.T) {
	srv := startServer(t)
	bank := srv.AddUnit(1)
	bus := newBus(t, srv.Addr(), time.Second)
	reg := []adapters.Range{{Unit: 1, Table: adapters.HoldingRegister, Address: 0, Count: 10}}
	var polls sync.WaitGroup
	polls.Add(1)
	var once sync.Once
	loop := startLoop(t, bus, []adapters.Device{{Name: "d", Interval: time.Millisecond, Plan: reg}},
		func(context.Context, adapters.Reading) { once.Do(polls.Done) })
	polls.Wait() // polling runs

	// Register 5 starts with the high byte's bits set in the other order;
	// the writers clear bits 8-15 and set bits 0-7.
	if err := bank.SetRegisters(adapters.HoldingRegister, 5, []uint16{0xFF00}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16*20)
	for bit := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			on := bit < 8
			for range 20 { // each writer writes its bit again and again
				v := uint16(0)
				if on {
					v = 1 << bit
				}
				errs <- loop.Write(context.Background(), adapters.WriteRequest{Device: "d", Unit: 1, Table: adapters.HoldingRegister, Address: 5, Registers: []uint16{v}, Mask: 1 << bit})
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	got, err := bank.Registers(adapters.HoldingRegister, 5, 1)
	if err != nil || got[0] != 0x00FF {
		t.Errorf("register 5 = %04X (%v), want 00FF: a read-modify-write lost another's bit", got, err)
	}
	if srv.Requests(1, simulator.FuncReadHoldingRegisters) < 16*20 {
		t.Errorf("only %d reads for %d masked writes and the polls", srv.Requests(1, simulator.FuncReadHoldingRegisters), 16*20)
	}
}

// TestWriteTimeoutIsUnknownOutcome: a device that executes a write but
// answers too late leaves the outcome unknown. The loop reports that and
// does not send the write again.
func TestWriteTimeoutIsUnknownOutcome(t *testing.T) {
	srv := startServer(t)
	bank := srv.AddUnit(1)
	bus := newBus(t, srv.Addr(), 100*time.Millisecond)
	loop := startLoop(t, bus, []adapters.Device{{Name: "d", Interval: time.Hour}}, nil)
	srv.SetFaults(1, simulator.Faults{Delay: 300 * time.Millisecond})
	err := loop.Write(context.Background(), adapters.WriteRequest{Device: "d", Unit: 1, Table: adapters.HoldingRegister, Address: 7, Registers: []uint16{42}})
	if !errors.Is(err, adapters.ErrUnknownOutcome) {
		t.Fatalf("late reply: error %v, want ErrUnknownOutcome", err)
	}
	srv.ClearFaults(1)
	// A later write shows the bus works again and that the first went out once.
	if err := loop.Write(context.Background(), adapters.WriteRequest{Device: "d", Unit: 1, Table: adapters.HoldingRegister, Address: 8, Registers: []uint16{1}}); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, w := range bank.Writes() {
		if w.Address == 7 {
			n++
		}
	}
	if n != 1 {
		t.Errorf("the timed-out write reached the device %d times, want exactly 1", n)
	}
}

// TestWriteExceptionAndDeviceDown: a device that refuses a write answers
// with its exception (nothing retried); a device found down by its poll
// makes writes fail at once with ErrDeviceDown, without a request.
func TestWriteExceptionAndDeviceDown(t *testing.T) {
	srv := startServer(t)
	bank := srv.AddUnit(1)
	bank.SetException(adapters.HoldingRegister, 100, 10, adapters.ExIllegalValue)
	bus := newBus(t, srv.Addr(), 200*time.Millisecond)
	plan := []adapters.Range{{Unit: 1, Table: adapters.HoldingRegister, Address: 0, Count: 1}}
	cycles := make(chan adapters.Reading, 100)
	loop := startLoop(t, bus, []adapters.Device{{Name: "d", Interval: 20 * time.Millisecond, Plan: plan}},
		func(_ context.Context, r adapters.Reading) {
			select {
			case cycles <- r:
			default:
			}
		})
	err := loop.Write(context.Background(), adapters.WriteRequest{Device: "d", Unit: 1, Table: adapters.HoldingRegister, Address: 100, Registers: []uint16{1}})
	var ex *adapters.ExceptionError
	if !errors.As(err, &ex) || ex.Code != adapters.ExIllegalValue || errors.Is(err, adapters.ErrUnknownOutcome) {
		t.Fatalf("write to a refused address: %v, want modbus exception 3", err)
	}

	srv.SetFaults(1, simulator.Faults{Silent: true})
	for r := range cycles { // wait for a cycle that found the device down
		if r.Err() != nil && adapters.IsTransport(r.Err()) {
			break
		}
	}
	before := srv.UnitRequests(1)
	err = loop.Write(context.Background(), adapters.WriteRequest{Device: "d", Unit: 1, Table: adapters.HoldingRegister, Address: 1, Registers: []uint16{1}})
	if !errors.Is(err, adapters.ErrDeviceDown) {
		t.Fatalf("write to a device that is down: %v, want ErrDeviceDown", err)
	}
	if _, err := loop.Read(context.Background(), "d", plan[0]); !errors.Is(err, adapters.ErrDeviceDown) {
		t.Errorf("read of a device that is down: %v, want ErrDeviceDown", err)
	}
	if after := srv.UnitRequests(1); after != before {
		t.Errorf("%d requests sent to a device known down", after-before)
	}
	if len(bank.Writes()) != 0 {
		t.Errorf("writes reached the device: %v", bank.Writes())
	}
}
