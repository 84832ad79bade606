package serialline

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
)

// parser turns one frame into the register image of its fields. It does no
// I/O, so it can be fuzzed.
type parser struct {
	re           *regexp.Regexp
	group        []int // per field: its submatch index
	sep          string
	blanks       bool // sep is " ": split at runs of blanks
	decimalComma bool
	fields       []Field
	slots        []Slot
	size         int // registers in the image
}

func newParser(p Parser, fields []Field) (*parser, error) {
	ps := &parser{sep: p.Separator, blanks: p.Separator == " ", decimalComma: p.DecimalComma,
		fields: fields, slots: Layout(fields)}
	if n := len(ps.slots); n > 0 {
		last := ps.slots[n-1]
		ps.size = int(last.Address) + last.Count
	}
	if p.Regexp != "" {
		re, err := regexp.Compile(p.Regexp)
		if err != nil {
			return nil, err
		}
		ps.re = re
		for _, f := range fields {
			ps.group = append(ps.group, re.SubexpIndex(f.Name))
		}
	}
	return ps, nil
}

// parse fills img (len ps.size) from frame, or returns why the frame is
// malformed; img is then partly written.
func (ps *parser) parse(frame []byte, img []uint16) error {
	texts, err := ps.split(frame)
	if err != nil {
		return err
	}
	for i, f := range ps.fields {
		s := ps.slots[i]
		dst := img[s.Address : int(s.Address)+s.Count]
		if f.Type == Text {
			putText(dst, texts[i])
			continue
		}
		v, err := ps.number(texts[i])
		if err != nil {
			return fmt.Errorf("field %s: %w", f.Name, err)
		}
		b := math.Float64bits(v)
		for k := range 4 {
			dst[k] = uint16(b >> (48 - 16*k))
		}
	}
	return nil
}

// split returns the text of each field.
func (ps *parser) split(frame []byte) ([]string, error) {
	texts := make([]string, len(ps.fields))
	if ps.re != nil {
		m := ps.re.FindSubmatchIndex(frame)
		if m == nil {
			return nil, errors.New("the frame does not match the parser regexp")
		}
		for i, g := range ps.group {
			if m[2*g] < 0 {
				return nil, fmt.Errorf("field %s: its group did not match", ps.fields[i].Name)
			}
			texts[i] = string(frame[m[2*g]:m[2*g+1]])
		}
		return texts, nil
	}
	var cols []string
	if ps.blanks {
		cols = strings.FieldsFunc(string(frame), func(r rune) bool { return r == ' ' || r == '\t' })
	} else {
		cols = strings.Split(string(frame), ps.sep)
	}
	for i, f := range ps.fields {
		if f.Column > len(cols) {
			return nil, fmt.Errorf("field %s: the frame has %d columns, not %d", f.Name, len(cols), f.Column)
		}
		texts[i] = strings.TrimSpace(cols[f.Column-1])
	}
	return texts, nil
}

// number parses a Number field.
func (ps *parser) number(s string) (float64, error) {
	s = strings.TrimSpace(s)
	if ps.decimalComma {
		s = strings.Replace(s, ",", ".", 1)
	}
	if s == "" || strings.ContainsAny(s, "_xXpP") { // decimal only: no hex floats, no digit separators
		return 0, fmt.Errorf("%q is not a decimal number", s)
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("%q is not a finite decimal number", s)
	}
	return v, nil
}

// putText stores s two bytes per register, first byte high, NUL-padded and
// cut to fit.
func putText(dst []uint16, s string) {
	var pair [2]byte
	for i := range dst {
		pair[0], pair[1] = 0, 0
		if 2*i < len(s) {
			pair[0] = s[2*i]
		}
		if 2*i+1 < len(s) {
			pair[1] = s[2*i+1]
		}
		dst[i] = binary.BigEndian.Uint16(pair[:])
	}
}
