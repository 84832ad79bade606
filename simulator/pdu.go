package simulator

import (
	"encoding/binary"

	"fieldbridge/adapters"
)

// Function codes the simulator serves. Any other code is answered with an
// illegal function exception.
const (
	FuncReadCoils                  byte = 0x01
	FuncReadDiscreteInputs         byte = 0x02
	FuncReadHoldingRegisters       byte = 0x03
	FuncReadInputRegisters         byte = 0x04
	FuncWriteSingleCoil            byte = 0x05
	FuncWriteSingleRegister        byte = 0x06
	FuncWriteMultipleCoils         byte = 0x0F
	FuncWriteMultipleRegisters     byte = 0x10
	FuncReadWriteMultipleRegisters byte = 0x17
)

const (
	maxReadWriteWriteCount = 121 // FC23 write quantity limit (spec §6.17)
	coilOn                 = 0xFF00
	coilOff                = 0x0000
)

// MaxPDU is the largest Modbus PDU (function code and data), in bytes.
const MaxPDU = 253

// handlePDU executes one request PDU (function code and data, no framing)
// for unit and returns the response PDU, or nil when nothing must be sent:
// an empty PDU, a silent unit, or an unknown unit under UnknownUnitSilent.
// A non-nil response is always a valid PDU: the request's function code
// followed by data, or the function code with bit 0x80 set followed by one
// exception code. The result is newly allocated; pdu is not retained.
//
// It is shared by every framing (TCP here; RTU and ASCII reuse it) and is
// safe for concurrent use.
func (s *Server) handlePDU(unit byte, pdu []byte) []byte {
	if len(pdu) == 0 {
		return nil
	}
	fc := pdu[0]
	s.count(unit, fc)
	fs := s.faults[unit].Load()
	if fs != nil && fs.f.Silent {
		return nil
	}
	b := s.units[unit].Load()
	if b == nil {
		if s.cfg.UnknownUnit == UnknownUnitException {
			return exception(fc, adapters.ExGatewayNoResponse)
		}
		return nil
	}
	if fs != nil && fs.f.Exception != 0 {
		return exception(fc, fs.f.Exception)
	}
	return b.execute(pdu)
}

// execute runs one request PDU (len(pdu) >= 1) against the bank. Checks
// follow the order of the specification's state diagrams: function code,
// then quantity and length (illegal data value), then address (illegal data
// address), then the bank's exception ranges.
func (b *Bank) execute(pdu []byte) []byte {
	fc, data := pdu[0], pdu[1:]
	switch fc {
	case FuncReadCoils:
		return b.readBits(fc, adapters.Coil, data)
	case FuncReadDiscreteInputs:
		return b.readBits(fc, adapters.DiscreteInput, data)
	case FuncReadHoldingRegisters:
		return b.readRegisters(fc, adapters.HoldingRegister, data)
	case FuncReadInputRegisters:
		return b.readRegisters(fc, adapters.InputRegister, data)
	case FuncWriteSingleCoil:
		return b.writeSingle(pdu, adapters.Coil)
	case FuncWriteSingleRegister:
		return b.writeSingle(pdu, adapters.HoldingRegister)
	case FuncWriteMultipleCoils:
		return b.writeMultipleCoils(fc, data)
	case FuncWriteMultipleRegisters:
		return b.writeMultipleRegisters(fc, data)
	case FuncReadWriteMultipleRegisters:
		return b.readWriteRegisters(fc, data)
	default:
		return exception(fc, adapters.ExIllegalFunction)
	}
}

