package adapters

import (
	"fmt"
	"time"
)

// Table is one of the four Modbus data tables. Other buses (serial-line
// instruments) report their fields as holding registers of a virtual device.
type Table uint8

// The four Modbus tables, in the order of the Modbus specification.
const (
	Coil Table = iota + 1
	DiscreteInput
	InputRegister
	HoldingRegister
)

// Protocol limits per request (Modbus application protocol v1.1b3, §6).
const (
	MaxReadBits       = 2000 // FC1, FC2
	MaxReadRegisters  = 125  // FC3, FC4
	MaxWriteBits      = 1968 // FC15
	MaxWriteRegisters = 123  // FC16
)

var tableNames = [...]string{Coil: "coil", DiscreteInput: "discrete", InputRegister: "input", HoldingRegister: "holding"}

// String returns the configuration name of the table: coil, discrete, input or holding.
func (t Table) String() string {
	if t >= Coil && t <= HoldingRegister {
		return tableNames[t]
	}
	return fmt.Sprintf("table(%d)", uint8(t))
}

// ParseTable turns a configuration name into a Table.
func ParseTable(s string) (Table, bool) {
	for t := Coil; t <= HoldingRegister; t++ {
		if tableNames[t] == s {
			return t, true
		}
	}
	return 0, false
}

// IsBit reports whether the table holds single bits (coils, discrete inputs).
func (t Table) IsBit() bool { return t == Coil || t == DiscreteInput }

// Writable reports whether the table can be written (coils, holding registers).
func (t Table) Writable() bool { return t == Coil || t == HoldingRegister }

// MaxRead is the largest count one read request may ask for in this table.
func (t Table) MaxRead() int {
	if t.IsBit() {
		return MaxReadBits
	}
	return MaxReadRegisters
}

// Range names a contiguous run of registers or bits on one unit.
type Range struct {
	Unit    uint8
	Table   Table
	Address uint16 // zero-based protocol address
	Count   uint16
}

// End returns the first address after the range.
func (r Range) End() int { return int(r.Address) + int(r.Count) }

func (r Range) String() string {
	return fmt.Sprintf("unit %d %s %d+%d", r.Unit, r.Table, r.Address, r.Count)
}

// Block is the result of reading one Range. Exactly one of Registers or Bits
// is set (by the range's table) when Err is nil. The slices belong to the
// Block; a Bus must not reuse them after returning.
type Block struct {
	Range     Range
	Registers []uint16
	Bits      []bool
	Err       error // why this range could not be read; nil on success
}

// Reading is one poll cycle of one device: every range of its read plan, in
// plan order, with the time the cycle started.
type Reading struct {
	Device string
	Time   time.Time
	Blocks []Block
}

// Err returns the first range error of the cycle, or nil when every range was read.
func (r Reading) Err() error {
	for _, b := range r.Blocks {
		if b.Err != nil {
			return b.Err
		}
	}
	return nil
}

// WriteRequest is one write of registers or coils on one unit. For a holding
// register write Registers is set; for a coil write Bits is set. The caller
// keeps ownership of the slices but must not change them until the write
// returned.
type WriteRequest struct {
	Device    string
	Unit      uint8
	Table     Table // Coil or HoldingRegister
	Address   uint16
	Registers []uint16
	Bits      []bool

	// Mask, when not zero, makes a one-register write a read-modify-write:
	// the loop reads the register and writes (old &^ Mask) | (Registers[0] &
	// Mask), both inside one job on the bus owner's goroutine, so that no
	// other write to the bus comes in between. It sets single bits of a
	// register without touching the others.
	Mask uint16

	// Text, when set, is a request sent as is to a text instrument on a
	// serial line; Table, Address, Registers and Bits are then unused.
	Text []byte
}

// Count returns the number of registers or bits to write.
func (w WriteRequest) Count() int {
	if w.Table.IsBit() {
		return len(w.Bits)
	}
	return len(w.Registers)
}

func (w WriteRequest) String() string {
	if w.Text != nil {
		return fmt.Sprintf("unit %d text %q", w.Unit, w.Text)
	}
	if w.Mask != 0 {
		return fmt.Sprintf("unit %d %s %d mask 0x%04X", w.Unit, w.Table, w.Address, w.Mask)
	}
	return fmt.Sprintf("unit %d %s %d+%d", w.Unit, w.Table, w.Address, w.Count())
}
