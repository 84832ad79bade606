package modbus

import (
	"bytes"
	"fmt"
	"time"

	"fieldbridge/adapters"
)

// ASCII frame sizes (Modbus over serial line v1.02, §2.5.2).
const (
	asciiMaxFrame = 513 // ':', 2 × (unit + PDU of 253 + LRC), CR LF
	asciiMinFrame = 9   // ':', unit, function, LRC, CR LF
)

// unhex returns the value of one hexadecimal digit, or -1.
func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'A' <= c && c <= 'F':
		return int(c - 'A' + 10)
	case 'a' <= c && c <= 'f':
		return int(c - 'a' + 10)
	}
	return -1
}

// decodeASCII checks one ASCII frame (':' ... CR LF) and returns its bytes
// (unit, PDU) without the LRC. ok is false when the frame is not well formed
// or its LRC is wrong.
func decodeASCII(frame []byte, dst []byte) (msg []byte, ok bool) {
	n := len(frame)
	if n < asciiMinFrame || n > asciiMaxFrame || frame[0] != ':' || frame[n-2] != '\r' || frame[n-1] != '\n' || (n-3)%2 != 0 {
		return nil, false
	}
	msg = dst[:0]
	var lrc byte
	for i := 1; i < n-2; i += 2 {
		hi, lo := unhex(frame[i]), unhex(frame[i+1])
		if hi < 0 || lo < 0 {
			return nil, false
		}
		b := byte(hi<<4 | lo)
		lrc += b
		msg = append(msg, b)
	}
	if lrc != 0 { // the LRC is the two's complement of the sum of the rest
		return nil, false
	}
	return msg[:len(msg)-1], true
}

// asciiScanner finds the reply to one ASCII request in the bytes that
// arrive after it: a line from ':' to CR LF with the request's unit id and
// function code (or its exception) and a correct LRC. Bytes outside a
// frame are noise. It is the pure part of the ASCII frame reader.
type asciiScanner struct {
	unit, fc byte
	buf      []byte
	start    int // bytes before start are consumed
	stray    int
	msg      [asciiMaxFrame / 2]byte
}

// write appends received bytes. A frame that grows past the longest
// possible one is dropped as noise.
func (s *asciiScanner) write(p []byte) {
	s.buf = append(s.buf, p...)
	if pending := s.buf[s.start:]; len(pending) > asciiMaxFrame && bytes.IndexByte(pending, '\n') < 0 {
		keep := 0
		if c := bytes.LastIndexByte(pending, ':'); c >= 0 && len(pending)-c <= asciiMaxFrame {
			keep = len(pending) - c
		}
		s.stray += len(pending) - keep
		s.buf = s.buf[:copy(s.buf, pending[len(pending)-keep:])]
		s.start = 0
	}
}

// next returns the reply once a complete frame for it arrived, or an error
// wrapping adapters.ErrBadFrame for a complete frame that is malformed, has
// a wrong LRC or comes from another unit. Both are nil while it needs more.
func (s *asciiScanner) next() ([]byte, error) {
	for {
		pending := s.buf[s.start:]
		nl := bytes.IndexByte(pending, '\n')
		if nl < 0 {
			return nil, nil
		}
		line := pending[:nl+1]
		s.start += nl + 1
		c := bytes.LastIndexByte(line, ':')
		if c < 0 {
			s.stray += len(line)
			continue
		}
		s.stray += c
		frame := line[c:]
		msg, ok := decodeASCII(frame, s.msg[:])
		switch {
		case !ok:
			return nil, fmt.Errorf("%w: malformed ascii frame or wrong lrc", adapters.ErrBadFrame)
		case msg[1] != s.fc && msg[1] != s.fc|0x80: // asciiMinFrame guarantees two bytes
			return nil, fmt.Errorf("%w: ascii reply with function %d to a request with function %d", adapters.ErrBadFrame, msg[1], s.fc)
		case msg[0] != s.unit:
			return nil, fmt.Errorf("%w: reply from unit %d to a request for unit %d", adapters.ErrBadFrame, msg[0], s.unit)
		}
		return frame, nil
	}
}

// partial reports whether a frame has started but not ended.
func (s *asciiScanner) partial() bool {
	return bytes.IndexByte(s.buf[s.start:], ':') >= 0
}

// readASCII reads the reply to the ASCII request req from p as the bytes
// arrive; see readRTU for the results. A frame ends at CR LF; silence plays
// no part (the specification allows gaps of up to a second inside a frame).
func readASCII(p Port, req []byte, deadline time.Time, _ time.Duration, buf []byte) (frame []byte, stray int, err error) {
	var head [2]byte
	if _, ok := decodeHexPair(req, head[:]); !ok {
		return nil, 0, fmt.Errorf("ascii request %q has no header", req)
	}
	s := asciiScanner{unit: head[0], fc: head[1], buf: buf[:0]}
	var chunk [asciiMaxFrame]byte
	for {
		if err := p.SetReadDeadline(readWindow(deadline)); err != nil {
			return nil, s.stray, fmt.Errorf("%w: %v", adapters.ErrNotConnected, err)
		}
		n, err := p.Read(chunk[:])
		if n > 0 {
			s.write(chunk[:n])
			f, ferr := s.next()
			if f != nil || ferr != nil {
				return f, s.stray + len(s.buf) - s.start, ferr
			}
			continue
		}
		if err == nil {
			continue
		}
		if !isTimeout(err) {
			return nil, s.stray, fmt.Errorf("%w: %v", adapters.ErrNotConnected, err)
		}
		if !time.Now().Before(deadline) {
			stray := s.stray + len(s.buf) - s.start
			if s.partial() {
				return nil, stray, fmt.Errorf("%w: truncated ascii reply", adapters.ErrBadFrame)
			}
			return nil, stray, fmt.Errorf("%w: no reply", adapters.ErrTimeout)
		}
	}
}

// decodeHexPair decodes the unit id and function code of an ASCII frame
// (":UUFF...") into dst[0:2].
func decodeHexPair(frame, dst []byte) ([]byte, bool) {
	if len(frame) < 5 || frame[0] != ':' {
		return nil, false
	}
	for i := range 2 {
		hi, lo := unhex(frame[1+2*i]), unhex(frame[2+2*i])
		if hi < 0 || lo < 0 {
			return nil, false
		}
		dst[i] = byte(hi<<4 | lo)
	}
	return dst[:2], true
}
