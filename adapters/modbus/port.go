package modbus

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"go.bug.st/serial"
)

// Port is the byte stream under a serial framing (RTU or ASCII): a serial
// port, a TCP connection to a serial device server, or one end of net.Pipe
// or of a pseudo-terminal in tests.
//
// Read must honour the deadline set by SetReadDeadline: once it has passed,
// Read returns an error for which os.IsTimeout reports true (as *os.File,
// net.Conn and net.Pipe do). A zero deadline means no deadline. If the Port
// also implements io.Closer, the bus closes it when it gives it up; Close may
// be called while a Read is blocked and must make it return.
type Port interface {
	io.ReadWriter
	SetReadDeadline(t time.Time) error
}

// Serial line settings shared by RTU and ASCII.
const (
	ParityNone = "none"
	ParityEven = "even"
	ParityOdd  = "odd"
)

// lineSettings is a validated serial line configuration.
type lineSettings struct {
	port     string
	baud     int
	dataBits int
	parity   serial.Parity
	stopBits int
}

// newLineSettings validates and completes the settings of a serial port.
func newLineSettings(port string, baud, dataBits int, parity string, stopBits int, defaultDataBits int) (lineSettings, error) {
	s := lineSettings{port: port, baud: baud, dataBits: dataBits, stopBits: stopBits}
	if s.baud == 0 {
		s.baud = 19200 // the default of the Modbus serial line specification
	}
	if s.baud < 50 || s.baud > 4000000 {
		return s, fmt.Errorf("baud rate %d out of range", baud)
	}
	if s.dataBits == 0 {
		s.dataBits = defaultDataBits
	}
	if s.dataBits != 7 && s.dataBits != 8 {
		return s, fmt.Errorf("data bits must be 7 or 8, got %d", dataBits)
	}
	switch parity {
	case "", ParityEven: // even parity is the specification's default
		s.parity = serial.EvenParity
	case ParityOdd:
		s.parity = serial.OddParity
	case ParityNone:
		s.parity = serial.NoParity
	default:
		return s, fmt.Errorf("parity must be %q, %q or %q, got %q", ParityNone, ParityEven, ParityOdd, parity)
	}
	if s.stopBits == 0 {
		s.stopBits = 1
	}
	if s.stopBits != 1 && s.stopBits != 2 {
		return s, fmt.Errorf("stop bits must be 1 or 2, got %d", stopBits)
	}
	return s, nil
}

// charTime is the time one character takes on the wire: start bit, data
// bits, parity bit and stop bits.
func (s lineSettings) charTime() time.Duration {
	bits := 1 + s.dataBits + s.stopBits
	if s.parity != serial.NoParity {
		bits++
	}
	return time.Duration(bits) * time.Second / time.Duration(s.baud)
}

// t35 is the RTU inter-frame silence: 3.5 character times, fixed at 1.75 ms
// above 19200 baud (Modbus over serial line v1.02, §2.5.1.1).
func (s lineSettings) t35() time.Duration {
	if s.baud > 19200 {
		return 1750 * time.Microsecond
	}
	return s.charTime() * 7 / 2
}

// open opens the port with go.bug.st/serial.
func (s lineSettings) open() (Port, error) {
	stop := serial.OneStopBit
	if s.stopBits == 2 {
		stop = serial.TwoStopBits
	}
	p, err := serial.Open(s.port, &serial.Mode{BaudRate: s.baud, DataBits: s.dataBits, Parity: s.parity, StopBits: stop})
	if err != nil {
		return nil, err
	}
	return &serialPort{p: p}, nil
}

// serialPort adapts a go.bug.st/serial port to Port: it turns the deadline
// into the library's per-read timeout, and a read that timed out, which the
// library reports as (0, nil), into os.ErrDeadlineExceeded. A deadline that
// has passed still polls the port once without blocking, which is what
// draining stray input needs.
type serialPort struct {
	p        serial.Port
	deadline time.Time
}

func (s *serialPort) SetReadDeadline(t time.Time) error {
	s.deadline = t
	return nil
}

func (s *serialPort) Read(b []byte) (int, error) {
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

func (s *serialPort) Write(b []byte) (int, error) { return s.p.Write(b) }

// Close closes the port; a Read blocked on it returns.
func (s *serialPort) Close() error { return s.p.Close() }

// isTimeout reports whether err is a read deadline that passed.
func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// closePort closes p if it can be closed.
func closePort(p Port) {
	if c, ok := p.(io.Closer); ok {
		c.Close()
	}
}
