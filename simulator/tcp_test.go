package simulator

import (
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"fieldbridge/adapters"

	"github.com/google/go-cmp/cmp"
)

// noReply is how long a test waits to be sure that no reply comes. It only
// makes a passing test slower, never a failing one pass.
const noReply = 150 * time.Millisecond

func TestTCPEchoesTransactionAndUnit(t *testing.T) {
	s := newTestServer(t, Config{})
	must(t, s.AddUnit(1).SetRegisters(adapters.HoldingRegister, 0, []uint16{11, 22}))
	must(t, s.AddUnit(247).SetRegisters(adapters.HoldingRegister, 0, []uint16{33}))
	c := dial(t, s.Addr())

	tests := []struct {
		name string
		req  frame
		want frame
	}{
		{"tid 1 unit 1", frame{1, 1, readHolding(0, 2)}, frame{1, 1, []byte{3, 4, 0, 11, 0, 22}}},
		{"tid 0xBEEF unit 247", frame{0xBEEF, 247, readHolding(0, 1)}, frame{0xBEEF, 247, []byte{3, 2, 0, 33}}},
		{"tid 0", frame{0, 1, readHolding(1, 1)}, frame{0, 1, []byte{3, 2, 0, 22}}},
		{"tid 0xFFFF exception", frame{0xFFFF, 1, []byte{0x2B}}, frame{0xFFFF, 1, []byte{0xAB, 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := roundTrip(t, c, tt.req)
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(frame{})); diff != "" {
				t.Errorf("response to %+v (-want +got):\n%s", tt.req, diff)
			}
		})
	}
}

// Requests sent back to back in one write are answered in order.
func TestTCPPipelinedRequests(t *testing.T) {
	s := newTestServer(t, Config{})
	must(t, s.AddUnit(1).SetRegisters(adapters.HoldingRegister, 0, []uint16{1, 2, 3}))
	c := dial(t, s.Addr())
	var batch []byte
	for i := range uint16(3) {
		batch = append(batch, frame{100 + i, 1, readHolding(i, 1)}.bytes()...)
	}
	if _, err := c.Write(batch); err != nil {
		t.Fatal(err)
	}
	for i := range uint16(3) {
		got, err := readFrame(c, 5*time.Second)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		want := frame{100 + i, 1, []byte{3, 2, 0, byte(i + 1)}}
		if diff := cmp.Diff(want, got, cmp.AllowUnexported(frame{})); diff != "" {
			t.Errorf("response %d (-want +got):\n%s", i, diff)
		}
	}
}

func TestTCPUnknownUnit(t *testing.T) {
	tests := []struct {
		policy UnknownUnit
		want   []byte // nil: no reply
	}{
		{UnknownUnitSilent, nil},
		{UnknownUnitException, []byte{0x83, adapters.ExGatewayNoResponse}},
	}
	for _, tt := range tests {
		t.Run(tt.policy.String(), func(t *testing.T) {
			s := newTestServer(t, Config{UnknownUnit: tt.policy})
			s.AddUnit(1)
			c := dial(t, s.Addr())
			writeFrame(t, c, frame{7, 9, readHolding(0, 1)})
			got, err := readFrame(c, noReply)
			switch {
			case tt.want == nil && !isTimeout(err):
				t.Fatalf("unit 9: got %+v, %v; want no reply", got, err)
			case tt.want != nil && err != nil:
				t.Fatalf("unit 9: %v", err)
			case tt.want != nil:
				if diff := cmp.Diff(frame{7, 9, tt.want}, got, cmp.AllowUnexported(frame{})); diff != "" {
					t.Errorf("unit 9 (-want +got):\n%s", diff)
				}
			}
			// The connection still serves known units.
			got = roundTrip(t, c, frame{8, 1, readHolding(0, 1)})
			if got.tid != 8 || got.pdu[0] != FuncReadHoldingRegisters {
				t.Errorf("unit 1 after unit 9: got %+v", got)
			}
		})
	}
}

