package serialline

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"fieldbridge/adapters"
	"fieldbridge/adapters/serialport"
)

// Stats counts what happened on a serial-line bus since it was created. The
// counters only grow.
type Stats struct {
	Frames    uint64 // frames parsed into values
	Malformed uint64 // frames that did not parse, and frames dropped as too long or cut short
	Discarded uint64 // bytes dropped outside frames: noise, stray input before a query
	Queries   uint64 // requests sent (query mode)
	Opens     uint64 // times the port or connection was opened

	// LastMalformed says why the latest malformed frame was refused, with
	// the frame (cut to 64 bytes); empty when none was.
	LastMalformed string
}

// Bus is a serial-line bus: one port (or raw TCP connection) with one
// instrument in push mode, or one or more addressable instruments in query
// mode. It implements adapters.Bus: each field of a frame is a holding
// register range of a virtual device (see Layout), so points, events and
// status reports work as for Modbus devices.
//
// ReadRange, WriteRange and Close are called by the one goroutine of the
// adapters.Loop that owns the bus. In push mode the bus reads the port on a
// goroutine of its own, started by the first read and ended by Close.
// Stats is safe for concurrent use.
type Bus struct {
	name      string
	open      func(deadline time.Time) (Port, error)
	request   string
	timeout   time.Duration
	maxAge    time.Duration
	reuse     time.Duration
	frameGap  time.Duration // a frame not ended after this much silence is dropped
	framing   Framing
	parser    *parser
	imageSize int

	port        Port
	drainWindow time.Duration

	// query mode: the latest reply per unit
	replies map[uint8]snapshot

	// push mode: the reader goroutine and what it found
	pumpDone chan struct{} // closed when the reader goroutine ended
	pumpErr  error         // why it ended; read after pumpDone is closed
	mu       sync.Mutex
	latest   snapshot
	fresh    chan struct{} // closed and replaced when a frame arrives

	frames, malformed, discarded, queries, opens atomic.Uint64
	lastMalformed                                atomic.Pointer[string]
}

// snapshot is the register image of one frame and when it arrived.
type snapshot struct {
	img []uint16
	at  time.Time
}

