package simulator

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"
)

// newTestServer starts a server on a free loopback port and closes it when
// the test ends.
func newTestServer(t testing.TB, cfg Config) *Server {
	t.Helper()
	s, err := NewServer(cfg, nil)
	if err != nil {
		t.Fatalf("NewServer(%+v): %v", cfg, err)
	}
	t.Cleanup(s.Close)
	return s
}

// dial connects to addr and closes the connection when the test ends.
func dial(t testing.TB, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// frame is one Modbus TCP frame, request or response.
type frame struct {
	tid  uint16
	unit byte
	pdu  []byte
}

func (f frame) bytes() []byte { return appendFrame(nil, f.tid, f.unit, f.pdu) }

// writeFrame sends one request frame.
func writeFrame(t testing.TB, c net.Conn, f frame) {
	t.Helper()
	if _, err := c.Write(f.bytes()); err != nil {
		t.Fatalf("write %+v: %v", f, err)
	}
}

// readFrame reads one response frame, giving up after timeout.
func readFrame(c net.Conn, timeout time.Duration) (frame, error) {
	c.SetReadDeadline(time.Now().Add(timeout))
	defer c.SetReadDeadline(time.Time{})
	var hdr [mbapLen]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return frame{}, err
	}
	if pid := binary.BigEndian.Uint16(hdr[2:]); pid != 0 {
		return frame{}, fmt.Errorf("protocol id %d in response", pid)
	}
	n := int(binary.BigEndian.Uint16(hdr[4:]))
	if n < 2 || n > MaxPDU+1 {
		return frame{}, fmt.Errorf("length %d in response", n)
	}
	pdu := make([]byte, n-1)
	if _, err := io.ReadFull(c, pdu); err != nil {
		return frame{}, err
	}
	return frame{tid: binary.BigEndian.Uint16(hdr[0:]), unit: hdr[6], pdu: pdu}, nil
}

// roundTrip sends a request and returns the response.
func roundTrip(t testing.TB, c net.Conn, f frame) frame {
	t.Helper()
	writeFrame(t, c, f)
	got, err := readFrame(c, 5*time.Second)
	if err != nil {
		t.Fatalf("response to %+v: %v", f, err)
	}
	return got
}

// isTimeout reports whether err is a read deadline expiry.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// checkFor retries fn every step until it returns nil or total passed.
func checkFor(t testing.TB, total, step time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(total)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met after %v: %v", total, err)
		}
		tm := time.NewTimer(step)
		<-tm.C
	}
}

// be encodes big-endian 16-bit words.
func be(words ...uint16) []byte {
	var b []byte
	for _, w := range words {
		b = binary.BigEndian.AppendUint16(b, w)
	}
	return b
}

// cat concatenates byte slices.
func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// readHolding is a FC3 request PDU.
func readHolding(addr, n uint16) []byte { return cat([]byte{FuncReadHoldingRegisters}, be(addr, n)) }
