package serialtest_test

import (
	"io"
	"os"
	"testing"
	"time"

	"fieldbridge/internal/serialtest"
)

// Bytes written to one end come out of the other, both ways, and an end
// can be closed and opened again.
func TestPair(t *testing.T) {
	a, b := serialtest.Pair(t)
	if a == b {
		t.Fatalf("Pair returned the same path twice: %s", a)
	}
	open := func(path string) *os.File {
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	fa, fb := open(a), open(b)
	send := func(from, to *os.File, msg string) {
		t.Helper()
		if _, err := from.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		to.SetReadDeadline(time.Now().Add(5 * time.Second))
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(to, got); err != nil || string(got) != msg {
			t.Fatalf("read %q, %v; want %q", got, err, msg)
		}
	}
	send(fa, fb, "\x01\x03\x00\x00\x00\x0a\xc5\xcd")
	send(fb, fa, "line\r\n")
	fa.Close()
	fa = open(a)
	send(fb, fa, "again")
}
