package serialline

import (
	"math"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// frames runs the splitter over in, fed step bytes at a time.
func frames(f Framing, in string, step int) (got []string, sp *splitter) {
	sp = newSplitter(f)
	for i := 0; i < len(in); i += step {
		sp.write([]byte(in[i:min(i+step, len(in))]))
		for fr := sp.next(); fr != nil; fr = sp.next() {
			got = append(got, string(fr))
		}
	}
	return got, sp
}

func TestSplitter(t *testing.T) {
	tests := []struct {
		name       string
		framing    Framing
		in         string
		want       []string
		noise      uint64
		broken     uint64
		pendingEnd bool
	}{
		{"crlf lines", Framing{Delimiter: "\r\n"}, "a,1\r\nb,2\r\nc,", []string{"a,1", "b,2"}, 0, 0, true},
		{"empty line", Framing{Delimiter: "\n"}, "x\n\ny\n", []string{"x", "", "y"}, 0, 0, false},
		{"stx etx", Framing{Start: "\x02", Delimiter: "\x03"}, "zz\x0212.5\x03\r\n\x02bad", []string{"12.5"}, 4, 0, true},
		{"restart at a new start", Framing{Start: "$", Delimiter: "\n"}, "$GPG$GPGGA,1\n", []string{"GPGGA,1"}, 0, 1, false},
		{"fixed length", Framing{Length: 4}, "12345678", []string{"1234", "5678"}, 0, 0, false},
		{"fixed length after start", Framing{Start: "\x02", Length: 3}, "x\x02abc\x02de", []string{"abc"}, 1, 0, true},
		{"too long", Framing{Delimiter: "\n", MaxLength: 4}, "123456789\n12\n", []string{"12"}, 0, 1, false},
		{"too long without delimiter", Framing{Delimiter: "\r\n", MaxLength: 4}, "123456789012345\r\nok\r\n", []string{"ok"}, 0, 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, step := range []int{1, 2, 5, len(tt.in)} {
				got, sp := frames(tt.framing, tt.in, step)
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("step %d: frames of %q (-want +got):\n%s", step, tt.in, diff)
				}
				if sp.noise != tt.noise || sp.broken != tt.broken {
					t.Errorf("step %d: noise %d, broken %d; want %d, %d", step, sp.noise, sp.broken, tt.noise, tt.broken)
				}
				if sp.pending() != tt.pendingEnd {
					t.Errorf("step %d: pending() = %v at the end, want %v", step, sp.pending(), tt.pendingEnd)
				}
			}
		})
	}
}

// decode reads the image back the way the mapping codec does.
func decode(img []uint16, s Slot) any {
	regs := img[s.Address : int(s.Address)+s.Count]
	if s.Type == Number {
		var b uint64
		for _, r := range regs {
			b = b<<16 | uint64(r)
		}
		return math.Float64frombits(b)
	}
	var sb strings.Builder
	for _, r := range regs {
		sb.WriteByte(byte(r >> 8))
		sb.WriteByte(byte(r))
	}
	return strings.TrimRight(sb.String(), "\x00")
}

func TestParser(t *testing.T) {
	scale := Config{
		Parser: Parser{Regexp: `^(?P<status>ST|US),GS,(?P<weight>[-+ ]?[0-9.]+)\s*(?P<unit>\w+)$`},
		Fields: []Field{{Name: "weight"}, {Name: "status", Type: Text, Length: 1}, {Name: "unit", Type: Text, Length: 2}},
	}
	columns := Config{
		Parser: Parser{Separator: ";", DecimalComma: true},
		Fields: []Field{{Name: "t", Column: 2}, {Name: "rh", Column: 4}},
	}
	blanks := Config{
		Parser: Parser{Separator: " "},
		Fields: []Field{{Name: "a", Column: 1}, {Name: "b", Column: 3}},
	}
	implicit := Config{Parser: Parser{Regexp: `T=(?P<t>\S+) P=(?P<p>\S+)`}}
	tests := []struct {
		name  string
		cfg   Config
		frame string
		want  map[string]any // nil: malformed
	}{
		{"scale", scale, "ST,GS,+001.234 kg", map[string]any{"weight": 1.234, "status": "ST", "unit": "kg"}},
		{"scale negative", scale, "US,GS,-12.5kg", map[string]any{"weight": -12.5, "status": "US", "unit": "kg"}},
		{"scale no match", scale, "XX,GS,1kg", nil},
		{"scale not a number", scale, "ST,GS,1.2.3 kg", nil},
		{"columns decimal comma", columns, "A; 21,5 ;x;40", map[string]any{"t": 21.5, "rh": 40.0}},
		{"columns missing", columns, "A;21,5;x", nil},
		{"columns empty", columns, "A;;x;40", nil},
		{"blanks", blanks, "  1.5\t x   -2e3 ", map[string]any{"a": 1.5, "b": -2000.0}},
		{"nan refused", blanks, "nan x 1", nil},
		{"inf refused", blanks, "1 x Inf", nil},
		{"hex refused", blanks, "0x10 x 1", nil},
		{"implicit fields", implicit, "T=20.5 P=1013", map[string]any{"t": 20.5, "p": 1013.0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fields, err := tt.cfg.fields()
			if err != nil {
				t.Fatal(err)
			}
			ps, err := newParser(tt.cfg.Parser, fields)
			if err != nil {
				t.Fatal(err)
			}
			img := make([]uint16, ps.size)
			err = ps.parse([]byte(tt.frame), img)
			if tt.want == nil {
				if err == nil {
					t.Fatalf("parse(%q) accepted a malformed frame", tt.frame)
				}
				return
			}
			if err != nil {
				t.Fatalf("parse(%q) = %v", tt.frame, err)
			}
			got := map[string]any{}
			for _, s := range ps.slots {
				got[s.Name] = decode(img, s)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("parse(%q) (-want +got):\n%s", tt.frame, diff)
			}
		})
	}
}

