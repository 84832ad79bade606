package mapping

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"fieldbridge/adapters"
)

// Commands: what a device type lets the platform do to a device. A command
// is either an ordered list of point writes (Modbus) or a templated text
// request (serial-line instruments). Values come from the command's JSON
// payload (a path such as "$.d.value") or are fixed in the configuration.

// Errors of command planning. A plan that fails writes nothing; test for
// them with errors.Is.
var (
	// ErrUnknownCommand means the device type declares no command of that name.
	ErrUnknownCommand = errors.New("unknown command")
	// ErrBadPayload means the payload is not a JSON object, or lacks a value
	// a write takes from it, or holds it with the wrong JSON type.
	ErrBadPayload = errors.New("bad command payload")
	// ErrNotWritable means a write names a point that is not writable.
	ErrNotWritable = errors.New("point is not writable")
	// ErrBadValue means a value is outside the point's min/max, not one of
	// its enum names, or not representable in its data type.
	ErrBadValue = errors.New("value not accepted by the point")
)

// DefaultCommandTimeout bounds a command's writes and readback when the
// configuration sets no timeout.
const DefaultCommandTimeout = 5 * time.Second

// Command is one command of a device type.
type Command struct {
	Name   string
	Writes []Write // in order; empty for a text command
	// Send is a text request for a serial-line instrument, with {$.path}
	// placeholders replaced by payload values (see ParseTemplate).
	Send string
	// Readback reads every written point again after the writes and reports
	// the values read.
	Readback bool
	Timeout  time.Duration
}

// Write is one point a command writes: the value at Path in the payload
// when Path is set, Literal otherwise.
type Write struct {
	Point   string
	Path    string
	Literal Value
}

// IsPath reports whether a configured string value is a JSON path into the
// payload ("$" or "$.…") rather than a literal string.
func IsPath(s string) bool { return s == "$" || strings.HasPrefix(s, "$.") }

// ParsePath splits a JSON path into its object keys: "$.d.value" is
// ["d", "value"]. Keys are letters, digits, '_' and '-'; array indexes and
// quoting are not supported.
func ParsePath(s string) ([]string, error) {
	if s == "$" {
		return nil, nil
	}
	rest, ok := strings.CutPrefix(s, "$.")
	if !ok {
		return nil, fmt.Errorf("JSON path %q must start with \"$.\"", s)
	}
	keys := strings.Split(rest, ".")
	for _, k := range keys {
		if k == "" {
			return nil, fmt.Errorf("JSON path %q has an empty key", s)
		}
		for _, r := range k {
			if !(r == '_' || r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
				return nil, fmt.Errorf("JSON path %q: key %q may only hold letters, digits, '_' and '-'", s, k)
			}
		}
	}
	return keys, nil
}

// TemplatePart is a piece of a text template: literal text, or the value at
// a JSON path.
type TemplatePart struct {
	Text string
	Path []string // set for a placeholder
	Raw  string   // the placeholder's path as written
}

// ParseTemplate parses a send template: text with {$.path} placeholders;
// "{{" and "}}" stand for literal braces.
func ParseTemplate(s string) ([]TemplatePart, error) {
	var parts []TemplatePart
	var text strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case (c == '{' || c == '}') && i+1 < len(s) && s[i+1] == c:
			text.WriteByte(c)
			i++
		case c == '{':
			end := strings.IndexByte(s[i:], '}')
			if end < 0 {
				return nil, fmt.Errorf("placeholder at byte %d is not closed with }", i)
			}
			raw := s[i+1 : i+end]
			path, err := ParsePath(raw)
			if err != nil {
				return nil, fmt.Errorf("placeholder {%s}: %v", raw, err)
			}
			if text.Len() > 0 {
				parts = append(parts, TemplatePart{Text: text.String()})
				text.Reset()
			}
			parts = append(parts, TemplatePart{Path: path, Raw: raw})
			i += end
		case c == '}':
			return nil, fmt.Errorf("unmatched } at byte %d (write }} for a literal brace)", i)
		default:
			text.WriteByte(c)
		}
	}
	if text.Len() > 0 {
		parts = append(parts, TemplatePart{Text: text.String()})
	}
	return parts, nil
}

// Command returns the named command, or nil.
func (t *DeviceType) Command(name string) *Command {
	for i := range t.Commands {
		if t.Commands[i].Name == name {
			return &t.Commands[i]
		}
	}
	return nil
}

// CommandNames lists the device type's commands, for messages.
func (t *DeviceType) CommandNames() []string {
	names := make([]string, len(t.Commands))
	for i, c := range t.Commands {
		names[i] = c.Name
	}
	return names
}

