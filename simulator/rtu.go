package simulator

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"time"
)

// Serial framing sizes (Modbus over serial line v1.02, §2.5).
const (
	rtuMaxADU   = 256 // unit, PDU of at most 253 bytes, CRC
	asciiMaxADU = 513 // ':', hex of unit, PDU and LRC, CR LF

	// serialSilence ends input that has not formed a request: it is
	// dropped once the line has been quiet this long. It is far longer than
	// the 3.5-character time of the specification (1.75 ms above 19200
	// baud) on purpose: requests are framed by their length, the silence
	// only clears garbage, and a USB adapter on the simulator's side (16 ms
	// latency timer) or a loaded test machine must not split a request.
	serialSilence = 20 * time.Millisecond
)

// serialFraming cuts requests out of a serial byte stream and frames
// replies: RTU or ASCII.
type serialFraming interface {
	// cut looks at the start of buf. It returns n == 0 when more bytes are
	// needed; otherwise it consumes n bytes, which are a request (ok) or
	// bytes that cannot start one (noise, a damaged frame). At the end of a
	// frame (final: the line went quiet) incomplete input is given up.
	cut(buf []byte, final bool) (unit byte, pdu []byte, n int, ok bool)
	// appendFrame appends the frame of a reply; corrupt spoils its check.
	appendFrame(dst []byte, unit byte, pdu []byte, corrupt bool) []byte
}

// ServeRTU serves the server's units as Modbus RTU slaves on rw, one end of
// a serial line (a port from OpenSerial, a pty, net.Pipe), until ctx is
// done or the server is closed, and returns nil then; it returns an error
// when rw fails. It needs no Start: a Server from New serves TCP, serial
// lines or both.
//
// Requests are read as they arrive, framed by their length and checked by
// their CRC; bytes that do not form a request are dropped one at a time
// until one does, and input left incomplete by a 20 ms silence is dropped.
// Requests for unit ids without a bank are not answered (another slave on
// the line may own them), whatever Config.UnknownUnit says; unit 0 is a
// broadcast: writes go to every bank, and no reply is sent. Faults apply as
// on TCP, with the serial meanings given in Faults.
//
// To stop, ServeRTU sets a read deadline in the past on rw when it takes one
// (*os.File, net.Conn), or else closes rw if it is an io.Closer. rw must not
// be read by anyone else while ServeRTU runs.
func (s *Server) ServeRTU(ctx context.Context, rw io.ReadWriter) error {
	return s.serveSerial(ctx, rw, rtuFraming{}, serialSilence)
}

// ServeASCII serves the server's units as Modbus ASCII slaves on rw, as
// ServeRTU does with RTU framing: frames run from ':' to CR LF and are
// checked by their LRC; silence plays no part.
func (s *Server) ServeASCII(ctx context.Context, rw io.ReadWriter) error {
	return s.serveSerial(ctx, rw, asciiFraming{}, 0)
}

func (s *Server) serveSerial(ctx context.Context, rw io.ReadWriter, f serialFraming, silence time.Duration) error {
	ctx, cancel := s.serialContext(ctx)
	defer cancel()
	cr := readChunks(rw)
	defer cr.end(rw)
	quiet := time.NewTimer(time.Hour)
	quiet.Stop()
	defer quiet.Stop()
	var buf []byte
	process := func(final bool) error {
		for len(buf) > 0 {
			unit, pdu, n, ok := f.cut(buf, final)
			if n == 0 {
				break
			}
			if ok {
				if err := s.answerSerial(ctx, rw, f, unit, pdu); err != nil {
					return err
				}
			}
			buf = buf[:copy(buf, buf[n:])]
		}
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case chunk, open := <-cr.c:
			if !open {
				if ctx.Err() != nil {
					return nil
				}
				return streamErr(cr.err)
			}
			buf = append(buf, chunk...)
			if err := process(false); err != nil {
				return err
			}
			if len(buf) > 0 && silence > 0 {
				quiet.Reset(silence)
			}
		case <-quiet.C:
			if err := process(true); err != nil {
				return err
			}
			buf = buf[:0]
		}
	}
}

// answerSerial executes one request and writes the reply, with the unit's
// faults applied.
func (s *Server) answerSerial(ctx context.Context, w io.Writer, f serialFraming, unit byte, pdu []byte) error {
	if len(pdu) == 0 {
		return nil
	}
	if unit == 0 {
		s.broadcast(pdu)
		return nil
	}
	if s.units[unit].Load() == nil {
		s.count(unit, pdu[0]) // counted like every well-framed request; never answered
		return nil
	}
	resp := s.handlePDU(unit, pdu)
	if resp == nil {
		return nil
	}
	var fl Faults
	late := false
	if fs := s.faults[unit].Load(); fs != nil {
		fl = fs.f
		late = fl.LateReply > 0 && fs.late.CompareAndSwap(true, false)
	}
	hold := fl.Delay
	if late {
		hold = fl.LateReply
	}
	if hold > 0 && !wait(hold, ctx.Done()) {
		return nil
	}
	if fl.WrongTransactionID {
		unit++
	}
	out := make([]byte, 0, fl.Noise+asciiMaxADU)
	for range fl.Noise {
		out = append(out, byte(rand.Uint32()))
	}
	frameStart := len(out)
	out = f.appendFrame(out, unit, resp, fl.Garbage)
	if fl.Truncate {
		out = out[:frameStart+max(2, (len(out)-frameStart)/2)]
	}
	_, err := w.Write(out)
	return streamErr(err)
}

