package modbus_test

import (
	"context"
	"net"
	"testing"
	"time"

	"fieldbridge/adapters"
)

// rawServer accepts connections, reads a request and then resets the
// connection (RST), like a device whose Modbus server crashes, or with
// silent set keeps it open without answering.
func rawServer(t *testing.T, silent bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 260)
			c.Read(buf)
			if silent {
				t.Cleanup(func() { c.Close() })
				continue
			}
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}
	}()
	return ln.Addr().String()
}

// TestErrorTextHasNoLocalPort reads from a device that resets every
// connection and from one that answers too late: each failure opens a new
// connection from a new local port, and the error text, which goes into the
// device's status event, must be the same every time and must not name the
// local address.
func TestErrorTextHasNoLocalPort(t *testing.T) {
	// The reset case never waits for its timeout, which is long so that a
	// dial on a loaded machine never times out instead (a different text).
	for _, tc := range []struct {
		name, addr string
		timeout    time.Duration
	}{
		{"reset", rawServer(t, false), 5 * time.Second},
		{"timeout", rawServer(t, true), 500 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bus := newBus(t, tc.addr, tc.timeout)
			r := adapters.Range{Unit: 1, Table: adapters.HoldingRegister, Address: 0, Count: 1}
			var texts []string
			for range 3 {
				_, err := bus.ReadRange(context.Background(), r)
				if !adapters.IsTransport(err) {
					t.Fatalf("ReadRange = %v, want a transport error", err)
				}
				texts = append(texts, err.Error())
			}
			for _, text := range texts {
				if text != texts[0] {
					t.Errorf("error texts differ between attempts: %q", texts)
					break
				}
			}
			if containsLocalAddr(texts[0]) {
				t.Errorf("error text %q names the local address", texts[0])
			}
		})
	}
}

// containsLocalAddr reports whether s has the "local->remote" form of a
// connection's addresses.
func containsLocalAddr(s string) bool {
	for i := 0; i+1 < len(s); i++ {
		if s[i] == '-' && s[i+1] == '>' {
			return true
		}
	}
	return false
}
