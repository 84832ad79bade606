package simulator

import (
	"fmt"
	"sync"

	"fieldbridge/adapters"
)

// DefaultTableSize is the number of entries of a table when BankConfig leaves
// its size at zero: the whole 16-bit address space.
const DefaultTableSize = 1 << 16

// BankConfig sets the size of each table of a Bank: the table holds the
// addresses 0 to size-1, and requests beyond them are answered with an illegal
// data address exception. Zero selects DefaultTableSize; a negative size
// leaves the table out (every access is an illegal data address); sizes above
// DefaultTableSize are cut to it.
type BankConfig struct {
	Coils            int
	DiscreteInputs   int
	InputRegisters   int
	HoldingRegisters int
}

// Storage is allocated in pages on first write, so a full-size bank of which
// only a few registers are used costs a few kilobytes, not 256.
const (
	pageShift = 8
	pageSize  = 1 << pageShift
	pageMask  = pageSize - 1
)

type page [pageSize]uint16

// table holds one Modbus table. Bits are stored as 0 or 1.
type table struct {
	size  int
	pages []*page
}

func newTable(size int) table {
	switch {
	case size == 0:
		size = DefaultTableSize
	case size < 0:
		size = 0
	case size > DefaultTableSize:
		size = DefaultTableSize
	}
	return table{size: size, pages: make([]*page, (size+pageSize-1)/pageSize)}
}

func (t *table) get(addr int) uint16 {
	p := t.pages[addr>>pageShift]
	if p == nil {
		return 0
	}
	return p[addr&pageMask]
}

func (t *table) set(addr int, v uint16) {
	p := t.pages[addr>>pageShift]
	if p == nil {
		if v == 0 {
			return
		}
		p = new(page)
		t.pages[addr>>pageShift] = p
	}
	p[addr&pageMask] = v
}

// contains reports whether [addr, addr+n) lies inside the table.
func (t *table) contains(addr, n int) bool {
	return addr >= 0 && n >= 0 && addr+n <= t.size
}

// rule is a forced exception for requests touching [start, end) of a table.
type rule struct {
	table      adapters.Table
	start, end int
	code       byte
}

// Bank is the data of one unit id: the four Modbus tables and the ranges
// that answer with an exception. The zero value is not usable; use NewBank
// or Server.AddUnit.
//
// A Bank is safe for concurrent use: value generators write it while the
// server reads it, and every Modbus request is executed atomically with
// respect to the accessors (a read never sees half of a SetRegisters call).
type Bank struct {
	mu     sync.RWMutex
	tables [adapters.HoldingRegister + 1]table // indexed by adapters.Table
	rules  []rule
	writes []Write // the latest executed write requests, oldest first
}

// Write is one write request the bank executed, as it came off the wire.
type Write struct {
	Function  byte // FC5, FC6, FC15, FC16 or FC23
	Table     adapters.Table
	Address   uint16
	Registers []uint16 // holding-register writes
	Bits      []bool   // coil writes
}

// maxWrites bounds the write log; older writes are forgotten.
const maxWrites = 4096

// Writes returns a copy of the write requests the bank executed (the most
// recent 4096), oldest first. Refused requests (exceptions) are not in it.
func (b *Bank) Writes() []Write {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return append([]Write(nil), b.writes...)
}

// ClearWrites forgets the write log.
func (b *Bank) ClearWrites() {
	b.mu.Lock()
	b.writes = nil
	b.mu.Unlock()
}

// logWrite records an executed write. The caller holds b.mu for writing.
func (b *Bank) logWrite(w Write) {
	if len(b.writes) == maxWrites {
		b.writes = append(b.writes[:0], b.writes[1:]...)
	}
	b.writes = append(b.writes, w)
}

// NewBank returns a bank with the table sizes of cfg, all values zero.
func NewBank(cfg BankConfig) *Bank {
	b := &Bank{}
	b.tables[adapters.Coil] = newTable(cfg.Coils)
	b.tables[adapters.DiscreteInput] = newTable(cfg.DiscreteInputs)
	b.tables[adapters.InputRegister] = newTable(cfg.InputRegisters)
	b.tables[adapters.HoldingRegister] = newTable(cfg.HoldingRegisters)
	return b
}

