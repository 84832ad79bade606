package modbus

import (
	"fmt"
	"time"

	"fieldbridge/adapters"
)

// RTU frame sizes (Modbus over serial line v1.02, §2.5.1).
const (
	rtuMaxFrame       = 256 // unit, PDU of at most 253 bytes, CRC
	rtuExceptionFrame = 5   // unit, function|0x80, code, CRC
	rtuMaxBuffered    = 4 * rtuMaxFrame
)

var crcTable = func() (t [256]uint16) {
	for i := range t {
		crc := uint16(i)
		for range 8 {
			if crc&1 != 0 {
				crc = crc>>1 ^ 0xA001
			} else {
				crc >>= 1
			}
		}
		t[i] = crc
	}
	return t
}()

// crc16 is the Modbus RTU CRC (polynomial 0xA001 reflected, start 0xFFFF).
func crc16(b []byte) uint16 {
	crc := uint16(0xFFFF)
	for _, x := range b {
		crc = crc>>8 ^ crcTable[byte(crc)^x]
	}
	return crc
}

// crcOK reports whether frame ends with the CRC of what precedes it (low
// byte first).
func crcOK(frame []byte) bool {
	n := len(frame)
	if n < 4 {
		return false
	}
	crc := crc16(frame[:n-2])
	return frame[n-2] == byte(crc) && frame[n-1] == byte(crc>>8)
}

// rtuReplyLen returns the length of the RTU reply to function fc that starts
// with head (unit, function, ...): 0 when head is too short to tell, -1 when
// head cannot start such a reply.
func rtuReplyLen(fc byte, head []byte) int {
	if len(head) < 2 {
		return 0
	}
	switch head[1] {
	case fc | 0x80:
		return rtuExceptionFrame
	case fc:
	default:
		return -1
	}
	switch fc {
	case 0x01, 0x02, 0x03, 0x04, 0x17: // reads: byte count in the third byte
		if len(head) < 3 {
			return 0
		}
		n := 5 + int(head[2])
		if n > rtuMaxFrame {
			return -1
		}
		return n
	case 0x05, 0x06, 0x0F, 0x10: // writes: address and value or quantity
		return 8
	case 0x16: // mask write: address and two masks
		return 10
	}
	return -1
}

// rtuScanner finds the reply to one RTU request in the bytes that arrive
// after it. Replies are recognised by their header (the request's unit id
// and function code, or the exception code), their length (from the function
// code and the byte count) and their CRC; anything else is noise and skipped
// byte by byte, so noise before a reply does not hide it.
//
// It is the pure part of the RTU frame reader: no I/O and no clocks, so that
// it can be fuzzed.
type rtuScanner struct {
	unit, fc byte
	buf      []byte
	pos      int // no reply can start before pos

	// What was seen that was not the reply:
	wrongUnit int  // unit id of a well-formed reply from another unit, or -1
	badCRC    bool // a frame with the right header and length but a wrong CRC
	truncated bool // a frame with the right header that ended too soon
	dropped   int  // bytes dropped to bound the buffer
}

func newRTUScanner(unit, fc byte, buf []byte) rtuScanner {
	return rtuScanner{unit: unit, fc: fc, buf: buf[:0], wrongUnit: -1}
}

// write appends received bytes, dropping the oldest beyond rtuMaxBuffered.
func (s *rtuScanner) write(p []byte) {
	s.buf = append(s.buf, p...)
	if over := len(s.buf) - rtuMaxBuffered; over > 0 {
		s.buf = s.buf[:copy(s.buf, s.buf[over:])]
		s.pos = max(s.pos-over, 0)
		s.dropped += over
	}
}

// scan looks for the reply in the bytes received so far and returns it, or
// nil. While more bytes may come (final false), it stops at the first frame
// that could still be the reply once complete. At the end of the frame
// (final true: the line went silent or the time is up) incomplete frames
// are given up, so a false start cannot hide a reply behind it.
func (s *rtuScanner) scan(final bool) []byte {
	for i := s.pos; i < len(s.buf); i++ {
		n := rtuReplyLen(s.fc, s.buf[i:])
		if n < 0 {
			continue
		}
		if n == 0 || i+n > len(s.buf) {
			if !final {
				s.pos = i
				return nil
			}
			if s.buf[i] == s.unit {
				s.truncated = true
			}
			continue
		}
		f := s.buf[i : i+n]
		if !crcOK(f) {
			if f[0] == s.unit {
				s.badCRC = true
			}
			continue
		}
		if f[0] == s.unit {
			s.pos = i + n
			return f
		}
		s.wrongUnit = int(f[0])
		i += n - 1
	}
	s.pos = len(s.buf)
	return nil
}

