package mapping

// The register codec: data types, byte orders, and the conversion between
// Modbus registers and Values in both directions. Reads and writes use the
// same functions, so a point that reads correctly also writes correctly.
//
// Everything here is pure and allocation-free on the numeric paths: Decode of
// a numeric type does not allocate, so decoding and transforming a point
// stays within the budget of design.md §8. Only strings and error values
// allocate.

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Sentinel errors of the codec. Decode and Encode wrap them with the data
// type and the offending value; test for them with errors.Is.
var (
	// ErrOutOfRange means a value cannot be represented in the data type it
	// is encoded as: outside the type's range (40000 as int16, -1 as uint16
	// or bcd16, 1e39 as float32), not an integer for an integer or BCD type,
	// the wrong kind (a string for a number), or a string longer than its
	// registers hold.
	ErrOutOfRange = errors.New("value out of range")

	// ErrInvalidBCD means a BCD register holds a nibble above 9. It usually
	// means the point's address or type is wrong.
	ErrInvalidBCD = errors.New("invalid BCD digit")

	// ErrLength means the number of registers does not match the data type:
	// Decode and Encode need exactly DataType.Registers() registers, and at
	// least one for a string.
	ErrLength = errors.New("wrong number of registers")
)

// DataType is how the registers of a point are interpreted.
type DataType uint8

// The data types of a point, as named in the configuration by their String.
const (
	TypeBool    DataType = iota + 1 // a register that is zero or not; one bit of a register is read with DecodeBit
	TypeInt16                       // two's complement, one register
	TypeUint16                      // one register
	TypeInt32                       // two's complement, two registers
	TypeUint32                      // two registers
	TypeInt64                       // two's complement, four registers
	TypeUint64                      // four registers
	TypeFloat32                     // IEEE 754 binary32, two registers
	TypeFloat64                     // IEEE 754 binary64, four registers
	TypeString                      // two 8-bit characters per register; the length comes from the point
	TypeBCD16                       // four decimal digits, one register (0x1234 is 1234)
	TypeBCD32                       // eight decimal digits, two registers
)

// typeInfo describes each DataType, indexed by its value.
var typeInfo = [...]struct {
	name  string
	regs  int
	width int // byte-order family: 1 (AB/BA), 2 (ABCD...), 4 (ABCDEFGH...)
	kind  Kind
}{
	TypeBool:    {"bool", 1, 1, KindBool},
	TypeInt16:   {"int16", 1, 1, KindInt},
	TypeUint16:  {"uint16", 1, 1, KindUint},
	TypeInt32:   {"int32", 2, 2, KindInt},
	TypeUint32:  {"uint32", 2, 2, KindUint},
	TypeInt64:   {"int64", 4, 4, KindInt},
	TypeUint64:  {"uint64", 4, 4, KindUint},
	TypeFloat32: {"float32", 2, 2, KindFloat},
	TypeFloat64: {"float64", 4, 4, KindFloat},
	TypeString:  {"string", 0, 1, KindString},
	TypeBCD16:   {"bcd16", 1, 1, KindUint},
	TypeBCD32:   {"bcd32", 2, 2, KindUint},
}

func (t DataType) valid() bool { return t >= TypeBool && t <= TypeBCD32 }

// ParseDataType returns the DataType named s (exactly as in the
// configuration: "float32", not "Float32" or "float"). ok is false for any
// other name; DataTypeNames lists the valid ones for a "did you mean" hint.
func ParseDataType(s string) (DataType, bool) {
	for t := TypeBool; t <= TypeBCD32; t++ {
		if typeInfo[t].name == s {
			return t, true
		}
	}
	return 0, false
}

// String returns the configuration name of the type, such as "float32".
func (t DataType) String() string {
	if t.valid() {
		return typeInfo[t].name
	}
	return "DataType(" + strconv.Itoa(int(t)) + ")"
}

// Registers returns how many registers a value of the type occupies: 1 for
// bool (a register, or one bit of it), int16, uint16 and bcd16; 2 for the
// 32-bit types and bcd32; 4 for the 64-bit types. It returns 0 for string,
// whose length is set per point, and for an invalid type.
func (t DataType) Registers() int {
	if t.valid() {
		return typeInfo[t].regs
	}
	return 0
}

