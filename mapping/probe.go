package mapping

import (
	"math"
	"strings"
)

// Interpretation is one way to read registers that start at an offset of a
// probed range: a width (1, 2 or 4 registers) in one byte order, with the
// value as signed, unsigned and floating point (floats for 2 and 4 registers).
type Interpretation struct {
	Offset    int // registers from the start of the probed range
	Registers int // 1, 2 or 4
	Order     ByteOrder
	Raw       uint64 // the registers combined in Order
	Int       int64
	Uint      uint64
	Float     float64 // NaN when Registers == 1
	Plausible bool    // the float looks like a measurement
}

// Interpret lists every interpretation of regs: each register as 16 bits in
// both byte orders, each pair in the four 32-bit orders, each quadruple in
// the four 64-bit orders. It is what `bridge probe` prints, so that a user
// can find a device's byte order and address base by eye.
func Interpret(regs []uint16) []Interpretation {
	var out []Interpretation
	for off := range regs {
		for _, w := range []struct {
			n     int
			typ   DataType
			float DataType
		}{{1, TypeInt16, 0}, {2, TypeInt32, TypeFloat32}, {4, TypeInt64, TypeFloat64}} {
			if off+w.n > len(regs) {
				continue
			}
			orders := []ByteOrder{OrderABCD, OrderCDAB, OrderBADC, OrderDCBA}
			if w.n == 1 {
				orders = []ByteOrder{OrderABCD, OrderBADC}
			}
			for _, o := range orders {
				out = append(out, interpret(regs[off:off+w.n], off, w.n, o, w.typ, w.float))
			}
		}
	}
	return out
}

func interpret(regs []uint16, off, n int, o ByteOrder, signed, float DataType) Interpretation {
	in := Interpretation{Offset: off, Registers: n, Order: o, Raw: gather(o, regs), Float: math.NaN()}
	unsigned := map[DataType]DataType{TypeInt16: TypeUint16, TypeInt32: TypeUint32, TypeInt64: TypeUint64}[signed]
	if v, err := Decode(signed, o, regs); err == nil {
		in.Int = v.I
	}
	if v, err := Decode(unsigned, o, regs); err == nil {
		in.Uint = v.U
	}
	if float != 0 {
		if v, err := Decode(float, o, regs); err == nil {
			in.Float = v.F
			in.Plausible = plausible(v.F)
		}
	}
	return in
}

// plausible: finite, zero or of a size field devices report (1e-3 to 1e7),
// which random bit patterns rarely are.
func plausible(f float64) bool {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return false
	}
	a := math.Abs(f)
	return a == 0 || (a >= 1e-3 && a <= 1e7)
}

// ASCII renders registers as text, two characters each (high byte first),
// with a dot for bytes that are not printable.
func ASCII(regs []uint16) string {
	var b strings.Builder
	for _, r := range regs {
		for _, c := range []byte{byte(r >> 8), byte(r)} {
			if c >= 0x20 && c < 0x7f {
				b.WriteByte(c)
			} else {
				b.WriteByte('.')
			}
		}
	}
	return b.String()
}
