package simulator

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"fieldbridge/adapters"

	"github.com/google/go-cmp/cmp"
)

func TestNewBankSizes(t *testing.T) {
	b := NewBank(BankConfig{Coils: 10, DiscreteInputs: -1, InputRegisters: 1 << 20})
	tests := []struct {
		table adapters.Table
		want  int
	}{
		{adapters.Coil, 10},
		{adapters.DiscreteInput, 0},
		{adapters.InputRegister, DefaultTableSize},
		{adapters.HoldingRegister, DefaultTableSize},
		{adapters.Table(0), 0},
		{adapters.Table(9), 0},
	}
	for _, tt := range tests {
		if got := b.Size(tt.table); got != tt.want {
			t.Errorf("Size(%s) = %d, want %d", tt.table, got, tt.want)
		}
	}
}

func TestBankAccessorErrors(t *testing.T) {
	b := NewBank(BankConfig{HoldingRegisters: 10, Coils: 10, DiscreteInputs: -1})
	tests := []struct {
		name string
		call func() error
		want error
	}{
		{"registers in range", func() error { return b.SetRegisters(adapters.HoldingRegister, 8, []uint16{1, 2}) }, nil},
		{"registers past end", func() error { return b.SetRegisters(adapters.HoldingRegister, 9, []uint16{1, 2}) }, ErrOutOfRange},
		{"read registers past end", func() error { _, err := b.Registers(adapters.HoldingRegister, 10, 1); return err }, ErrOutOfRange},
		{"read registers negative count", func() error { _, err := b.Registers(adapters.HoldingRegister, 0, -1); return err }, ErrOutOfRange},
		{"registers on coils", func() error { return b.SetRegisters(adapters.Coil, 0, []uint16{1}) }, ErrWrongTable},
		{"read registers on discrete", func() error { _, err := b.Registers(adapters.DiscreteInput, 0, 1); return err }, ErrWrongTable},
		{"bits on holding", func() error { return b.SetBits(adapters.HoldingRegister, 0, []bool{true}) }, ErrWrongTable},
		{"read bits on input", func() error { _, err := b.Bits(adapters.InputRegister, 0, 1); return err }, ErrWrongTable},
		{"invalid table", func() error { _, err := b.Bits(adapters.Table(0), 0, 1); return err }, ErrWrongTable},
		{"bits in range", func() error { return b.SetBits(adapters.Coil, 0, make([]bool, 10)) }, nil},
		{"bits past end", func() error { return b.SetBits(adapters.Coil, 5, make([]bool, 6)) }, ErrOutOfRange},
		{"table left out", func() error { _, err := b.Bits(adapters.DiscreteInput, 0, 1); return err }, ErrOutOfRange},
		{"empty write at end", func() error { return b.SetRegisters(adapters.HoldingRegister, 10, nil) }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); !errors.Is(err, tt.want) {
				t.Errorf("got error %v, want %v", err, tt.want)
			}
		})
	}
}

func TestBankRoundTrip(t *testing.T) {
	b := NewBank(BankConfig{})
	regs := []uint16{1, 0, 0xFFFF, 42}
	// Across a page boundary and at the very end of the address space.
	for _, addr := range []uint16{0, pageSize - 2, 65532} {
		t.Run(fmt.Sprintf("addr=%d", addr), func(t *testing.T) {
			for _, tbl := range []adapters.Table{adapters.InputRegister, adapters.HoldingRegister} {
				must(t, b.SetRegisters(tbl, addr, regs))
				got, err := b.Registers(tbl, addr, len(regs))
				must(t, err)
				if diff := cmp.Diff(regs, got); diff != "" {
					t.Errorf("Registers(%s, %d) (-want +got):\n%s", tbl, addr, diff)
				}
			}
			bits := []bool{true, false, false, true}
			for _, tbl := range []adapters.Table{adapters.Coil, adapters.DiscreteInput} {
				must(t, b.SetBits(tbl, addr, bits))
				got, err := b.Bits(tbl, addr, len(bits))
				must(t, err)
				if diff := cmp.Diff(bits, got); diff != "" {
					t.Errorf("Bits(%s, %d) (-want +got):\n%s", tbl, addr, diff)
				}
			}
		})
	}
}

// A full-size bank allocates storage only for pages that were written.
func TestBankAllocatesOnWrite(t *testing.T) {
	b := NewBank(BankConfig{})
	must(t, b.SetRegisters(adapters.HoldingRegister, 1000, []uint16{0})) // zero: nothing to store
	must(t, b.SetRegisters(adapters.HoldingRegister, 300, []uint16{5}))
	allocated := 0
	for _, p := range b.tables[adapters.HoldingRegister].pages {
		if p != nil {
			allocated++
		}
	}
	if allocated != 1 {
		t.Errorf("allocated pages = %d, want 1", allocated)
	}
}

// Readers never see half of a SetRegisters call, neither through the
// accessors nor through Modbus requests.
func TestBankConcurrentAccess(t *testing.T) {
	s, err := New(Config{}, nil)
	must(t, err)
	b := s.AddUnit(1)
	const rounds = 2000
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range rounds {
			v := uint16(i)
			// Span a page boundary so that two pages are involved.
			if err := b.SetRegisters(adapters.HoldingRegister, pageSize-1, []uint16{v, v}); err != nil {
				errs <- err
				return
			}
		}
	}()
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rounds {
				got := s.handlePDU(1, readHolding(pageSize-1, 2))
				if len(got) != 6 || got[2] != got[4] || got[3] != got[5] {
					errs <- fmt.Errorf("torn read % x", got)
					return
				}
				regs, err := b.Registers(adapters.HoldingRegister, pageSize-1, 2)
				if err != nil || regs[0] != regs[1] {
					errs <- fmt.Errorf("torn read %v (%v)", regs, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