// Kind returns the kind of Value that Decode returns for the type. It is
// fixed per type, so the JSON type of a point is known from its configuration.
// BCD types decode to KindUint. It returns 0 for an invalid type.
func (t DataType) Kind() Kind {
	if t.valid() {
		return typeInfo[t].kind
	}
	return 0
}

// DataTypeNames returns the configuration names of all data types, in the
// order of their constants. The caller may modify the slice.
func DataTypeNames() []string {
	names := make([]string, 0, TypeBCD32)
	for t := TypeBool; t <= TypeBCD32; t++ {
		names = append(names, typeInfo[t].name)
	}
	return names
}

// ByteOrder is the arrangement of a value's bytes in its registers, as two
// independent swaps against the Modbus default (big-endian bytes in each
// register, most significant register first): SwapBytes exchanges the two
// bytes inside each register, SwapWords reverses the order of the registers.
//
// The names follow the common convention of writing the value's bytes,
// most significant first, as A B C D ... in the order they arrive on the
// wire. Each type family has its own names (see ParseByteOrder and Name),
// but the four orders are the same for all of them:
//
//	order      16-bit  32-bit  64-bit
//	OrderABCD  AB      ABCD    ABCDEFGH
//	OrderCDAB  -       CDAB    GHEFCDAB
//	OrderBADC  BA      BADC    BADCFEHG
//	OrderDCBA  -       DCBA    HGFEDCBA
//
// Word swap has no effect on a value of one register. Strings are never
// word-swapped: their characters always run in register order, and only the
// byte swap applies (AB puts the first character in the high byte, BA in
// the low byte).
type ByteOrder uint8

// The four byte orders. The zero value is the Modbus default.
const (
	OrderABCD ByteOrder = iota // big-endian bytes and registers (Modbus default)
	OrderCDAB                  // registers reversed, bytes big-endian in each ("word swap")
	OrderBADC                  // registers in order, bytes swapped in each ("byte swap")
	OrderDCBA                  // both swapped: little-endian
)

// SwapWords reports whether the order reverses the registers (CDAB, DCBA).
func (o ByteOrder) SwapWords() bool { return o&1 != 0 }

// SwapBytes reports whether the order swaps the bytes inside each register
// (BADC, DCBA).
func (o ByteOrder) SwapBytes() bool { return o&2 != 0 }

var (
	orderNames16 = [...]string{OrderABCD: "AB", OrderCDAB: "AB", OrderBADC: "BA", OrderDCBA: "BA"}
	orderNames32 = [...]string{OrderABCD: "ABCD", OrderCDAB: "CDAB", OrderBADC: "BADC", OrderDCBA: "DCBA"}
	orderNames64 = [...]string{OrderABCD: "ABCDEFGH", OrderCDAB: "GHEFCDAB", OrderBADC: "BADCFEHG", OrderDCBA: "HGFEDCBA"}
)

// Name returns the canonical configuration name of the order for values of
// type t: "AB"/"BA" for one-register types and strings, "ABCD"... for the
// 32-bit types and bcd32, "ABCDEFGH"... for the 64-bit types. For a
// one-register type the word swap has no effect, so OrderCDAB is named "AB"
// and OrderDCBA "BA". An invalid t gets the 32-bit name.
func (o ByteOrder) Name(t DataType) string {
	if o > OrderDCBA {
		return "ByteOrder(" + strconv.Itoa(int(o)) + ")"
	}
	switch typeWidth(t) {
	case 1:
		return orderNames16[o]
	case 4:
		return orderNames64[o]
	default:
		return orderNames32[o]
	}
}

// String returns the 32-bit name of the order (ABCD, CDAB, BADC, DCBA).
func (o ByteOrder) String() string { return o.Name(TypeUint32) }

// typeWidth returns the byte-order family of t: 1, 2 or 4; 0 if t is invalid.
func typeWidth(t DataType) int {
	if t.valid() {
		return typeInfo[t].width
	}
	return 0
}

