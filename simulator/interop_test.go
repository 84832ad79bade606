package simulator_test

import (
	"errors"
	"testing"
	"time"

	"fieldbridge/adapters"
	"fieldbridge/simulator"

	"github.com/goburrow/modbus"
	"github.com/google/go-cmp/cmp"
)

// goburrowClient connects a goburrow/modbus v0.1.0 TCP client to s.
func goburrowClient(t testing.TB, s *simulator.Server, unit byte, timeout time.Duration) modbus.Client {
	t.Helper()
	h := modbus.NewTCPClientHandler(s.Addr())
	h.SlaveId = unit
	h.Timeout = timeout
	if err := h.Connect(); err != nil {
		t.Fatalf("connect to %s: %v", s.Addr(), err)
	}
	t.Cleanup(func() { h.Close() })
	return modbus.NewClient(h)
}

func startServer(t testing.TB) *simulator.Server {
	t.Helper()
	s, err := simulator.NewServer(simulator.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// The simulator speaks Modbus TCP as a third-party client expects, for every
// function code it serves.
func TestGoburrowInterop(t *testing.T) {
	s := startServer(t)
	b := s.AddUnit(1)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(b.SetRegisters(adapters.HoldingRegister, 0, []uint16{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}))
	must(b.SetRegisters(adapters.InputRegister, 10, []uint16{0xCAFE}))
	must(b.SetBits(adapters.Coil, 0, []bool{true, false, true}))
	must(b.SetBits(adapters.DiscreteInput, 3, []bool{true}))
	b.MarkUnreadable(adapters.HoldingRegister, 500, 1)
	c := goburrowClient(t, s, 1, 2*time.Second)

	tests := []struct {
		name string
		call func() ([]byte, error)
		want []byte
	}{
		{"read holding registers", func() ([]byte, error) { return c.ReadHoldingRegisters(0, 10) },
			[]byte{0, 0, 0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 8, 0, 9}},
		{"read input registers", func() ([]byte, error) { return c.ReadInputRegisters(10, 1) }, []byte{0xCA, 0xFE}},
		{"read coils", func() ([]byte, error) { return c.ReadCoils(0, 3) }, []byte{0x05}},
		{"read discrete inputs", func() ([]byte, error) { return c.ReadDiscreteInputs(0, 4) }, []byte{0x08}},
		{"write single coil", func() ([]byte, error) { return c.WriteSingleCoil(1, 0xFF00) }, []byte{0xFF, 0x00}},
		{"coil written", func() ([]byte, error) { return c.ReadCoils(0, 3) }, []byte{0x07}},
		{"write single register", func() ([]byte, error) { return c.WriteSingleRegister(100, 0xABCD) }, []byte{0xAB, 0xCD}},
		{"write multiple registers", func() ([]byte, error) { return c.WriteMultipleRegisters(101, 2, []byte{0, 1, 0, 2}) }, []byte{0, 2}},
		{"registers written", func() ([]byte, error) { return c.ReadHoldingRegisters(100, 3) }, []byte{0xAB, 0xCD, 0, 1, 0, 2}},
		{"write multiple coils", func() ([]byte, error) { return c.WriteMultipleCoils(8, 9, []byte{0xFF, 0x01}) }, []byte{0, 9}},
		{"read write multiple registers", func() ([]byte, error) { return c.ReadWriteMultipleRegisters(200, 2, 201, 1, []byte{0x12, 0x34}) },
			[]byte{0, 0, 0x12, 0x34}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.call()
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	bits, err := b.Bits(adapters.Coil, 8, 9)
	must(err)
	if diff := cmp.Diff([]bool{true, true, true, true, true, true, true, true, true}, bits); diff != "" {
		t.Errorf("coils after WriteMultipleCoils (-want +got):\n%s", diff)
	}

	t.Run("exception", func(t *testing.T) {
		_, err := c.ReadHoldingRegisters(500, 1)
		var me *modbus.ModbusError
		if !errors.As(err, &me) || me.ExceptionCode != adapters.ExIllegalAddress || me.FunctionCode != 0x83 {
			t.Errorf("read of an unreadable register: %v, want illegal data address on 0x83", err)
		}
	})
	if got, want := s.Requests(1, simulator.FuncReadHoldingRegisters), uint64(3); got != want {
		t.Errorf("Requests(1, FC3) = %d, want %d", got, want)
	}
}

// goburrow notices the injected transport faults.
func TestGoburrowSeesFaults(t *testing.T) {
	tests := []struct {
		name   string
		faults simulator.Faults
	}{
		{"silent", simulator.Faults{Silent: true}},
		{"wrong transaction id", simulator.Faults{WrongTransactionID: true}},
		{"late reply", simulator.Faults{LateReply: time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startServer(t)
			s.AddUnit(1)
			s.SetFaults(1, tt.faults)
			c := goburrowClient(t, s, 1, 100*time.Millisecond)
			if got, err := c.ReadHoldingRegisters(0, 1); err == nil {
				t.Errorf("ReadHoldingRegisters = % x, want an error", got)
			}
		})
	}
}
