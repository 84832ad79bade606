package modbus

import (
	"encoding/binary"
	"fmt"

	"fieldbridge/adapters"
)

// unpackRegisters turns a register payload (big-endian words) into values.
func unpackRegisters(raw []byte, count int) ([]uint16, error) {
	if len(raw) != 2*count {
		return nil, fmt.Errorf("%w: %d bytes for %d registers", adapters.ErrBadFrame, len(raw), count)
	}
	regs := make([]uint16, count)
	for i := range regs {
		regs[i] = binary.BigEndian.Uint16(raw[2*i:])
	}
	return regs, nil
}

// unpackBits turns a coil/discrete payload (LSB first per byte) into bools.
func unpackBits(raw []byte, count int) ([]bool, error) {
	if len(raw) != (count+7)/8 {
		return nil, fmt.Errorf("%w: %d bytes for %d bits", adapters.ErrBadFrame, len(raw), count)
	}
	bits := make([]bool, count)
	for i := range bits {
		bits[i] = raw[i/8]&(1<<(i%8)) != 0
	}
	return bits, nil
}

func packRegisters(regs []uint16) []byte {
	raw := make([]byte, 2*len(regs))
	for i, v := range regs {
		binary.BigEndian.PutUint16(raw[2*i:], v)
	}
	return raw
}

func packBits(bits []bool) []byte {
	raw := make([]byte, (len(bits)+7)/8)
	for i, on := range bits {
		if on {
			raw[i/8] |= 1 << (i % 8)
		}
	}
	return raw
}
