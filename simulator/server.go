package simulator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// UnknownUnit says how a Modbus TCP server answers a request for a unit id
// that has no Bank.
type UnknownUnit uint8

const (
	// UnknownUnitSilent sends no reply, like a device missing from an RTU
	// bus: the client times out.
	UnknownUnitSilent UnknownUnit = iota
	// UnknownUnitException answers with exception 0x0B (gateway target
	// device failed to respond), as a TCP-to-RTU gateway does.
	UnknownUnitException
)

func (u UnknownUnit) String() string {
	switch u {
	case UnknownUnitSilent:
		return "silent"
	case UnknownUnitException:
		return "exception"
	}
	return fmt.Sprintf("unknown_unit(%d)", uint8(u))
}

// Config is the static configuration of a Server.
type Config struct {
	// Addr is the TCP address Start listens on. Empty means "127.0.0.1:0":
	// a free loopback port, which is what tests want.
	Addr string

	// UnknownUnit decides how requests for unit ids without a Bank are
	// answered. It applies to Modbus TCP; serial (RTU) framings are always
	// silent for them, since another slave on the line may answer.
	UnknownUnit UnknownUnit

	// Bank sets the table sizes of the banks AddUnit creates.
	Bank BankConfig
}

// Faults is the misbehaviour of one unit id, for tests and demos. The zero
// value is a healthy device. Faults are set with Server.SetFaults and take
// effect with the next request; they never change a Bank.
type Faults struct {
	// Delay holds back every reply by this long: a slow device or a slow
	// gateway. Below the client's timeout it tests slow but working
	// polling; above it, timeouts.
	Delay time.Duration

	// Silent drops every request without executing it: the device never
	// answers and the client must time out.
	Silent bool

	// Exception answers every request with this exception code (for
	// example adapters.ExDeviceBusy) without executing it. Zero disables
	// it. For a single table or range use Bank.SetException instead.
	Exception byte

	// Garbage replaces each reply with random bytes of the same length.
	// On serial framings (RTU, ASCII) it sends the reply with a wrong CRC
	// or LRC instead, so that the client sees a damaged frame, not noise.
	Garbage bool

	// WrongTransactionID sends each reply with a Modbus TCP transaction id
	// one above the request's, as a stale reply would carry. On serial
	// framings, which have no transaction id, the reply carries the unit id
	// one above the request's instead: a reply from the wrong slave.
	WrongTransactionID bool

	// Noise sends this many random bytes on the line just before each
	// reply, as electrical noise or a slave that garbles its first bytes
	// would. Serial framings only; Modbus TCP ignores it.
	Noise int

	// Truncate sends only the first half of each reply (at least its unit
	// id and function code). Serial framings only; Modbus TCP ignores it.
	Truncate bool

	// LateReply, when positive, holds back the reply to the first request
	// after SetFaults by this long (instead of Delay); later requests are
	// answered as usual. Set it above the client's timeout: a client that
	// keeps using the connection after the timeout takes the late reply as
	// the answer to its next request, a careful one reconnects and never
	// sees it. Call SetFaults again to arm it again.
	LateReply time.Duration
}

type faultState struct {
	f    Faults
	late atomic.Bool // LateReply armed and not yet used
}

// Server is a simulated Modbus slave: up to 256 unit ids, each with its own
// Bank, served over Modbus TCP, with request counters and injectable faults.
// It is shaped like net/http/httptest.Server: NewServer starts it on a free
// loopback port, Addr tells where, Close stops it.
//
// All methods are safe for concurrent use.
type Server struct {
	cfg    Config
	logger *slog.Logger

	units  [256]atomic.Pointer[Bank]
	faults [256]atomic.Pointer[faultState]
	counts [256]atomic.Pointer[[256]atomic.Uint64] // by unit, then function code; allocated on first use

	// lifecycle serialises Start, Serve, Pause, Resume and Close, and is
	// held while they wait for goroutines, so that wg is never re-used
	// while a Wait is in progress.
	lifecycle sync.Mutex

	mu      sync.Mutex // guards the fields below
	cur     *listening // nil while not listening
	addr    string     // bound address, kept across Pause
	started bool
	serve   bool // started by Serve, which returns accept failures
	closed  bool
	conns   map[*conn]struct{}

	wg    sync.WaitGroup // accept loops and connection goroutines
	done  chan struct{}  // closed by Close
	fatal chan error     // an accept loop that failed for good (for Serve)
}

// listening is one period of listening, from Start or Resume to Pause or
// Close.
type listening struct {
	ln   net.Listener
	stop chan struct{} // closed when the server stops this listener
}

