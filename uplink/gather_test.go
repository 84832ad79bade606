package uplink

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.mqtt.golang/packets"
)

// writeCounter is a real TCP connection whose Write calls (each one
// write(2) on the socket) are counted.
type writeCounter struct {
	net.Conn
	mu     sync.Mutex
	writes int
}

func (c *writeCounter) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.writes++
	c.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *writeCounter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writes
}

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// gatheredConn is a session's connection over a counted loopback socket.
func gatheredConn(t *testing.T, writeTimeout time.Duration) (*watchedConn, *writeCounter, net.Conn, *session) {
	t.Helper()
	c, peer := tcpPair(t)
	wc := &writeCounter{Conn: c}
	s := &session{down: make(chan struct{})}
	return newWatchedConn(wc, s, writeTimeout), wc, peer, s
}

func publishPacket(t *testing.T, id uint16, payload string) []byte {
	t.Helper()
	p := packets.NewControlPacket(packets.Publish).(*packets.PublishPacket)
	p.TopicName, p.Qos, p.MessageID, p.Payload = "iot-2/evt/e/fmt/json", 1, id, []byte(payload)
	var b bytes.Buffer
	if err := p.Write(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func pingPacket(t *testing.T) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := packets.NewControlPacket(packets.Pingreq).Write(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// readAll reads n bytes from the peer within a second.
func readAll(t *testing.T, peer net.Conn, n int) []byte {
	t.Helper()
	_ = peer.SetReadDeadline(time.Now().Add(time.Second))
	got := make([]byte, n)
	if _, err := io.ReadFull(peer, got); err != nil {
		t.Fatalf("peer read %d bytes: %v", n, err)
	}
	return got
}

// assertNothing checks that nothing arrives at the peer for a moment.
func assertNothing(t *testing.T, peer net.Conn) {
	t.Helper()
	_ = peer.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	var b [1]byte
	if n, err := peer.Read(b[:]); n > 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("peer read %d bytes (%v), want nothing yet", n, err)
	}
}

// Uncorked, every packet goes out at once with its own write.
func TestGatherUncorkedWritesAtOnce(t *testing.T) {
	conn, wc, peer, _ := gatheredConn(t, time.Second)
	for i := range 3 {
		p := publishPacket(t, uint16(i+1), "x")
		if n, err := conn.Write(p); n != len(p) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
		if got := readAll(t, peer, len(p)); !bytes.Equal(got, p) {
			t.Fatalf("peer got %x, want %x", got, p)
		}
	}
	if wc.count() != 3 {
		t.Fatalf("%d writes on the socket, want 3", wc.count())
	}
}

// Corked, publishes wait and go out in one write, in order, at uncork.
func TestGatherCorkedRunIsOneWrite(t *testing.T) {
	conn, wc, peer, _ := gatheredConn(t, time.Second)
	conn.g.cork()
	var want []byte
	for i := range 50 {
		p := publishPacket(t, uint16(i+1), "payload")
		want = append(want, p...)
		if n, err := conn.Write(p); n != len(p) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	assertNothing(t, peer)
	conn.g.uncork()
	if got := readAll(t, peer, len(want)); !bytes.Equal(got, want) {
		t.Fatal("the peer did not get the 50 publishes in write order")
	}
	if wc.count() != 1 {
		t.Fatalf("%d writes on the socket, want 1", wc.count())
	}
	// Uncorked again: the next one goes at once.
	p := publishPacket(t, 51, "y")
	if _, err := conn.Write(p); err != nil {
		t.Fatal(err)
	}
	readAll(t, peer, len(p))
}

// Any other packet goes out at once even when corked, behind the gathered
// publishes and in the same write: a PINGREQ or PUBACK never waits for a
// run, and nothing overtakes anything.
func TestGatherControlPacketFlushesInOrder(t *testing.T) {
	conn, wc, peer, _ := gatheredConn(t, time.Second)
	conn.g.cork()
	a, b, ping := publishPacket(t, 1, "a"), publishPacket(t, 2, "b"), pingPacket(t)
	for _, p := range [][]byte{a, b, ping} {
		if _, err := conn.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	want := append(append(append([]byte(nil), a...), b...), ping...)
	if got := readAll(t, peer, len(want)); !bytes.Equal(got, want) {
		t.Fatalf("peer got %x, want %x", got, want)
	}
	if wc.count() != 1 {
		t.Fatalf("%d writes on the socket, want 1", wc.count())
	}
	conn.g.uncork() // nothing left: no write
	if wc.count() != 1 {
		t.Fatalf("%d writes after an empty uncork, want 1", wc.count())
	}
}

// A write that fails at uncork (paho never sees that write) closes the
// connection, so paho's reader fails and the session is down; every later
// Write returns the error.
func TestGatherFailedUncorkClosesTheConnection(t *testing.T) {
	conn, _, peer, s := gatheredConn(t, time.Second)
	conn.g.cork()
	if _, err := conn.Write(publishPacket(t, 1, "a")); err != nil {
		t.Fatal(err)
	}
	// The peer resets the connection; a write after the reset fails.
	peer.(*net.TCPConn).SetLinger(0)
	peer.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		conn.g.uncork()
		conn.g.mu.Lock()
		err := conn.g.err
		conn.g.mu.Unlock()
		if err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("writes after the peer's reset kept succeeding")
		}
		conn.g.cork()
		if _, err := conn.Write(publishPacket(t, 2, "b")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case <-s.down:
	default:
		t.Fatal("the failed uncork did not close the connection")
	}
	if _, err := conn.Read(make([]byte, 1)); err == nil {
		t.Fatal("read on the connection after a failed write succeeded")
	}
	if n, err := conn.Write(pingPacket(t)); err == nil || n != 0 {
		t.Fatalf("Write after the failure = %d, %v; want the error", n, err)
	}
}

// A peer that stops reading: the gather's own write timeout ends a write
// blocked on the full socket (paho's SetWriteDeadline calls are ignored,
// so its reset to "no deadline" cannot leave a write unbounded, here or in
// an uncork), and the connection is closed.
func TestGatherWriteTimeout(t *testing.T) {
	conn, _, _, s := gatheredConn(t, 200*time.Millisecond)
	if err := conn.SetWriteDeadline(time.Time{}); err != nil { // what paho does after each write
		t.Fatal(err)
	}
	conn.g.cork()
	big := bytes.Repeat([]byte{0x30}, 64<<20) // a PUBLISH first byte; far more than the socket buffers hold
	done := make(chan error, 1)
	go func() {
		_, err := conn.Write(big) // too large to gather: written at once, and blocks
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Write = %v, want a deadline error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("write still blocked after 10 s with a 200 ms write timeout")
	}
	if _, err := conn.Write(pingPacket(t)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Write after the timeout = %v, want the deadline error again", err)
	}
	conn.g.uncork() // nothing to write, and no hang
	select {
	case <-s.down:
	default:
		t.Fatal("the timed-out write did not close the connection")
	}
}

// Close while a write blocks on a full socket ends it at once, and what
// was gathered is dropped with the connection.
func TestGatherCloseEndsABlockedWrite(t *testing.T) {
	conn, _, _, _ := gatheredConn(t, time.Minute)
	conn.g.cork()
	if _, err := conn.Write(publishPacket(t, 1, "gathered")); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		_, _ = conn.Write(bytes.Repeat([]byte{0x30}, 64<<20)) // behind the gathered one, and blocks
		close(done)
	}()
	time.Sleep(100 * time.Millisecond) // let it block
	if err := conn.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end the blocked write")
	}
	if _, err := conn.Write(publishPacket(t, 2, "a")); err == nil {
		t.Fatal("Write after Close succeeded")
	}
}

// A long corked run goes out in writes of at most gatherFlush bytes (plus
// the packet that did not fit), in order, before uncork: the broker gets
// the first messages of a large window while the pump still hands over the
// rest.
func TestGatherLongRunFlushesInChunks(t *testing.T) {
	conn, wc, peer, _ := gatheredConn(t, time.Second)
	conn.g.cork()
	var want []byte
	payload := string(bytes.Repeat([]byte("p"), 500))
	for i := range 200 { // ~100 KiB
		p := publishPacket(t, uint16(i+1), payload)
		want = append(want, p...)
		if _, err := conn.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	before := wc.count()
	if min, max := len(want)/(gatherFlush+600), len(want)/(gatherFlush/2); before < min || before > max {
		t.Fatalf("%d writes of a corked %d-byte run before uncork, want %d to %d (chunks near %d bytes)",
			before, len(want), min, max, gatherFlush)
	}
	conn.g.uncork()
	if got := readAll(t, peer, len(want)); !bytes.Equal(got, want) {
		t.Fatal("the peer did not get the 200 publishes in write order")
	}
	if wc.count() != before+1 {
		t.Fatalf("uncork made %d writes, want 1", wc.count()-before)
	}
}
