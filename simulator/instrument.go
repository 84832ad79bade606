package simulator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// InstrumentConfig describes a simulated line-oriented instrument: a scale,
// an analyser or a meter that prints its readings as text frames on a
// serial line, by itself (push mode), when asked (query mode), or both.
type InstrumentConfig struct {
	// Template is one frame exactly as the instrument prints it, framing
	// bytes included, for example "ST,GS,{weight:%+09.3f},kg\r\n" or
	// "\x02{temp:%6.2f} {rh:%5.1f}\x03". {name} is replaced by the current
	// value of the generator name, formatted with %g; {name:FORMAT} uses
	// FORMAT, a fmt verb for a float64 (%f, %e, %g with flags, width and
	// precision; %.0f for whole numbers). {{ prints a literal {.
	Template string

	// Values are the generators of the template's fields, by name. Each
	// field of the template needs one; each is advanced once per frame.
	Values map[string]Generator

	// Interval, when positive, selects push mode: a frame is printed at
	// once and then every Interval.
	Interval time.Duration

	// Request, when set, selects query mode: a frame is printed each time
	// these bytes arrive, for example "P\r\n" or "#01\r".
	Request string
}

// Instrument is a simulated serial-line instrument. Its methods are safe for
// concurrent use; Serve serves one line at a time.
type Instrument struct {
	cfg   InstrumentConfig
	parts []templatePart

	mu       sync.Mutex
	injected []string // frames to send instead of the next rendered ones
	malform  int      // rendered frames still to damage
	wake     chan struct{}

	frames atomic.Uint64

	received []byte // every byte that arrived, up to maxReceived; under mu
}

// maxReceived bounds what Received keeps.
const maxReceived = 64 << 10

// templatePart is literal text, or a field when name is set.
type templatePart struct {
	text   string
	name   string
	format string
}

// NewInstrument checks cfg: a template whose fields all have generators,
// and push mode, query mode or both.
func NewInstrument(cfg InstrumentConfig) (*Instrument, error) {
	if cfg.Interval <= 0 && cfg.Request == "" {
		return nil, errors.New("instrument: set an interval (push mode), a request (query mode) or both")
	}
	parts, err := parseTemplate(cfg.Template)
	if err != nil {
		return nil, fmt.Errorf("instrument template: %w", err)
	}
	for _, p := range parts {
		if p.name != "" && cfg.Values[p.name] == nil {
			return nil, fmt.Errorf("instrument template: no generator for field %q", p.name)
		}
	}
	return &Instrument{cfg: cfg, parts: parts, wake: make(chan struct{}, 1)}, nil
}

func parseTemplate(t string) ([]templatePart, error) {
	if t == "" {
		return nil, errors.New("empty template")
	}
	var parts []templatePart
	var lit strings.Builder
	for i := 0; i < len(t); i++ {
		c := t[i]
		switch {
		case c == '{' && i+1 < len(t) && t[i+1] == '{':
			lit.WriteByte('{')
			i++
		case c == '{':
			end := strings.IndexByte(t[i:], '}')
			if end < 0 {
				return nil, fmt.Errorf("unclosed { at byte %d", i)
			}
			name, format, _ := strings.Cut(t[i+1:i+end], ":")
			if name == "" {
				return nil, fmt.Errorf("field without a name at byte %d", i)
			}
			if format == "" {
				format = "%g"
			}
			if lit.Len() > 0 {
				parts = append(parts, templatePart{text: lit.String()})
				lit.Reset()
			}
			parts = append(parts, templatePart{name: name, format: format})
			i += end
		default:
			lit.WriteByte(c)
		}
	}
	if lit.Len() > 0 {
		parts = append(parts, templatePart{text: lit.String()})
	}
	return parts, nil
}

// Render returns the frame for time now, advancing every generator once.
func (in *Instrument) Render(now time.Time) string {
	var sb strings.Builder
	for _, p := range in.parts {
		if p.name == "" {
			sb.WriteString(p.text)
			continue
		}
		fmt.Fprintf(&sb, p.format, in.cfg.Values[p.name].Next(now))
	}
	return sb.String()
}