// failure returns why the bytes seen so far are not the reply (an error
// wrapping adapters.ErrBadFrame), or nil when they were only noise.
func (s *rtuScanner) failure() error {
	switch { // a damaged reply to this request says more than another unit's reply
	case s.badCRC:
		return fmt.Errorf("%w: reply with a wrong crc", adapters.ErrBadFrame)
	case s.truncated:
		return fmt.Errorf("%w: truncated reply", adapters.ErrBadFrame)
	case s.wrongUnit >= 0:
		return fmt.Errorf("%w: reply from unit %d to a request for unit %d", adapters.ErrBadFrame, s.wrongUnit, s.unit)
	}
	return nil
}

// reset forgets the bytes received so far (noise ended by a silence) and
// returns how many there were.
func (s *rtuScanner) reset() int {
	n := len(s.buf) + s.dropped
	s.buf, s.pos, s.dropped = s.buf[:0], 0, 0
	return n
}

// minReadWindow is the least time a read is given, even when its deadline
// has passed: some ports (os.File, net.Conn) fail a read whose deadline has
// passed without looking at the bytes already received.
const minReadWindow = 100 * time.Microsecond

// readWindow returns the deadline to set for a read that should end at rd.
func readWindow(rd time.Time) time.Time {
	if least := time.Now().Add(minReadWindow); rd.Before(least) {
		return least
	}
	return rd
}

// readRTU reads the reply to the RTU request req from p as the bytes arrive
// and returns the reply frame (a slice of buf's array), the number of stray
// bytes it skipped, and an error wrapping adapters.ErrTimeout (no reply by
// deadline), adapters.ErrBadFrame (a reply that is not well formed or not
// for this request) or adapters.ErrNotConnected (the port failed).
//
// A reply ends when its expected length has arrived; nothing waits for a
// computed frame time. A silence of at least silence (the 3.5-character time
// on a serial line; zero disables it) also ends a frame: a reply that stopped
// short or has a wrong CRC is reported at once instead of at the deadline,
// and noise followed by a silence is dropped while waiting goes on. So is a
// well-formed reply from another unit (a late answer to an earlier request:
// ours may follow it after any pause); if nothing better arrives, it is
// reported as a bad frame at the deadline.
func readRTU(p Port, req []byte, deadline time.Time, silence time.Duration, buf []byte) (frame []byte, stray int, err error) {
	if len(req) < 2 {
		return nil, 0, fmt.Errorf("rtu request of %d bytes", len(req))
	}
	s := newRTUScanner(req[0], req[1], buf)
	var chunk [rtuMaxFrame]byte
	var lastByte time.Time
	for {
		rd := deadline
		if silence > 0 && len(s.buf) > 0 {
			if end := lastByte.Add(silence); end.Before(rd) {
				rd = end
			}
		}
		if err := p.SetReadDeadline(readWindow(rd)); err != nil {
			return nil, stray, fmt.Errorf("%w: %v", adapters.ErrNotConnected, err)
		}
		n, err := p.Read(chunk[:])
		if n > 0 {
			lastByte = time.Now()
			s.write(chunk[:n])
			if f := s.scan(false); f != nil {
				return f, stray + s.dropped + len(s.buf) - len(f), nil
			}
			continue
		}
		if err == nil {
			continue
		}
		if !isTimeout(err) {
			return nil, stray, fmt.Errorf("%w: %v", adapters.ErrNotConnected, err)
		}
		if f := s.scan(true); f != nil {
			return f, stray + s.dropped + len(s.buf) - len(f), nil
		}
		if s.badCRC || s.truncated {
			return nil, stray + s.reset(), s.failure()
		}
		// A whole reply from another unit is a late answer to an earlier
		// request: skipped like noise, since ours may still follow after
		// a silence. It is reported only if nothing better comes by the
		// deadline.
		stray += s.reset()
		if !time.Now().Before(deadline) {
			if err := s.failure(); err != nil {
				return nil, stray, err
			}
			if stray > 0 {
				return nil, stray, fmt.Errorf("%w: no reply, %d stray bytes", adapters.ErrTimeout, stray)
			}
			return nil, 0, fmt.Errorf("%w: no reply", adapters.ErrTimeout)
		}
	}
}