func TestTextIsCutToFit(t *testing.T) {
	img := make([]uint16, 2)
	putText(img, "abcdefg")
	if got := decode(img, Slot{Type: Text, Count: 2}); got != "abcd" {
		t.Errorf("text = %q, want %q", got, "abcd")
	}
}

func TestLayout(t *testing.T) {
	got := Layout([]Field{{Name: "w"}, {Name: "s", Type: Text}, {Name: "u", Type: Text, Length: 2}, {Name: "t"}})
	want := []Slot{
		{Name: "w", Type: Number, Address: 0, Count: 4},
		{Name: "s", Type: Text, Address: 4, Count: DefaultTextRegs},
		{Name: "u", Type: Text, Address: 12, Count: 2},
		{Name: "t", Type: Number, Address: 14, Count: 4},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Layout (-want +got):\n%s", diff)
	}
}

func TestConfigCheck(t *testing.T) {
	good := Config{Port: "/dev/ttyS0", Framing: Framing{Delimiter: "\r\n"}, Parser: Parser{Separator: ","}, Fields: []Field{{Name: "a", Column: 1}}}
	if _, err := New(good); err != nil {
		t.Fatalf("New(%+v) = %v", good, err)
	}
	tests := []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"no framing", func(c *Config) { c.Framing = Framing{} }, "delimiter or a fixed length"},
		{"both framings", func(c *Config) { c.Framing.Length = 3 }, "not both"},
		{"no parser", func(c *Config) { c.Parser = Parser{} }, "regular expression or a column separator"},
		{"bad regexp", func(c *Config) { c.Parser = Parser{Regexp: "("} }, "regexp"},
		{"regexp without groups", func(c *Config) { c.Parser = Parser{Regexp: "a+"}; c.Fields = nil }, "no named group"},
		{"field not a group", func(c *Config) { c.Parser = Parser{Regexp: "(?P<b>x)"}; c.Fields = []Field{{Name: "a"}} }, "not a named group"},
		{"no column", func(c *Config) { c.Fields = []Field{{Name: "a"}} }, "needs a column"},
		{"duplicate field", func(c *Config) { c.Fields = append(c.Fields, Field{Name: "a", Column: 2}) }, "twice"},
		{"length on a number", func(c *Config) { c.Fields[0].Length = 3 }, "only text fields"},
		{"no port", func(c *Config) { c.Port = "" }, "serial port or a tcp address"},
		{"port and address", func(c *Config) { c.Address = "h:1" }, "not both"},
		{"bad address", func(c *Config) { c.Port = ""; c.Address = "nohost" }, "address"},
		{"bad unit format", func(c *Config) { c.Request = "#{unit:x}\r" }, "request"},
		{"bad parity", func(c *Config) { c.Parity = "mark" }, "parity"},
		{"too many registers", func(c *Config) { c.Fields = []Field{{Name: "a", Column: 1, Type: Text, Length: 70000}} }, "registers"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good
			cfg.Fields = append([]Field(nil), good.Fields...)
			tt.change(&cfg)
			_, err := New(cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New = %v, want an error about %q", err, tt.want)
			}
		})
	}
}

func TestRenderRequest(t *testing.T) {
	tests := []struct{ tmpl, want string }{
		{"P\r\n", "P\r\n"},
		{"#{unit}\r", "#7\r"},
		{"#{unit:%02d}\r", "#07\r"},
		{"@{unit:%02X}?", "@07?"},
	}
	for _, tt := range tests {
		if got, err := renderRequest(tt.tmpl, 7); err != nil || got != tt.want {
			t.Errorf("renderRequest(%q, 7) = %q, %v; want %q", tt.tmpl, got, err, tt.want)
		}
	}
}
