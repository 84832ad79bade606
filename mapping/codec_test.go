package mapping

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// sameBits compares floats bit for bit, so that NaN payloads and the sign of
// zero count and NaN equals itself.
var sameBits = cmp.Comparer(func(a, b float64) bool { return math.Float64bits(a) == math.Float64bits(b) })

// codecCase is one value as device documentation shows it: the registers in
// the order they are read, and the value they mean. Unless decodeOnly is
// set, the registers are also what Encode writes for the value.
type codecCase struct {
	name  string
	typ   DataType
	order ByteOrder
	regs  []uint16
	want  Value
	// decodeOnly marks register patterns that decode to want but are not
	// the canonical encoding of it (trailing spaces, a bool register of
	// 0xFF00, bytes that are not UTF-8).
	decodeOnly bool
}

func vInt(i int64) Value     { return Value{Kind: KindInt, I: i} }
func vUint(u uint64) Value   { return Value{Kind: KindUint, U: u} }
func vFloat(f float64) Value { return Value{Kind: KindFloat, F: f} }
func vBool(b bool) Value     { return Value{Kind: KindBool, B: b} }
func vStr(s string) Value    { return Value{Kind: KindString, S: s} }

var codecCases = []codecCase{
	// A power meter's L1 voltage, float32 230.5 = 0x43668000, in the four
	// orders manufacturers document.
	{name: "float32 230.5 ABCD", typ: TypeFloat32, order: OrderABCD, regs: []uint16{0x4366, 0x8000}, want: vFloat(230.5)},
	{name: "float32 230.5 CDAB", typ: TypeFloat32, order: OrderCDAB, regs: []uint16{0x8000, 0x4366}, want: vFloat(230.5)},
	{name: "float32 230.5 BADC", typ: TypeFloat32, order: OrderBADC, regs: []uint16{0x6643, 0x0080}, want: vFloat(230.5)},
	{name: "float32 230.5 DCBA", typ: TypeFloat32, order: OrderDCBA, regs: []uint16{0x0080, 0x6643}, want: vFloat(230.5)},
	{name: "float32 -0.5 ABCD", typ: TypeFloat32, order: OrderABCD, regs: []uint16{0xBF00, 0x0000}, want: vFloat(-0.5)},
	{name: "float32 negative zero", typ: TypeFloat32, order: OrderABCD, regs: []uint16{0x8000, 0x0000}, want: vFloat(math.Copysign(0, -1))},
	{name: "float32 +Inf", typ: TypeFloat32, order: OrderCDAB, regs: []uint16{0x0000, 0x7F80}, want: vFloat(math.Inf(1))},
	{name: "float32 smallest subnormal", typ: TypeFloat32, order: OrderABCD, regs: []uint16{0x0000, 0x0001}, want: vFloat(math.SmallestNonzeroFloat32)},
	// A signalling NaN keeps its payload (the hardware conversion would quiet it).
	{name: "float32 signalling NaN", typ: TypeFloat32, order: OrderABCD, regs: []uint16{0x7F80, 0x0001},
		want: vFloat(math.Float64frombits(0x7FF0000020000000))},
	{name: "float32 negative quiet NaN DCBA", typ: TypeFloat32, order: OrderDCBA, regs: []uint16{0x3412, 0xC0FF},
		want: vFloat(math.Float64frombits(0xFFF8024680000000))},

	// A grid frequency of 50 Hz as float64 = 0x4049000000000000.
	{name: "float64 50 ABCDEFGH", typ: TypeFloat64, order: OrderABCD, regs: []uint16{0x4049, 0, 0, 0}, want: vFloat(50)},
	{name: "float64 50 GHEFCDAB", typ: TypeFloat64, order: OrderCDAB, regs: []uint16{0, 0, 0, 0x4049}, want: vFloat(50)},
	{name: "float64 50 BADCFEHG", typ: TypeFloat64, order: OrderBADC, regs: []uint16{0x4940, 0, 0, 0}, want: vFloat(50)},
	{name: "float64 50 HGFEDCBA", typ: TypeFloat64, order: OrderDCBA, regs: []uint16{0, 0, 0, 0x4940}, want: vFloat(50)},
	{name: "float64 pi CDAB", typ: TypeFloat64, order: OrderCDAB, regs: []uint16{0x2D18, 0x5444, 0x21FB, 0x4009}, want: vFloat(math.Pi)},

	// int32 -2 = 0xFFFFFFFE in all four orders.
	{name: "int32 -2 ABCD", typ: TypeInt32, order: OrderABCD, regs: []uint16{0xFFFF, 0xFFFE}, want: vInt(-2)},
	{name: "int32 -2 CDAB", typ: TypeInt32, order: OrderCDAB, regs: []uint16{0xFFFE, 0xFFFF}, want: vInt(-2)},
	{name: "int32 -2 BADC", typ: TypeInt32, order: OrderBADC, regs: []uint16{0xFFFF, 0xFEFF}, want: vInt(-2)},
	{name: "int32 -2 DCBA", typ: TypeInt32, order: OrderDCBA, regs: []uint16{0xFEFF, 0xFFFF}, want: vInt(-2)},
	{name: "int32 min", typ: TypeInt32, order: OrderABCD, regs: []uint16{0x8000, 0x0000}, want: vInt(math.MinInt32)},
	// An energy counter of 70000 Wh, low word first as many meters do.
	{name: "uint32 70000 CDAB", typ: TypeUint32, order: OrderCDAB, regs: []uint16{0x1170, 0x0001}, want: vUint(70000)},
	{name: "uint32 max", typ: TypeUint32, order: OrderDCBA, regs: []uint16{0xFFFF, 0xFFFF}, want: vUint(math.MaxUint32)},

	// uint64 0x0102030405060708 in the four 64-bit orders: each letter is one byte.
	{name: "uint64 ABCDEFGH", typ: TypeUint64, order: OrderABCD, regs: []uint16{0x0102, 0x0304, 0x0506, 0x0708}, want: vUint(0x0102030405060708)},
	{name: "uint64 GHEFCDAB", typ: TypeUint64, order: OrderCDAB, regs: []uint16{0x0708, 0x0506, 0x0304, 0x0102}, want: vUint(0x0102030405060708)},
	{name: "uint64 BADCFEHG", typ: TypeUint64, order: OrderBADC, regs: []uint16{0x0201, 0x0403, 0x0605, 0x0807}, want: vUint(0x0102030405060708)},
	{name: "uint64 HGFEDCBA", typ: TypeUint64, order: OrderDCBA, regs: []uint16{0x0807, 0x0605, 0x0403, 0x0201}, want: vUint(0x0102030405060708)},
	{name: "uint64 max", typ: TypeUint64, order: OrderABCD, regs: []uint16{0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF}, want: vUint(math.MaxUint64)},
	// An energy total of 123456789012 Wh = 0x0000001CBE991A14, word swapped.
	{name: "uint64 energy GHEFCDAB", typ: TypeUint64, order: OrderCDAB, regs: []uint16{0x1A14, 0xBE99, 0x001C, 0x0000}, want: vUint(123456789012)},
	{name: "int64 -1234567890123 ABCDEFGH", typ: TypeInt64, order: OrderABCD, regs: []uint16{0xFFFF, 0xFEE0, 0x8E04, 0xFB35}, want: vInt(-1234567890123)},
	{name: "int64 -1234567890123 HGFEDCBA", typ: TypeInt64, order: OrderDCBA, regs: []uint16{0x35FB, 0x048E, 0xE0FE, 0xFFFF}, want: vInt(-1234567890123)},
	{name: "int64 min", typ: TypeInt64, order: OrderCDAB, regs: []uint16{0, 0, 0, 0x8000}, want: vInt(math.MinInt64)},

	{name: "int16 -1", typ: TypeInt16, order: OrderABCD, regs: []uint16{0xFFFF}, want: vInt(-1)},
	{name: "int16 -12345", typ: TypeInt16, order: OrderABCD, regs: []uint16{0xCFC7}, want: vInt(-12345)},
	{name: "int16 -12345 BA", typ: TypeInt16, order: OrderBADC, regs: []uint16{0xC7CF}, want: vInt(-12345)},
	{name: "int16 word swap has no effect", typ: TypeInt16, order: OrderCDAB, regs: []uint16{0xFFFE}, want: vInt(-2)},
	{name: "uint16 4660 BA", typ: TypeUint16, order: OrderBADC, regs: []uint16{0x3412}, want: vUint(0x1234)},
	{name: "uint16 max", typ: TypeUint16, order: OrderABCD, regs: []uint16{0xFFFF}, want: vUint(65535)},

	// A drive's running hours in BCD.
	{name: "bcd16 1234", typ: TypeBCD16, order: OrderABCD, regs: []uint16{0x1234}, want: vUint(1234)},
	{name: "bcd16 1234 BA", typ: TypeBCD16, order: OrderBADC, regs: []uint16{0x3412}, want: vUint(1234)},
	{name: "bcd16 9999", typ: TypeBCD16, order: OrderABCD, regs: []uint16{0x9999}, want: vUint(9999)},
	{name: "bcd16 0", typ: TypeBCD16, order: OrderABCD, regs: []uint16{0x0000}, want: vUint(0)},
	{name: "bcd32 12345678 ABCD", typ: TypeBCD32, order: OrderABCD, regs: []uint16{0x1234, 0x5678}, want: vUint(12345678)},
	{name: "bcd32 12345678 CDAB", typ: TypeBCD32, order: OrderCDAB, regs: []uint16{0x5678, 0x1234}, want: vUint(12345678)},
	{name: "bcd32 12345678 DCBA", typ: TypeBCD32, order: OrderDCBA, regs: []uint16{0x7856, 0x3412}, want: vUint(12345678)},
	{name: "bcd32 99999999", typ: TypeBCD32, order: OrderBADC, regs: []uint16{0x9999, 0x9999}, want: vUint(99999999)},

	{name: "bool off", typ: TypeBool, order: OrderABCD, regs: []uint16{0}, want: vBool(false)},
	{name: "bool on", typ: TypeBool, order: OrderABCD, regs: []uint16{1}, want: vBool(true)},
	{name: "bool on BA", typ: TypeBool, order: OrderBADC, regs: []uint16{0x0100}, want: vBool(true)},
	{name: "bool any non-zero register", typ: TypeBool, order: OrderABCD, regs: []uint16{0xFF00}, want: vBool(true), decodeOnly: true},

	// A serial number "AB12" in two, three and four registers.
	{name: "string AB12 AB", typ: TypeString, order: OrderABCD, regs: []uint16{0x4142, 0x3132}, want: vStr("AB12")},
	{name: "string AB12 BA", typ: TypeString, order: OrderBADC, regs: []uint16{0x4241, 0x3231}, want: vStr("AB12")},
	{name: "string AB12 NUL padded", typ: TypeString, order: OrderABCD, regs: []uint16{0x4142, 0x3132, 0x0000, 0x0000}, want: vStr("AB12")},
	{name: "string AB12 NUL padded BA", typ: TypeString, order: OrderBADC, regs: []uint16{0x4241, 0x3231, 0x0000}, want: vStr("AB12")},
	{name: "string AB12 space padded", typ: TypeString, order: OrderABCD, regs: []uint16{0x4142, 0x3132, 0x2020}, want: vStr("AB12"), decodeOnly: true},
	{name: "string AB12 spaces and NULs", typ: TypeString, order: OrderABCD, regs: []uint16{0x4142, 0x3132, 0x2000, 0x2000}, want: vStr("AB12"), decodeOnly: true},
	{name: "string odd length AB", typ: TypeString, order: OrderABCD, regs: []uint16{0x4142, 0x3100}, want: vStr("AB1")},
	{name: "string odd length BA", typ: TypeString, order: OrderBADC, regs: []uint16{0x4241, 0x0031}, want: vStr("AB1")},
	{name: "string word swap ignored", typ: TypeString, order: OrderCDAB, regs: []uint16{0x4142, 0x3132}, want: vStr("AB12")},
	{name: "string leading space kept", typ: TypeString, order: OrderABCD, regs: []uint16{0x2041}, want: vStr(" A")},
	{name: "string inner NUL kept", typ: TypeString, order: OrderABCD, regs: []uint16{0x0041, 0x4200}, want: vStr("\x00AB")},
	{name: "string all NUL", typ: TypeString, order: OrderABCD, regs: []uint16{0, 0}, want: vStr("")},
	{name: "string UTF-8 kept", typ: TypeString, order: OrderABCD, regs: []uint16{0xC2B0, 0x4300}, want: vStr("°C")},
	{name: "string invalid bytes replaced", typ: TypeString, order: OrderABCD, regs: []uint16{0x41FF, 0x42C2}, want: vStr("A\uFFFDB\uFFFD"), decodeOnly: true},
}

