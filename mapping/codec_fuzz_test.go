package mapping

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// The round-trip properties of the codec (design.md §9, issue 3 item 1):
//
//   - registers → value → registers: for every type and order, a register
//     pattern that decodes without error encodes back to the same registers.
//     bool and string are normalising decodes (any non-zero register is
//     true; trailing NULs and spaces go; invalid UTF-8 is replaced), so for
//     them the re-encoded registers are the canonical pattern of the value.
//   - value → registers → value: a value the type represents exactly
//     decodes back to itself, bit for bit for floats (NaN payloads, -0).
//     Other values of the type's kind are refused with ErrOutOfRange, except
//     that float32 rounds an in-range float64.
//
// The fuzz seeds run as ordinary tests; go test -fuzz explores further.

const maxFuzzRegisters = 125 // one read request

// fuzzType and fuzzOrder map any fuzz input to a valid type and order;
// the seeds pass uint8(typ-1) and uint8(order).
func fuzzType(b uint8) DataType   { return DataType(b%uint8(TypeBCD32)) + 1 }
func fuzzOrder(b uint8) ByteOrder { return ByteOrder(b % 4) }

func bytesToRegs(b []byte) []uint16 {
	regs := make([]uint16, len(b)/2)
	for i := range regs {
		regs[i] = uint16(b[2*i])<<8 | uint16(b[2*i+1])
	}
	return regs
}

func regsToBytes(regs []uint16) []byte {
	b := make([]byte, 0, 2*len(regs))
	for _, r := range regs {
		b = append(b, byte(r>>8), byte(r))
	}
	return b
}

func FuzzRoundTripRegisters(f *testing.F) {
	for _, c := range codecCases {
		f.Add(uint8(c.typ-1), uint8(c.order), regsToBytes(c.regs))
	}
	f.Add(uint8(TypeBCD16-1), uint8(OrderABCD), []byte{0x12, 0xA4})               // invalid BCD
	f.Add(uint8(TypeFloat32-1), uint8(OrderDCBA), []byte{0x01, 0x00, 0xA0, 0xFF}) // NaN with payload
	f.Add(uint8(TypeFloat64-1), uint8(OrderCDAB), []byte{0, 1, 0, 0, 0, 0, 0xF0, 0x7F})
	f.Add(uint8(TypeString-1), uint8(OrderBADC), []byte("\xffA B\x00\x00 "))
	f.Fuzz(func(t *testing.T, typ, order uint8, data []byte) {
		regs := bytesToRegs(data)
		if len(regs) > maxFuzzRegisters {
			regs = regs[:maxFuzzRegisters]
		}
		ty := fuzzType(typ)
		if n := ty.Registers(); n > 0 {
			if len(regs) < n {
				return
			}
			regs = regs[:n]
		} else if len(regs) == 0 {
			return
		}
		checkRegisterRoundTrip(t, ty, fuzzOrder(order), regs)
	})
}

func FuzzRoundTripValues(f *testing.F) {
	for _, c := range codecCases {
		n := uint8(len(c.regs))
		f.Add(uint8(c.typ-1), uint8(c.order), c.want.B, c.want.I, c.want.U, math.Float64bits(c.want.F), c.want.S, n)
	}
	seeds := []struct {
		typ DataType
		i   int64
		u   uint64
		f   float64
		s   string
	}{
		{TypeInt16, math.MaxInt16 + 1, 0, 0, ""},
		{TypeInt16, math.MinInt16 - 1, 0, 0, ""},
		{TypeInt32, math.MinInt32, 0, 0, ""},
		{TypeUint16, 0, math.MaxUint16 + 1, 0, ""},
		{TypeUint32, 0, math.MaxUint32 + 1, 0, ""},
		{TypeBCD16, 0, 10000, 0, ""},
		{TypeBCD32, 0, 99999999, 0, ""},
		{TypeBCD32, 0, 100000000, 0, ""},
		{TypeFloat32, 0, 0, 0.1, ""},
		{TypeFloat32, 0, 0, math.MaxFloat32, ""},
		{TypeFloat32, 0, 0, 3.4028235677973366e38, ""}, // rounds to MaxFloat32
		{TypeFloat32, 0, 0, 3.4028235677973367e38, ""}, // rounds to +Inf
		{TypeFloat32, 0, 0, math.Inf(-1), ""},
		{TypeFloat32, 0, 0, math.Float64frombits(0x7FF0000020000000), ""}, // float32 sNaN
		{TypeFloat32, 0, 0, math.Float64frombits(0x7FF0000000000001), ""}, // payload below float32
		{TypeFloat32, 0, 0, 1e-46, ""},                                    // underflows to 0
		{TypeFloat64, 0, 0, math.Float64frombits(0xFFF0000000000001), ""},
		{TypeString, 0, 0, 0, "AB12"},
		{TypeString, 0, 0, 0, "AB12 "},
		{TypeString, 0, 0, 0, "AB\x00"},
		{TypeString, 0, 0, 0, "\xffAB"},
		{TypeString, 0, 0, 0, "°C"},
		{TypeString, 0, 0, 0, strings.Repeat("x", 40)},
	}
	for _, s := range seeds {
		f.Add(uint8(s.typ-1), uint8(OrderCDAB), false, s.i, s.u, math.Float64bits(s.f), s.s, uint8(4))
	}
	f.Fuzz(func(t *testing.T, typ, order uint8, b bool, i int64, u uint64, fbits uint64, s string, n uint8) {
		ty := fuzzType(typ)
		var v Value
		switch ty.Kind() {
		case KindBool:
			v = vBool(b)
		case KindInt:
			v = vInt(i)
		case KindUint:
			v = vUint(u)
		case KindFloat:
			v = vFloat(math.Float64frombits(fbits))
		case KindString:
			if len(s) > 2*maxFuzzRegisters+2 {
				return
			}
			v = vStr(s)
		}
		regs := ty.Registers()
		if ty == TypeString {
			regs = 1 + int(n)%maxFuzzRegisters
		}
		checkValueRoundTrip(t, ty, fuzzOrder(order), v, regs)
	})
}

