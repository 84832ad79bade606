package modbus

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	mb "github.com/goburrow/modbus"

	"fieldbridge/adapters"
	"fieldbridge/adapters/serialport"
)

// DefaultSerialTimeout is the reply timeout of a serial bus when its
// configuration leaves it at zero.
const DefaultSerialTimeout = time.Second

// rtuOverTCPSilence ends a reply frame on a TCP connection to a serial
// device server. Device servers forward a frame in one or a few segments;
// the silence only shortens the wait for a reply that is already known to
// be broken, so it is generous.
const rtuOverTCPSilence = 50 * time.Millisecond

// RTUConfig configures a Modbus RTU bus on a serial port.
type RTUConfig struct {
	Port     string        // device path, e.g. /dev/ttyUSB0 or /dev/serial/by-id/...
	Baud     int           // default 19200
	DataBits int           // 8 (the default; RTU needs 8)
	Parity   string        // "none", "even" (the default, as in the specification) or "odd"
	StopBits int           // 1 (the default) or 2; the specification wants 2 without parity
	Timeout  time.Duration // reply timeout per request; default DefaultSerialTimeout

	// Silence ends a reply frame that stops short of its expected length
	// (a reply is complete as soon as its length has arrived and is never
	// held back by it). Zero selects the 3.5-character time of the line
	// (1.75 ms above 19200 baud). USB adapters deliver bytes in bursts
	// (FTDI's latency timer is 16 ms unless lowered in
	// /sys/bus/usb-serial/devices/ttyUSBn/latency_timer): set Silence above
	// the adapter's latency if long replies are reported as truncated.
	Silence time.Duration

	// Open, when set, replaces opening Port with go.bug.st/serial; the
	// settings above then serve only for the timing. For tests (net.Pipe,
	// a pty opened with os.OpenFile) and unusual transports.
	Open func() (Port, error)
}

// ASCIIConfig configures a Modbus ASCII bus on a serial port.
type ASCIIConfig struct {
	Port     string
	Baud     int           // default 19200
	DataBits int           // 7 (the default, as in the specification) or 8
	Parity   string        // "none", "even" (the default) or "odd"
	StopBits int           // 1 (the default) or 2
	Timeout  time.Duration // reply timeout per request; default DefaultSerialTimeout

	// Open replaces opening Port with go.bug.st/serial, as in RTUConfig.
	Open func() (Port, error)
}

// RTU is a Modbus RTU bus: a serial line (or a TCP connection to a serial
// device server) shared by every unit id on it. It implements adapters.Bus
// and is used by the one goroutine of the adapters.Loop that owns the line.
type RTU struct{ bus serialBus }

// ASCII is a Modbus ASCII bus on a serial line; like RTU with ASCII framing.
type ASCII struct{ bus serialBus }

// NewRTU validates cfg. It does not open the port; the first request does,
// and a port that cannot be opened (or fails later, as an unplugged USB
// adapter does) is opened again by the next request.
func NewRTU(cfg RTUConfig) (*RTU, error) {
	if cfg.Port == "" && cfg.Open == nil {
		return nil, errors.New("modbus rtu: serial port path is empty")
	}
	line, err := newLineSettings(cfg.Port, cfg.Baud, cfg.DataBits, cfg.Parity, cfg.StopBits, 8)
	if err != nil {
		return nil, fmt.Errorf("modbus rtu: %w", err)
	}
	if line.DataBits != 8 {
		return nil, fmt.Errorf("modbus rtu: data bits must be 8, got %d", line.DataBits)
	}
	if cfg.Timeout < 0 || cfg.Silence < 0 {
		return nil, errors.New("modbus rtu: timeout and silence must not be negative")
	}
	silence := cfg.Silence
	if silence == 0 {
		silence = t35(line)
	}
	l := newLink(cfg.Port, openSerial(line, cfg.Open), readRTU, timeoutOr(cfg.Timeout), t35(line), silence)
	return &RTU{bus: newSerialBus(l, rtuPackager())}, nil
}

