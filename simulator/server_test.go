package simulator

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"fieldbridge/adapters"

	"github.com/google/go-cmp/cmp"
)

// faultServer serves unit 1 with holding 0 = 0x1234.
func faultServer(t testing.TB) *Server {
	t.Helper()
	s := newTestServer(t, Config{})
	must(t, s.AddUnit(1).SetRegisters(adapters.HoldingRegister, 0, []uint16{0x1234}))
	return s
}

var goodReply = []byte{FuncReadHoldingRegisters, 2, 0x12, 0x34}

func TestFaultDelay(t *testing.T) {
	s := faultServer(t)
	const delay = 50 * time.Millisecond
	s.SetFaults(1, Faults{Delay: delay})
	c := dial(t, s.Addr())
	start := time.Now()
	got := roundTrip(t, c, frame{1, 1, readHolding(0, 1)})
	// A lower bound only: the timer guarantees it, load cannot break it.
	if elapsed := time.Since(start); elapsed < delay {
		t.Errorf("reply after %v, want at least %v", elapsed, delay)
	}
	if !bytes.Equal(got.pdu, goodReply) {
		t.Errorf("delayed reply % x, want % x", got.pdu, goodReply)
	}
}

func TestFaultSilent(t *testing.T) {
	s := faultServer(t)
	s.SetFaults(1, Faults{Silent: true})
	if got := s.Faults(1); !got.Silent {
		t.Errorf("Faults(1) = %+v, want Silent", got)
	}
	c := dial(t, s.Addr())
	writeFrame(t, c, frame{1, 1, cat([]byte{FuncWriteSingleRegister}, be(0, 99))})
	if got, err := readFrame(c, noReply); !isTimeout(err) {
		t.Fatalf("silent unit answered %+v, %v", got, err)
	}
	if n := s.Requests(1, FuncWriteSingleRegister); n != 1 {
		t.Errorf("Requests(1, FC6) = %d, want 1 (silent requests are counted)", n)
	}
	regs, err := s.Unit(1).Registers(adapters.HoldingRegister, 0, 1)
	must(t, err)
	if regs[0] != 0x1234 {
		t.Errorf("silent unit executed the write: holding 0 = %#x", regs[0])
	}

	s.ClearFaults(1)
	if got := roundTrip(t, c, frame{2, 1, readHolding(0, 1)}); got.tid != 2 || !bytes.Equal(got.pdu, goodReply) {
		t.Errorf("after ClearFaults: got %+v", got)
	}
}

func TestFaultException(t *testing.T) {
	s := faultServer(t)
	s.SetFaults(1, Faults{Exception: adapters.ExDeviceBusy})
	c := dial(t, s.Addr())
	for _, pdu := range [][]byte{readHolding(0, 1), cat([]byte{FuncWriteSingleRegister}, be(0, 1)), {FuncReadCoils, 0, 0, 0, 1}} {
		got := roundTrip(t, c, frame{1, 1, pdu})
		if want := []byte{pdu[0] | 0x80, adapters.ExDeviceBusy}; !bytes.Equal(got.pdu, want) {
			t.Errorf("request % x: got % x, want % x", pdu, got.pdu, want)
		}
	}
}

func TestFaultGarbage(t *testing.T) {
	s := faultServer(t)
	s.SetFaults(1, Faults{Garbage: true})
	c := dial(t, s.Addr())
	req := frame{1, 1, readHolding(0, 1)}
	writeFrame(t, c, req)
	want := appendFrame(nil, 1, 1, goodReply)
	got := make([]byte, len(want))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(got, want) {
		t.Errorf("garbage fault sent the correct reply % x", got)
	}
}

func TestFaultWrongTransactionID(t *testing.T) {
	s := faultServer(t)
	s.SetFaults(1, Faults{WrongTransactionID: true})
	c := dial(t, s.Addr())
	got := roundTrip(t, c, frame{41, 1, readHolding(0, 1)})
	if diff := cmp.Diff(frame{42, 1, goodReply}, got, cmp.AllowUnexported(frame{})); diff != "" {
		t.Errorf("reply (-want +got):\n%s", diff)
	}
}

