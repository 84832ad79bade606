package mapping

import (
	"fmt"
	"math"
	"strconv"

	"fieldbridge/adapters"
)

// Point is one named value of a device: where it lives, how its registers
// are decoded and how the raw number is transformed.
type Point struct {
	Name    string
	Table   adapters.Table
	Address uint16 // zero-based protocol address
	Type    DataType
	Order   ByteOrder
	Bit     int // bit index 0..15 inside a register for a bool point; -1 when unused
	Length  int // registers of a string point

	Scale    float64 // multiplier applied to the raw value; 1 when not configured
	Offset   float64 // added after scaling
	Decimals int     // round the transformed value to this many decimals; -1 keeps full precision
	Unit     string

	Writable bool
	Min, Max *float64 // bounds a written value must respect

	// Deadband and DeadbandPercent make small changes not count as a change
	// for on-change events: a value changed when it moved by more than
	// Deadband, or by more than DeadbandPercent of the last value sent.
	Deadband        float64
	DeadbandPercent float64

	// Enum names integer values; the JSON value is then the name (or the
	// number as text when the device reports a value without a name).
	Enum map[int64]string
}

// Problem is a configuration mistake in one attribute of a point, reported
// by Check so that the config loader can attach it to a source range.
type Problem struct {
	Attr    string // attribute the problem is about ("type", "bit", ...)
	Summary string
	Detail  string
}

// Registers returns how many registers (or bits, for a bit table) the point
// occupies from its address on.
func (p Point) Registers() int {
	switch {
	case p.Table.IsBit():
		return 1
	case p.Type == TypeString:
		return p.Length
	default:
		return p.Type.Registers()
	}
}

// Scaled reports whether scale or offset change the raw value, which makes the
// JSON value a number with a fraction.
func (p Point) Scaled() bool { return p.Scale != 1 || p.Offset != 0 }

// Check reports every combination of settings that cannot work. It does not
// know about other points (overlaps are checked per device type).
func (p Point) Check() []Problem {
	var probs []Problem
	add := func(attr, summary, detail string) {
		probs = append(probs, Problem{Attr: attr, Summary: summary, Detail: detail})
	}
	if p.Table.IsBit() && p.Type != TypeBool {
		add("type", "Type does not fit the table",
			fmt.Sprintf("A %s holds single bits; only type = \"bool\" can be read from it (got %q).", p.Table, p.Type))
	}
	if p.Bit >= 0 {
		switch {
		case p.Table.IsBit():
			add("bit", "Bit index on a bit table", fmt.Sprintf("A %s is already a single bit; remove bit.", p.Table))
		case p.Type != TypeBool:
			add("bit", "Bit index on a non-bool point", "bit selects one bit of a register and needs type = \"bool\".")
		case p.Bit > 15:
			add("bit", "Bit index out of range", fmt.Sprintf("A register has bits 0 to 15; got %d.", p.Bit))
		}
	}
	if p.Type == TypeString && p.Length <= 0 {
		add("length", "String without a length", "A string point needs length = <number of registers> (two characters each).")
	}
	if p.Type != TypeString && p.Length > 0 {
		add("length", "Length on a non-string point", "Only string points take a length; the width of other types follows from the type.")
	}
	if n := p.Registers(); n > 0 && int(p.Address)+n > 65536 {
		add("address", "Address out of range",
			fmt.Sprintf("The point needs %d registers from address %d, past the last address 65535.", n, p.Address))
	}
	if p.Registers() > adapters.MaxReadRegisters {
		add("length", "Point too long for one request",
			fmt.Sprintf("A read request carries at most %d registers.", adapters.MaxReadRegisters))
	}
	if p.Scale == 0 || math.IsNaN(p.Scale) || math.IsInf(p.Scale, 0) {
		add("scale", "Invalid scale", "scale must be a finite number other than zero.")
	}
	if (p.Type == TypeString || p.Type == TypeBool) && p.Scaled() {
		add("scale", "Scale or offset on a non-numeric point", fmt.Sprintf("A %s value cannot be scaled.", p.Type))
	}
	if p.Writable && !p.Table.Writable() {
		add("writable", "Table is read-only",
			fmt.Sprintf("Only coils and holding registers can be written; this point is in the %s table.", p.Table))
	}
	numeric := p.Type != TypeString && p.Type != TypeBool && len(p.Enum) == 0
	if (p.Deadband != 0 || p.DeadbandPercent != 0) && !numeric {
		add("deadband", "Deadband on a non-numeric point", fmt.Sprintf("A deadband needs a number; this point is a %s.", p.pointKind()))
	}
	if p.Deadband < 0 || p.DeadbandPercent < 0 {
		add("deadband", "Negative deadband", "A deadband is a size of change, 0 or more.")
	}
	if len(p.Enum) > 0 && (p.Type.Kind() != KindInt && p.Type.Kind() != KindUint || p.Bit >= 0) {
		add("enum", "Enum on a non-integer point", fmt.Sprintf("enum names integer values; a %s point cannot have one.", p.Type))
	}
	if len(p.Enum) > 0 && p.Scaled() {
		add("enum", "Enum with scale or offset", "enum names the raw integer values; remove scale and offset.")
	}
	if p.Min != nil && p.Max != nil && *p.Min > *p.Max {
		add("min", "min is greater than max", "Swap the bounds.")
	}
	return probs
}