// TestCodecRoundTripRegisters runs the register property on every
// pattern of every one-register type in every order, and on random patterns
// of the wider types, so that it is checked on every go test, not only
// under -fuzz.
func TestCodecRoundTripRegisters(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for ty := TypeBool; ty <= TypeBCD32; ty++ {
		for o := OrderABCD; o <= OrderDCBA; o++ {
			switch n := ty.Registers(); n {
			case 1:
				for r := range 1 << 16 {
					checkRegisterRoundTrip(t, ty, o, []uint16{uint16(r)})
				}
			case 0: // string
				for range 2000 {
					regs := make([]uint16, 1+rng.IntN(8))
					for i := range regs {
						regs[i] = randomStringRegister(rng)
					}
					checkRegisterRoundTrip(t, ty, o, regs)
				}
			default:
				for range 20000 {
					regs := make([]uint16, n)
					for i := range regs {
						regs[i] = uint16(rng.Uint32())
					}
					if ty == TypeBCD32 && rng.IntN(2) == 0 {
						// Mostly-valid BCD, else nearly every pattern is an error.
						raw := toBCD(rng.Uint64N(100000000))
						scatter(o, raw, regs)
					}
					checkRegisterRoundTrip(t, ty, o, regs)
				}
			}
		}
	}
}

// randomStringRegister favours ASCII, NUL and space, with some raw bytes.
func randomStringRegister(rng *rand.Rand) uint16 {
	pick := func() uint16 {
		switch rng.IntN(6) {
		case 0:
			return 0
		case 1:
			return ' '
		case 2:
			return uint16(rng.IntN(256))
		default:
			return uint16('!' + rng.IntN(94))
		}
	}
	return pick()<<8 | pick()
}

// TestCodecRoundTripValues runs the value property on random values of
// every type and order, and on the edges of each range.
func TestCodecRoundTripValues(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	edgesI := []int64{0, 1, -1, math.MaxInt16, math.MaxInt16 + 1, math.MinInt16, math.MinInt16 - 1,
		math.MaxInt32, math.MaxInt32 + 1, math.MinInt32, math.MinInt32 - 1, math.MaxInt64, math.MinInt64}
	edgesU := []uint64{0, 1, 9999, 10000, math.MaxUint16, math.MaxUint16 + 1, 99999999, 100000000,
		math.MaxUint32, math.MaxUint32 + 1, math.MaxUint64}
	edgesF := []float64{0, math.Copysign(0, -1), 1, -1, 0.1, 230.5, math.MaxFloat32, -math.MaxFloat32,
		math.SmallestNonzeroFloat32, math.SmallestNonzeroFloat64, math.MaxFloat64, math.Inf(1), math.Inf(-1),
		math.NaN(), math.Float64frombits(0x7FF0000020000000), math.Float64frombits(0xFFF0000000000001), 1e39, 1e-50}
	for ty := TypeBool; ty <= TypeBCD32; ty++ {
		for o := OrderABCD; o <= OrderDCBA; o++ {
			var values []Value
			switch ty.Kind() {
			case KindBool:
				values = []Value{vBool(false), vBool(true)}
			case KindInt:
				for _, i := range edgesI {
					values = append(values, vInt(i))
				}
				for range 2000 {
					values = append(values, vInt(int64(rng.Uint64())>>rng.IntN(64)))
				}
			case KindUint:
				for _, u := range edgesU {
					values = append(values, vUint(u))
				}
				for range 2000 {
					values = append(values, vUint(rng.Uint64()>>rng.IntN(64)))
				}
			case KindFloat:
				for _, f := range edgesF {
					values = append(values, vFloat(f))
				}
				for range 2000 {
					values = append(values, vFloat(math.Float64frombits(rng.Uint64())))
					values = append(values, vFloat(float64(math.Float32frombits(rng.Uint32()))))
				}
			case KindString:
				values = []Value{vStr(""), vStr("AB12"), vStr("AB12 "), vStr("A\x00B"), vStr("\xff"), vStr("°C"), vStr("  x")}
			}
			for _, v := range values {
				n := ty.Registers()
				if ty == TypeString {
					n = 1 + rng.IntN(4)
				}
				checkValueRoundTrip(t, ty, o, v, n)
			}
		}
	}
}