// NewRTUOverTCP returns an RTU bus on a TCP connection to a serial device
// server (a "transparent" or "raw" TCP port that forwards bytes to the serial
// line): RTU frames with their CRC, no MBAP header. address is host:port;
// timeout is the reply timeout per request (zero selects
// DefaultSerialTimeout), connecting included. The connection is opened by
// the first request and again after it broke.
func NewRTUOverTCP(address string, timeout time.Duration) (*RTU, error) {
	if _, _, err := net.SplitHostPort(address); err != nil {
		return nil, fmt.Errorf("modbus rtu over tcp address %q: %w", address, err)
	}
	if timeout < 0 {
		return nil, errors.New("modbus rtu over tcp: timeout must not be negative")
	}
	open := func(deadline time.Time) (Port, error) {
		d := net.Dialer{Deadline: deadline}
		c, err := d.Dial("tcp", address)
		if err != nil {
			return nil, err
		}
		return c, nil
	}
	// The device server keeps the serial timing; no gap is needed here.
	l := newLink(address, open, readRTU, timeoutOr(timeout), 0, rtuOverTCPSilence)
	return &RTU{bus: newSerialBus(l, rtuPackager())}, nil
}

// NewASCII validates cfg. Like NewRTU it opens the port on the first request.
func NewASCII(cfg ASCIIConfig) (*ASCII, error) {
	if cfg.Port == "" && cfg.Open == nil {
		return nil, errors.New("modbus ascii: serial port path is empty")
	}
	line, err := newLineSettings(cfg.Port, cfg.Baud, cfg.DataBits, cfg.Parity, cfg.StopBits, 7)
	if err != nil {
		return nil, fmt.Errorf("modbus ascii: %w", err)
	}
	if cfg.Timeout < 0 {
		return nil, errors.New("modbus ascii: timeout must not be negative")
	}
	// ASCII frames are delimited by ':' and CR LF; no inter-frame gap.
	l := newLink(cfg.Port, openSerial(line, cfg.Open), readASCII, timeoutOr(cfg.Timeout), 0, 0)
	return &ASCII{bus: newSerialBus(l, asciiPackager())}, nil
}

func timeoutOr(d time.Duration) time.Duration {
	if d <= 0 {
		return DefaultSerialTimeout
	}
	return d
}

// openSerial returns the opener of a link: open, when set, or go.bug.st/serial.
func openSerial(line serialport.Settings, open func() (Port, error)) func(time.Time) (Port, error) {
	if open != nil {
		return func(time.Time) (Port, error) { return open() }
	}
	return func(time.Time) (Port, error) { return line.Open() }
}

// packager is goburrow's Packager with the unit id to address.
type packager struct {
	mb.Packager
	setUnit func(byte)
}

// rtuPackager returns goburrow's RTU packager (the RTUClientHandler, of
// which only the packing half is used; its transport is never touched).
func rtuPackager() packager {
	h := mb.NewRTUClientHandler("")
	return packager{Packager: h, setUnit: func(u byte) { h.SlaveId = u }}
}

// asciiPackager returns goburrow's ASCII packager.
func asciiPackager() packager {
	h := mb.NewASCIIClientHandler("")
	return packager{Packager: h, setUnit: func(u byte) { h.SlaveId = u }}
}

// serialBus is the Bus shared by RTU, RTU over TCP and ASCII: goburrow's
// packager and request code over a link of ours.
type serialBus struct {
	link     *link
	pack     packager
	client   mb.Client
	multiple bool // FC15/FC16 even for one value
}

func newSerialBus(l *link, p packager) serialBus {
	return serialBus{link: l, pack: p, client: mb.NewClient2(p.Packager, l)}
}