// decode extracts and transforms the point's value from a block that covers it.
func (p Point) decode(b *adapters.Block) (Value, error) {
	off := int(p.Address) - int(b.Range.Address)
	if p.Table.IsBit() {
		return Value{Kind: KindBool, B: b.Bits[off]}, nil
	}
	regs := b.Registers[off : off+p.Registers()]
	if p.Bit >= 0 {
		return Value{Kind: KindBool, B: DecodeBit(p.register(regs[0]), uint8(p.Bit))}, nil
	}
	v, err := Decode(p.Type, p.Order, regs)
	if err != nil {
		return v, err
	}
	if p.Enum != nil {
		return p.enumName(v), nil
	}
	return p.transform(v), nil
}

// enumName turns an integer into its configured name.
func (p Point) enumName(v Value) Value {
	n := v.I
	if v.Kind == KindUint {
		n = int64(v.U)
	}
	name, ok := p.Enum[n]
	if !ok {
		name = strconv.FormatInt(n, 10)
	}
	return Value{Kind: KindString, S: name}
}

func (p Point) pointKind() string {
	if len(p.Enum) > 0 {
		return "enum"
	}
	return p.Type.String()
}

// changed reports whether v differs from last by more than the deadband.
func (p *Point) changed(last, v Value) bool {
	if v.Kind != KindFloat && v.Kind != KindInt && v.Kind != KindUint || (p.Deadband == 0 && p.DeadbandPercent == 0) {
		return v != last
	}
	a, _ := last.Float()
	b, _ := v.Float()
	diff := math.Abs(b - a)
	if p.Deadband > 0 && diff > p.Deadband {
		return true
	}
	if p.DeadbandPercent > 0 && diff > math.Abs(a)*p.DeadbandPercent/100 {
		return true
	}
	return false
}

// transform applies scale, offset and rounding. Unscaled integers stay integers.
func (p Point) transform(v Value) Value {
	if v.Kind == KindString || v.Kind == KindBool {
		return v
	}
	if !p.Scaled() && p.Decimals < 0 {
		return v
	}
	f, _ := v.Float()
	f = f*p.Scale + p.Offset
	if p.Decimals >= 0 {
		pow := math.Pow10(p.Decimals)
		f = math.Round(f*pow) / pow
	}
	return Value{Kind: KindFloat, F: f}
}

// where describes the registers a point reads, for messages.
func (p Point) where() string {
	if n := p.Registers(); n > 1 {
		return fmt.Sprintf("%s %d-%d as %s", p.Table, p.Address, int(p.Address)+n-1, p.Type)
	}
	return fmt.Sprintf("%s %d as %s", p.Table, p.Address, p.Type)
}

// register puts a register's bytes in the point's order, so that bit 0 is
// the low bit of the value the device means (byte_order = "BA" devices
// send the low byte first). The swap is its own inverse, so it also turns a
// value back into the register to write.
func (p Point) register(reg uint16) uint16 {
	if p.Order.SwapBytes() {
		return reg>>8 | reg<<8
	}
	return reg
}

// SetRegisterBit returns reg with the point's bit set to on, honouring the
// point's byte order.
func (p Point) SetRegisterBit(reg uint16, on bool) uint16 {
	return p.register(SetBit(p.register(reg), uint8(p.Bit), on))
}
