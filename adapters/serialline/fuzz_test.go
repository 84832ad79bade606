package serialline

import (
	"bytes"
	"math"
	"testing"
)

const maxFuzzInput = 16 << 10

// FuzzLineParser feeds arbitrary bytes through the splitter and the parser
// of a scale-like instrument under each framing: nothing may panic, no
// frame may exceed the maximum length or contain the delimiter, the buffer
// stays bounded, and a frame that parses fills the image with finite
// numbers.
func FuzzLineParser(f *testing.F) {
	f.Add(uint8(0), uint8(0), []byte("ST,GS,+001.234 kg\r\nUS,GS,-2.5 kg\r\n"))
	f.Add(uint8(1), uint8(3), []byte("\x02ST;1,5;kg\x03\x02US;2,5;lb\x03"))
	f.Add(uint8(2), uint8(1), []byte("ST 12.5 kgST 13.5 kg"))
	f.Add(uint8(0), uint8(7), []byte("garbage\r\nST,GS,nan kg\r\n\r\n,,,\r\n"))
	f.Add(uint8(1), uint8(2), bytes.Repeat([]byte{0x02}, 100))
	f.Add(uint8(0), uint8(0), bytes.Repeat([]byte("9"), 3000))
	configs := []Config{
		{Framing: Framing{Delimiter: "\r\n", MaxLength: 64},
			Parser: Parser{Regexp: `^(?P<status>ST|US),GS,(?P<weight>[-+ ]?[0-9.]+)\s*(?P<unit>\w+)$`},
			Fields: []Field{{Name: "weight"}, {Name: "status", Type: Text, Length: 1}, {Name: "unit", Type: Text, Length: 2}}},
		{Framing: Framing{Start: "\x02", Delimiter: "\x03", MaxLength: 64},
			Parser: Parser{Separator: ";", DecimalComma: true},
			Fields: []Field{{Name: "status", Column: 1, Type: Text, Length: 1}, {Name: "weight", Column: 2}, {Name: "unit", Column: 3, Type: Text}}},
		{Framing: Framing{Length: 10},
			Parser: Parser{Separator: " "},
			Fields: []Field{{Name: "weight", Column: 2}}},
	}
	f.Fuzz(func(t *testing.T, which, step uint8, in []byte) {
		if len(in) > maxFuzzInput {
			return
		}
		cfg := configs[int(which)%len(configs)]
		fields, err := cfg.fields()
		if err != nil {
			t.Fatal(err)
		}
		ps, err := newParser(cfg.Parser, fields)
		if err != nil {
			t.Fatal(err)
		}
		sp := newSplitter(cfg.Framing)
		n := int(step)%32 + 1
		for i := 0; i < len(in); i += n {
			sp.write(in[i:min(i+n, len(in))])
			for fr := sp.next(); fr != nil; fr = sp.next() {
				if cfg.Framing.Length > 0 && len(fr) != cfg.Framing.Length {
					t.Fatalf("frame %q is not %d bytes", fr, cfg.Framing.Length)
				}
				if len(fr) > sp.maxLength {
					t.Fatalf("frame of %d bytes, more than %d", len(fr), sp.maxLength)
				}
				if cfg.Framing.Delimiter != "" && bytes.Contains(fr, []byte(cfg.Framing.Delimiter)) {
					t.Fatalf("frame %q contains the delimiter", fr)
				}
				img := make([]uint16, ps.size)
				if err := ps.parse(fr, img); err != nil {
					continue
				}
				for i, s := range ps.slots {
					if s.Type == Number {
						if v, ok := decode(img, ps.slots[i]).(float64); !ok || math.IsNaN(v) || math.IsInf(v, 0) {
							t.Fatalf("frame %q gave %v for %s", fr, v, s.Name)
						}
					}
				}
			}
			if len(sp.buf) > sp.maxLength+len(sp.delim)+n+len(sp.start) {
				t.Fatalf("splitter holds %d bytes", len(sp.buf))
			}
		}
	})
}