// New returns a server that is not listening yet, so that units and faults
// can be set up first. A nil logger discards logs.
func New(cfg Config, logger *slog.Logger) (*Server, error) {
	if cfg.UnknownUnit > UnknownUnitException {
		return nil, fmt.Errorf("invalid unknown unit policy %d", cfg.UnknownUnit)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Server{
		cfg:    cfg,
		logger: logger,
		conns:  make(map[*conn]struct{}),
		done:   make(chan struct{}),
		fatal:  make(chan error, 1),
	}, nil
}

// NewServer returns a server that already listens on cfg.Addr (by default a
// free port on 127.0.0.1). The caller must Close it.
func NewServer(cfg Config, logger *slog.Logger) (*Server, error) {
	s, err := New(cfg, logger)
	if err != nil {
		return nil, err
	}
	if err := s.Start(); err != nil {
		return nil, err
	}
	return s, nil
}

// AddUnit returns the bank of unit id, creating it with the table sizes of
// Config.Bank if the unit has none.
func (s *Server) AddUnit(id byte) *Bank {
	if b := s.units[id].Load(); b != nil {
		return b
	}
	b := NewBank(s.cfg.Bank)
	if s.units[id].CompareAndSwap(nil, b) {
		return b
	}
	return s.units[id].Load()
}

// SetUnit serves b as unit id, replacing any previous bank; a nil b removes
// the unit. One bank may serve several unit ids or servers.
func (s *Server) SetUnit(id byte, b *Bank) { s.units[id].Store(b) }

// RemoveUnit removes unit id: requests for it are then treated as for an
// unknown unit.
func (s *Server) RemoveUnit(id byte) { s.units[id].Store(nil) }

// Unit returns the bank of unit id, or nil.
func (s *Server) Unit(id byte) *Bank { return s.units[id].Load() }

// SetFaults sets the faults of unit id, replacing the previous ones, and
// arms Faults.LateReply. It may be called for a unit id without a bank.
func (s *Server) SetFaults(id byte, f Faults) {
	fs := &faultState{f: f}
	fs.late.Store(f.LateReply > 0)
	s.faults[id].Store(fs)
}

// ClearFaults makes unit id healthy again.
func (s *Server) ClearFaults(id byte) { s.faults[id].Store(nil) }

// Faults returns the faults set for unit id.
func (s *Server) Faults(id byte) Faults {
	if fs := s.faults[id].Load(); fs != nil {
		return fs.f
	}
	return Faults{}
}

// count records one request with function code fc for unit.
func (s *Server) count(unit, fc byte) {
	p := s.counts[unit].Load()
	if p == nil {
		p = new([256]atomic.Uint64)
		if !s.counts[unit].CompareAndSwap(nil, p) {
			p = s.counts[unit].Load()
		}
	}
	p[fc].Add(1)
}

// Requests returns how many requests with function code fc reached unit
// since the start or the last ResetRequests. Every well-framed request
// counts, whatever the answer: exceptions, silent units and unknown units
// included. Frames that close the connection do not count.
func (s *Server) Requests(unit, fc byte) uint64 {
	p := s.counts[unit].Load()
	if p == nil {
		return 0
	}
	return p[fc].Load()
}

// UnitRequests returns how many requests of any function code reached unit
// (see Requests).
func (s *Server) UnitRequests(unit byte) uint64 {
	p := s.counts[unit].Load()
	if p == nil {
		return 0
	}
	var n uint64
	for i := range p {
		n += p[i].Load()
	}
	return n
}

// ResetRequests sets every request counter to zero. Requests served while it
// runs may or may not be counted.
func (s *Server) ResetRequests() {
	for u := range s.counts {
		if p := s.counts[u].Load(); p != nil {
			for i := range p {
				p[i].Store(0)
			}
		}
	}
}

// Addr returns the address the server listens on (host:port), also while it
// is paused; "" before it started.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Start listens on Config.Addr (default "127.0.0.1:0") and serves
// connections in the background until Close.
func (s *Server) Start() error {
	s.lifecycle.Lock()
	defer s.lifecycle.Unlock()
	if err := s.canStart(); err != nil {
		return err
	}
	addr := s.cfg.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.started = true
	s.listenLocked(ln)
	return nil
}

// Serve takes ownership of ln and serves connections from it until ctx is
// done or Close is called, then closes the server and returns nil. It
// returns an error when ln fails for good (then the server is closed too),
// and at once when the server was already started or closed (then ln is
// closed). Pause and Resume work while Serve runs; Resume listens again on
// ln's address with TCP.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.lifecycle.Lock()
	if err := s.canStart(); err != nil {
		s.lifecycle.Unlock()
		ln.Close()
		return err
	}
	s.mu.Lock()
	s.started = true
	s.serve = true
	s.listenLocked(ln)
	s.mu.Unlock()
	s.lifecycle.Unlock()

	select {
	case <-ctx.Done():
		s.Close()
		return nil
	case <-s.done:
		return nil
	case err := <-s.fatal:
		s.Close()
		return err
	}
}

