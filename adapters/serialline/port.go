package serialline

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"go.bug.st/serial"
)

// Port is the byte stream of a serial-line bus: a serial port, a TCP
// connection to a serial device server, or one end of net.Pipe or of a
// pseudo-terminal in tests.
//
// Read must honour the deadline set by SetReadDeadline: once it has passed,
// Read returns an error for which os.IsTimeout reports true (as *os.File,
// net.Conn and net.Pipe do). A zero deadline means no deadline. If the Port
// also implements io.Closer, the bus closes it when it gives it up; Close may
// be called while a Read is blocked and must make it return. Write may be
// called while a Read is blocked (push mode reads all the time).
type Port interface {
	io.ReadWriter
	SetReadDeadline(t time.Time) error
}

// minReadWindow is the least time a read is given, even when its deadline
// has passed: some ports (os.File, net.Conn) fail a read whose deadline has
// passed without looking at the bytes already received.
const minReadWindow = 100 * time.Microsecond

// line is a validated serial port setting.
type line struct {
	mode serial.Mode
}

func newLine(cfg Config) (line, error) {
	m := serial.Mode{BaudRate: cfg.Baud, DataBits: cfg.DataBits, Parity: serial.NoParity, StopBits: serial.OneStopBit}
	if m.BaudRate == 0 {
		m.BaudRate = DefaultBaud
	}
	if m.BaudRate < 50 || m.BaudRate > 4000000 {
		return line{}, fmt.Errorf("baud rate %d out of range", cfg.Baud)
	}
	if m.DataBits == 0 {
		m.DataBits = 8
	}
	if m.DataBits != 7 && m.DataBits != 8 {
		return line{}, fmt.Errorf("data bits must be 7 or 8, got %d", cfg.DataBits)
	}
	switch cfg.Parity {
	case "", "none":
	case "even":
		m.Parity = serial.EvenParity
	case "odd":
		m.Parity = serial.OddParity
	default:
		return line{}, fmt.Errorf(`parity must be "none", "even" or "odd", got %q`, cfg.Parity)
	}
	switch cfg.StopBits {
	case 0, 1:
	case 2:
		m.StopBits = serial.TwoStopBits
	default:
		return line{}, fmt.Errorf("stop bits must be 1 or 2, got %d", cfg.StopBits)
	}
	return line{mode: m}, nil
}

// charTime is the time one character takes on the wire.
func (l line) charTime() time.Duration {
	bits := 2 + l.mode.DataBits
	if l.mode.Parity != serial.NoParity {
		bits++
	}
	if l.mode.StopBits == serial.TwoStopBits {
		bits++
	}
	return time.Duration(bits) * time.Second / time.Duration(l.mode.BaudRate)
}

func (l line) open(path string) (Port, error) {
	mode := l.mode
	p, err := serial.Open(path, &mode)
	if err != nil {
		return nil, err
	}
	return &serialPort{p: p}, nil
}

// serialPort adapts a go.bug.st/serial port to Port (see the same type in
// adapters/modbus, which this package may not import).
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

func (s *serialPort) Close() error { return s.p.Close() }

func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func closePort(p Port) {
	if c, ok := p.(io.Closer); ok {
		c.Close()
	}
}
