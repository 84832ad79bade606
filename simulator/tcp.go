package simulator

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

// Modbus TCP application header (MBAP): transaction id, protocol id, length
// (of what follows: unit id and PDU), unit id.
const mbapLen = 7

// errBadFrame means a client sent bytes that are not a Modbus TCP frame; the
// connection is closed.
var errBadFrame = errors.New("not a modbus tcp frame")

// conn is one client connection, served by its own goroutine.
type conn struct {
	nc   net.Conn
	done chan struct{} // closed when the server closes the connection
	once sync.Once
}

func (c *conn) close() {
	c.once.Do(func() {
		close(c.done)
		c.nc.Close()
	})
}

// wait waits for d, and reports false when done was closed first (the
// server closed the connection). A nil done never closes.
func wait(d time.Duration, done <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-done:
		return false
	}
}

func (s *Server) serveConn(c *conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.close()
	}()
	remote := c.nc.RemoteAddr().String()
	s.logger.Debug("simulator connection opened", "remote", remote)
	err := s.serveStream(c.nc, c.done)
	switch {
	case errors.Is(err, errBadFrame):
		s.logger.Warn("simulator connection dropped", "remote", remote, "err", err)
	default:
		s.logger.Debug("simulator connection closed", "remote", remote, "err", err)
	}
}

// serveStream reads Modbus TCP requests from rw one at a time and answers
// each before the next is read, as a simple device does. It returns nil at
// the end of the stream (closed by the peer, or by the server, which closes
// done first), and an error wrapping errBadFrame for garbage.
func (s *Server) serveStream(rw io.ReadWriter, done <-chan struct{}) error {
	r := bufio.NewReader(rw)
	var hdr [mbapLen]byte
	var req [MaxPDU]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return readErr(err)
		}
		tid := binary.BigEndian.Uint16(hdr[0:])
		pid := binary.BigEndian.Uint16(hdr[2:])
		length := int(binary.BigEndian.Uint16(hdr[4:]))
		unit := hdr[6]
		if pid != 0 {
			return fmt.Errorf("protocol id %d: %w", pid, errBadFrame)
		}
		if length < 2 || length > MaxPDU+1 {
			return fmt.Errorf("length %d: %w", length, errBadFrame)
		}
		pdu := req[:length-1]
		if _, err := io.ReadFull(r, pdu); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF // the stream ended inside a frame
			}
			return readErr(err)
		}
		resp := s.handlePDU(unit, pdu)
		if resp == nil {
			continue
		}
		var f Faults
		late := false
		if fs := s.faults[unit].Load(); fs != nil {
			f = fs.f
			late = f.LateReply > 0 && fs.late.CompareAndSwap(true, false)
		}
		hold := f.Delay
		if late {
			hold = f.LateReply
		}
		if hold > 0 && !wait(hold, done) {
			return nil
		}
		if f.WrongTransactionID {
			tid++
		}
		frame := appendFrame(make([]byte, 0, mbapLen+len(resp)), tid, unit, resp)
		if f.Garbage {
			for i := range frame {
				frame[i] = byte(rand.Uint32())
			}
		}
		if _, err := rw.Write(frame); err != nil {
			return readErr(err)
		}
	}
}

// appendFrame appends a Modbus TCP frame carrying pdu to dst.
func appendFrame(dst []byte, tid uint16, unit byte, pdu []byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, tid)
	dst = binary.BigEndian.AppendUint16(dst, 0)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(pdu)+1))
	dst = append(dst, unit)
	return append(dst, pdu...)
}

// readErr turns the end of a connection (by either side) into nil.
func readErr(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("truncated frame: %w", errBadFrame)
	}
	return err
}