// ParseByteOrder returns the order named s for values of type t. The names
// depend on the width of the type:
//
//   - bool, int16, uint16, bcd16 and string: "AB" (OrderABCD) or "BA" (OrderBADC);
//   - int32, uint32, float32 and bcd32: "ABCD", "CDAB", "BADC" or "DCBA";
//   - int64, uint64 and float64: "ABCDEFGH", "GHEFCDAB", "BADCFEHG" or
//     "HGFEDCBA", or the 32-bit names as aliases for the same orders.
//
// An empty s is the Modbus default, OrderABCD. Names are upper case. The
// error for any other name says which names t accepts, so it can be shown
// to the user as is.
func ParseByteOrder(s string, t DataType) (ByteOrder, error) {
	w := typeWidth(t)
	if w == 0 {
		return 0, fmt.Errorf("byte order %q: unknown data type %v", s, t)
	}
	if s == "" {
		return OrderABCD, nil
	}
	if o, ok := lookupOrder(s, w); ok {
		return o, nil
	}
	valid := validOrders(t, w)
	if up := strings.ToUpper(s); up != s {
		if _, ok := lookupOrder(up, w); ok {
			return 0, fmt.Errorf("unknown byte order %q (names are upper case: did you mean %q?); %s", s, up, valid)
		}
	}
	switch {
	case w != 1 && (s == "AB" || s == "BA"):
		return 0, fmt.Errorf("byte order %q is for one-register types; %s", s, valid)
	case w == 1 && (isOrderName(s, orderNames32[:]) || isOrderName(s, orderNames64[:])):
		return 0, fmt.Errorf("byte order %q does not apply to %v: it is one register wide, so there is no word order; %s", s, t, valid)
	case w == 2 && isOrderName(s, orderNames64[:]):
		return 0, fmt.Errorf("byte order %q is for 64-bit types; %s", s, valid)
	}
	return 0, fmt.Errorf("unknown byte order %q; %s", s, valid)
}

// lookupOrder finds the exact name s among the names of width w.
func lookupOrder(s string, w int) (ByteOrder, bool) {
	switch w {
	case 1:
		switch s {
		case "AB":
			return OrderABCD, true
		case "BA":
			return OrderBADC, true
		}
	case 4:
		for o, name := range orderNames64 {
			if name == s {
				return ByteOrder(o), true
			}
		}
		fallthrough // the 32-bit names are aliases for 64-bit types
	case 2:
		for o, name := range orderNames32 {
			if name == s {
				return ByteOrder(o), true
			}
		}
	}
	return 0, false
}

func isOrderName(s string, names []string) bool {
	for _, n := range names {
		if n == s {
			return true
		}
	}
	return false
}

// validOrders is the part of a ParseByteOrder error that lists the names t takes.
func validOrders(t DataType, w int) string {
	switch w {
	case 1:
		return fmt.Sprintf("%v takes \"AB\" or \"BA\"", t)
	case 4:
		return fmt.Sprintf("%v takes \"ABCDEFGH\", \"GHEFCDAB\", \"BADCFEHG\" or \"HGFEDCBA\" (or their 32-bit names \"ABCD\", \"CDAB\", \"BADC\", \"DCBA\")", t)
	default:
		return fmt.Sprintf("%v takes \"ABCD\", \"CDAB\", \"BADC\" or \"DCBA\"", t)
	}
}

// Kind is the kind of a Value, which fixes the field of Value that holds it
// and the JSON type of the point.
type Kind uint8

// The kinds of Value. The zero Kind marks an unset Value.
const (
	KindBool   Kind = iota + 1 // Value.B
	KindInt                    // Value.I
	KindUint                   // Value.U
	KindFloat                  // Value.F
	KindString                 // Value.S
)

var kindNames = [...]string{KindBool: "bool", KindInt: "int", KindUint: "uint", KindFloat: "float", KindString: "string"}

