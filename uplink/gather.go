package uplink

import (
	"net"
	"sync"
	"time"
)

// writeGather owns the writes to one network connection. paho writes every
// packet with a write(2) of its own; at 500 events/s in gateway mode that
// was one system call (and one wake-up of the broker) per event. While the
// pump hands a run of queued requests to paho, it corks the gather: the
// PUBLISH packets paho writes meanwhile are copied into a buffer, and
// uncork writes them with one system call. Uncorked, and for every other
// packet type (CONNECT, PINGREQ, PUBACK, SUBSCRIBE, DISCONNECT), a write goes
// out at once, after whatever was gathered, so nothing but a run of
// publishes waits, and only until the pump has handed the run to paho or
// gatherFlush bytes of it are gathered.
//
// paho writes each packet with exactly one Write call (packets.*.Write end
// in a single w.Write or bytes.Buffer.WriteTo), which is what lets the first
// byte tell a PUBLISH.
//
// Errors: a failed write is sticky (every later Write returns it) and closes
// the connection, so that paho's reader fails and paho reports the
// connection lost even when the failed write was the pump's uncork, which
// paho never sees. A gathered PUBLISH that never reached the wire is
// settled like any other unacknowledged one: the connection is lost, its
// token fails, and the caller keeps the message. The PUBACK stays the only
// proof of delivery.
//
// Deadlines: the gather gives every write(2) the deadline WriteTimeout from
// its start, and ignores paho's SetWriteDeadline calls (paho sets one
// around each PUBLISH it writes and resets it afterwards; the reset could
// otherwise race with an uncork on the pump's goroutine and leave it
// unbounded).
//
// Close does not take the lock: closing the connection ends a write that
// blocks, and what is still gathered is dropped with the connection.
type writeGather struct {
	conn    net.Conn
	timeout time.Duration // per write(2); 0: none
	close   func() error  // closes the connection (the watchedConn's Close)

	mu     sync.Mutex
	corked bool
	buf    []byte // gathered PUBLISH packets, in paho's write order
	err    error  // the first failed write; sticky
}

// mqttPublish is the MQTT control packet type of PUBLISH (the high nibble
// of a packet's first byte).
const mqttPublish = 3

// gatherFlush bounds what a corked gather holds: once a PUBLISH would take
// it past this, the run so far goes out at once (still corked). A gateway
// connection allows 1 000 messages in flight; holding a whole window of them
// until uncork kept the broker idle while the pump handed them to paho, and
// a drain after an outage went slower than without gathering. 16 KiB is ~30
// events of 500 bytes: the system calls are amortised, the pipeline flows.
const gatherFlush = 16 << 10

// gatherKeep is the largest buffer kept for the next run (a run of large
// events allocates again).
const gatherKeep = 64 << 10

func isPublish(p []byte) bool { return len(p) > 0 && p[0]>>4 == mqttPublish }

// Write writes one MQTT packet: gathered when corked and a PUBLISH that
// fits within gatherFlush, else at once, behind anything gathered.
func (g *writeGather) Write(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.err != nil {
		return 0, g.err
	}
	if g.corked && isPublish(p) && len(g.buf)+len(p) <= gatherFlush {
		g.buf = append(g.buf, p...)
		return len(p), nil
	}
	if len(g.buf) > 0 {
		g.buf = append(g.buf, p...)
		if err := g.flushLocked(); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	if err := g.writeLocked(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// cork makes PUBLISH packets wait in the buffer until uncork. Only the
// pump corks, and it uncorks before it waits for anything.
func (g *writeGather) cork() {
	if g == nil {
		return
	}
	g.mu.Lock()
	g.corked = true
	g.mu.Unlock()
}

// uncork writes what was gathered, with one system call, and lets later
// packets go out at once.
func (g *writeGather) uncork() {
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.corked = false
	if g.err == nil && len(g.buf) > 0 {
		_ = g.flushLocked() // sticky, and the connection is closed: paho reports it
	}
}

// flushLocked writes the buffer and empties it.
func (g *writeGather) flushLocked() error {
	err := g.writeLocked(g.buf)
	if cap(g.buf) > gatherKeep {
		g.buf = nil
	} else {
		g.buf = g.buf[:0]
	}
	return err
}

// writeLocked is one write(2) (more only if the kernel takes part of it)
// under the write timeout. A failure is kept and closes the connection.
func (g *writeGather) writeLocked(p []byte) error {
	if g.timeout > 0 {
		if err := g.conn.SetWriteDeadline(time.Now().Add(g.timeout)); err != nil {
			return g.fail(err)
		}
	}
	if _, err := g.conn.Write(p); err != nil {
		return g.fail(err)
	}
	return nil
}

func (g *writeGather) fail(err error) error {
	g.err = err
	g.buf = nil
	_ = g.close()
	return err
}