func TestDecode(t *testing.T) {
	for _, c := range codecCases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Decode(c.typ, c.order, c.regs)
			if err != nil {
				t.Fatalf("Decode(%v, %v, %#04x) error: %v", c.typ, c.order, c.regs, err)
			}
			if diff := cmp.Diff(c.want, got, sameBits); diff != "" {
				t.Errorf("Decode(%v, %v, %#04x) mismatch (-want +got):\n%s", c.typ, c.order, c.regs, diff)
			}
			if got.Kind != c.typ.Kind() {
				t.Errorf("Decode(%v, ...) kind = %v, DataType.Kind() = %v", c.typ, got.Kind, c.typ.Kind())
			}
		})
	}
}

func TestEncode(t *testing.T) {
	for _, c := range codecCases {
		if c.decodeOnly {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			got := make([]uint16, len(c.regs))
			if err := Encode(c.typ, c.order, c.want, got); err != nil {
				t.Fatalf("Encode(%v, %v, %v) error: %v", c.typ, c.order, c.want, err)
			}
			if diff := cmp.Diff(c.regs, got); diff != "" {
				t.Errorf("Encode(%v, %v, %v) mismatch (-want +got):\n%s", c.typ, c.order, c.want, diff)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name    string
		typ     DataType
		order   ByteOrder
		regs    []uint16
		wantErr error // nil: any error
		wantMsg string
	}{
		{name: "bcd16 nibble A", typ: TypeBCD16, regs: []uint16{0x12A4}, wantErr: ErrInvalidBCD,
			wantMsg: "decode bcd16: 0x12A4: invalid BCD digit"},
		{name: "bcd16 top nibble F", typ: TypeBCD16, regs: []uint16{0xF000}, wantErr: ErrInvalidBCD},
		{name: "bcd16 BA swaps before checking", typ: TypeBCD16, order: OrderBADC, regs: []uint16{0x1A00}, wantErr: ErrInvalidBCD},
		{name: "bcd32 lowest nibble F", typ: TypeBCD32, regs: []uint16{0x1234, 0x567F}, wantErr: ErrInvalidBCD,
			wantMsg: "decode bcd32: 0x1234567F: invalid BCD digit"},
		{name: "bcd32 CDAB", typ: TypeBCD32, order: OrderCDAB, regs: []uint16{0x0000, 0xA000}, wantErr: ErrInvalidBCD},
		{name: "float32 one register", typ: TypeFloat32, regs: []uint16{0x4366}, wantErr: ErrLength,
			wantMsg: "decode float32: needs 2 registers, got 1: wrong number of registers"},
		{name: "int16 two registers", typ: TypeInt16, regs: []uint16{1, 2}, wantErr: ErrLength},
		{name: "float64 nil", typ: TypeFloat64, regs: nil, wantErr: ErrLength},
		{name: "uint64 five registers", typ: TypeUint64, regs: make([]uint16, 5), wantErr: ErrLength},
		{name: "string no registers", typ: TypeString, regs: []uint16{}, wantErr: ErrLength,
			wantMsg: "decode string: needs at least 1 register, got none: wrong number of registers"},
		{name: "unknown type", typ: 0, regs: []uint16{1}, wantMsg: "mapping: unknown data type DataType(0)"},
		{name: "unknown type 13", typ: TypeBCD32 + 1, regs: []uint16{1}},
		{name: "unknown order", typ: TypeInt16, order: OrderDCBA + 1, regs: []uint16{1}, wantMsg: "mapping: unknown byte order ByteOrder(4)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decode(tt.typ, tt.order, tt.regs)
			if err == nil {
				t.Fatalf("Decode(%v, %v, %#04x) = %v, want an error", tt.typ, tt.order, tt.regs, got)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("Decode(%v, %v, %#04x) error = %v, want errors.Is %v", tt.typ, tt.order, tt.regs, err, tt.wantErr)
			}
			if tt.wantMsg != "" && err.Error() != tt.wantMsg {
				t.Errorf("Decode(%v, %v, %#04x) error text\n got: %s\nwant: %s", tt.typ, tt.order, tt.regs, err, tt.wantMsg)
			}
			if got != (Value{}) {
				t.Errorf("Decode(%v, %v, %#04x) = %v with an error, want the zero Value", tt.typ, tt.order, tt.regs, got)
			}
		})
	}
}

// TestEncodeValues covers values of another kind than the type's own, and
// every range limit.
func TestEncodeValues(t *testing.T) {
	tests := []struct {
		name  string
		typ   DataType
		order ByteOrder
		v     Value
		want  []uint16 // nil: ErrOutOfRange
	}{
		{"int16 from integral float", TypeInt16, OrderABCD, vFloat(12), []uint16{12}},
		{"int16 from negative float", TypeInt16, OrderABCD, vFloat(-32768), []uint16{0x8000}},
		{"int16 from uint", TypeInt16, OrderABCD, vUint(32767), []uint16{0x7FFF}},
		{"int16 from bool", TypeInt16, OrderABCD, vBool(true), []uint16{1}},
		{"int16 fraction", TypeInt16, OrderABCD, vFloat(12.5), nil},
		{"int16 above max", TypeInt16, OrderABCD, vInt(32768), nil},
		{"int16 below min", TypeInt16, OrderABCD, vInt(-32769), nil},
		{"int16 float above max", TypeInt16, OrderABCD, vFloat(32768), nil},
		{"int16 uint above max", TypeInt16, OrderABCD, vUint(40000), nil},
		{"int16 NaN", TypeInt16, OrderABCD, vFloat(math.NaN()), nil},
		{"int16 +Inf", TypeInt16, OrderABCD, vFloat(math.Inf(1)), nil},
		{"int16 string", TypeInt16, OrderABCD, vStr("1"), nil},
		{"int16 unset value", TypeInt16, OrderABCD, Value{}, nil},
		{"uint16 max", TypeUint16, OrderABCD, vInt(65535), []uint16{0xFFFF}},
		{"uint16 BA", TypeUint16, OrderBADC, vInt(0x1234), []uint16{0x3412}},
		{"uint16 negative", TypeUint16, OrderABCD, vInt(-1), nil},
		{"uint16 above max", TypeUint16, OrderABCD, vFloat(65536), nil},
		{"uint16 negative zero", TypeUint16, OrderABCD, vFloat(math.Copysign(0, -1)), []uint16{0}},
		{"int32 from float CDAB", TypeInt32, OrderCDAB, vFloat(-2), []uint16{0xFFFE, 0xFFFF}},
		{"int32 above max", TypeInt32, OrderABCD, vInt(math.MaxInt32 + 1), nil},
		{"uint32 from int", TypeUint32, OrderABCD, vInt(math.MaxUint32), []uint16{0xFFFF, 0xFFFF}},
		{"uint32 above max", TypeUint32, OrderABCD, vUint(math.MaxUint32 + 1), nil},
		{"int64 min from float", TypeInt64, OrderABCD, vFloat(-(1 << 63)), []uint16{0x8000, 0, 0, 0}},
		{"int64 2^63 float", TypeInt64, OrderABCD, vFloat(1 << 63), nil},
		{"int64 from uint above max", TypeInt64, OrderABCD, vUint(1 << 63), nil},
		{"uint64 2^63 float", TypeUint64, OrderABCD, vFloat(1 << 63), []uint16{0x8000, 0, 0, 0}},
		{"uint64 2^64 float", TypeUint64, OrderABCD, vFloat(1 << 64), nil},
		{"uint64 largest float below 2^64", TypeUint64, OrderABCD, vFloat(math.Nextafter(1<<64, 0)), []uint16{0xFFFF, 0xFFFF, 0xFFFF, 0xF800}},
		{"uint64 negative int", TypeUint64, OrderABCD, vInt(-1), nil},
		{"float32 from int rounds", TypeFloat32, OrderABCD, vInt(16777217), []uint16{0x4B80, 0x0000}},
		{"float32 0.1 rounds", TypeFloat32, OrderABCD, vFloat(0.1), []uint16{0x3DCC, 0xCCCD}},
		{"float32 max", TypeFloat32, OrderABCD, vFloat(math.MaxFloat32), []uint16{0x7F7F, 0xFFFF}},
		{"float32 beyond range", TypeFloat32, OrderABCD, vFloat(1e39), nil},
		{"float32 beyond negative range", TypeFloat32, OrderABCD, vFloat(-1e39), nil},
		{"float32 -Inf", TypeFloat32, OrderCDAB, vFloat(math.Inf(-1)), []uint16{0x0000, 0xFF80}},
		{"float32 quiet NaN", TypeFloat32, OrderABCD, vFloat(math.NaN()), []uint16{0x7FC0, 0x0000}},
		{"float32 NaN whose payload is too low keeps being NaN", TypeFloat32, OrderABCD,
			vFloat(math.Float64frombits(0x7FF0000000000001)), []uint16{0x7FC0, 0x0000}},
		{"float32 string", TypeFloat32, OrderABCD, vStr("1.5"), nil},
		{"float64 from bool", TypeFloat64, OrderABCD, vBool(true), []uint16{0x3FF0, 0, 0, 0}},
		{"float64 from uint", TypeFloat64, OrderDCBA, vUint(50), []uint16{0, 0, 0, 0x4940}},
		{"bool from 1", TypeBool, OrderABCD, vInt(1), []uint16{1}},
		{"bool from 0.0", TypeBool, OrderABCD, vFloat(0), []uint16{0}},
		{"bool true BA", TypeBool, OrderBADC, vBool(true), []uint16{0x0100}},
		{"bool from 2", TypeBool, OrderABCD, vInt(2), nil},
		{"bool from string", TypeBool, OrderABCD, vStr("true"), nil},
		{"bcd16 9999", TypeBCD16, OrderABCD, vInt(9999), []uint16{0x9999}},
		{"bcd16 from float", TypeBCD16, OrderABCD, vFloat(1234), []uint16{0x1234}},
		{"bcd16 10000", TypeBCD16, OrderABCD, vInt(10000), nil},
		{"bcd16 negative", TypeBCD16, OrderABCD, vInt(-1), nil},
		{"bcd16 fraction", TypeBCD16, OrderABCD, vFloat(12.5), nil},
		{"bcd32 from float", TypeBCD32, OrderABCD, vFloat(12345678), []uint16{0x1234, 0x5678}},
		{"bcd32 100000000", TypeBCD32, OrderABCD, vUint(100000000), nil},
		{"string exactly full", TypeString, OrderABCD, vStr("AB12"), []uint16{0x4142, 0x3132}},
		{"string too long", TypeString, OrderABCD, vStr("AB123"), nil},
		{"string from int", TypeString, OrderABCD, vInt(1), nil},
		{"string empty", TypeString, OrderBADC, vStr(""), []uint16{0, 0, 0}},
		{"string trailing space kept", TypeString, OrderABCD, vStr("A "), []uint16{0x4120}},
		{"string bytes as given", TypeString, OrderBADC, vStr("\xFF"), []uint16{0x00FF}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := tt.typ.Registers()
			if tt.typ == TypeString {
				n = 2
				if tt.want != nil {
					n = len(tt.want)
				}
			}
			const poison = 0xDEAD
			got := make([]uint16, n)
			for i := range got {
				got[i] = poison
			}
			err := Encode(tt.typ, tt.order, tt.v, got)
			if tt.want == nil {
				if !errors.Is(err, ErrOutOfRange) {
					t.Fatalf("Encode(%v, %v, %v) error = %v, want ErrOutOfRange", tt.typ, tt.order, tt.v, err)
				}
				for i, r := range got {
					if r != poison {
						t.Fatalf("Encode(%v, %v, %v) failed but wrote register %d = %#04x", tt.typ, tt.order, tt.v, i, r)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Encode(%v, %v, %v) error: %v", tt.typ, tt.order, tt.v, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Encode(%v, %v, %v) mismatch (-want +got):\n%s", tt.typ, tt.order, tt.v, diff)
			}
		})
	}
}

func TestEncodeErrorText(t *testing.T) {
	tests := []struct {
		typ  DataType
		v    Value
		n    int
		want string
	}{
		{TypeInt16, vInt(40000), 1, "encode int16: want an integer from -32768 to 32767, got int 40000: value out of range"},
		{TypeUint16, vFloat(-1.5), 1, "encode uint16: want an integer from 0 to 65535, got float -1.5: value out of range"},
		{TypeBCD16, vInt(-1), 1, "encode bcd16: want an integer from 0 to 9999, got int -1: value out of range"},
		{TypeFloat32, vStr("x"), 2, `encode float32: want a number, got string "x": value out of range`},
		{TypeFloat32, vFloat(1e39), 2, "encode float32: want a number within ±3.4028235e+38, got float 1e+39: value out of range"},
		{TypeInt32, Value{}, 2, "encode int32: want an integer from -2147483648 to 2147483647, got no value: value out of range"},
		{TypeString, vStr("AB123"), 2, `encode string "AB123": 5 bytes do not fit in 2 registers (4 bytes): value out of range`},
		{TypeFloat32, vFloat(1), 1, "encode float32: needs 2 registers, got 1: wrong number of registers"},
		{TypeString, vStr(""), 0, "encode string: needs at least 1 register, got none: wrong number of registers"},
		{TypeInt16, vInt(1), 0, "encode int16: needs 1 register, got 0: wrong number of registers"},
		{0, vInt(1), 1, "mapping: unknown data type DataType(0)"},
	}
	for _, tt := range tests {
		err := Encode(tt.typ, OrderABCD, tt.v, make([]uint16, tt.n))
		if err == nil || err.Error() != tt.want {
			t.Errorf("Encode(%v, ABCD, %v, [%d]) error\n got: %v\nwant: %s", tt.typ, tt.v, tt.n, err, tt.want)
		}
	}
	if err := Encode(TypeInt16, OrderDCBA+1, vInt(1), make([]uint16, 1)); err == nil {
		t.Errorf("Encode with ByteOrder(4) succeeded, want an error")
	}
	for _, n := range []int{1, 3, 4} {
		if err := Encode(TypeBCD32, OrderABCD, vInt(1), make([]uint16, n)); !errors.Is(err, ErrLength) {
			t.Errorf("Encode(bcd32, ABCD, 1, [%d]) error = %v, want ErrLength", n, err)
		}
	}
}

func TestParseByteOrder(t *testing.T) {
	tests := []struct {
		s    string
		typ  DataType
		want ByteOrder
	}{
		{"", TypeFloat32, OrderABCD},
		{"", TypeInt16, OrderABCD},
		{"", TypeFloat64, OrderABCD},
		{"", TypeString, OrderABCD},
		{"AB", TypeInt16, OrderABCD},
		{"BA", TypeInt16, OrderBADC},
		{"AB", TypeUint16, OrderABCD},
		{"BA", TypeBool, OrderBADC},
		{"BA", TypeBCD16, OrderBADC},
		{"AB", TypeString, OrderABCD},
		{"BA", TypeString, OrderBADC},
		{"ABCD", TypeFloat32, OrderABCD},
		{"CDAB", TypeFloat32, OrderCDAB},
		{"BADC", TypeInt32, OrderBADC},
		{"DCBA", TypeUint32, OrderDCBA},
		{"CDAB", TypeBCD32, OrderCDAB},
		{"ABCDEFGH", TypeFloat64, OrderABCD},
		{"GHEFCDAB", TypeFloat64, OrderCDAB},
		{"BADCFEHG", TypeInt64, OrderBADC},
		{"HGFEDCBA", TypeUint64, OrderDCBA},
		{"ABCD", TypeFloat64, OrderABCD},
		{"CDAB", TypeUint64, OrderCDAB},
		{"BADC", TypeInt64, OrderBADC},
		{"DCBA", TypeFloat64, OrderDCBA},
	}
	for _, tt := range tests {
		got, err := ParseByteOrder(tt.s, tt.typ)
		if err != nil || got != tt.want {
			t.Errorf("ParseByteOrder(%q, %v) = %v, %v; want %v, nil", tt.s, tt.typ, got, err, tt.want)
		}
	}
}

func TestParseByteOrderErrors(t *testing.T) {
	const (
		takes16 = `takes "AB" or "BA"`
		takes32 = `takes "ABCD", "CDAB", "BADC" or "DCBA"`
		takes64 = `takes "ABCDEFGH", "GHEFCDAB", "BADCFEHG" or "HGFEDCBA" (or their 32-bit names "ABCD", "CDAB", "BADC", "DCBA")`
	)
	tests := []struct {
		s    string
		typ  DataType
		want string
	}{
		{"CDAB", TypeInt16, `byte order "CDAB" does not apply to int16: it is one register wide, so there is no word order; int16 ` + takes16},
		{"ABCD", TypeUint16, `byte order "ABCD" does not apply to uint16: it is one register wide, so there is no word order; uint16 ` + takes16},
		{"HGFEDCBA", TypeBCD16, `byte order "HGFEDCBA" does not apply to bcd16: it is one register wide, so there is no word order; bcd16 ` + takes16},
		{"DCBA", TypeBool, `byte order "DCBA" does not apply to bool: it is one register wide, so there is no word order; bool ` + takes16},
		{"CDAB", TypeString, `byte order "CDAB" does not apply to string: it is one register wide, so there is no word order; string ` + takes16},
		{"ab", TypeInt16, `unknown byte order "ab" (names are upper case: did you mean "AB"?); int16 ` + takes16},
		{"little", TypeInt16, `unknown byte order "little"; int16 ` + takes16},
		{"AB", TypeFloat32, `byte order "AB" is for one-register types; float32 ` + takes32},
		{"BA", TypeBCD32, `byte order "BA" is for one-register types; bcd32 ` + takes32},
		{"GHEFCDAB", TypeFloat32, `byte order "GHEFCDAB" is for 64-bit types; float32 ` + takes32},
		{"cdab", TypeInt32, `unknown byte order "cdab" (names are upper case: did you mean "CDAB"?); int32 ` + takes32},
		{"ACBD", TypeUint32, `unknown byte order "ACBD"; uint32 ` + takes32},
		{"BA", TypeFloat64, `byte order "BA" is for one-register types; float64 ` + takes64},
		{"ghefcdab", TypeFloat64, `unknown byte order "ghefcdab" (names are upper case: did you mean "GHEFCDAB"?); float64 ` + takes64},
		{"EFGHABCD", TypeInt64, `unknown byte order "EFGHABCD"; int64 ` + takes64},
		{"ABCD", 0, `byte order "ABCD": unknown data type DataType(0)`},
	}
	for _, tt := range tests {
		got, err := ParseByteOrder(tt.s, tt.typ)
		if err == nil {
			t.Errorf("ParseByteOrder(%q, %v) = %v, want an error", tt.s, tt.typ, got)
			continue
		}
		if err.Error() != tt.want {
			t.Errorf("ParseByteOrder(%q, %v) error\n got: %s\nwant: %s", tt.s, tt.typ, err, tt.want)
		}
	}
}

// TestOrderName checks that Name gives a name ParseByteOrder accepts for the
// same order (for one-register types: the same effective order).
func TestOrderName(t *testing.T) {
	for typ := TypeBool; typ <= TypeBCD32; typ++ {
		for o := OrderABCD; o <= OrderDCBA; o++ {
			name := o.Name(typ)
			got, err := ParseByteOrder(name, typ)
			if err != nil {
				t.Errorf("ParseByteOrder(%v.Name(%v) = %q) error: %v", o, typ, name, err)
				continue
			}
			want := o
			if typ.Registers() <= 1 {
				want = o &^ 1 // no word order in one register
			}
			if got != want {
				t.Errorf("ParseByteOrder(%v.Name(%v) = %q) = %v, want %v", o, typ, name, got, want)
			}
		}
	}
	names := map[DataType][4]string{
		TypeInt16:   {"AB", "AB", "BA", "BA"},
		TypeString:  {"AB", "AB", "BA", "BA"},
		TypeFloat32: {"ABCD", "CDAB", "BADC", "DCBA"},
		TypeBCD32:   {"ABCD", "CDAB", "BADC", "DCBA"},
		TypeFloat64: {"ABCDEFGH", "GHEFCDAB", "BADCFEHG", "HGFEDCBA"},
		0:           {"ABCD", "CDAB", "BADC", "DCBA"},
	}
	for typ, want := range names {
		for o, w := range want {
			if got := ByteOrder(o).Name(typ); got != w {
				t.Errorf("ByteOrder(%d).Name(%v) = %q, want %q", o, typ, got, w)
			}
		}
	}
	if got := ByteOrder(9).Name(TypeInt32); got != "ByteOrder(9)" {
		t.Errorf("ByteOrder(9).Name(int32) = %q, want %q", got, "ByteOrder(9)")
	}
	if got := OrderCDAB.String(); got != "CDAB" {
		t.Errorf("OrderCDAB.String() = %q, want CDAB", got)
	}
	swaps := []struct{ bytes, words bool }{{false, false}, {false, true}, {true, false}, {true, true}}
	for o, w := range swaps {
		if got := ByteOrder(o).SwapBytes(); got != w.bytes {
			t.Errorf("%v.SwapBytes() = %v, want %v", ByteOrder(o), got, w.bytes)
		}
		if got := ByteOrder(o).SwapWords(); got != w.words {
			t.Errorf("%v.SwapWords() = %v, want %v", ByteOrder(o), got, w.words)
		}
	}
}

func TestDataType(t *testing.T) {
	tests := []struct {
		name string
		typ  DataType
		regs int
		kind Kind
	}{
		{"bool", TypeBool, 1, KindBool},
		{"int16", TypeInt16, 1, KindInt},
		{"uint16", TypeUint16, 1, KindUint},
		{"int32", TypeInt32, 2, KindInt},
		{"uint32", TypeUint32, 2, KindUint},
		{"int64", TypeInt64, 4, KindInt},
		{"uint64", TypeUint64, 4, KindUint},
		{"float32", TypeFloat32, 2, KindFloat},
		{"float64", TypeFloat64, 4, KindFloat},
		{"string", TypeString, 0, KindString},
		{"bcd16", TypeBCD16, 1, KindUint},
		{"bcd32", TypeBCD32, 2, KindUint},
	}
	var names []string
	for _, tt := range tests {
		names = append(names, tt.name)
		got, ok := ParseDataType(tt.name)
		if !ok || got != tt.typ {
			t.Errorf("ParseDataType(%q) = %v, %v; want %v, true", tt.name, got, ok, tt.typ)
		}
		if s := tt.typ.String(); s != tt.name {
			t.Errorf("%v.String() = %q, want %q", tt.typ, s, tt.name)
		}
		if n := tt.typ.Registers(); n != tt.regs {
			t.Errorf("%v.Registers() = %d, want %d", tt.typ, n, tt.regs)
		}
		if k := tt.typ.Kind(); k != tt.kind {
			t.Errorf("%v.Kind() = %v, want %v", tt.typ, k, tt.kind)
		}
	}
	if diff := cmp.Diff(names, DataTypeNames()); diff != "" {
		t.Errorf("DataTypeNames() mismatch (-want +got):\n%s", diff)
	}
	for _, s := range []string{"", "Float32", "FLOAT32", "float", "real", "bcd", "int8", " int16"} {
		if got, ok := ParseDataType(s); ok {
			t.Errorf("ParseDataType(%q) = %v, true; want false", s, got)
		}
	}
	for _, bad := range []DataType{0, TypeBCD32 + 1, 255} {
		if n := bad.Registers(); n != 0 {
			t.Errorf("DataType(%d).Registers() = %d, want 0", bad, n)
		}
		if k := bad.Kind(); k != 0 {
			t.Errorf("DataType(%d).Kind() = %v, want 0", bad, k)
		}
		if s := bad.String(); !strings.HasPrefix(s, "DataType(") {
			t.Errorf("DataType(%d).String() = %q", bad, s)
		}
	}
}

func TestDecodeBit(t *testing.T) {
	// A drive status word 0x8421: bits 0, 5, 10 and 15 set.
	const status = 0x8421
	for bit := range uint8(20) {
		want := bit == 0 || bit == 5 || bit == 10 || bit == 15
		if got := DecodeBit(status, bit); got != want {
			t.Errorf("DecodeBit(%#04x, %d) = %v, want %v", status, bit, got, want)
		}
	}
}

func TestCodecSetBit(t *testing.T) {
	tests := []struct {
		reg  uint16
		bit  uint8
		on   bool
		want uint16
	}{
		{0x0000, 0, true, 0x0001},
		{0x0000, 15, true, 0x8000},
		{0x8421, 5, false, 0x8401},
		{0x8421, 5, true, 0x8421},
		{0x8421, 1, false, 0x8421},
		{0xFFFF, 7, false, 0xFF7F},
		{0x1234, 16, true, 0x1234},
		{0x1234, 200, false, 0x1234},
	}
	for _, tt := range tests {
		if got := SetBit(tt.reg, tt.bit, tt.on); got != tt.want {
			t.Errorf("SetBit(%#04x, %d, %v) = %#04x, want %#04x", tt.reg, tt.bit, tt.on, got, tt.want)
		}
	}
	for bit := range uint8(16) {
		for _, on := range []bool{false, true} {
			if got := DecodeBit(SetBit(0x5A5A, bit, on), bit); got != on {
				t.Errorf("DecodeBit(SetBit(0x5A5A, %d, %v), %d) = %v", bit, on, bit, got)
			}
		}
	}
}

func TestCodecValue(t *testing.T) {
	tests := []struct {
		v      Value
		want   float64
		wantOK bool
		str    string
	}{
		{vBool(true), 1, true, "true"},
		{vBool(false), 0, true, "false"},
		{vInt(-2), -2, true, "-2"},
		{vUint(math.MaxUint64), 1 << 64, true, "18446744073709551615"},
		{vFloat(230.5), 230.5, true, "230.5"},
		{vStr("AB12"), 0, false, `"AB12"`},
		{Value{}, 0, false, "<unset>"},
	}
	for _, tt := range tests {
		got, ok := tt.v.Float()
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("%#v.Float() = %v, %v; want %v, %v", tt.v, got, ok, tt.want, tt.wantOK)
		}
		if s := tt.v.String(); s != tt.str {
			t.Errorf("%#v.String() = %q, want %q", tt.v, s, tt.str)
		}
	}
	for k, want := range map[Kind]string{KindBool: "bool", KindInt: "int", KindUint: "uint", KindFloat: "float", KindString: "string", 0: "Kind(0)"} {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d).String() = %q, want %q", k, got, want)
		}
	}
}

// TestDecodeAllocs pins the allocation budget of design.md §8: decoding a
// numeric point allocates nothing.
func TestDecodeAllocs(t *testing.T) {
	regs := []uint16{0x1234, 0x5678, 0, 0} // valid BCD too: errors may allocate
	for typ := TypeBool; typ <= TypeBCD32; typ++ {
		if typ == TypeString {
			continue
		}
		r := regs[:typ.Registers()]
		allocs := testing.AllocsPerRun(100, func() {
			v, _ := Decode(typ, OrderCDAB, r)
			sinkFloat, _ = v.Float()
		})
		if allocs != 0 {
			t.Errorf("Decode(%v, CDAB, ...) allocates %v times per call, want 0", typ, allocs)
		}
		dst := make([]uint16, typ.Registers())
		allocs = testing.AllocsPerRun(100, func() {
			_ = Encode(typ, OrderCDAB, vUint(1), dst)
		})
		if allocs != 0 {
			t.Errorf("Encode(%v, CDAB, 1, ...) allocates %v times per call, want 0", typ, allocs)
		}
	}
}

var sinkFloat float64
