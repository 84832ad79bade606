package simulator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"go.bug.st/serial"
)

// SerialConfig is the line setting of a serial port the simulator serves on
// (a real port, or one end of a socat pty pair, where the settings are
// accepted and have no effect). Zero values select 19200 baud, 8 data bits,
// even parity and 1 stop bit, the defaults of the bridge's RTU bus.
type SerialConfig struct {
	Port     string
	Baud     int
	DataBits int    // 7 or 8
	Parity   string // "none", "even" or "odd"
	StopBits int    // 1 or 2
}

// OpenSerial opens a serial port with go.bug.st/serial for ServeRTU,
// ServeASCII or Instrument.Serve, which close it when their context ends.
func OpenSerial(cfg SerialConfig) (io.ReadWriteCloser, error) {
	mode := serial.Mode{BaudRate: cfg.Baud, DataBits: cfg.DataBits, Parity: serial.EvenParity, StopBits: serial.OneStopBit}
	if mode.BaudRate == 0 {
		mode.BaudRate = 19200
	}
	if mode.DataBits == 0 {
		mode.DataBits = 8
	}
	switch cfg.Parity {
	case "", "even":
	case "odd":
		mode.Parity = serial.OddParity
	case "none":
		mode.Parity = serial.NoParity
	default:
		return nil, fmt.Errorf("serial port %s: parity must be none, even or odd, got %q", cfg.Port, cfg.Parity)
	}
	switch cfg.StopBits {
	case 0, 1:
	case 2:
		mode.StopBits = serial.TwoStopBits
	default:
		return nil, fmt.Errorf("serial port %s: stop bits must be 1 or 2, got %d", cfg.Port, cfg.StopBits)
	}
	p, err := serial.Open(cfg.Port, &mode)
	if err != nil {
		return nil, fmt.Errorf("open serial port %s: %w", cfg.Port, err)
	}
	return p, nil
}

// chunkReader reads a stream on its own goroutine, so that a serving loop
// can wait for bytes, a timer and its context at once.
type chunkReader struct {
	c    chan []byte   // received bytes; closed when reading stopped
	stop chan struct{} // closed by the owner to make the goroutine quit
	err  error         // why reading stopped; read it after c is closed
}

func readChunks(r io.Reader) *chunkReader {
	cr := &chunkReader{c: make(chan []byte), stop: make(chan struct{})}
	go func() {
		defer close(cr.c)
		for {
			buf := make([]byte, 512)
			n, err := r.Read(buf)
			if n > 0 {
				select {
				case cr.c <- buf[:n]:
				case <-cr.stop:
					return
				}
			}
			if err != nil {
				cr.err = err
				return
			}
		}
	}()
	return cr
}

// end stops the goroutine, which is blocked in Read or about to be: rw is
// interrupted (a read deadline in the past where it takes deadlines, as
// *os.File and net.Conn do; otherwise it is closed if it can be). It waits
// until the goroutine has returned.
func (cr *chunkReader) end(rw io.ReadWriter) {
	close(cr.stop)
	if d, ok := rw.(interface{ SetReadDeadline(time.Time) error }); !ok || d.SetReadDeadline(time.Unix(1, 0)) != nil {
		if c, ok := rw.(io.Closer); ok {
			c.Close()
		}
	}
	for range cr.c {
	}
}

// streamErr turns the end of a stream (closed by either side, or a read
// deadline we set to stop) into nil.
func streamErr(err error) error {
	var pe *serial.PortError
	switch {
	case err == nil, errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed), errors.Is(err, os.ErrClosed),
		errors.Is(err, os.ErrDeadlineExceeded):
		return nil
	case errors.As(err, &pe) && pe.Code() == serial.PortClosed:
		return nil
	}
	return err
}

// serialContext returns a context that ends with ctx or when the server is
// closed.
func (s *Server) serialContext(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-s.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}