// broadcast executes a write request on every bank without answering.
func (s *Server) broadcast(pdu []byte) {
	switch pdu[0] {
	case FuncWriteSingleCoil, FuncWriteSingleRegister, FuncWriteMultipleCoils, FuncWriteMultipleRegisters:
	default:
		return
	}
	for u := 1; u < len(s.units); u++ {
		if s.units[u].Load() != nil {
			s.handlePDU(byte(u), pdu)
		}
	}
}

// rtuFraming is Modbus RTU: unit, PDU, CRC (low byte first).
type rtuFraming struct{}

// rtuRequestLen returns the length of the RTU request at the start of buf:
// 0 when more bytes are needed to tell, -1 for a function code whose
// request length the simulator does not know.
func rtuRequestLen(buf []byte) int {
	if len(buf) < 2 {
		return 0
	}
	switch buf[1] {
	case FuncReadCoils, FuncReadDiscreteInputs, FuncReadHoldingRegisters, FuncReadInputRegisters,
		FuncWriteSingleCoil, FuncWriteSingleRegister:
		return 8
	case FuncWriteMultipleCoils, FuncWriteMultipleRegisters:
		if len(buf) < 7 {
			return 0
		}
		return 9 + int(buf[6])
	case FuncReadWriteMultipleRegisters:
		if len(buf) < 11 {
			return 0
		}
		return 13 + int(buf[10])
	case 0x16: // mask write register
		return 10
	}
	return -1
}

func (rtuFraming) cut(buf []byte, final bool) (unit byte, pdu []byte, n int, ok bool) {
	switch l := rtuRequestLen(buf); {
	case l > rtuMaxADU:
		return 0, nil, 1, false
	case l > 0:
		if len(buf) < l {
			break
		}
		if rtuCRCOK(buf[:l]) {
			return buf[0], buf[1 : l-2], l, true
		}
		return 0, nil, 1, false
	case l < 0:
		// An unknown function: the frame is as long as the first prefix
		// with a valid CRC; the request gets an illegal function exception.
		for k := 4; k <= min(len(buf), rtuMaxADU); k++ {
			if rtuCRCOK(buf[:k]) {
				return buf[0], buf[1 : k-2], k, true
			}
		}
		if len(buf) >= rtuMaxADU {
			return 0, nil, 1, false
		}
	}
	if final {
		return 0, nil, 1, false
	}
	return 0, nil, 0, false
}

func (rtuFraming) appendFrame(dst []byte, unit byte, pdu []byte, corrupt bool) []byte {
	start := len(dst)
	dst = append(dst, unit)
	dst = append(dst, pdu...)
	crc := rtuCRC(dst[start:])
	if corrupt {
		crc ^= 0xFFFF
	}
	return append(dst, byte(crc), byte(crc>>8))
}

// rtuCRC is the Modbus CRC-16 (polynomial 0xA001 reflected, start 0xFFFF),
// computed bit by bit: the simulator shares no Modbus code with the bridge.
func rtuCRC(b []byte) uint16 {
	crc := uint16(0xFFFF)
	for _, x := range b {
		crc ^= uint16(x)
		for range 8 {
			if crc&1 != 0 {
				crc = crc>>1 ^ 0xA001
			} else {
				crc >>= 1
			}
		}
	}
	return crc
}

func rtuCRCOK(frame []byte) bool {
	n := len(frame)
	crc := rtuCRC(frame[:n-2])
	return frame[n-2] == byte(crc) && frame[n-1] == byte(crc>>8)
}

// asciiFraming is Modbus ASCII: ':', hex of unit, PDU and LRC, CR LF.
type asciiFraming struct{}

func (asciiFraming) cut(buf []byte, _ bool) (unit byte, pdu []byte, n int, ok bool) {
	nl := bytes.IndexByte(buf, '\n')
	if nl < 0 {
		if len(buf) > asciiMaxADU { // no frame is that long: drop up to the last ':'
			if c := bytes.LastIndexByte(buf, ':'); c > 0 {
				return 0, nil, c, false
			}
			return 0, nil, len(buf), false
		}
		return 0, nil, 0, false
	}
	line := buf[:nl+1]
	c := bytes.LastIndexByte(line, ':')
	if c < 0 {
		return 0, nil, nl + 1, false
	}
	msg, good := asciiDecode(line[c:])
	if !good || len(msg) < 2 {
		return 0, nil, nl + 1, false
	}
	return msg[0], msg[1:], nl + 1, true
}

// asciiDecode checks a frame from ':' to CR LF and returns its bytes
// without the LRC.
func asciiDecode(frame []byte) ([]byte, bool) {
	n := len(frame)
	if n < 9 || n > asciiMaxADU || frame[0] != ':' || !bytes.HasSuffix(frame, []byte("\r\n")) || (n-3)%2 != 0 {
		return nil, false
	}
	msg := make([]byte, (n-3)/2)
	var sum byte
	for i := range msg {
		hi, lo := hexVal(frame[1+2*i]), hexVal(frame[2+2*i])
		if hi < 0 || lo < 0 {
			return nil, false
		}
		msg[i] = byte(hi<<4 | lo)
		sum += msg[i]
	}
	if sum != 0 {
		return nil, false
	}
	return msg[:len(msg)-1], true
}

func hexVal(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	}
	return -1
}

func (asciiFraming) appendFrame(dst []byte, unit byte, pdu []byte, corrupt bool) []byte {
	const digits = "0123456789ABCDEF"
	put := func(b byte) { dst = append(dst, digits[b>>4], digits[b&0x0F]) }
	dst = append(dst, ':')
	sum := unit
	put(unit)
	for _, b := range pdu {
		put(b)
		sum += b
	}
	lrc := -sum
	if corrupt {
		lrc++
	}
	put(lrc)
	return append(dst, '\r', '\n')
}
