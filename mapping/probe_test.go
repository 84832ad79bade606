package mapping

import (
	"testing"
)

func TestInterpretFindsTheOrder(t *testing.T) {
	// 230.5 as float32 CDAB, then "AB" as text.
	regs := []uint16{0x8000, 0x4366, 0x4142}
	var found []string
	for _, in := range Interpret(regs) {
		if in.Registers == 2 && in.Plausible && in.Float == 230.5 {
			found = append(found, in.Order.Name(TypeFloat32))
		}
		if in.Offset == 2 && in.Registers == 1 && in.Order == OrderABCD && in.Uint != 0x4142 {
			t.Errorf("uint16 at offset 2 = %#x", in.Uint)
		}
	}
	if len(found) != 1 || found[0] != "CDAB" {
		t.Errorf("plausible 230.5 found as %v, want only CDAB", found)
	}
	if got := ASCII(regs); got != "..CfAB" {
		t.Errorf("ASCII = %q", got)
	}
}

func TestInterpretCounts(t *testing.T) {
	// 4 registers: 4 offsets x 2 orders (16-bit) + 3 x 4 (32-bit) + 1 x 4 (64-bit).
	if n := len(Interpret(make([]uint16, 4))); n != 8+12+4 {
		t.Errorf("%d interpretations, want 24", n)
	}
}