// canStart reports why the server cannot start. The caller holds lifecycle.
func (s *Server) canStart() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return ErrServerClosed
	case s.started:
		return ErrAlreadyStarted
	}
	return nil
}

// listenLocked starts an accept loop on ln. The caller holds lifecycle and mu.
func (s *Server) listenLocked(ln net.Listener) {
	l := &listening{ln: ln, stop: make(chan struct{})}
	s.cur = l
	s.addr = ln.Addr().String()
	s.wg.Add(1)
	go s.acceptLoop(l)
	s.logger.Info("simulator listening", "address", s.addr)
}

// stopLocked closes the listener and every connection. The caller holds mu.
func (s *Server) stopLocked() {
	if s.cur != nil {
		close(s.cur.stop)
		s.cur.ln.Close()
		s.cur = nil
	}
	for c := range s.conns {
		c.close()
	}
}

// Pause imitates a device that went away: it closes the listener and every
// connection, and waits until their goroutines are done. Clients get
// connection refused until Resume. Pausing a paused server does nothing.
func (s *Server) Pause() error {
	s.lifecycle.Lock()
	defer s.lifecycle.Unlock()
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		return ErrServerClosed
	case !s.started:
		s.mu.Unlock()
		return ErrNotStarted
	}
	wasListening := s.cur != nil
	s.stopLocked()
	s.mu.Unlock()
	s.wg.Wait()
	if wasListening {
		s.logger.Info("simulator paused", "address", s.Addr())
	}
	return nil
}

// Resume listens again on the address the server had before Pause (the same
// port), relying on Go's listeners setting SO_REUSEADDR. Resuming a server
// that listens does nothing.
func (s *Server) Resume() error {
	s.lifecycle.Lock()
	defer s.lifecycle.Unlock()
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		return ErrServerClosed
	case !s.started:
		s.mu.Unlock()
		return ErrNotStarted
	case s.cur != nil:
		s.mu.Unlock()
		return nil
	}
	addr := s.addr
	s.mu.Unlock()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("resume on %s: %w", addr, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.listenLocked(ln)
	return nil
}

// Close stops listening, closes every connection, drops replies still held
// back by a fault, and waits until every request in progress is done. It
// may be called more than once; the server cannot be started again (start a
// new one on Addr() for that).
func (s *Server) Close() {
	s.lifecycle.Lock()
	defer s.lifecycle.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.stopLocked()
	close(s.done)
	s.mu.Unlock()
	s.wg.Wait()
}

// acceptLoop accepts connections from l until the server stops l or the
// listener fails for good.
func (s *Server) acceptLoop(l *listening) {
	defer s.wg.Done()
	var backoff time.Duration
	for {
		nc, err := l.ln.Accept()
		if err != nil {
			select {
			case <-l.stop:
				return // Pause or Close
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				s.listenerFailed(l, err)
				return
			}
			// Out of file descriptors and the like: back off and retry,
			// as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.logger.Warn("simulator accept failed", "err", err, "retry_seconds", backoff.Seconds())
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
				continue
			case <-l.stop:
				t.Stop()
				return
			}
		}
		backoff = 0
		s.mu.Lock()
		if s.cur != l {
			s.mu.Unlock()
			nc.Close()
			return
		}
		c := &conn{nc: nc, done: make(chan struct{})}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serveConn(c)
	}
}

// listenerFailed handles a listener closed by someone else: the server stops
// listening (Resume may listen again) and Serve returns the error.
func (s *Server) listenerFailed(l *listening, err error) {
	s.mu.Lock()
	if s.cur == l {
		s.cur = nil
		close(l.stop)
	}
	serve := s.serve
	s.mu.Unlock()
	err = fmt.Errorf("simulator listener on %s: %w", l.ln.Addr(), err)
	if !serve {
		s.logger.Error("simulator stopped listening", "err", err)
		return
	}
	select {
	case s.fatal <- err:
	default:
	}
}