// New validates cfg. It opens nothing; the first read does, and a port that
// cannot be opened or fails later is opened again by the next read.
func New(cfg Config) (*Bus, error) {
	if err := cfg.check(); err != nil {
		return nil, fmt.Errorf("serial line: %w", err)
	}
	fields, err := cfg.fields()
	if err != nil {
		return nil, fmt.Errorf("serial line: %w", err)
	}
	ps, err := newParser(cfg.Parser, fields)
	if err != nil {
		return nil, fmt.Errorf("serial line: %w", err)
	}
	b := &Bus{
		request: cfg.Request, framing: cfg.Framing, parser: ps, imageSize: ps.size,
		timeout: orDefault(cfg.Timeout, DefaultTimeout), maxAge: orDefault(cfg.MaxAge, DefaultMaxAge),
		reuse: orDefault(cfg.Reuse, DefaultReuse), replies: map[uint8]snapshot{}, fresh: make(chan struct{}),
	}
	ln, err := newLine(cfg)
	if err != nil {
		return nil, fmt.Errorf("serial line: %w", err)
	}
	b.frameGap = max(100*time.Millisecond, 32*ln.CharTime())
	switch {
	case cfg.Open != nil:
		b.name = "serial line"
		b.open = func(time.Time) (Port, error) { return cfg.Open() }
	case cfg.Address != "":
		b.name = cfg.Address
		b.open = func(deadline time.Time) (Port, error) {
			d := net.Dialer{Deadline: deadline}
			return d.Dial("tcp", cfg.Address)
		}
	default:
		b.name = cfg.Port
		b.open = func(time.Time) (Port, error) { return ln.Open() }
	}
	return b, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// Push reports whether the bus is in push mode (no request configured).
func (b *Bus) Push() bool { return b.request == "" }

// Stats returns the counters. It is safe for concurrent use.
func (b *Bus) Stats() Stats {
	s := Stats{
		Frames: b.frames.Load(), Malformed: b.malformed.Load(), Discarded: b.discarded.Load(),
		Queries: b.queries.Load(), Opens: b.opens.Load(),
	}
	if p := b.lastMalformed.Load(); p != nil {
		s.LastMalformed = *p
	}
	return s
}

// ReadRange returns holding registers of the register image of the latest
// frame: in push mode the latest frame the instrument printed, if it is no
// older than MaxAge (otherwise it waits up to Timeout for a new one); in
// query mode the reply to a request sent now (or within Reuse).
//
// Errors: a table other than holding registers is an *adapters.ExceptionError
// with code ExIllegalFunction, a range outside the image one with
// ExIllegalAddress; no frame in time wraps adapters.ErrTimeout; in query
// mode a reply that does not parse wraps adapters.ErrBadFrame; a port that
// cannot be opened or fails wraps adapters.ErrNotConnected.
func (b *Bus) ReadRange(ctx context.Context, r adapters.Range) (adapters.Block, error) {
	if err := ctx.Err(); err != nil {
		return adapters.Block{}, err
	}
	if r.Table != adapters.HoldingRegister {
		return adapters.Block{}, fmt.Errorf("read %s: %w", r, &adapters.ExceptionError{Function: readFunction(r.Table), Code: adapters.ExIllegalFunction})
	}
	if r.Count == 0 || r.End() > b.imageSize {
		return adapters.Block{}, fmt.Errorf("read %s (the fields fill %d registers): %w", r, b.imageSize,
			&adapters.ExceptionError{Function: 3, Code: adapters.ExIllegalAddress})
	}
	var snap snapshot
	var err error
	if b.Push() {
		snap, err = b.pushed(ctx)
	} else {
		snap, err = b.query(ctx, r.Unit)
	}
	if err != nil {
		return adapters.Block{}, fmt.Errorf("read %s: %w", r, err)
	}
	regs := make([]uint16, r.Count)
	copy(regs, snap.img[r.Address:r.End()])
	return adapters.Block{Range: r, Registers: regs}, nil
}

func readFunction(t adapters.Table) byte {
	switch t {
	case adapters.Coil:
		return 1
	case adapters.DiscreteInput:
		return 2
	case adapters.InputRegister:
		return 4
	}
	return 3
}

// WriteRange sends a command's text request (w.Text) to the instrument, as
// is. It returns once the bytes were handed to the port; an answer is not
// awaited (in query mode the next query drains it first, in push mode the
// reader skips what does not parse as a frame). Cached query replies are
// forgotten, so that a read after the command asks the instrument again.
// Register and coil writes are refused with errors.ErrUnsupported: a text
// instrument has no registers to write.
func (b *Bus) WriteRange(ctx context.Context, w adapters.WriteRequest) error {
	if w.Text == nil {
		return fmt.Errorf("write unit %d %s to serial line %s: %w", w.Unit, w.Table, b.name, errors.ErrUnsupported)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	deadline := time.Now().Add(b.timeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	if b.port == nil {
		if err := b.connect(deadline); err != nil {
			return fmt.Errorf("send to %s: %w", b.name, err)
		}
		if b.Push() {
			// As a read would: the reader goroutine owns the receiving side.
			b.pumpDone = make(chan struct{})
			go b.pump(b.port, b.pumpDone)
		}
	}
	clear(b.replies)
	if wd, ok := b.port.(interface{ SetWriteDeadline(time.Time) error }); ok {
		wd.SetWriteDeadline(deadline)
	}
	if _, err := b.port.Write(w.Text); err != nil {
		p := b.port
		if !b.Push() {
			b.port = nil
			closePort(p)
		}
		return fmt.Errorf("%w: send to %s: %v", adapters.ErrNotConnected, b.name, err)
	}
	return nil
}

// Close closes the port and, in push mode, waits for the reader goroutine.
// The next read opens the port again.
func (b *Bus) Close() error {
	if b.port == nil {
		return nil
	}
	closePort(b.port)
	if b.pumpDone != nil {
		<-b.pumpDone
		b.pumpDone = nil
	}
	b.port = nil
	return nil
}

// connect opens the port if it is not open.
func (b *Bus) connect(deadline time.Time) error {
	if b.port != nil {
		return nil
	}
	p, err := b.open(deadline)
	if err != nil {
		return fmt.Errorf("%w: open %s: %v", adapters.ErrNotConnected, b.name, err)
	}
	b.opens.Add(1)
	b.port = p
	b.drainWindow = minReadWindow
	if _, ok := p.(*serialport.Serial); ok {
		b.drainWindow = 0
	}
	return nil
}

// countMalformed records one malformed frame and why.
func (b *Bus) countMalformed(frame []byte, why error) {
	b.malformed.Add(1)
	const show = 64
	f := frame
	if len(f) > show {
		f = f[:show]
	}
	s := fmt.Sprintf("%v: %q", why, f)
	b.lastMalformed.Store(&s)
}

// take parses every complete frame in sp and returns the last good one.
// Malformed frames are counted and skipped.
func (b *Bus) take(sp *splitter) (snapshot, bool) {
	var snap snapshot
	found := false
	for f := sp.next(); f != nil; f = sp.next() {
		img := make([]uint16, b.imageSize)
		if err := b.parser.parse(f, img); err != nil {
			b.countMalformed(f, err)
			continue
		}
		b.frames.Add(1)
		snap, found = snapshot{img: img, at: time.Now()}, true
	}
	b.settle(sp)
	return snap, found
}

// settle moves the splitter's noise and broken-frame counts to the bus.
func (b *Bus) settle(sp *splitter) {
	if sp.broken > 0 {
		b.malformed.Add(sp.broken)
		s := fmt.Sprintf("%d frame(s) too long or cut short", sp.broken)
		b.lastMalformed.Store(&s)
		sp.broken = 0
	}
	b.discarded.Add(sp.noise)
	sp.noise = 0
}

// --- push mode ---

// pushed returns the latest frame, waiting up to the timeout for a fresh
// one when it is missing or stale.
func (b *Bus) pushed(ctx context.Context) (snapshot, error) {
	if b.pumpDone != nil {
		select {
		case <-b.pumpDone:
			err := b.pumpErr
			b.pumpDone = nil
			b.Close()
			return snapshot{}, fmt.Errorf("%w: read from %s: %v", adapters.ErrNotConnected, b.name, err)
		default:
		}
	}
	if b.port == nil {
		if err := b.connect(time.Now().Add(b.timeout)); err != nil {
			return snapshot{}, err
		}
		b.pumpDone = make(chan struct{})
		go b.pump(b.port, b.pumpDone)
	}
	b.mu.Lock()
	snap, fresh := b.latest, b.fresh
	b.mu.Unlock()
	if !snap.at.IsZero() && time.Since(snap.at) <= b.maxAge {
		return snap, nil
	}
	t := time.NewTimer(b.timeout)
	defer t.Stop()
	select {
	case <-fresh:
		b.mu.Lock()
		snap = b.latest
		b.mu.Unlock()
		return snap, nil
	case <-ctx.Done():
		return snapshot{}, ctx.Err()
	case <-b.pumpDone:
		return b.pushed(ctx) // reports the failure
	case <-t.C:
	}
	if snap.at.IsZero() {
		return snapshot{}, fmt.Errorf("%w: no complete frame from %s yet", adapters.ErrTimeout, b.name)
	}
	return snapshot{}, fmt.Errorf("%w: the latest frame from %s is %v old, more than the max age of %v",
		adapters.ErrTimeout, b.name, time.Since(snap.at).Round(time.Millisecond), b.maxAge)
}

// pump reads p until it fails or is closed, keeping the latest good frame.
// A frame that has begun but not ended after a silence of frameGap is
// dropped, so that a broken frame never glues onto the next one.
func (b *Bus) pump(p Port, done chan struct{}) {
	defer close(done)
	sp := newSplitter(b.framing)
	buf := make([]byte, 4096)
	for {
		var dl time.Time
		if sp.pending() {
			dl = time.Now().Add(b.frameGap)
		}
		if err := p.SetReadDeadline(dl); err != nil {
			b.pumpErr = err
			return
		}
		n, err := p.Read(buf)
		if n > 0 {
			sp.write(buf[:n])
			if snap, ok := b.take(sp); ok {
				b.mu.Lock()
				b.latest = snap
				close(b.fresh)
				b.fresh = make(chan struct{})
				b.mu.Unlock()
			}
		}
		switch {
		case err == nil:
		case isTimeout(err):
			sp.reset()
			b.settle(sp)
		default:
			b.pumpErr = err
			return
		}
	}
}

// --- query mode ---

// query sends the request for unit and reads frames until one parses.
func (b *Bus) query(ctx context.Context, unit uint8) (snapshot, error) {
	if s, ok := b.replies[unit]; ok && time.Since(s.at) < b.reuse {
		return s, nil
	}
	deadline := time.Now().Add(b.timeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	if err := b.connect(deadline); err != nil {
		return snapshot{}, err
	}
	p := b.port
	stop := context.AfterFunc(ctx, func() {
		if ctx.Err() == context.Canceled { // a deadline is honoured by the read deadline
			closePort(p)
		}
	})
	s, err := b.exchange(p, unit, deadline)
	if !stop() && ctx.Err() == context.Canceled {
		// The port was closed under the query to end it.
		b.port = nil
		closePort(p)
		return snapshot{}, ctx.Err()
	}
	if err != nil {
		if errors.Is(err, adapters.ErrNotConnected) {
			b.port = nil
			closePort(p)
		}
		return snapshot{}, err
	}
	b.replies[unit] = s
	return s, nil
}

// exchange drains stray input, sends the request and reads the reply.
func (b *Bus) exchange(p Port, unit uint8, deadline time.Time) (snapshot, error) {
	var buf [4096]byte
	// Drain what arrived since the last query: a late reply, an echo, noise.
	for {
		if err := p.SetReadDeadline(time.Now().Add(b.drainWindow)); err != nil {
			return snapshot{}, fmt.Errorf("%w: %s: %v", adapters.ErrNotConnected, b.name, err)
		}
		n, err := p.Read(buf[:])
		b.discarded.Add(uint64(n))
		if n > 0 && time.Now().Before(deadline) {
			continue
		}
		if err != nil && !isTimeout(err) {
			return snapshot{}, fmt.Errorf("%w: read from %s: %v", adapters.ErrNotConnected, b.name, err)
		}
		break
	}
	req, err := renderRequest(b.request, unit)
	if err != nil {
		return snapshot{}, err // checked by New; cannot happen
	}
	if wd, ok := p.(interface{ SetWriteDeadline(time.Time) error }); ok {
		wd.SetWriteDeadline(deadline)
	}
	b.queries.Add(1)
	if _, err := p.Write([]byte(req)); err != nil {
		return snapshot{}, fmt.Errorf("%w: write to %s: %v", adapters.ErrNotConnected, b.name, err)
	}
	sp := newSplitter(b.framing)
	malformedBefore := b.malformed.Load()
	for {
		rd := deadline
		if least := time.Now().Add(minReadWindow); rd.Before(least) {
			rd = least
		}
		if err := p.SetReadDeadline(rd); err != nil {
			return snapshot{}, fmt.Errorf("%w: %s: %v", adapters.ErrNotConnected, b.name, err)
		}
		n, err := p.Read(buf[:])
		if n > 0 {
			sp.write(buf[:n])
			if s, ok := b.take(sp); ok {
				b.discarded.Add(uint64(len(sp.buf))) // anything after the reply
				return s, nil
			}
		}
		switch {
		case err == nil:
			continue
		case !isTimeout(err):
			return snapshot{}, fmt.Errorf("%w: read from %s: %v", adapters.ErrNotConnected, b.name, err)
		case time.Now().Before(deadline):
			continue
		}
		pending := sp.pending()
		sp.reset() // an unterminated reply counts as malformed
		b.settle(sp)
		switch {
		case pending:
			return snapshot{}, fmt.Errorf("%w: reply not terminated within %v", adapters.ErrBadFrame, b.timeout)
		case b.malformed.Load() != malformedBefore:
			msg := ""
			if p := b.lastMalformed.Load(); p != nil {
				msg = *p
			}
			return snapshot{}, fmt.Errorf("%w: malformed reply: %s", adapters.ErrBadFrame, msg)
		}
		return snapshot{}, fmt.Errorf("%w: no reply", adapters.ErrTimeout)
	}
}