func (b *serialBus) readRange(ctx context.Context, r adapters.Range) (adapters.Block, error) {
	var raw []byte
	err := b.do(ctx, r.Unit, func() (err error) {
		raw, err = callRead(b.client, r)
		return err
	})
	if err != nil {
		return adapters.Block{}, fmt.Errorf("read %s: %w", r, err)
	}
	blk, err := blockOf(r, raw)
	if err != nil {
		b.link.stats.badFrames.Add(1)
		return adapters.Block{}, fmt.Errorf("read %s: %w", r, err)
	}
	return blk, nil
}

func (b *serialBus) writeRange(ctx context.Context, w adapters.WriteRequest) error {
	err := b.do(ctx, w.Unit, func() error { return callWrite(b.client, w, b.multiple) })
	if err != nil {
		return fmt.Errorf("write unit %d %s %d+%d: %w", w.Unit, w.Table, w.Address, w.Count(), err)
	}
	return nil
}

// do runs one request for unit within the bus timeout and ctx's deadline.
// When ctx is cancelled during the request, the port is closed so that the
// request ends at once; the next request opens it again.
func (b *serialBus) do(ctx context.Context, unit uint8, call func() error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	deadline := time.Now().Add(b.link.timeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		if !time.Now().Before(dl) {
			return context.DeadlineExceeded
		}
		deadline = dl
	}
	if err := b.link.connect(deadline); err != nil {
		return err
	}
	b.link.deadline = deadline
	b.pack.setUnit(unit)
	abort := b.link.abortFunc()
	stop := context.AfterFunc(ctx, func() {
		if ctx.Err() == context.Canceled { // a deadline is honoured by the read deadline
			abort()
		}
	})
	raw := call()
	if !stop() && ctx.Err() == context.Canceled {
		// abort ran or is running: the port is closed under us.
		b.link.close()
		return ctx.Err()
	}
	err := translate(raw)
	var ex *adapters.ExceptionError
	switch {
	case errors.As(err, &ex):
		b.link.stats.exceptions.Add(1)
	case errors.Is(err, adapters.ErrBadFrame) && !adapters.IsTransport(raw):
		// goburrow rejected a frame our reader let through (a byte count
		// that does not match the data, for example).
		b.link.stats.badFrames.Add(1)
	}
	return err
}

// ReadRange reads one range with FC1-FC4.
func (t *RTU) ReadRange(ctx context.Context, r adapters.Range) (adapters.Block, error) {
	return t.bus.readRange(ctx, r)
}

// SetWriteMultiple makes writes use FC15/FC16 even for a single coil or
// register. Call it before the bus is handed to its loop.
func (t *RTU) SetWriteMultiple(on bool) { t.bus.multiple = on }

// WriteRange writes with FC5/FC6 for one value and FC15/FC16 for several.
func (t *RTU) WriteRange(ctx context.Context, w adapters.WriteRequest) error {
	return t.bus.writeRange(ctx, w)
}

// Close closes the port or connection; the next request opens it again.
func (t *RTU) Close() error { return t.bus.link.close() }

// Stats returns the bus counters. It is safe for concurrent use.
func (t *RTU) Stats() Stats { return t.bus.link.Stats() }

// ReadRange reads one range with FC1-FC4.
func (a *ASCII) ReadRange(ctx context.Context, r adapters.Range) (adapters.Block, error) {
	return a.bus.readRange(ctx, r)
}

// SetWriteMultiple makes writes use FC15/FC16 even for a single coil or
// register. Call it before the bus is handed to its loop.
func (a *ASCII) SetWriteMultiple(on bool) { a.bus.multiple = on }

// WriteRange writes with FC5/FC6 for one value and FC15/FC16 for several.
func (a *ASCII) WriteRange(ctx context.Context, w adapters.WriteRequest) error {
	return a.bus.writeRange(ctx, w)
}

// Close closes the port; the next request opens it again.
func (a *ASCII) Close() error { return a.bus.link.close() }

// Stats returns the bus counters. It is safe for concurrent use.
func (a *ASCII) Stats() Stats { return a.bus.link.Stats() }