func (b *Bank) readBits(fc byte, t adapters.Table, data []byte) []byte {
	if len(data) != 4 {
		return exception(fc, adapters.ExIllegalValue)
	}
	addr, n := u16(data), u16(data[2:])
	if n < 1 || n > adapters.MaxReadBits {
		return exception(fc, adapters.ExIllegalValue)
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	if code := b.access(t, addr, n); code != 0 {
		return exception(fc, code)
	}
	tb := &b.tables[t]
	nb := (n + 7) / 8
	resp := make([]byte, 2+nb)
	resp[0], resp[1] = fc, byte(nb)
	for i := range n {
		if tb.get(addr+i) != 0 {
			resp[2+i/8] |= 1 << (i % 8)
		}
	}
	return resp
}

func (b *Bank) readRegisters(fc byte, t adapters.Table, data []byte) []byte {
	if len(data) != 4 {
		return exception(fc, adapters.ExIllegalValue)
	}
	addr, n := u16(data), u16(data[2:])
	if n < 1 || n > adapters.MaxReadRegisters {
		return exception(fc, adapters.ExIllegalValue)
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	if code := b.access(t, addr, n); code != 0 {
		return exception(fc, code)
	}
	return b.appendRegisters(append(make([]byte, 0, 2+2*n), fc, byte(2*n)), t, addr, n)
}

// writeSingle serves FC5 and FC6; the response echoes the request.
func (b *Bank) writeSingle(pdu []byte, t adapters.Table) []byte {
	fc, data := pdu[0], pdu[1:]
	if len(data) != 4 {
		return exception(fc, adapters.ExIllegalValue)
	}
	addr, v := u16(data), u16(data[2:])
	if t == adapters.Coil {
		switch v {
		case coilOn:
			v = 1
		case coilOff:
			v = 0
		default:
			return exception(fc, adapters.ExIllegalValue)
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if code := b.access(t, addr, 1); code != 0 {
		return exception(fc, code)
	}
	b.tables[t].set(addr, uint16(v))
	w := Write{Function: fc, Table: t, Address: uint16(addr)}
	if t == adapters.Coil {
		w.Bits = []bool{v == 1}
	} else {
		w.Registers = []uint16{uint16(v)}
	}
	b.logWrite(w)
	return append([]byte(nil), pdu...)
}

func (b *Bank) writeMultipleCoils(fc byte, data []byte) []byte {
	if len(data) < 5 {
		return exception(fc, adapters.ExIllegalValue)
	}
	addr, n, bc := u16(data), u16(data[2:]), int(data[4])
	if n < 1 || n > adapters.MaxWriteBits || bc != (n+7)/8 || len(data) != 5+bc {
		return exception(fc, adapters.ExIllegalValue)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if code := b.access(adapters.Coil, addr, n); code != 0 {
		return exception(fc, code)
	}
	tb := &b.tables[adapters.Coil]
	w := Write{Function: fc, Table: adapters.Coil, Address: uint16(addr), Bits: make([]bool, n)}
	for i := range n {
		bit := data[5+i/8] >> (i % 8) & 1
		tb.set(addr+i, uint16(bit))
		w.Bits[i] = bit == 1
	}
	b.logWrite(w)
	return []byte{fc, data[0], data[1], data[2], data[3]}
}

func (b *Bank) writeMultipleRegisters(fc byte, data []byte) []byte {
	if len(data) < 5 {
		return exception(fc, adapters.ExIllegalValue)
	}
	addr, n, bc := u16(data), u16(data[2:]), int(data[4])
	if n < 1 || n > adapters.MaxWriteRegisters || bc != 2*n || len(data) != 5+bc {
		return exception(fc, adapters.ExIllegalValue)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if code := b.access(adapters.HoldingRegister, addr, n); code != 0 {
		return exception(fc, code)
	}
	b.storeRegisters(adapters.HoldingRegister, addr, data[5:])
	b.logWrite(Write{Function: fc, Table: adapters.HoldingRegister, Address: uint16(addr), Registers: registersOf(data[5:])})
	return []byte{fc, data[0], data[1], data[2], data[3]}
}

// readWriteRegisters serves FC23: the write is executed before the read.
func (b *Bank) readWriteRegisters(fc byte, data []byte) []byte {
	if len(data) < 9 {
		return exception(fc, adapters.ExIllegalValue)
	}
	raddr, rn := u16(data), u16(data[2:])
	waddr, wn, bc := u16(data[4:]), u16(data[6:]), int(data[8])
	if rn < 1 || rn > adapters.MaxReadRegisters ||
		wn < 1 || wn > maxReadWriteWriteCount ||
		bc != 2*wn || len(data) != 9+bc {
		return exception(fc, adapters.ExIllegalValue)
	}
	const t = adapters.HoldingRegister
	b.mu.Lock()
	defer b.mu.Unlock()
	if code := b.access(t, waddr, wn); code != 0 {
		return exception(fc, code)
	}
	if code := b.access(t, raddr, rn); code != 0 {
		return exception(fc, code)
	}
	b.storeRegisters(t, waddr, data[9:])
	b.logWrite(Write{Function: fc, Table: t, Address: uint16(waddr), Registers: registersOf(data[9:])})
	return b.appendRegisters(append(make([]byte, 0, 2+2*rn), fc, byte(2*rn)), t, raddr, rn)
}

// access returns the exception code for touching [addr, addr+n) of t, or 0
// when the request may run. The caller holds b.mu.
func (b *Bank) access(t adapters.Table, addr, n int) byte {
	if !b.tables[t].contains(addr, n) {
		return adapters.ExIllegalAddress
	}
	return b.ruleFor(t, addr, addr+n)
}

// appendRegisters appends n big-endian registers from addr. The caller holds
// b.mu and has checked the range.
func (b *Bank) appendRegisters(dst []byte, t adapters.Table, addr, n int) []byte {
	tb := &b.tables[t]
	for i := range n {
		dst = binary.BigEndian.AppendUint16(dst, tb.get(addr+i))
	}
	return dst
}

// storeRegisters stores big-endian registers from src at addr. The caller
// holds b.mu for writing and has checked the range.
func (b *Bank) storeRegisters(t adapters.Table, addr int, src []byte) {
	tb := &b.tables[t]
	for i := 0; i+1 < len(src); i += 2 {
		tb.set(addr+i/2, binary.BigEndian.Uint16(src[i:]))
	}
}

func registersOf(src []byte) []uint16 {
	regs := make([]uint16, len(src)/2)
	for i := range regs {
		regs[i] = binary.BigEndian.Uint16(src[2*i:])
	}
	return regs
}

// exception builds an exception response PDU.
func exception(fc, code byte) []byte {
	return []byte{fc | 0x80, code}
}

func u16(b []byte) int { return int(binary.BigEndian.Uint16(b)) }
