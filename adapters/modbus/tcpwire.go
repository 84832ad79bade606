package modbus

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"runtime"
	"time"
)

// Modbus TCP framing (MBAP): transaction id, protocol id, length (of what
// follows: unit id, function code, data), unit id; 260 bytes at most.
const (
	mbapHeader = 7
	mbapMaxADU = 260
)

// tcpWire is goburrow's Transporter for Modbus TCP with one read per reply
// where goburrow's own does two (the 7-byte header, then the rest: a reply
// almost always arrives whole, and each read is a system call on a bus
// polled hundreds of times a second). It checks the length field as
// goburrow does; the packager checks transaction, protocol and unit id.
// Bytes after the reply mean the stream is out of step (a late reply): the
// request fails as a bad frame and the bus closes the connection. Used by
// the bus owner's goroutine only. The reply Send returns lives in the
// wire's buffer until the next Send.
type tcpWire struct {
	address string
	timeout time.Duration // for the next Send (and a dial), set per request
	conn    net.Conn
	buf     [mbapMaxADU]byte
}

// connect dials unless a connection is open.
func (w *tcpWire) connect() error {
	if w.conn != nil {
		return nil
	}
	conn, err := (&net.Dialer{Timeout: w.timeout}).Dial("tcp", w.address)
	if err != nil {
		return err
	}
	w.conn = conn
	return nil
}

// close closes the connection, if any.
func (w *tcpWire) close() error {
	if w.conn == nil {
		return nil
	}
	err := w.conn.Close()
	w.conn = nil
	return err
}

// Send writes one request and reads its reply.
func (w *tcpWire) Send(req []byte) ([]byte, error) {
	if err := w.connect(); err != nil {
		return nil, err
	}
	if err := w.conn.SetDeadline(time.Now().Add(w.timeout)); err != nil {
		return nil, err
	}
	if _, err := w.conn.Write(req); err != nil {
		return nil, err
	}
	// Let the other goroutines that are runnable now go first: the buses
	// of one poll slot are readied together, and each of them writes its
	// request while this one's reply travels. Read at once, the reply was
	// not there yet in almost half the requests at 500 devices (read(2)
	// failing with EAGAIN, the goroutine parked on the network poller and
	// woken again); after the others' turn it mostly is, and the slot's
	// readings reach the buffer's writer closer together. With nothing
	// else runnable this returns at once (TestSendLetsReadiedBusesSendFirst).
	runtime.Gosched()
	n, err := io.ReadAtLeast(w.conn, w.buf[:], mbapHeader)
	if err != nil {
		return nil, err
	}
	size, err := mbapSize(w.buf[:mbapHeader])
	if err != nil {
		return nil, err
	}
	if n < size {
		if _, err := io.ReadFull(w.conn, w.buf[n:size]); err != nil {
			return nil, err
		}
	} else if n > size {
		return nil, fmt.Errorf("modbus: %d bytes after a %d-byte reply", n-size, size)
	}
	return w.buf[:size], nil
}

// mbapSize is the size of the whole ADU whose MBAP header is h; the error
// texts are goburrow's (translate maps "modbus: " errors to ErrBadFrame).
func mbapSize(h []byte) (int, error) {
	length := int(binary.BigEndian.Uint16(h[4:]))
	switch {
	case length <= 0:
		return 0, fmt.Errorf("modbus: length in response header '%v' must not be zero", length)
	case length > mbapMaxADU-(mbapHeader-1):
		return 0, fmt.Errorf("modbus: length in response header '%v' must not greater than '%v'", length, mbapMaxADU-mbapHeader+1)
	}
	return length + mbapHeader - 1, nil
}