func TestFromBCDMatchesDigits(t *testing.T) {
	naive := func(x uint64, digits int) (uint64, bool) {
		var v uint64
		for i := digits - 1; i >= 0; i-- {
			d := x >> (4 * i) & 0xF
			if d > 9 {
				return 0, false
			}
			v = v*10 + d
		}
		return v, true
	}
	check := func(x uint64) {
		got, gotOK := fromBCD(x)
		want, wantOK := naive(x, 8)
		if got != want || gotOK != wantOK {
			t.Fatalf("fromBCD(%#x) = %d, %v; want %d, %v", x, got, gotOK, want, wantOK)
		}
		if gotOK && toBCD(got) != x {
			t.Fatalf("toBCD(fromBCD(%#x)) = %#x", x, toBCD(got))
		}
	}
	for x := range uint64(1 << 16) {
		check(x)
		check(x << 16)
		check(x<<16 | 0x9999)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for range 100000 {
		check(uint64(rng.Uint32()))
	}
}

// checkRegisterRoundTrip checks registers → value → registers for regs,
// which have the length ty needs.
func checkRegisterRoundTrip(t testing.TB, ty DataType, o ByteOrder, regs []uint16) {
	t.Helper()
	v, err := Decode(ty, o, regs)
	if err != nil {
		if (ty == TypeBCD16 || ty == TypeBCD32) && errors.Is(err, ErrInvalidBCD) {
			return
		}
		t.Fatalf("Decode(%v, %v, %#04x) error: %v", ty, o, regs, err)
	}
	if v.Kind != ty.Kind() {
		t.Fatalf("Decode(%v, %v, %#04x) = %v of kind %v, want kind %v", ty, o, regs, v, v.Kind, ty.Kind())
	}
	got := make([]uint16, len(regs))
	err = Encode(ty, o, v, got)

	switch ty {
	case TypeBool:
		if v.B != (regs[0] != 0) {
			t.Fatalf("Decode(bool, %v, %#04x) = %v", o, regs, v)
		}
		want := []uint16{0}
		if v.B {
			want[0] = 1
			if o.SwapBytes() {
				want[0] = 0x0100
			}
		}
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("Encode(bool, %v, Decode(%#04x) = %v) = %#04x, %v; want %#04x", o, regs, v, got, err, want)
		}

	case TypeString:
		// The oracle: unpack, trim, and let []rune replace invalid bytes.
		raw := make([]byte, 0, 2*len(regs))
		for _, r := range regs {
			if o.SwapBytes() {
				raw = append(raw, byte(r), byte(r>>8))
			} else {
				raw = append(raw, byte(r>>8), byte(r))
			}
		}
		trimmed := strings.TrimRight(string(raw), "\x00 ")
		if want := string([]rune(trimmed)); v.S != want {
			t.Fatalf("Decode(string, %v, %#04x) = %q, want %q", o, regs, v.S, want)
		}
		if !utf8.ValidString(v.S) {
			t.Fatalf("Decode(string, %v, %#04x) = %q, not valid UTF-8", o, regs, v.S)
		}
		if !utf8.ValidString(trimmed) {
			// Replacement may have made it longer than the registers.
			if err != nil && !errors.Is(err, ErrOutOfRange) {
				t.Fatalf("Encode(string, %v, %v) error = %v, want ErrOutOfRange", o, v, err)
			}
			if err == nil {
				again, err := Decode(ty, o, got)
				if err != nil || again != v {
					t.Fatalf("Decode(Encode(string, %v, %v)) = %v, %v; want the same value", o, v, again, err)
				}
			}
			return
		}
		if err != nil {
			t.Fatalf("Encode(string, %v, Decode(%#04x) = %v) error: %v", o, regs, v, err)
		}
		canonical := make([]byte, 2*len(regs))
		copy(canonical, trimmed)
		want := make([]uint16, len(regs))
		for i := range want {
			hi, lo := canonical[2*i], canonical[2*i+1]
			if o.SwapBytes() {
				hi, lo = lo, hi
			}
			want[i] = uint16(hi)<<8 | uint16(lo)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("Encode(string, %v, Decode(%#04x) = %v) = %#04x, want %#04x", o, regs, v, got, want)
		}

	default:
		if err != nil || !slices.Equal(got, regs) {
			t.Fatalf("Encode(%v, %v, Decode(%#04x) = %v) = %#04x, %v; want the same registers", ty, o, regs, v, got, err)
		}
	}
}