func (k Kind) String() string {
	if k >= KindBool && k <= KindString {
		return kindNames[k]
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Value is a decoded point value, or a value to encode. Kind says which one
// field holds it; the others are zero. It is a plain struct, not an
// interface, so decoding a number does not allocate.
type Value struct {
	Kind Kind
	B    bool
	I    int64
	U    uint64
	F    float64
	S    string
}

// Float returns a numeric value as a float64 (a bool as 0 or 1) and true, or
// 0 and false for a string or an unset Value. Integers beyond 2^53 are
// rounded to the nearest float64.
func (v Value) Float() (float64, bool) {
	switch v.Kind {
	case KindBool:
		if v.B {
			return 1, true
		}
		return 0, true
	case KindInt:
		return float64(v.I), true
	case KindUint:
		return float64(v.U), true
	case KindFloat:
		return v.F, true
	}
	return 0, false
}

// String formats the value for messages: numbers in Go syntax, strings quoted.
func (v Value) String() string {
	switch v.Kind {
	case KindBool:
		return strconv.FormatBool(v.B)
	case KindInt:
		return strconv.FormatInt(v.I, 10)
	case KindUint:
		return strconv.FormatUint(v.U, 10)
	case KindFloat:
		return strconv.FormatFloat(v.F, 'g', -1, 64)
	case KindString:
		return strconv.Quote(v.S)
	}
	return "<unset>"
}

// DecodeBit reports whether bit (0 = least significant, 15 = most
// significant) of the register value reg is set. reg is the value as
// received, high byte first; a bit index above 15 reports false.
func DecodeBit(reg uint16, bit uint8) bool {
	return reg>>bit&1 != 0
}

// SetBit returns reg with bit (0..15, as in DecodeBit) set to on. A bit
// index above 15 returns reg unchanged.
func SetBit(reg uint16, bit uint8, on bool) uint16 {
	if on {
		return reg | 1<<bit
	}
	return reg &^ (1 << bit)
}

// Decode interprets regs, in the order they were read, as a value of type t
// stored in byte order o.
//
// len(regs) must be t.Registers(), or at least 1 for a string; otherwise the
// error wraps ErrLength. A BCD value with a nibble above 9 gives an error
// wrapping ErrInvalidBCD. Decode does not retain regs and, for every type
// but string, does not allocate.
//
// Kinds: bool is KindBool (the register is not zero; use DecodeBit for one
// bit of a register); signed integers are KindInt; unsigned integers and
// BCD are KindUint; floats are KindFloat, with NaN payloads kept bit for bit
// (a float32 NaN keeps its payload in the high mantissa bits of the
// float64); strings are KindString.
//
// Strings: two bytes per register, the first character in the high byte
// (AB) or the low byte (BA); the word swap does not apply. Trailing NUL and
// space bytes are trimmed, other NULs are kept. The bytes are expected to be
// ASCII or UTF-8; each byte that is not part of valid UTF-8 becomes U+FFFD
// (as encoding/json does), so the value is always valid JSON text. Such a
// string can grow by two bytes per replaced byte and may then be too long
// to encode back into the same registers.
func Decode(t DataType, o ByteOrder, regs []uint16) (Value, error) {
	if o > OrderDCBA {
		return Value{}, badOrder(o)
	}
	if t == TypeString {
		if len(regs) == 0 {
			return Value{}, lengthError("decode", t, 0, 1)
		}
		return Value{Kind: KindString, S: decodeString(o, regs)}, nil
	}
	if !t.valid() {
		return Value{}, badType(t)
	}
	if n := typeInfo[t].regs; len(regs) != n {
		return Value{}, lengthError("decode", t, len(regs), n)
	}
	raw := gather(o, regs)
	switch t {
	case TypeBool:
		return Value{Kind: KindBool, B: raw != 0}, nil
	case TypeInt16:
		return Value{Kind: KindInt, I: int64(int16(raw))}, nil
	case TypeInt32:
		return Value{Kind: KindInt, I: int64(int32(raw))}, nil
	case TypeInt64:
		return Value{Kind: KindInt, I: int64(raw)}, nil
	case TypeUint16, TypeUint32, TypeUint64:
		return Value{Kind: KindUint, U: raw}, nil
	case TypeFloat32:
		return Value{Kind: KindFloat, F: float32To64(uint32(raw))}, nil
	case TypeFloat64:
		return Value{Kind: KindFloat, F: math.Float64frombits(raw)}, nil
	case TypeBCD16, TypeBCD32:
		u, ok := fromBCD(raw)
		if !ok {
			return Value{}, fmt.Errorf("decode %v: 0x%0*X: %w", t, 4*len(regs), raw, ErrInvalidBCD)
		}
		return Value{Kind: KindUint, U: u}, nil
	}
	panic("unreachable")
}

// Encode writes v as a value of type t in byte order o into dst, the
// registers in the order they are to be written. It writes every register
// of dst; len(dst) must be t.Registers(), or at least 1 for a string
// (otherwise the error wraps ErrLength).
//
// v may be of any numeric kind for a numeric type, as long as the number is
// exactly representable in the type: a float64 12.0 encodes as int16, 12.5
// does not; -1 does not encode as uint16 or BCD. Float types take any
// number and round it to the nearest float32 or float64; only a finite
// number beyond the float32 range is refused. bool takes KindBool or the
// numbers 0 and 1, and encodes true as 1 (0x0100 with byte order BA). A
// string must be KindString and at most 2*len(dst) bytes; it is padded with
// NUL bytes. Every refused value gives an error wrapping ErrOutOfRange that
// names the type and the value.
//
// On error dst is left unchanged. Encode does not allocate unless it
// returns an error.
func Encode(t DataType, o ByteOrder, v Value, dst []uint16) error {
	if o > OrderDCBA {
		return badOrder(o)
	}
	if t == TypeString {
		if len(dst) == 0 {
			return lengthError("encode", t, 0, 1)
		}
		if v.Kind != KindString {
			return rangeError(t, v, "a string")
		}
		if len(v.S) > 2*len(dst) {
			return fmt.Errorf("encode %v %s: %d bytes do not fit in %d registers (%d bytes): %w",
				t, v, len(v.S), len(dst), 2*len(dst), ErrOutOfRange)
		}
		encodeString(o, v.S, dst)
		return nil
	}
	if !t.valid() {
		return badType(t)
	}
	if n := typeInfo[t].regs; len(dst) != n {
		return lengthError("encode", t, len(dst), n)
	}
	var raw uint64
	switch t {
	case TypeBool:
		if v.Kind == KindBool {
			if v.B {
				raw = 1
			}
			break
		}
		u, ok := toUint(v, 1)
		if !ok {
			return rangeError(t, v, "true, false, 0 or 1")
		}
		raw = u
	case TypeInt16:
		i, ok := toInt(v, 16)
		if !ok {
			return rangeError(t, v, "an integer from -32768 to 32767")
		}
		raw = uint64(uint16(i))
	case TypeInt32:
		i, ok := toInt(v, 32)
		if !ok {
			return rangeError(t, v, "an integer from -2147483648 to 2147483647")
		}
		raw = uint64(uint32(i))
	case TypeInt64:
		i, ok := toInt(v, 64)
		if !ok {
			return rangeError(t, v, "an integer from -9223372036854775808 to 9223372036854775807")
		}
		raw = uint64(i)
	case TypeUint16:
		u, ok := toUint(v, math.MaxUint16)
		if !ok {
			return rangeError(t, v, "an integer from 0 to 65535")
		}
		raw = u
	case TypeUint32:
		u, ok := toUint(v, math.MaxUint32)
		if !ok {
			return rangeError(t, v, "an integer from 0 to 4294967295")
		}
		raw = u
	case TypeUint64:
		u, ok := toUint(v, math.MaxUint64)
		if !ok {
			return rangeError(t, v, "an integer from 0 to 18446744073709551615")
		}
		raw = u
	case TypeFloat32:
		f, ok := v.Float()
		if !ok {
			return rangeError(t, v, "a number")
		}
		b, ok := float64To32(f)
		if !ok {
			return rangeError(t, v, "a number within ±3.4028235e+38")
		}
		raw = uint64(b)
	case TypeFloat64:
		f, ok := v.Float()
		if !ok {
			return rangeError(t, v, "a number")
		}
		raw = math.Float64bits(f)
	case TypeBCD16:
		u, ok := toUint(v, 9999)
		if !ok {
			return rangeError(t, v, "an integer from 0 to 9999")
		}
		raw = toBCD(u)
	case TypeBCD32:
		u, ok := toUint(v, 99999999)
		if !ok {
			return rangeError(t, v, "an integer from 0 to 99999999")
		}
		raw = toBCD(u)
	}
	scatter(o, raw, dst)
	return nil
}

// gather assembles the registers into one big-endian number, undoing the
// byte order o: the first register after undoing the word swap ends up most
// significant.
func gather(o ByteOrder, regs []uint16) uint64 {
	var raw uint64
	if o.SwapWords() {
		for i := len(regs) - 1; i >= 0; i-- {
			raw = raw<<16 | uint64(regs[i])
		}
	} else {
		for _, r := range regs {
			raw = raw<<16 | uint64(r)
		}
	}
	if o.SwapBytes() {
		raw = swapBytes(raw)
	}
	return raw
}

// scatter is the inverse of gather: it spreads the low 16*len(dst) bits of
// raw over dst in byte order o.
func scatter(o ByteOrder, raw uint64, dst []uint16) {
	if o.SwapBytes() {
		raw = swapBytes(raw)
	}
	if o.SwapWords() {
		for i := range dst {
			dst[i] = uint16(raw)
			raw >>= 16
		}
	} else {
		for i := len(dst) - 1; i >= 0; i-- {
			dst[i] = uint16(raw)
			raw >>= 16
		}
	}
}

// swapBytes exchanges the two bytes of every 16-bit lane of x.
func swapBytes(x uint64) uint64 {
	const m = 0x00FF00FF00FF00FF
	return x>>8&m | x&m<<8
}

// float32To64 widens the float32 with bits b to a float64. Finite values and
// infinities convert exactly; a NaN keeps its sign and payload (shifted into
// the high mantissa bits, as the hardware does) but, unlike the hardware
// conversion, is not quieted, so float64To32 gives back the same bits.
func float32To64(b uint32) float64 {
	if b&0x7F800000 == 0x7F800000 && b&0x007FFFFF != 0 {
		return math.Float64frombits(uint64(b>>31)<<63 | 0x7FF<<52 | uint64(b&0x007FFFFF)<<29)
	}
	return float64(math.Float32frombits(b))
}

// float64To32 returns the bits of f rounded to the nearest float32, and
// false if f is finite but beyond the float32 range. A NaN keeps its sign
// and the high 23 bits of its payload (a payload that would become zero
// becomes the quiet bit, so the result stays a NaN).
func float64To32(f float64) (uint32, bool) {
	if f != f {
		b := math.Float64bits(f)
		m := uint32(b>>29) & 0x007FFFFF
		if m == 0 {
			m = 0x00400000
		}
		return uint32(b>>63)<<31 | 0x7F800000 | m, true
	}
	f32 := float32(f)
	if math.IsInf(float64(f32), 0) && !math.IsInf(f, 0) {
		return 0, false
	}
	return math.Float32bits(f32), true
}

// fromBCD converts packed BCD of up to eight digits (x < 2^32) to binary;
// ok is false if a nibble is above 9.
func fromBCD(x uint64) (v uint64, ok bool) {
	// Adding 6 to every nibble carries out of a nibble exactly when it is
	// above 9 (the lowest such nibble always carries, as nothing below it
	// does). sum^x^sixes holds the carry into every bit; the mask keeps the
	// carries into bits 4, 8, ..., 32, that is out of each of the 8 digits.
	const sixes = 0x66666666
	if ((x+sixes)^x^sixes)&0x111111110 != 0 {
		return 0, false
	}
	var mul uint64 = 1
	for ; x != 0; x >>= 4 {
		v += (x & 0xF) * mul
		mul *= 10
	}
	return v, true
}

// toBCD converts v (at most eight decimal digits) to packed BCD.
func toBCD(v uint64) uint64 {
	var x uint64
	for s := 0; v != 0; s += 4 {
		x |= (v % 10) << s
		v /= 10
	}
	return x
}

// toInt returns v as an integer of the given bit size if it is exactly one.
func toInt(v Value, size int) (int64, bool) {
	lo, hi := int64(-1)<<(size-1), int64(uint64(1)<<(size-1)-1)
	switch v.Kind {
	case KindInt:
		return v.I, v.I >= lo && v.I <= hi
	case KindUint:
		return int64(v.U), v.U <= uint64(hi)
	case KindBool:
		if v.B {
			return 1, true
		}
		return 0, true
	case KindFloat:
		// ±2^(size-1) are exact float64s; the upper bound is exclusive.
		limit := math.Ldexp(1, size-1)
		if v.F != math.Trunc(v.F) || v.F < -limit || v.F >= limit {
			return 0, false // also NaN (fails every comparison) and ±Inf
		}
		return int64(v.F), true
	}
	return 0, false
}

// toUint returns v as an unsigned integer if it is exactly one in [0, hi].
func toUint(v Value, hi uint64) (uint64, bool) {
	switch v.Kind {
	case KindInt:
		return uint64(v.I), v.I >= 0 && uint64(v.I) <= hi
	case KindUint:
		return v.U, v.U <= hi
	case KindBool:
		if v.B {
			return 1, hi >= 1
		}
		return 0, true
	case KindFloat:
		// float64(hi)+1 is exact for the hi used here (< 2^53) and rounds to
		// 2^64 for MaxUint64, so the exclusive bound is right in both cases.
		if v.F != math.Trunc(v.F) || !(v.F >= 0 && v.F < float64(hi)+1) {
			return 0, false
		}
		return uint64(v.F), true
	}
	return 0, false
}

// decodeString unpacks two bytes per register, trims trailing NULs and
// spaces and replaces bytes that are not valid UTF-8.
func decodeString(o ByteOrder, regs []uint16) string {
	var stack [64]byte
	buf := stack[:0]
	if 2*len(regs) > len(stack) {
		buf = make([]byte, 0, 2*len(regs))
	}
	for _, r := range regs {
		if o.SwapBytes() {
			r = bits.ReverseBytes16(r)
		}
		buf = append(buf, byte(r>>8), byte(r))
	}
	n := len(buf)
	for n > 0 && (buf[n-1] == 0 || buf[n-1] == ' ') {
		n--
	}
	buf = buf[:n]
	if utf8.Valid(buf) {
		return string(buf)
	}
	var sb strings.Builder
	sb.Grow(n + 8)
	for len(buf) > 0 {
		r, size := utf8.DecodeRune(buf)
		if r == utf8.RuneError && size == 1 {
			sb.WriteRune(utf8.RuneError)
		} else {
			sb.Write(buf[:size])
		}
		buf = buf[size:]
	}
	return sb.String()
}

// encodeString packs s two bytes per register, padding with NULs. The
// caller has checked that s fits.
func encodeString(o ByteOrder, s string, dst []uint16) {
	for i := range dst {
		var hi, lo byte
		if 2*i < len(s) {
			hi = s[2*i]
		}
		if 2*i+1 < len(s) {
			lo = s[2*i+1]
		}
		r := uint16(hi)<<8 | uint16(lo)
		if o.SwapBytes() {
			r = bits.ReverseBytes16(r)
		}
		dst[i] = r
	}
}

func rangeError(t DataType, v Value, want string) error {
	if v.Kind == 0 {
		return fmt.Errorf("encode %v: want %s, got no value: %w", t, want, ErrOutOfRange)
	}
	return fmt.Errorf("encode %v: want %s, got %v %v: %w", t, want, v.Kind, v, ErrOutOfRange)
}

func lengthError(op string, t DataType, got, want int) error {
	if t == TypeString {
		return fmt.Errorf("%s %v: needs at least 1 register, got none: %w", op, t, ErrLength)
	}
	unit := "registers"
	if want == 1 {
		unit = "register"
	}
	return fmt.Errorf("%s %v: needs %d %s, got %d: %w", op, t, want, unit, got, ErrLength)
}

func badType(t DataType) error { return fmt.Errorf("mapping: unknown data type %v", t) }

func badOrder(o ByteOrder) error { return fmt.Errorf("mapping: unknown byte order %v", o) }
