package modbus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	mb "github.com/goburrow/modbus"

	"fieldbridge/adapters"
)

// TCPConfig configures a Modbus TCP endpoint.
type TCPConfig struct {
	Address string        // host:port
	Timeout time.Duration // per request, connect included; default 1s
	// ConnectPause is a silence after each new connection before the first
	// request: some gateways and RS-485 converters drop what comes too soon.
	ConnectPause time.Duration
}

// TCP is a Modbus TCP bus: one connection to one endpoint, shared by every
// unit id behind it (a gateway to a serial line, or a single device).
type TCP struct {
	cfg       TCPConfig
	handler   *mb.TCPClientHandler // the packager (MBAP header, unit id)
	wire      *tcpWire             // the transporter
	client    mb.Client
	connected bool // a connection is open (as far as we know)
	multiple  bool // FC15/FC16 even for one value
}

// SetWriteMultiple makes writes use FC15/FC16 even for a single coil or
// register. Call it before the bus is handed to its loop.
func (t *TCP) SetWriteMultiple(on bool) { t.multiple = on }

// NewTCP validates cfg. It does not connect; the first request does.
func NewTCP(cfg TCPConfig) (*TCP, error) {
	if _, _, err := net.SplitHostPort(cfg.Address); err != nil {
		return nil, fmt.Errorf("modbus tcp address %q: %w", cfg.Address, err)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = time.Second
	}
	h := mb.NewTCPClientHandler(cfg.Address)
	w := &tcpWire{address: cfg.Address, timeout: cfg.Timeout}
	return &TCP{cfg: cfg, handler: h, wire: w, client: mb.NewClient2(h, w)}, nil
}

// Close closes the connection. The next request reconnects.
func (t *TCP) Close() error {
	t.connected = false
	return t.wire.close()
}

// connect opens the connection if needed and waits ConnectPause after a new
// one. A failed dial is ErrNotConnected.
func (t *TCP) connect(ctx context.Context) error {
	if t.connected {
		return nil
	}
	if err := t.wire.connect(); err != nil {
		return translate(err)
	}
	t.connected = true
	if t.cfg.ConnectPause > 0 {
		timer := time.NewTimer(t.cfg.ConnectPause)
		defer timer.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
		}
	}
	return nil
}

// ReadRange reads one range with FC1-FC4.
func (t *TCP) ReadRange(ctx context.Context, r adapters.Range) (adapters.Block, error) {
	var raw []byte
	err := t.do(ctx, r.Unit, true, func() (err error) {
		raw, err = callRead(t.client, r)
		return err
	})
	if err != nil {
		return adapters.Block{}, fmt.Errorf("read %s: %w", r, err)
	}
	b, err := blockOf(r, raw)
	if err != nil {
		t.Close()
		return adapters.Block{}, fmt.Errorf("read %s: %w", r, err)
	}
	return b, nil
}

// WriteRange writes with FC5/FC6 for one value and FC15/FC16 for several
// (see SetWriteMultiple). A write is never sent twice: unlike a read it is
// not tried again on a fresh connection.
func (t *TCP) WriteRange(ctx context.Context, w adapters.WriteRequest) error {
	err := t.do(ctx, w.Unit, false, func() error { return callWrite(t.client, w, t.multiple) })
	if err != nil {
		return fmt.Errorf("write unit %d %s %d+%d: %w", w.Unit, w.Table, w.Address, w.Count(), err)
	}
	return nil
}

// do runs one request for unit. A connection that was idle since the last
// request may have been closed by the device; if such a reused connection
// fails before any byte came back, a read (retry) is tried once more on a
// fresh connection.
func (t *TCP) do(ctx context.Context, unit uint8, retry bool, call func() error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	t.handler.SlaveId = unit
	t.wire.timeout = t.cfg.Timeout
	if dl, ok := ctx.Deadline(); ok {
		if left := time.Until(dl); left < t.wire.timeout {
			if left <= 0 {
				return context.DeadlineExceeded
			}
			t.wire.timeout = left
		}
	}
	reused := t.connected
	if err := t.connect(ctx); err != nil {
		t.Close()
		return err
	}
	err := translate(call())
	if retry && reused && errors.Is(err, adapters.ErrNotConnected) && ctx.Err() == nil {
		t.Close()
		if err := t.connect(ctx); err != nil {
			t.Close()
			return err
		}
		err = translate(call())
	}
	if err != nil && adapters.IsTransport(err) {
		t.Close()
	}
	return err
}

// stableText is err's text without the connection's local address: "read
// tcp 127.0.0.1:53422->10.0.0.5:502: i/o timeout" becomes "read tcp
// 10.0.0.5:502: i/o timeout". Every reconnect has a new local port, and the
// text goes into the device's status event and logs, where it must not
// change while the failure does not.
func stableText(err error) string {
	var opErr *net.OpError
	if !errors.As(err, &opErr) || opErr.Source == nil {
		return err.Error()
	}
	stable := *opErr
	stable.Source = nil
	return strings.Replace(err.Error(), opErr.Error(), stable.Error(), 1)
}

// translate maps goburrow and net errors onto the adapters errors. Errors
// that already are adapters errors (from our own serial transporter) pass
// unchanged.
func translate(err error) error {
	if err == nil || adapters.IsTransport(err) {
		return err
	}
	var mbErr *mb.ModbusError
	if errors.As(err, &mbErr) {
		return &adapters.ExceptionError{Function: mbErr.FunctionCode &^ 0x80, Code: mbErr.ExceptionCode}
	}
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		return fmt.Errorf("%w: %s", adapters.ErrTimeout, stableText(err))
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("%w: %s", adapters.ErrNotConnected, stableText(err))
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) {
		return fmt.Errorf("%w: %s", adapters.ErrNotConnected, stableText(err))
	}
	// goburrow reports malformed and mismatched replies as plain errors
	// ("response transaction id ... does not match", "length in response ...").
	if strings.HasPrefix(err.Error(), "modbus: ") {
		return fmt.Errorf("%w: %v", adapters.ErrBadFrame, strings.TrimPrefix(err.Error(), "modbus: "))
	}
	return fmt.Errorf("%w: %v", adapters.ErrNotConnected, err)
}
