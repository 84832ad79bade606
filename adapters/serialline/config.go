package serialline

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"
	"time"
)

// Defaults for the settings a Config leaves at zero.
const (
	DefaultBaud      = 9600
	DefaultTimeout   = time.Second
	DefaultMaxAge    = 10 * time.Second
	DefaultReuse     = 100 * time.Millisecond
	DefaultMaxLength = 1024
	DefaultTextRegs  = 8 // 16 characters
)

// Config configures a serial-line bus: the line, how frames are cut out of
// the byte stream, how fields are parsed out of a frame, and whether the
// instrument is asked for each reading (query mode) or prints by itself
// (push mode).
type Config struct {
	// The line: a serial port (Port and its settings; defaults 9600 baud,
	// 8 data bits, no parity, 1 stop bit), or Address, the host:port of a
	// serial device server's raw TCP port.
	Port     string
	Baud     int
	DataBits int    // 7 or 8
	Parity   string // "none" (the default), "even" or "odd"
	StopBits int    // 1 or 2
	Address  string

	Framing Framing
	Parser  Parser

	// Fields name the values of a frame, in the order of the register
	// image (see Layout). With a regular expression and no Fields, every
	// named group becomes a Number field, in the order of the groups.
	Fields []Field

	// Request selects query mode: these bytes are sent for each reading,
	// for example "P\r\n" or "#{unit:%02d}\r". {unit} is replaced by the
	// device's unit id (in decimal, or with the fmt verb after the colon),
	// so several addressable instruments can share one line. Without a
	// Request the bus is in push mode.
	Request string

	// Timeout is how long a query waits for its reply, and how long a push
	// mode read waits for a fresh frame when the latest one is too old.
	// Default DefaultTimeout.
	Timeout time.Duration

	// MaxAge: in push mode, a frame older than this is stale and no longer
	// reported. Default DefaultMaxAge; keep it above the instrument's
	// printing interval.
	MaxAge time.Duration

	// Reuse: in query mode, a reply younger than this also answers further
	// reads of the same unit without a new query, so a device whose points
	// need several read ranges costs one query per poll. Default
	// DefaultReuse; keep it well below the poll interval.
	Reuse time.Duration

	// Open, when set, replaces opening Port or dialling Address. For tests
	// (net.Pipe, a pty opened with os.OpenFile) and unusual transports.
	Open func() (Port, error)
}

// Framing says how frames are cut out of the byte stream: by a Delimiter
// that ends each frame, or a fixed Length; optionally each frame begins with
// Start (an STX, a '$', ...) and bytes before it are noise. Start, Delimiter
// and noise are not part of the frame handed to the parser.
type Framing struct {
	Delimiter string // e.g. "\r\n", "\n", "\x03" (ETX, with Start "\x02")
	Length    int    // instead of Delimiter: every frame is Length bytes after Start
	Start     string

	// MaxLength bounds a delimited frame; longer input is dropped and
	// counted as malformed. Default DefaultMaxLength.
	MaxLength int
}

// Parser says how fields are taken out of a frame: by a regular expression
// (RE2 syntax) whose named groups are the fields, or by splitting the frame
// into columns at Separator. " " splits at runs of blanks and tabs (like
// awk); any other separator splits exactly, so empty columns count. Columns
// are trimmed of spaces before parsing.
type Parser struct {
	Regexp    string
	Separator string

	// DecimalComma accepts "12,5" for 12.5 in Number fields (use it with a
	// separator other than ",").
	DecimalComma bool
}

// FieldType is how a field's text becomes registers.
type FieldType uint8

const (
	// Number fields are parsed as decimal numbers (a sign and an exponent
	// allowed, surrounding spaces ignored) and stored as a float64 in four
	// registers, byte order ABCDEFGH. NaN and infinities are malformed.
	Number FieldType = iota
	// Text fields are stored as they are, two bytes per register with the
	// first in the high byte (byte order AB), NUL-padded and cut to fit.
	Text
)

func (t FieldType) String() string {
	switch t {
	case Number:
		return "number"
	case Text:
		return "text"
	}
	return fmt.Sprintf("FieldType(%d)", uint8(t))
}

// Field is one value of a frame.
type Field struct {
	Name   string    // a named group of Parser.Regexp, or the name of a column
	Type   FieldType // Number (the default) or Text
	Column int       // with Parser.Separator: the column, counting from 1
	Length int       // Text: registers (two characters each); default DefaultTextRegs
}

// Slot is where a field's value lies in the register image of a
// serial-line device: holding registers from Address, Count of them.
type Slot struct {
	Name    string
	Type    FieldType
	Address uint16
	Count   int // 4 for a Number; the field's Length for Text
}

// Layout places the fields one after the other from holding register 0, in
// their order: the address map a device type on a serial-line bus uses. A
// Number field is read as type float64 with byte order ABCDEFGH (the
// default), a Text field as a string of Count registers with byte order AB.
func Layout(fields []Field) []Slot {
	slots := make([]Slot, len(fields))
	addr := 0
	for i, f := range fields {
		n := 4
		if f.Type == Text {
			n = f.Length
			if n <= 0 {
				n = DefaultTextRegs
			}
		}
		slots[i] = Slot{Name: f.Name, Type: f.Type, Address: uint16(min(addr, 0xFFFF)), Count: n}
		addr += n
	}
	return slots
}

