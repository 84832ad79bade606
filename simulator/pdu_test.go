package simulator

import (
	"bytes"
	"testing"

	"fieldbridge/adapters"

	"github.com/google/go-cmp/cmp"
)

// pduTestServer is an unstarted server with two units:
//
//	unit 1: full-size tables with a few values, holding 50..59 unreadable,
//	        input 200..209 answering "device busy";
//	unit 2: 100 coils, 100 discrete inputs, 100 holding registers, no input
//	        registers.
func pduTestServer(t testing.TB, cfg Config) *Server {
	t.Helper()
	s, err := New(cfg, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	b := s.AddUnit(1)
	must(t, b.SetBits(adapters.Coil, 0, []bool{true, false, true, true, false, false, false, false, true, true}))
	must(t, b.SetBits(adapters.DiscreteInput, 0, []bool{false, true, true}))
	must(t, b.SetRegisters(adapters.HoldingRegister, 0, []uint16{0x1234, 0x5678, 0x9ABC}))
	must(t, b.SetRegisters(adapters.HoldingRegister, 100, []uint16{7}))
	must(t, b.SetRegisters(adapters.InputRegister, 0, []uint16{230, 231}))
	b.MarkUnreadable(adapters.HoldingRegister, 50, 10)
	b.SetException(adapters.InputRegister, 200, 10, adapters.ExDeviceBusy)
	s.SetUnit(2, NewBank(BankConfig{Coils: 100, DiscreteInputs: 100, InputRegisters: -1, HoldingRegisters: 100}))
	return s
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func ex(fc, code byte) []byte { return []byte{fc | 0x80, code} }

func TestHandlePDU(t *testing.T) {
	const (
		fc1  = FuncReadCoils
		fc2  = FuncReadDiscreteInputs
		fc3  = FuncReadHoldingRegisters
		fc4  = FuncReadInputRegisters
		fc5  = FuncWriteSingleCoil
		fc6  = FuncWriteSingleRegister
		fc15 = FuncWriteMultipleCoils
		fc16 = FuncWriteMultipleRegisters
		fc23 = FuncReadWriteMultipleRegisters

		illegalFunction = adapters.ExIllegalFunction
		illegalAddress  = adapters.ExIllegalAddress
		illegalValue    = adapters.ExIllegalValue
		busy            = adapters.ExDeviceBusy
	)
	fullCoilRead := make([]byte, 2+250)
	fullCoilRead[0], fullCoilRead[1], fullCoilRead[2], fullCoilRead[3] = fc1, 250, 0x0D, 0x03
	fullRegRead := make([]byte, 2+250)
	fullRegRead[0], fullRegRead[1] = fc3, 250
	fullRegRead[2+2*(100-60)+1] = 7 // holding 100, read from 60 (after the unreadable range)

	type bankCheck struct {
		unit  byte
		table adapters.Table
		addr  uint16
		regs  []uint16 // or
		bits  []bool
	}
	tests := []struct {
		name  string
		cfg   Config
		setup func(*Server)
		unit  byte
		pdu   []byte
		want  []byte
		after *bankCheck // bank contents after the request
	}{
		// FC1 read coils
		{name: "fc1 ten coils", unit: 1, pdu: cat([]byte{fc1}, be(0, 10)), want: []byte{fc1, 2, 0x0D, 0x03}},
		{name: "fc1 one coil", unit: 1, pdu: cat([]byte{fc1}, be(2, 1)), want: []byte{fc1, 1, 0x01}},
		{name: "fc1 2000 coils", unit: 1, pdu: cat([]byte{fc1}, be(0, 2000)), want: fullCoilRead},
		{name: "fc1 zero count", unit: 1, pdu: cat([]byte{fc1}, be(0, 0)), want: ex(fc1, illegalValue)},
		{name: "fc1 2001 coils", unit: 1, pdu: cat([]byte{fc1}, be(0, 2001)), want: ex(fc1, illegalValue)},
		{name: "fc1 past table end", unit: 2, pdu: cat([]byte{fc1}, be(95, 6)), want: ex(fc1, illegalAddress)},
		{name: "fc1 up to table end", unit: 2, pdu: cat([]byte{fc1}, be(95, 5)), want: []byte{fc1, 1, 0}},
		{name: "fc1 past 65535", unit: 1, pdu: cat([]byte{fc1}, be(65535, 2)), want: ex(fc1, illegalAddress)},
		{name: "fc1 short", unit: 1, pdu: []byte{fc1, 0, 0, 0}, want: ex(fc1, illegalValue)},
		{name: "fc1 trailing byte", unit: 1, pdu: cat([]byte{fc1}, be(0, 1), []byte{0}), want: ex(fc1, illegalValue)},
		{name: "fc1 function code only", unit: 1, pdu: []byte{fc1}, want: ex(fc1, illegalValue)},

		// FC2 read discrete inputs
		{name: "fc2 three inputs", unit: 1, pdu: cat([]byte{fc2}, be(0, 3)), want: []byte{fc2, 1, 0x06}},
		{name: "fc2 zero count", unit: 1, pdu: cat([]byte{fc2}, be(0, 0)), want: ex(fc2, illegalValue)},
		{name: "fc2 past table end", unit: 2, pdu: cat([]byte{fc2}, be(100, 1)), want: ex(fc2, illegalAddress)},

		// FC3 read holding registers
		{name: "fc3 three registers", unit: 1, pdu: readHolding(0, 3), want: []byte{fc3, 6, 0x12, 0x34, 0x56, 0x78, 0x9A, 0xBC}},
		{name: "fc3 125 registers", unit: 1, pdu: readHolding(60, 125), want: fullRegRead},
		{name: "fc3 126 registers", unit: 1, pdu: readHolding(0, 126), want: ex(fc3, illegalValue)},
		{name: "fc3 zero count", unit: 1, pdu: readHolding(0, 0), want: ex(fc3, illegalValue)},
		{name: "fc3 last register", unit: 1, pdu: readHolding(65535, 1), want: []byte{fc3, 2, 0, 0}},
		{name: "fc3 past 65535", unit: 1, pdu: readHolding(65535, 2), want: ex(fc3, illegalAddress)},
		{name: "fc3 past table end", unit: 2, pdu: readHolding(99, 2), want: ex(fc3, illegalAddress)},
		{name: "fc3 touches unreadable start", unit: 1, pdu: readHolding(45, 6), want: ex(fc3, illegalAddress)},
		{name: "fc3 touches unreadable end", unit: 1, pdu: readHolding(59, 2), want: ex(fc3, illegalAddress)},
		{name: "fc3 just before unreadable", unit: 1, pdu: readHolding(45, 5), want: cat([]byte{fc3, 10}, make([]byte, 10))},
		{name: "fc3 just after unreadable", unit: 1, pdu: readHolding(60, 1), want: []byte{fc3, 2, 0, 0}},
		{name: "fc3 short", unit: 1, pdu: []byte{fc3, 0, 0, 0}, want: ex(fc3, illegalValue)},

		// FC4 read input registers
		{name: "fc4 two registers", unit: 1, pdu: cat([]byte{fc4}, be(0, 2)), want: []byte{fc4, 4, 0, 230, 0, 231}},
		{name: "fc4 range exception", unit: 1, pdu: cat([]byte{fc4}, be(205, 1)), want: ex(fc4, busy)},
		{name: "fc4 table left out", unit: 2, pdu: cat([]byte{fc4}, be(0, 1)), want: ex(fc4, illegalAddress)},
		{name: "fc4 126 registers", unit: 1, pdu: cat([]byte{fc4}, be(0, 126)), want: ex(fc4, illegalValue)},

		// FC5 write single coil
		{name: "fc5 on", unit: 1, pdu: cat([]byte{fc5}, be(1, 0xFF00)), want: cat([]byte{fc5}, be(1, 0xFF00)),
			after: &bankCheck{unit: 1, table: adapters.Coil, addr: 0, bits: []bool{true, true, true}}},
		{name: "fc5 off", unit: 1, pdu: cat([]byte{fc5}, be(0, 0x0000)), want: cat([]byte{fc5}, be(0, 0)),
			after: &bankCheck{unit: 1, table: adapters.Coil, addr: 0, bits: []bool{false, false, true}}},
		{name: "fc5 bad value", unit: 1, pdu: cat([]byte{fc5}, be(1, 0x0001)), want: ex(fc5, illegalValue),
			after: &bankCheck{unit: 1, table: adapters.Coil, addr: 1, bits: []bool{false}}},
		{name: "fc5 bad value 0x00FF", unit: 1, pdu: cat([]byte{fc5}, be(1, 0x00FF)), want: ex(fc5, illegalValue)},
		{name: "fc5 past table end", unit: 2, pdu: cat([]byte{fc5}, be(100, 0xFF00)), want: ex(fc5, illegalAddress)},
		{name: "fc5 short", unit: 1, pdu: []byte{fc5, 0, 1, 0xFF}, want: ex(fc5, illegalValue)},

		// FC6 write single register
		{name: "fc6 write", unit: 1, pdu: cat([]byte{fc6}, be(10, 0xBEEF)), want: cat([]byte{fc6}, be(10, 0xBEEF)),
			after: &bankCheck{unit: 1, table: adapters.HoldingRegister, addr: 10, regs: []uint16{0xBEEF}}},
		{name: "fc6 past table end", unit: 2, pdu: cat([]byte{fc6}, be(100, 1)), want: ex(fc6, illegalAddress)},
		{name: "fc6 unreadable", unit: 1, pdu: cat([]byte{fc6}, be(55, 1)), want: ex(fc6, illegalAddress),
			after: &bankCheck{unit: 1, table: adapters.HoldingRegister, addr: 55, regs: []uint16{0}}},
		{name: "fc6 long", unit: 1, pdu: cat([]byte{fc6}, be(10, 1, 2)), want: ex(fc6, illegalValue)},

		// FC15 write multiple coils
		{name: "fc15 ten coils", unit: 1, pdu: cat([]byte{fc15}, be(20, 10), []byte{2, 0xF0, 0x02}), want: cat([]byte{fc15}, be(20, 10)),
			after: &bankCheck{unit: 1, table: adapters.Coil, addr: 20, bits: []bool{false, false, false, false, true, true, true, true, false, true, false}}},
		{name: "fc15 zero count", unit: 1, pdu: cat([]byte{fc15}, be(0, 0), []byte{0}), want: ex(fc15, illegalValue)},
		{name: "fc15 1969 coils", unit: 1, pdu: cat([]byte{fc15}, be(0, 1969), []byte{247}, make([]byte, 247)), want: ex(fc15, illegalValue)},
		{name: "fc15 1968 coils", unit: 1, pdu: cat([]byte{fc15}, be(0, 1968), []byte{246}, make([]byte, 246)), want: cat([]byte{fc15}, be(0, 1968))},
		{name: "fc15 byte count mismatch", unit: 1, pdu: cat([]byte{fc15}, be(0, 10), []byte{1, 0xFF}), want: ex(fc15, illegalValue)},
		{name: "fc15 missing data", unit: 1, pdu: cat([]byte{fc15}, be(0, 10), []byte{2, 0xFF}), want: ex(fc15, illegalValue)},
		{name: "fc15 extra data", unit: 1, pdu: cat([]byte{fc15}, be(0, 8), []byte{1, 0xFF, 0}), want: ex(fc15, illegalValue)},
		{name: "fc15 short header", unit: 1, pdu: cat([]byte{fc15}, be(0, 8)), want: ex(fc15, illegalValue)},
		{name: "fc15 past table end", unit: 2, pdu: cat([]byte{fc15}, be(96, 5), []byte{1, 0x1F}), want: ex(fc15, illegalAddress)},

		// FC16 write multiple registers
		{name: "fc16 two registers", unit: 1, pdu: cat([]byte{fc16}, be(200, 2), []byte{4}, be(1, 2)), want: cat([]byte{fc16}, be(200, 2)),
			after: &bankCheck{unit: 1, table: adapters.HoldingRegister, addr: 199, regs: []uint16{0, 1, 2, 0}}},
		{name: "fc16 123 registers", unit: 1, pdu: cat([]byte{fc16}, be(300, 123), []byte{246}, make([]byte, 246)), want: cat([]byte{fc16}, be(300, 123))},
		{name: "fc16 124 registers", unit: 1, pdu: cat([]byte{fc16}, be(0, 124), []byte{248}, make([]byte, 248)), want: ex(fc16, illegalValue)},
		{name: "fc16 zero count", unit: 1, pdu: cat([]byte{fc16}, be(0, 0), []byte{0}), want: ex(fc16, illegalValue)},
		{name: "fc16 byte count mismatch", unit: 1, pdu: cat([]byte{fc16}, be(0, 2), []byte{3}, be(1, 2)), want: ex(fc16, illegalValue)},
		{name: "fc16 missing data", unit: 1, pdu: cat([]byte{fc16}, be(0, 2), []byte{4}, be(1)), want: ex(fc16, illegalValue)},
		{name: "fc16 past table end", unit: 2, pdu: cat([]byte{fc16}, be(99, 2), []byte{4}, be(1, 2)), want: ex(fc16, illegalAddress)},
		{name: "fc16 unreadable", unit: 1, pdu: cat([]byte{fc16}, be(49, 2), []byte{4}, be(1, 2)), want: ex(fc16, illegalAddress),
			after: &bankCheck{unit: 1, table: adapters.HoldingRegister, addr: 49, regs: []uint16{0}}},

		// FC23 read/write multiple registers
		{name: "fc23 write then read", unit: 1, pdu: cat([]byte{fc23}, be(0, 3, 1, 1), []byte{2}, be(0xAAAA)),
			want:  []byte{fc23, 6, 0x12, 0x34, 0xAA, 0xAA, 0x9A, 0xBC},
			after: &bankCheck{unit: 1, table: adapters.HoldingRegister, addr: 1, regs: []uint16{0xAAAA}}},
		{name: "fc23 read count 126", unit: 1, pdu: cat([]byte{fc23}, be(0, 126, 1, 1), []byte{2}, be(1)), want: ex(fc23, illegalValue)},
		{name: "fc23 write count 122", unit: 1, pdu: cat([]byte{fc23}, be(0, 1, 0, 122), []byte{244}, make([]byte, 244)), want: ex(fc23, illegalValue)},
		{name: "fc23 byte count mismatch", unit: 1, pdu: cat([]byte{fc23}, be(0, 1, 1, 1), []byte{4}, be(1)), want: ex(fc23, illegalValue)},
		{name: "fc23 read past end", unit: 2, pdu: cat([]byte{fc23}, be(99, 2, 0, 1), []byte{2}, be(1)), want: ex(fc23, illegalAddress),
			after: &bankCheck{unit: 2, table: adapters.HoldingRegister, addr: 0, regs: []uint16{0}}},
		{name: "fc23 write past end", unit: 2, pdu: cat([]byte{fc23}, be(0, 1, 100, 1), []byte{2}, be(1)), want: ex(fc23, illegalAddress)},
		{name: "fc23 short", unit: 1, pdu: cat([]byte{fc23}, be(0, 1, 1, 1)), want: ex(fc23, illegalValue)},

		// Function codes
		{name: "unknown function 0x2B", unit: 1, pdu: []byte{0x2B, 0x0E, 1, 0}, want: ex(0x2B, illegalFunction)},
		{name: "unknown function 0x08", unit: 1, pdu: []byte{0x08, 0, 0, 0x12, 0x34}, want: ex(0x08, illegalFunction)},
		{name: "function code with error bit", unit: 1, pdu: []byte{0x83, 0, 0, 0, 1}, want: ex(0x83, illegalFunction)},
		{name: "function code zero", unit: 1, pdu: []byte{0}, want: ex(0, illegalFunction)},
		{name: "empty pdu", unit: 1, pdu: nil, want: nil},

		// Units
		{name: "unknown unit silent", unit: 9, pdu: readHolding(0, 1), want: nil},
		{name: "unknown unit exception", cfg: Config{UnknownUnit: UnknownUnitException}, unit: 9, pdu: readHolding(0, 1),
			want: ex(fc3, adapters.ExGatewayNoResponse)},
		{name: "removed unit", setup: func(s *Server) { s.RemoveUnit(1) }, unit: 1, pdu: readHolding(0, 1), want: nil},
		{name: "shared bank", setup: func(s *Server) { s.SetUnit(3, s.Unit(1)) }, unit: 3, pdu: readHolding(0, 1), want: []byte{fc3, 2, 0x12, 0x34}},

		// Faults
		{name: "silent unit", setup: func(s *Server) { s.SetFaults(1, Faults{Silent: true}) }, unit: 1,
			pdu: cat([]byte{fc6}, be(0, 1)), want: nil,
			after: &bankCheck{unit: 1, table: adapters.HoldingRegister, addr: 0, regs: []uint16{0x1234}}},
		{name: "always busy", setup: func(s *Server) { s.SetFaults(1, Faults{Exception: busy}) }, unit: 1,
			pdu: cat([]byte{fc6}, be(0, 1)), want: ex(fc6, busy),
			after: &bankCheck{unit: 1, table: adapters.HoldingRegister, addr: 0, regs: []uint16{0x1234}}},
		{name: "always busy unknown function", setup: func(s *Server) { s.SetFaults(1, Faults{Exception: busy}) }, unit: 1,
			pdu: []byte{0x2B}, want: ex(0x2B, busy)},
		{name: "faults cleared", setup: func(s *Server) { s.SetFaults(1, Faults{Silent: true}); s.ClearFaults(1) }, unit: 1,
			pdu: readHolding(0, 1), want: []byte{fc3, 2, 0x12, 0x34}},
		{name: "range exceptions cleared", setup: func(s *Server) { s.Unit(1).ClearExceptions() }, unit: 1,
			pdu: readHolding(50, 1), want: []byte{fc3, 2, 0, 0}},
		{name: "first range wins", setup: func(s *Server) {
			s.Unit(1).SetException(adapters.HoldingRegister, 55, 1, busy) // 50..59 unreadable was set first
		}, unit: 1, pdu: readHolding(55, 1), want: ex(fc3, illegalAddress)},
		{name: "range exception is per table", unit: 1, pdu: cat([]byte{fc4}, be(50, 1)), want: []byte{fc4, 2, 0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := pduTestServer(t, tt.cfg)
			if tt.setup != nil {
				tt.setup(s)
			}
			got := s.handlePDU(tt.unit, bytes.Clone(tt.pdu))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("handlePDU(%d, % x) mismatch (-want +got):\n%s", tt.unit, tt.pdu, diff)
			}
			if got != nil {
				checkResponse(t, tt.pdu, got)
			}
			if c := tt.after; c != nil {
				b := s.Unit(c.unit)
				if c.bits != nil {
					bits, err := b.Bits(c.table, c.addr, len(c.bits))
					must(t, err)
					if diff := cmp.Diff(c.bits, bits); diff != "" {
						t.Errorf("after handlePDU(% x): %s at %d (-want +got):\n%s", tt.pdu, c.table, c.addr, diff)
					}
				} else {
					regs, err := b.Registers(c.table, c.addr, len(c.regs))
					must(t, err)
					if diff := cmp.Diff(c.regs, regs); diff != "" {
						t.Errorf("after handlePDU(% x): %s at %d (-want +got):\n%s", tt.pdu, c.table, c.addr, diff)
					}
				}
			}
		})
	}
}

func TestHandlePDUCountsRequests(t *testing.T) {
	s := pduTestServer(t, Config{})
	s.SetFaults(4, Faults{Silent: true})
	requests := []struct {
		unit byte
		pdu  []byte
	}{
		{1, readHolding(0, 1)},
		{1, readHolding(0, 200)}, // an exception still counts
		{1, cat([]byte{FuncWriteSingleRegister}, be(0, 1))},
		{2, readHolding(0, 1)},
		{9, readHolding(0, 1)}, // unknown unit
		{4, readHolding(0, 1)}, // silent unit
		{1, nil},               // not a request: not counted
	}
	for _, r := range requests {
		s.handlePDU(r.unit, r.pdu)
	}
	tests := []struct {
		unit, fc byte
		want     uint64
	}{
		{1, FuncReadHoldingRegisters, 2},
		{1, FuncWriteSingleRegister, 1},
		{1, FuncReadCoils, 0},
		{2, FuncReadHoldingRegisters, 1},
		{9, FuncReadHoldingRegisters, 1},
		{4, FuncReadHoldingRegisters, 1},
		{5, FuncReadHoldingRegisters, 0},
	}
	for _, tt := range tests {
		if got := s.Requests(tt.unit, tt.fc); got != tt.want {
			t.Errorf("Requests(%d, %d) = %d, want %d", tt.unit, tt.fc, got, tt.want)
		}
	}
	if got := s.UnitRequests(1); got != 3 {
		t.Errorf("UnitRequests(1) = %d, want 3", got)
	}
	s.ResetRequests()
	if got := s.UnitRequests(1); got != 0 {
		t.Errorf("UnitRequests(1) after ResetRequests = %d, want 0", got)
	}
}

// checkResponse fails unless resp is a valid response PDU to req: the
// request's function code followed by well-formed data, or the function code
// with bit 0x80 set and one known exception code.
func checkResponse(t testing.TB, req, resp []byte) {
	t.Helper()
	if len(req) == 0 {
		t.Fatalf("response % x to an empty request", resp)
	}
	fc := req[0]
	if len(resp) == 0 {
		t.Fatalf("empty response to % x", req)
	}
	if resp[0] == fc|0x80 {
		if len(resp) != 2 {
			t.Fatalf("exception response % x to % x: want 2 bytes", resp, req)
		}
		switch resp[1] {
		case adapters.ExIllegalFunction, adapters.ExIllegalAddress, adapters.ExIllegalValue,
			adapters.ExDeviceFailure, adapters.ExAcknowledge, adapters.ExDeviceBusy,
			adapters.ExGatewayPath, adapters.ExGatewayNoResponse:
		default:
			t.Fatalf("exception response % x to % x: unknown exception code", resp, req)
		}
		return
	}
	if resp[0] != fc {
		t.Fatalf("response % x to % x: function code not echoed", resp, req)
	}
	switch fc {
	case FuncReadCoils, FuncReadDiscreteInputs, FuncReadHoldingRegisters, FuncReadInputRegisters, FuncReadWriteMultipleRegisters:
		if len(resp) < 3 || int(resp[1]) != len(resp)-2 {
			t.Fatalf("response % x to % x: byte count does not match", resp, req)
		}
	case FuncWriteSingleCoil, FuncWriteSingleRegister:
		if !bytes.Equal(resp, req) {
			t.Fatalf("response % x to % x: not an echo", resp, req)
		}
	case FuncWriteMultipleCoils, FuncWriteMultipleRegisters:
		if len(resp) != 5 || !bytes.Equal(resp, req[:5]) {
			t.Fatalf("response % x to % x: want function, address and count", resp, req)
		}
	default:
		t.Fatalf("normal response % x to unsupported function in % x", resp, req)
	}
}
