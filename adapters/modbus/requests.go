package modbus

import (
	"fmt"

	mb "github.com/goburrow/modbus"

	"fieldbridge/adapters"
)

// The request code every framing shares: which goburrow call serves a
// range or a write, and how its payload becomes a Block.

// callRead reads r with FC1-FC4 and returns the payload.
func callRead(c mb.Client, r adapters.Range) ([]byte, error) {
	switch r.Table {
	case adapters.Coil:
		return c.ReadCoils(r.Address, r.Count)
	case adapters.DiscreteInput:
		return c.ReadDiscreteInputs(r.Address, r.Count)
	case adapters.InputRegister:
		return c.ReadInputRegisters(r.Address, r.Count)
	case adapters.HoldingRegister:
		return c.ReadHoldingRegisters(r.Address, r.Count)
	}
	return nil, fmt.Errorf("read of unknown table %d", r.Table)
}

// callWrite writes w with FC5/FC6 for one value and FC15/FC16 for several.
func callWrite(c mb.Client, w adapters.WriteRequest) (err error) {
	switch {
	case w.Table == adapters.Coil && len(w.Bits) == 1:
		v := uint16(0)
		if w.Bits[0] {
			v = 0xFF00
		}
		_, err = c.WriteSingleCoil(w.Address, v)
	case w.Table == adapters.Coil:
		_, err = c.WriteMultipleCoils(w.Address, uint16(len(w.Bits)), packBits(w.Bits))
	case w.Table == adapters.HoldingRegister && len(w.Registers) == 1:
		_, err = c.WriteSingleRegister(w.Address, w.Registers[0])
	case w.Table == adapters.HoldingRegister:
		_, err = c.WriteMultipleRegisters(w.Address, uint16(len(w.Registers)), packRegisters(w.Registers))
	default:
		return fmt.Errorf("the %s table cannot be written", w.Table)
	}
	return err
}

// blockOf turns the payload of a read of r into a Block. Its error wraps
// adapters.ErrBadFrame.
func blockOf(r adapters.Range, raw []byte) (adapters.Block, error) {
	b := adapters.Block{Range: r}
	var err error
	if r.Table.IsBit() {
		b.Bits, err = unpackBits(raw, int(r.Count))
	} else {
		b.Registers, err = unpackRegisters(raw, int(r.Count))
	}
	return b, err
}