// fields returns the fields of cfg as the bus uses them: cfg.Fields, or the
// named groups of the regular expression when cfg.Fields is empty. It fails
// when the regular expression does not compile.
func (cfg Config) fields() ([]Field, error) {
	if cfg.Parser.Regexp == "" || len(cfg.Fields) > 0 {
		return cfg.Fields, nil
	}
	re, err := regexp.Compile(cfg.Parser.Regexp)
	if err != nil {
		return nil, err
	}
	var fields []Field
	for _, name := range re.SubexpNames() {
		if name != "" {
			fields = append(fields, Field{Name: name})
		}
	}
	return fields, nil
}

// Layout returns the register layout of cfg's fields (see Layout), with the
// named groups of the regular expression as fields when cfg.Fields is empty.
func (cfg Config) Layout() ([]Slot, error) {
	fields, err := cfg.fields()
	if err != nil {
		return nil, fmt.Errorf("serial line regexp: %w", err)
	}
	return Layout(fields), nil
}

// check validates everything but the line settings.
func (cfg *Config) check() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	f := cfg.Framing
	switch {
	case f.Delimiter == "" && f.Length <= 0:
		add("framing needs a delimiter or a fixed length")
	case f.Delimiter != "" && f.Length > 0:
		add("framing takes a delimiter or a fixed length, not both")
	case f.Length < 0 || f.MaxLength < 0:
		add("framing lengths must not be negative")
	}
	p := cfg.Parser
	switch {
	case p.Regexp == "" && p.Separator == "":
		add("parser needs a regular expression or a column separator")
	case p.Regexp != "" && p.Separator != "":
		add("parser takes a regular expression or a column separator, not both")
	}
	var groups map[string]bool
	if p.Regexp != "" {
		re, err := regexp.Compile(p.Regexp)
		if err != nil {
			add("parser regexp: %v", err)
		} else {
			groups = map[string]bool{}
			for _, n := range re.SubexpNames() {
				if n != "" {
					groups[n] = true
				}
			}
			if len(groups) == 0 {
				add("parser regexp %q has no named group (?P<name>...)", p.Regexp)
			}
		}
	}
	fields, _ := cfg.fields()
	if len(fields) == 0 && len(errs) == 0 {
		add("no fields")
	}
	seen := map[string]bool{}
	regs := 0
	for _, fd := range fields {
		switch {
		case fd.Name == "":
			add("a field has no name")
		case seen[fd.Name]:
			add("field %q is defined twice", fd.Name)
		}
		seen[fd.Name] = true
		if fd.Type != Number && fd.Type != Text {
			add("field %q: unknown type %d", fd.Name, fd.Type)
		}
		if fd.Length < 0 || (fd.Type == Number && fd.Length > 0) {
			add("field %q: only text fields take a length", fd.Name)
		}
		if groups != nil && !groups[fd.Name] {
			add("field %q is not a named group of the parser regexp", fd.Name)
		}
		if p.Separator != "" && fd.Column < 1 {
			add("field %q needs a column (counting from 1)", fd.Name)
		}
		if p.Separator == "" && fd.Column != 0 {
			add("field %q: a column needs a parser separator", fd.Name)
		}
		regs += Layout([]Field{fd})[0].Count
	}
	if regs > 0x10000 {
		add("the fields need %d registers, more than 65536", regs)
	}
	if strings.Count(cfg.Request, "{unit") > 1 {
		add("request may contain {unit} once")
	}
	if _, err := renderRequest(cfg.Request, 1); err != nil {
		add("request: %v", err)
	}
	if cfg.Timeout < 0 || cfg.MaxAge < 0 || cfg.Reuse < 0 {
		add("timeout, max age and reuse must not be negative")
	}
	switch {
	case cfg.Open != nil:
	case cfg.Port != "" && cfg.Address != "":
		add("set a serial port or a tcp address, not both")
	case cfg.Port == "" && cfg.Address == "":
		add("set a serial port or a tcp address")
	case cfg.Address != "":
		if _, _, err := net.SplitHostPort(cfg.Address); err != nil {
			add("address %q: %v", cfg.Address, err)
		}
	}
	return errors.Join(errs...)
}

// renderRequest replaces {unit} or {unit:FORMAT} in the request template.
func renderRequest(tmpl string, unit uint8) (string, error) {
	i := strings.Index(tmpl, "{unit")
	if i < 0 {
		return tmpl, nil
	}
	end := strings.IndexByte(tmpl[i:], '}')
	if end < 0 {
		return "", errors.New("unclosed {unit")
	}
	spec := tmpl[i+len("{unit") : i+end]
	format := "%d"
	switch {
	case spec == "":
	case strings.HasPrefix(spec, ":%"):
		format = spec[1:]
	default:
		return "", fmt.Errorf("want {unit} or {unit:%%02d}, got %q", tmpl[i:i+end+1])
	}
	s := fmt.Sprintf(format, unit)
	if strings.Contains(s, "%!") {
		return "", fmt.Errorf("format %q does not print a unit id", format)
	}
	return tmpl[:i] + s + tmpl[i+end+1:], nil
}