// A frame that is not Modbus TCP closes that connection and no other.
func TestTCPGarbageClosesOnlyThatConnection(t *testing.T) {
	tests := []struct {
		name  string
		bytes []byte
	}{
		{"protocol id 1", cat(be(1, 1, 6), []byte{1}, readHolding(0, 1))},
		{"protocol id 0xFFFF", cat(be(1, 0xFFFF, 6), []byte{1}, readHolding(0, 1))},
		{"length 0", cat(be(1, 0, 0), []byte{1})},
		{"length 1 (unit id only)", cat(be(1, 0, 1), []byte{1})},
		{"length 255", cat(be(1, 0, 255), []byte{1}, make([]byte, 254))},
		{"length 0xFFFF", cat(be(1, 0, 0xFFFF), []byte{1})},
		{"text", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestServer(t, Config{})
			s.AddUnit(1)
			good := dial(t, s.Addr())
			roundTrip(t, good, frame{1, 1, readHolding(0, 1)})

			bad := dial(t, s.Addr())
			if _, err := bad.Write(tt.bytes); err != nil {
				t.Fatal(err)
			}
			bad.SetReadDeadline(time.Now().Add(5 * time.Second))
			// EOF, or a reset when the server left bytes unread.
			if n, err := io.ReadAll(bad); len(n) > 0 || isTimeout(err) {
				t.Errorf("after %q: read %q, %v; want the server to close the connection", tt.bytes, n, err)
			}

			got := roundTrip(t, good, frame{2, 1, readHolding(0, 1)})
			if got.tid != 2 {
				t.Errorf("other connection after garbage: got %+v", got)
			}
			// And new connections are still accepted.
			roundTrip(t, dial(t, s.Addr()), frame{3, 1, readHolding(0, 1)})
		})
	}
}

// A client that disconnects in the middle of a frame costs the server
// nothing but that connection.
func TestTCPTruncatedFrame(t *testing.T) {
	s := newTestServer(t, Config{})
	s.AddUnit(1)
	c := dial(t, s.Addr())
	full := frame{1, 1, readHolding(0, 1)}.bytes()
	if _, err := c.Write(full[:9]); err != nil {
		t.Fatal(err)
	}
	c.Close()
	checkFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		s.mu.Lock()
		defer s.mu.Unlock()
		if n := len(s.conns); n != 0 {
			return fmt.Errorf("%d connections open", n)
		}
		return nil
	})
	roundTrip(t, dial(t, s.Addr()), frame{2, 1, readHolding(0, 1)})
}

func TestTCPConcurrentClients(t *testing.T) {
	const clients, requests = 16, 50
	s := newTestServer(t, Config{})
	b := s.AddUnit(1)
	for i := range uint16(clients) {
		must(t, b.SetRegisters(adapters.HoldingRegister, i, []uint16{1000 + i}))
	}
	conns := make([]net.Conn, clients)
	for i := range conns {
		conns[i] = dial(t, s.Addr())
	}
	errs := make(chan error, clients)
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Go(func() {
			for r := range requests {
				tid := uint16(i*requests + r)
				if _, err := c.Write(frame{tid, 1, readHolding(uint16(i), 1)}.bytes()); err != nil {
					errs <- err
					return
				}
				got, err := readFrame(c, 5*time.Second)
				if err != nil {
					errs <- fmt.Errorf("client %d request %d: %w", i, r, err)
					return
				}
				want := frame{tid, 1, cat([]byte{3, 2}, be(1000+uint16(i)))}
				if diff := cmp.Diff(want, got, cmp.AllowUnexported(frame{})); diff != "" {
					errs <- fmt.Errorf("client %d request %d (-want +got):\n%s", i, r, diff)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got, want := s.Requests(1, FuncReadHoldingRegisters), uint64(clients*requests); got != want {
		t.Errorf("Requests(1, FC3) = %d, want %d", got, want)
	}
}
