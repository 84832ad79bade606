package modbus

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"fieldbridge/adapters"
	"fieldbridge/adapters/serialport"
)

// quietTimeoutsBeforeReopen is how many requests in a row may time out
// without a single byte coming back before the port is closed and opened
// again: a USB adapter that was unplugged and plugged back, or a device
// server that dropped the connection without a reset, then recovers. One
// dead unit among live ones never reaches it.
const quietTimeoutsBeforeReopen = 3

// frameReader reads the reply to req from p; readRTU and readASCII.
type frameReader func(p Port, req []byte, deadline time.Time, silence time.Duration, buf []byte) (frame []byte, stray int, err error)

// Stats counts what happened on a serial bus since it was created. The
// counters only grow.
type Stats struct {
	Requests   uint64 // requests sent
	Timeouts   uint64 // requests that got no reply in time
	BadFrames  uint64 // replies rejected: wrong CRC or LRC, truncated, wrong unit, function or length
	Exceptions uint64 // exception replies
	Discarded  uint64 // stray bytes dropped: before a request and around replies
	Opens      uint64 // times the port or connection was opened
}

type counters struct {
	requests, timeouts, badFrames, exceptions, discarded, opens atomic.Uint64
}

// link is the transporter under a serial framing: it owns one Port, opened
// on demand, and implements goburrow's Transporter with a frame reader of
// ours. It is used by one goroutine at a time (the bus owner); only abort
// and the counters may be used from others.
type link struct {
	name    string // port path or address, for messages
	open    func(deadline time.Time) (Port, error)
	read    frameReader
	timeout time.Duration // per request
	gap     time.Duration // silence the line must keep before a request (t3.5; 0 on TCP)
	silence time.Duration // silence that ends a reply frame (0: length only)

	port          Port
	drainWindow   time.Duration // least wait when draining; 0 for ports that poll past a deadline
	deadline      time.Time     // of the request in progress
	last          time.Time     // when the line was last active
	quietTimeouts int
	buf           []byte
	stats         counters
}

func newLink(name string, open func(time.Time) (Port, error), read frameReader, timeout, gap, silence time.Duration) *link {
	return &link{name: name, open: open, read: read, timeout: timeout, gap: gap, silence: silence,
		buf: make([]byte, 0, rtuMaxBuffered+asciiMaxFrame)}
}

// connect opens the port if it is not open. Its error wraps
// adapters.ErrNotConnected.
func (l *link) connect(deadline time.Time) error {
	if l.port != nil {
		return nil
	}
	p, err := l.open(deadline)
	if err != nil {
		return fmt.Errorf("%w: open %s: %s", adapters.ErrNotConnected, l.name, stableText(err))
	}
	l.stats.opens.Add(1)
	l.port = p
	l.drainWindow = minReadWindow
	if _, ok := p.(*serialport.Serial); ok {
		l.drainWindow = 0
	}
	l.last = time.Time{}
	l.quietTimeouts = 0
	return nil
}

// close closes the port; the next request opens it again.
func (l *link) close() error {
	if l.port == nil {
		return nil
	}
	closePort(l.port)
	l.port = nil
	return nil
}

// abortFunc returns a function that closes the current port from another
// goroutine, to end a request whose context was cancelled; the owner then
// forgets the port. It touches nothing but that port.
func (l *link) abortFunc() func() {
	p := l.port
	return func() { closePort(p) }
}

// Send implements goburrow's Transporter: it waits until the line has been
// quiet for the inter-frame gap while discarding stray input, writes the
// request and reads the reply as its bytes arrive. The port must be open
// (connect) and deadline set. Errors wrap the adapters sentinels.
func (l *link) Send(req []byte) ([]byte, error) {
	if l.port == nil {
		return nil, fmt.Errorf("%w: %s is closed", adapters.ErrNotConnected, l.name)
	}
	l.stats.requests.Add(1)
	if err := l.quiet(); err != nil {
		return nil, l.failed(err)
	}
	if wd, ok := l.port.(interface{ SetWriteDeadline(time.Time) error }); ok {
		wd.SetWriteDeadline(l.deadline)
	}
	if _, err := l.port.Write(req); err != nil {
		return nil, l.failed(fmt.Errorf("%w: write to %s: %s", adapters.ErrNotConnected, l.name, stableText(err)))
	}
	resp, stray, err := l.read(l.port, req, l.deadline, l.silence, l.buf)
	l.last = time.Now()
	l.stats.discarded.Add(uint64(stray))
	switch {
	case err == nil:
		l.quietTimeouts = 0
		return resp, nil
	case errors.Is(err, adapters.ErrTimeout) && stray == 0:
		l.quietTimeouts++
		if l.quietTimeouts >= quietTimeoutsBeforeReopen {
			l.close()
		}
	default:
		l.quietTimeouts = 0
	}
	return nil, l.failed(err)
}

// quiet waits until the line has been silent for the inter-frame gap and
// discards whatever arrives meanwhile: the rest of a late reply, noise.
func (l *link) quiet() error {
	var scratch [rtuMaxFrame]byte
	for {
		until := l.last.Add(l.gap)
		if least := time.Now().Add(l.drainWindow); until.Before(least) {
			until = least
		}
		if until.After(l.deadline) {
			until = l.deadline
		}
		if err := l.port.SetReadDeadline(until); err != nil {
			return fmt.Errorf("%w: %s: %s", adapters.ErrNotConnected, l.name, stableText(err))
		}
		n, err := l.port.Read(scratch[:])
		if n > 0 {
			l.stats.discarded.Add(uint64(n))
			l.last = time.Now()
			if !l.last.Before(l.deadline) {
				return fmt.Errorf("%w: the line never went quiet", adapters.ErrTimeout)
			}
			continue
		}
		switch {
		case err == nil:
		case isTimeout(err):
			if !time.Now().Before(until) {
				return nil
			}
		default:
			return fmt.Errorf("%w: read from %s: %s", adapters.ErrNotConnected, l.name, stableText(err))
		}
	}
}

// failed counts err and closes the port when it broke.
func (l *link) failed(err error) error {
	switch {
	case errors.Is(err, adapters.ErrTimeout):
		l.stats.timeouts.Add(1)
	case errors.Is(err, adapters.ErrBadFrame):
		l.stats.badFrames.Add(1)
	case errors.Is(err, adapters.ErrNotConnected):
		l.close()
	}
	return err
}

// Stats returns the counters; it is safe for concurrent use.
func (l *link) Stats() Stats {
	return Stats{
		Requests:   l.stats.requests.Load(),
		Timeouts:   l.stats.timeouts.Load(),
		BadFrames:  l.stats.badFrames.Load(),
		Exceptions: l.stats.exceptions.Load(),
		Discarded:  l.stats.discarded.Load(),
		Opens:      l.stats.opens.Load(),
	}
}