// Inject makes the instrument send these exact frames (framing bytes
// included) before any further rendered frame: at once in push mode, as the
// answers to the next requests in query mode. Tests use it for malformed
// lines of their own making.
func (in *Instrument) Inject(frames ...string) {
	in.mu.Lock()
	in.injected = append(in.injected, frames...)
	in.mu.Unlock()
	select {
	case in.wake <- struct{}{}:
	default:
	}
}

// Malform damages the next n rendered frames: every digit becomes '?', so
// no number in them parses, while the framing stays intact.
func (in *Instrument) Malform(n int) {
	in.mu.Lock()
	in.malform += n
	in.mu.Unlock()
}

// Frames returns how many frames the instrument has sent.
func (in *Instrument) Frames() uint64 { return in.frames.Load() }

// next returns the next frame to send: an injected one, or a rendered
// (perhaps damaged) one.
func (in *Instrument) next(now time.Time) string {
	in.mu.Lock()
	if len(in.injected) > 0 {
		f := in.injected[0]
		in.injected = in.injected[1:]
		in.mu.Unlock()
		return f
	}
	damage := in.malform > 0
	if damage {
		in.malform--
	}
	in.mu.Unlock()
	f := in.Render(now)
	if damage {
		f = strings.Map(func(r rune) rune {
			if r >= '0' && r <= '9' {
				return '?'
			}
			return r
		}, f)
	}
	return f
}

// takeInjected returns the frames injected so far and forgets them.
func (in *Instrument) takeInjected() []string {
	in.mu.Lock()
	defer in.mu.Unlock()
	f := in.injected
	in.injected = nil
	return f
}

// Received returns a copy of every byte the instrument received (requests
// and commands), up to the first 64 KiB.
func (in *Instrument) Received() []byte {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]byte(nil), in.received...)
}

func (in *Instrument) record(b []byte) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if room := maxReceived - len(in.received); room > 0 {
		in.received = append(in.received, b[:min(room, len(b))]...)
	}
}

// Serve runs the instrument on rw (a port from OpenSerial, a pty,
// net.Pipe) until ctx is done, and returns nil then, or an error when rw
// fails. It stops reading rw the way ServeRTU does.
func (in *Instrument) Serve(ctx context.Context, rw io.ReadWriter) error {
	send := func(frame string) error {
		in.frames.Add(1) // before the write, so a reader that got the frame sees it counted
		if _, err := io.WriteString(rw, frame); err != nil {
			return streamErr(err)
		}
		return nil
	}
	var ticks <-chan time.Time
	if in.cfg.Interval > 0 {
		t := time.NewTicker(in.cfg.Interval)
		defer t.Stop()
		ticks = t.C
		if err := send(in.next(time.Now())); err != nil {
			return err
		}
	}
	// Input is read in both modes: requests (query mode) and commands
	// sent to the instrument, which Received reports.
	cr := readChunks(rw)
	defer cr.end(rw)
	chunks := cr.c
	wake := in.wake
	if in.cfg.Interval <= 0 {
		wake = nil // query mode: injected frames wait for requests
	}
	req := []byte(in.cfg.Request)
	var input []byte
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-ticks:
			if err := send(in.next(now)); err != nil {
				return err
			}
		case <-wake:
			for _, f := range in.takeInjected() {
				if err := send(f); err != nil {
					return err
				}
			}
		case chunk, open := <-chunks:
			if !open {
				if ctx.Err() != nil {
					return nil
				}
				return streamErr(cr.err)
			}
			in.record(chunk)
			if len(req) == 0 {
				continue
			}
			input = append(input, chunk...)
			for {
				i := bytes.Index(input, req)
				if i < 0 {
					break
				}
				input = input[i+len(req):]
				if err := send(in.next(time.Now())); err != nil {
					return err
				}
			}
			if keep := len(req) - 1; len(input) > keep {
				input = append(input[:0], input[len(input)-keep:]...)
			}
		}
	}
}
