package mapping

import (
	"strconv"
	"testing"
)

// benchRegisters holds a valid value for every type (valid BCD as well), so
// that no benchmark measures an error path.
var benchRegisters = []uint16{0x1234, 0x5678, 0x0123, 0x4567}

// benchOrders returns the orders that are distinct for ty.
func benchOrders(ty DataType) []ByteOrder {
	if ty.Registers() == 1 {
		return []ByteOrder{OrderABCD, OrderBADC}
	}
	return []ByteOrder{OrderABCD, OrderCDAB, OrderBADC, OrderDCBA}
}

var benchSink float64

// BenchmarkDecode measures decoding one numeric point and applying scale
// and offset, the per-point work of a poll (design.md §8: ≤ 50 ns, no
// allocation).
func BenchmarkDecode(b *testing.B) {
	for ty := TypeBool; ty <= TypeBCD32; ty++ {
		if ty == TypeString {
			continue
		}
		regs := benchRegisters[:ty.Registers()]
		for _, o := range benchOrders(ty) {
			b.Run("type="+ty.String()+"/order="+o.Name(ty), func(b *testing.B) {
				b.ReportAllocs()
				const scale, offset = 0.1, -40
				var sum float64
				for b.Loop() {
					v, err := Decode(ty, o, regs)
					if err != nil {
						b.Fatal(err)
					}
					f, _ := v.Float()
					sum += f*scale + offset
				}
				benchSink = sum
			})
		}
	}
}

// BenchmarkDecodeString measures a string point, which allocates its result.
func BenchmarkDecodeString(b *testing.B) {
	for _, n := range []int{4, 16, 64} {
		regs := make([]uint16, n)
		for i := range regs {
			regs[i] = 'A'<<8 | 'B'
		}
		regs[n-1] = 0 // one NUL register to trim
		b.Run("registers="+strconv.Itoa(n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(2 * n))
			var total int
			for b.Loop() {
				v, err := Decode(TypeString, OrderABCD, regs)
				if err != nil {
					b.Fatal(err)
				}
				total += len(v.S)
			}
			benchSink = float64(total)
		})
	}
}

// BenchmarkEncode measures encoding one value for a write.
func BenchmarkEncode(b *testing.B) {
	values := map[Kind]Value{KindBool: vBool(true), KindInt: vInt(-1234), KindUint: vUint(1234), KindFloat: vFloat(230.5)}
	for ty := TypeBool; ty <= TypeBCD32; ty++ {
		if ty == TypeString {
			continue
		}
		dst := make([]uint16, ty.Registers())
		v := values[ty.Kind()]
		for _, o := range benchOrders(ty) {
			b.Run("type="+ty.String()+"/order="+o.Name(ty), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if err := Encode(ty, o, v, dst); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
