// Package serialport is the serial line under the bridge's serial buses
// (Modbus RTU and ASCII in adapters/modbus, text instruments in
// adapters/serialline): the Port those buses read and write, the line
// settings with their checks and character time, and a Port on
// go.bug.st/serial.
//
// Imports: no package of ours; only go.bug.st/serial beyond the standard
// library. It must not import mapping, buffer, uplink, dm, hcl, badger or
// paho.
//
// Concurrency: a Port is used by the one goroutine that owns its bus, except
// that Close may be called while a Read is blocked.
package serialport

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"go.bug.st/serial"
)

// Port is the byte stream under a serial framing: a serial port, a TCP
// connection to a serial device server, or one end of net.Pipe or of a
// pseudo-terminal in tests.
//
// Read must honour the deadline set by SetReadDeadline: once it has passed,
// Read returns an error for which IsTimeout reports true (as *os.File,
// net.Conn and net.Pipe do). A zero deadline means no deadline. If the Port
// also implements io.Closer, its owner closes it when it gives it up; Close
// may be called while a Read is blocked and must make it return.
type Port interface {
	io.ReadWriter
	SetReadDeadline(t time.Time) error
}

// Parities.
const (
	ParityNone = "none"
	ParityEven = "even"
	ParityOdd  = "odd"
)

// Settings are a serial line's settings.
type Settings struct {
	Path     string
	Baud     int
	DataBits int
	Parity   string
	StopBits int
}

// Check fills zero fields from defaults and validates the result.
func (s Settings) Check(defaults Settings) (Settings, error) {
	if s.Baud == 0 {
		s.Baud = defaults.Baud
	}
	if s.DataBits == 0 {
		s.DataBits = defaults.DataBits
	}
	if s.Parity == "" {
		s.Parity = defaults.Parity
	}
	if s.StopBits == 0 {
		s.StopBits = max(defaults.StopBits, 1)
	}
	switch {
	case s.Baud < 50 || s.Baud > 4000000:
		return s, fmt.Errorf("baud rate %d out of range", s.Baud)
	case s.DataBits != 7 && s.DataBits != 8:
		return s, fmt.Errorf("data bits must be 7 or 8, got %d", s.DataBits)
	case s.Parity != ParityNone && s.Parity != ParityEven && s.Parity != ParityOdd:
		return s, fmt.Errorf("parity must be %q, %q or %q, got %q", ParityNone, ParityEven, ParityOdd, s.Parity)
	case s.StopBits != 1 && s.StopBits != 2:
		return s, fmt.Errorf("stop bits must be 1 or 2, got %d", s.StopBits)
	}
	return s, nil
}

// CharTime is the time one character takes on the wire: start bit, data
// bits, parity bit and stop bits.
func (s Settings) CharTime() time.Duration {
	bits := 1 + s.DataBits + s.StopBits
	if s.Parity != ParityNone {
		bits++
	}
	return time.Duration(bits) * time.Second / time.Duration(s.Baud)
}

// Open opens the port with go.bug.st/serial. The settings must have passed Check.
func (s Settings) Open() (Port, error) {
	mode := serial.Mode{BaudRate: s.Baud, DataBits: s.DataBits, Parity: serial.NoParity, StopBits: serial.OneStopBit}
	switch s.Parity {
	case ParityEven:
		mode.Parity = serial.EvenParity
	case ParityOdd:
		mode.Parity = serial.OddParity
	}
	if s.StopBits == 2 {
		mode.StopBits = serial.TwoStopBits
	}
	p, err := serial.Open(s.Path, &mode)
	if err != nil {
		return nil, err
	}
	return &Serial{p: p}, nil
}

// Serial adapts a go.bug.st/serial port to Port: it turns the deadline
// into the library's per-read timeout, and a read that timed out, which the
// library reports as (0, nil), into os.ErrDeadlineExceeded. A deadline that
// has passed still polls the port once without blocking, which is what
// draining stray input needs.
type Serial struct {
	p        serial.Port
	deadline time.Time
}

// SetReadDeadline sets the deadline of the following reads.
func (s *Serial) SetReadDeadline(t time.Time) error {
	s.deadline = t
	return nil
}

func (s *Serial) Read(b []byte) (int, error) {
	timeout := serial.NoTimeout
	if !s.deadline.IsZero() {
		timeout = max(time.Until(s.deadline), 0)
	}
	if err := s.p.SetReadTimeout(timeout); err != nil {
		return 0, err
	}
	n, err := s.p.Read(b)
	if n == 0 && err == nil {
		return 0, os.ErrDeadlineExceeded
	}
	return n, err
}

func (s *Serial) Write(b []byte) (int, error) { return s.p.Write(b) }

// Close closes the port; a Read blocked on it returns.
func (s *Serial) Close() error { return s.p.Close() }

// IsTimeout reports whether err is a read deadline that passed.
func IsTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Close closes p if it can be closed.
func Close(p Port) {
	if c, ok := p.(io.Closer); ok {
		c.Close()
	}
}
