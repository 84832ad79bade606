package modbus

import (
	"errors"
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

// callWrite writes w: FC5 (one coil) and FC6 (one register), FC15 and FC16
// for several; with multiple set, FC15/FC16 also for a single value (for
// devices that implement only those).
func callWrite(c mb.Client, w adapters.WriteRequest, multiple bool) (err error) {
	if w.Text != nil || w.Mask != 0 {
		return fmt.Errorf("modbus cannot send text, and a masked write is done by the bus loop: %w", errors.ErrUnsupported)
	}
	single := w.Count() == 1 && !multiple
	switch {
	case w.Count() == 0:
		return errors.New("write of nothing")
	case w.Table == adapters.Coil && single:
		v := uint16(0)
		if w.Bits[0] {
			v = 0xFF00
		}
		_, err = c.WriteSingleCoil(w.Address, v)
	case w.Table == adapters.Coil:
		if len(w.Bits) > adapters.MaxWriteBits {
			return fmt.Errorf("write of %d coils, over the limit of %d per request", len(w.Bits), adapters.MaxWriteBits)
		}
		_, err = c.WriteMultipleCoils(w.Address, uint16(len(w.Bits)), packBits(w.Bits))
	case w.Table == adapters.HoldingRegister && single:
		_, err = c.WriteSingleRegister(w.Address, w.Registers[0])
	case w.Table == adapters.HoldingRegister:
		if len(w.Registers) > adapters.MaxWriteRegisters {
			return fmt.Errorf("write of %d registers, over the limit of %d per request", len(w.Registers), adapters.MaxWriteRegisters)
		}
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