// A late reply lands in front of the answer to the next request on the same
// connection; a client that reconnects after its timeout never sees it.
func TestFaultLateReply(t *testing.T) {
	const timeout = 50 * time.Millisecond

	t.Run("same connection", func(t *testing.T) {
		s := faultServer(t)
		s.SetFaults(1, Faults{LateReply: 4 * timeout})
		c := dial(t, s.Addr())
		writeFrame(t, c, frame{1, 1, readHolding(0, 1)})
		if _, err := readFrame(c, timeout); !isTimeout(err) {
			t.Fatalf("first request: %v, want a timeout", err)
		}
		writeFrame(t, c, frame{2, 1, readHolding(0, 1)})
		first, err := readFrame(c, 5*time.Second)
		must(t, err)
		second, err := readFrame(c, 5*time.Second)
		must(t, err)
		if first.tid != 1 || second.tid != 2 {
			t.Errorf("replies with transaction ids %d, %d; want the late 1 before 2", first.tid, second.tid)
		}
	})

	t.Run("reconnect", func(t *testing.T) {
		s := faultServer(t)
		s.SetFaults(1, Faults{LateReply: time.Hour, Delay: 0})
		c := dial(t, s.Addr())
		writeFrame(t, c, frame{1, 1, readHolding(0, 1)})
		if _, err := readFrame(c, timeout); !isTimeout(err) {
			t.Fatalf("first request: %v, want a timeout", err)
		}
		c.Close()
		c = dial(t, s.Addr())
		for tid := uint16(2); tid < 5; tid++ {
			if got := roundTrip(t, c, frame{tid, 1, readHolding(0, 1)}); got.tid != tid || !bytes.Equal(got.pdu, goodReply) {
				t.Errorf("after reconnect: got %+v, want tid %d", got, tid)
			}
		}
	})
}

// Close drops replies held back by a fault instead of waiting for them.
func TestCloseDropsHeldReplies(t *testing.T) {
	s := faultServer(t)
	s.SetFaults(1, Faults{Delay: time.Hour})
	c := dial(t, s.Addr())
	writeFrame(t, c, frame{1, 1, readHolding(0, 1)})
	checkFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if s.UnitRequests(1) == 0 {
			return errors.New("request not received yet")
		}
		return nil
	})
	s.Close() // the test times out if Close waits for the hour
	if _, err := readFrame(c, 5*time.Second); err == nil || isTimeout(err) {
		t.Errorf("read after Close: %v, want the connection closed", err)
	}
}

func TestPauseResume(t *testing.T) {
	s := faultServer(t)
	addr := s.Addr()
	c := dial(t, addr)
	roundTrip(t, c, frame{1, 1, readHolding(0, 1)})

	must(t, s.Pause())
	must(t, s.Pause()) // pausing twice is fine
	if _, err := readFrame(c, 5*time.Second); err == nil || isTimeout(err) {
		t.Errorf("open connection after Pause: %v, want it closed", err)
	}
	if c2, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c2.Close()
		t.Errorf("dial %s while paused succeeded, want refused", addr)
	}
	if got := s.Addr(); got != addr {
		t.Errorf("Addr() while paused = %q, want %q", got, addr)
	}

	must(t, s.Resume())
	must(t, s.Resume()) // resuming a listening server is fine
	if got := s.Addr(); got != addr {
		t.Errorf("Addr() after Resume = %q, want %q", got, addr)
	}
	got := roundTrip(t, dial(t, addr), frame{2, 1, readHolding(0, 1)})
	if !bytes.Equal(got.pdu, goodReply) {
		t.Errorf("after Resume: got % x", got.pdu)
	}

	// Several cycles, with the server closing connections first (so its
	// side of them lingers in TIME_WAIT).
	for range 3 {
		roundTrip(t, dial(t, addr), frame{3, 1, readHolding(0, 1)})
		must(t, s.Pause())
		must(t, s.Resume())
	}
	roundTrip(t, dial(t, addr), frame{4, 1, readHolding(0, 1)})
}