// Size returns the number of entries of table t (0 for a table left out or
// an invalid t).
func (b *Bank) Size(t adapters.Table) int {
	if t < adapters.Coil || t > adapters.HoldingRegister {
		return 0
	}
	return b.tables[t].size // sizes never change after NewBank
}

// check validates the table kind and the range of an accessor call.
func (b *Bank) check(t adapters.Table, bits bool, addr uint16, n int) error {
	if t < adapters.Coil || t > adapters.HoldingRegister || t.IsBit() != bits {
		return fmt.Errorf("%s: %w", t, ErrWrongTable)
	}
	if !b.tables[t].contains(int(addr), n) {
		return fmt.Errorf("%s %d+%d (size %d): %w", t, addr, n, b.tables[t].size, ErrOutOfRange)
	}
	return nil
}

// SetRegisters stores v at addr, addr+1, ... of an input or holding register
// table.
func (b *Bank) SetRegisters(t adapters.Table, addr uint16, v []uint16) error {
	if err := b.check(t, false, addr, len(v)); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	tb := &b.tables[t]
	for i, x := range v {
		tb.set(int(addr)+i, x)
	}
	return nil
}

// Registers returns n registers of an input or holding register table,
// starting at addr. Range exceptions do not apply: they only shape what the
// Modbus side sees.
func (b *Bank) Registers(t adapters.Table, addr uint16, n int) ([]uint16, error) {
	if err := b.check(t, false, addr, n); err != nil {
		return nil, err
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	tb := &b.tables[t]
	out := make([]uint16, n)
	for i := range out {
		out[i] = tb.get(int(addr) + i)
	}
	return out, nil
}

// SetBits stores v at addr, addr+1, ... of a coil or discrete input table.
func (b *Bank) SetBits(t adapters.Table, addr uint16, v []bool) error {
	if err := b.check(t, true, addr, len(v)); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	tb := &b.tables[t]
	for i, x := range v {
		tb.set(int(addr)+i, boolWord(x))
	}
	return nil
}

// Bits returns n bits of a coil or discrete input table, starting at addr.
func (b *Bank) Bits(t adapters.Table, addr uint16, n int) ([]bool, error) {
	if err := b.check(t, true, addr, n); err != nil {
		return nil, err
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	tb := &b.tables[t]
	out := make([]bool, n)
	for i := range out {
		out[i] = tb.get(int(addr)+i) != 0
	}
	return out, nil
}

// SetException makes every Modbus request (read or write) that touches
// [addr, addr+n) of table t answer with the exception code instead of being
// executed. When several ranges match a request, the one set first wins.
// A zero code or n < 1 is ignored; ClearExceptions removes all ranges.
func (b *Bank) SetException(t adapters.Table, addr uint16, n int, code byte) {
	if code == 0 || n < 1 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.rules = append(b.rules, rule{table: t, start: int(addr), end: int(addr) + n, code: code})
}

// MarkUnreadable imitates a hole in a device's register map: requests that
// touch [addr, addr+n) of table t answer with an illegal data address
// exception, as many real devices do for unmapped addresses.
func (b *Bank) MarkUnreadable(t adapters.Table, addr uint16, n int) {
	b.SetException(t, addr, n, adapters.ExIllegalAddress)
}

// ClearExceptions removes every range set by SetException and MarkUnreadable.
func (b *Bank) ClearExceptions() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.rules = nil
}

// ruleFor returns the exception code for a request touching [start, end) of
// t, or 0. The caller holds b.mu.
func (b *Bank) ruleFor(t adapters.Table, start, end int) byte {
	for _, r := range b.rules {
		if r.table == t && start < r.end && r.start < end {
			return r.code
		}
	}
	return 0
}

func boolWord(x bool) uint16 {
	if x {
		return 1
	}
	return 0
}