// CheckWrite checks a value to be written to the point: the point is
// writable, the value has a kind the point takes, lies within min/max and,
// for an enum point, is one of its names (or their integer values). It
// returns the value as it will be encoded (enum names turned into their
// integers). Errors wrap ErrNotWritable or ErrBadValue.
func (p Point) CheckWrite(v Value) (Value, error) {
	if !p.Writable {
		return v, fmt.Errorf("point %q: %w", p.Name, ErrNotWritable)
	}
	if len(p.Enum) > 0 {
		return p.enumValue(v)
	}
	switch {
	case p.Type == TypeString:
		if v.Kind != KindString {
			return v, fmt.Errorf("point %q takes a string, got %v %v: %w", p.Name, v.Kind, v, ErrBadValue)
		}
		if len(v.S) > 2*p.Length {
			return v, fmt.Errorf("point %q holds at most %d bytes, got %d: %w", p.Name, 2*p.Length, len(v.S), ErrBadValue)
		}
		return v, nil
	case p.Type == TypeBool || p.Table.IsBit():
		if v.Kind != KindBool {
			return v, fmt.Errorf("point %q takes true or false, got %v %v: %w", p.Name, v.Kind, v, ErrBadValue)
		}
		return v, nil
	}
	f, ok := v.Float()
	if !ok || v.Kind == KindBool {
		return v, fmt.Errorf("point %q takes a number, got %v %v: %w", p.Name, v.Kind, v, ErrBadValue)
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return v, fmt.Errorf("point %q takes a finite number, got %v: %w", p.Name, v, ErrBadValue)
	}
	if p.Min != nil && f < *p.Min || p.Max != nil && f > *p.Max {
		return v, fmt.Errorf("point %q: %v is outside %s: %w", p.Name, v, p.bounds(), ErrBadValue)
	}
	return v, nil
}

func (p Point) bounds() string {
	lo, hi := "-inf", "+inf"
	if p.Min != nil {
		lo = strconv.FormatFloat(*p.Min, 'g', -1, 64)
	}
	if p.Max != nil {
		hi = strconv.FormatFloat(*p.Max, 'g', -1, 64)
	}
	return "[" + lo + ", " + hi + "]"
}

// enumValue turns an enum name (or one of the enum's integers) into the
// integer to write.
func (p Point) enumValue(v Value) (Value, error) {
	if v.Kind == KindString {
		for n, name := range p.Enum {
			if name == v.S {
				return Value{Kind: KindInt, I: n}, nil
			}
		}
		return v, fmt.Errorf("point %q: %v is not one of %s: %w", p.Name, v, p.enumNames(), ErrBadValue)
	}
	if i, ok := toInt(v, 64); ok && v.Kind != KindBool {
		if _, known := p.Enum[i]; known {
			return Value{Kind: KindInt, I: i}, nil
		}
	}
	return v, fmt.Errorf("point %q: %v is not one of %s: %w", p.Name, v, p.enumNames(), ErrBadValue)
}

func (p Point) enumNames() string {
	keys := make([]int64, 0, len(p.Enum))
	for k := range p.Enum {
		keys = append(keys, k)
	}
	for i := 1; i < len(keys); i++ { // tiny: insertion sort keeps messages stable
		for j := i; j > 0 && keys[j] < keys[j-1]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	names := make([]string, len(keys))
	for i, k := range keys {
		names[i] = strconv.Quote(p.Enum[k])
	}
	return strings.Join(names, ", ")
}

// EncodeWrite turns a value into the write that stores it in the point: the
// exact inverse of decoding. Scale and offset are undone (integer types
// round to the nearest raw value), enum names become their integers,
// strings are padded with NULs. A bool that is one bit of a register
// becomes a read-modify-write: Registers holds the bit's new state and Mask
// the bit, so that the bus owner reads the register and changes only that
// bit, with no other write in between. Unit and Device are left for the
// caller. Errors wrap ErrNotWritable or ErrBadValue.
func (p Point) EncodeWrite(v Value) (adapters.WriteRequest, error) {
	w := adapters.WriteRequest{Table: p.Table, Address: p.Address}
	v, err := p.CheckWrite(v)
	if err != nil {
		return w, err
	}
	switch {
	case p.Table.IsBit():
		w.Bits = []bool{v.B}
		return w, nil
	case p.Bit >= 0:
		mask := p.register(1 << uint(p.Bit))
		var reg uint16
		if v.B {
			reg = mask
		}
		w.Registers, w.Mask = []uint16{reg}, mask
		return w, nil
	}
	raw := v
	if p.Scaled() {
		f, _ := v.Float()
		f = (f - p.Offset) / p.Scale
		if p.Type.Kind() == KindInt || p.Type.Kind() == KindUint {
			f = math.Round(f)
		}
		raw = Value{Kind: KindFloat, F: f}
	}
	w.Registers = make([]uint16, p.Registers())
	if err := Encode(p.Type, p.Order, raw, w.Registers); err != nil {
		return w, fmt.Errorf("point %q: %v: %w", p.Name, err, ErrBadValue)
	}
	return w, nil
}

// DecodeWrite is what the point reads back from the registers or bits of a
// write (the transformed value, an enum name), so a command result can say
// what was actually written. For a read-modify-write only the bit counts.
func (p Point) DecodeWrite(w adapters.WriteRequest) (Value, error) {
	b := adapters.Block{Range: adapters.Range{Table: w.Table, Address: w.Address, Count: uint16(w.Count())}, Registers: w.Registers, Bits: w.Bits}
	return p.decode(&b)
}

// ReadRange is the range that reads the point back.
func (p Point) ReadRange(unit uint8) adapters.Range {
	return adapters.Range{Unit: unit, Table: p.Table, Address: p.Address, Count: uint16(p.Registers())}
}

// Decode decodes the point from a block that covers it.
func (p Point) Decode(b adapters.Block) (Value, error) {
	if b.Err != nil {
		return Value{}, b.Err
	}
	if p.Table.IsBit() && int(p.Address)-int(b.Range.Address) >= len(b.Bits) ||
		!p.Table.IsBit() && int(p.Address)-int(b.Range.Address)+p.Registers() > len(b.Registers) ||
		p.Address < b.Range.Address {
		return Value{}, fmt.Errorf("point %q: block %s does not cover it", p.Name, b.Range)
	}
	return p.decode(&b)
}