// A device going away for good and a new one coming up on the same address.
func TestCloseThenNewServerOnSameAddress(t *testing.T) {
	s := faultServer(t)
	addr := s.Addr()
	roundTrip(t, dial(t, addr), frame{1, 1, readHolding(0, 1)})
	s.Close()
	s.Close() // idempotent

	s2 := newTestServer(t, Config{Addr: addr})
	s2.AddUnit(1)
	if got := s2.Addr(); got != addr {
		t.Fatalf("new server on %q listens on %q", addr, got)
	}
	got := roundTrip(t, dial(t, addr), frame{2, 1, readHolding(0, 1)})
	if !bytes.Equal(got.pdu, []byte{3, 2, 0, 0}) {
		t.Errorf("new server answered % x", got.pdu)
	}
}

func TestLifecycleErrors(t *testing.T) {
	unstarted, err := New(Config{}, nil)
	must(t, err)
	started := newTestServer(t, Config{})
	closed := newTestServer(t, Config{})
	closed.Close()

	tests := []struct {
		name string
		call func() error
		want error
	}{
		{"pause unstarted", unstarted.Pause, ErrNotStarted},
		{"resume unstarted", unstarted.Resume, ErrNotStarted},
		{"start twice", started.Start, ErrAlreadyStarted},
		{"serve started", func() error {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			must(t, err)
			return started.Serve(t.Context(), ln)
		}, ErrAlreadyStarted},
		{"start closed", closed.Start, ErrServerClosed},
		{"pause closed", closed.Pause, ErrServerClosed},
		{"resume closed", closed.Resume, ErrServerClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); !errors.Is(err, tt.want) {
				t.Errorf("got %v, want %v", err, tt.want)
			}
		})
	}
	if got := unstarted.Addr(); got != "" {
		t.Errorf("Addr() before start = %q, want empty", got)
	}
	if _, err := New(Config{UnknownUnit: 7}, nil); err == nil {
		t.Error("New with an invalid UnknownUnit policy: no error")
	}
}

func TestServe(t *testing.T) {
	t.Run("context cancelled", func(t *testing.T) {
		s, err := New(Config{}, nil)
		must(t, err)
		s.AddUnit(1)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		must(t, err)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- s.Serve(ctx, ln) }()

		c := dial(t, ln.Addr().String())
		roundTrip(t, c, frame{1, 1, readHolding(0, 1)})
		must(t, s.Pause())
		must(t, s.Resume())
		roundTrip(t, dial(t, ln.Addr().String()), frame{2, 1, readHolding(0, 1)})

		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve after cancel = %v, want nil", err)
		}
		if err := s.Start(); !errors.Is(err, ErrServerClosed) {
			t.Errorf("Start after Serve returned: %v, want ErrServerClosed", err)
		}
	})

	t.Run("closed", func(t *testing.T) {
		s, err := New(Config{}, nil)
		must(t, err)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		must(t, err)
		done := make(chan error, 1)
		go func() { done <- s.Serve(t.Context(), ln) }()
		checkFor(t, 5*time.Second, 5*time.Millisecond, func() error {
			if s.Addr() == "" {
				return errors.New("not serving yet")
			}
			return nil
		})
		s.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve after Close = %v, want nil", err)
		}
	})

	t.Run("listener fails", func(t *testing.T) {
		s, err := New(Config{}, nil)
		must(t, err)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		must(t, err)
		done := make(chan error, 1)
		go func() { done <- s.Serve(t.Context(), ln) }()
		checkFor(t, 5*time.Second, 5*time.Millisecond, func() error {
			if s.Addr() == "" {
				return errors.New("not serving yet")
			}
			return nil
		})
		ln.Close() // behind the server's back
		if err := <-done; !errors.Is(err, net.ErrClosed) {
			t.Errorf("Serve after the listener failed = %v, want net.ErrClosed", err)
		}
	})
}