// checkValueRoundTrip checks value → registers → value for v, a value of
// ty's kind, in n registers.
func checkValueRoundTrip(t testing.TB, ty DataType, o ByteOrder, v Value, n int) {
	t.Helper()
	want, exact, fits := expectedRoundTrip(ty, v, n)
	regs := make([]uint16, n)
	err := Encode(ty, o, v, regs)
	if !fits {
		if !errors.Is(err, ErrOutOfRange) {
			t.Fatalf("Encode(%v, %v, %v, [%d]) error = %v, want ErrOutOfRange", ty, o, v, n, err)
		}
		return
	}
	if err != nil {
		t.Fatalf("Encode(%v, %v, %v, [%d]) error: %v", ty, o, v, n, err)
	}
	got, err := Decode(ty, o, regs)
	if err != nil {
		t.Fatalf("Decode(%v, %v, Encode(%v) = %#04x) error: %v", ty, o, v, regs, err)
	}
	if !sameValue(got, want) {
		t.Fatalf("Decode(%v, %v, Encode(%v) = %#04x) = %v (%#x), want %v (%#x), exact=%v",
			ty, o, v, regs, got, math.Float64bits(got.F), want, math.Float64bits(want.F), exact)
	}
	if exact && !sameValue(got, v) {
		t.Fatalf("Decode(Encode(%v, %v, %v)) = %v, want the same value", ty, o, v, got)
	}
}

// expectedRoundTrip is the oracle for checkValueRoundTrip, written without
// the codec's helpers: whether Encode must accept v (fits), what Decode
// must then return, and whether that is v itself (exact).
func expectedRoundTrip(ty DataType, v Value, n int) (want Value, exact, fits bool) {
	inRange := func(lo, hi int64) (Value, bool, bool) { return v, true, v.I >= lo && v.I <= hi }
	switch ty {
	case TypeBool, TypeInt64, TypeUint64, TypeFloat64:
		return v, true, true
	case TypeInt16:
		return inRange(math.MinInt16, math.MaxInt16)
	case TypeInt32:
		return inRange(math.MinInt32, math.MaxInt32)
	case TypeUint16:
		return v, true, v.U <= math.MaxUint16
	case TypeUint32:
		return v, true, v.U <= math.MaxUint32
	case TypeBCD16:
		return v, true, v.U <= 9999
	case TypeBCD32:
		return v, true, v.U <= 99999999
	case TypeFloat32:
		f := v.F
		if math.IsNaN(f) {
			// The top 23 payload bits survive; a payload that would vanish
			// becomes the quiet bit.
			b := math.Float64bits(f)
			m := b >> 29 & 0x7FFFFF
			if m == 0 {
				m = 0x400000
			}
			w := vFloat(math.Float64frombits(b&(1<<63) | 0x7FF<<52 | m<<29))
			return w, sameValue(w, v), true
		}
		r := float64(float32(f))
		if math.IsInf(r, 0) && !math.IsInf(f, 0) {
			return Value{}, false, false
		}
		return vFloat(r), r == f && math.Signbit(r) == math.Signbit(f), true
	case TypeString:
		if len(v.S) > 2*n {
			return Value{}, false, false
		}
		trimmed := strings.TrimRight(v.S, "\x00 ")
		w := vStr(string([]rune(trimmed)))
		return w, w == v, true
	}
	panic("unknown type " + ty.String())
}

// sameValue compares values with floats bit for bit.
func sameValue(a, b Value) bool {
	fa, fb := a.F, b.F
	a.F, b.F = 0, 0
	return a == b && math.Float64bits(fa) == math.Float64bits(fb)
}
