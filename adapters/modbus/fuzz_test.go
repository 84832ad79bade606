package modbus

import (
	"bytes"
	"testing"
)

// maxFuzzInput caps fuzz inputs: the scanners bound their buffers far below.
const maxFuzzInput = 8 << 10

// FuzzRTUScanner feeds arbitrary bytes, in arbitrary pieces, to the RTU
// frame scanner: it must never panic, and whatever it returns must be a
// well-formed reply to the request: the request's unit, its function code or
// exception, the length that code implies, and a correct CRC.
func FuzzRTUScanner(f *testing.F) {
	f.Add(byte(7), byte(3), uint8(0), rtu(0x07, 0x03, 0x04, 0x00, 0x2A, 0x01, 0x00))
	f.Add(byte(7), byte(3), uint8(1), cat([]byte{0x07, 0x03, 0xF0, 0x00}, rtu(0x07, 0x83, 0x02)))
	f.Add(byte(1), byte(16), uint8(2), rtu(0x01, 0x10, 0x00, 0x64, 0x00, 0x03))
	f.Add(byte(1), byte(1), uint8(5), badCRC(rtu(0x01, 0x01, 0x01, 0x05)))
	f.Add(byte(2), byte(4), uint8(3), cat(rtu(0x03, 0x04, 0x02, 0x00, 0x01), rtu(0x02, 0x04, 0x02, 0x00, 0x01)[:4]))
	f.Add(byte(9), byte(6), uint8(0), bytes.Repeat([]byte{0x09, 0x06}, 300))
	f.Fuzz(func(t *testing.T, unit, fc byte, step uint8, in []byte) {
		if len(in) > maxFuzzInput {
			return
		}
		s := newRTUScanner(unit, fc, nil)
		n := int(step)%16 + 1
		var got []byte
		for i := 0; i < len(in) && got == nil; i += n {
			s.write(in[i:min(i+n, len(in))])
			got = s.scan(false)
			if len(s.buf) > rtuMaxBuffered {
				t.Fatalf("buffer grew to %d bytes", len(s.buf))
			}
		}
		if got == nil {
			got = s.scan(true)
		}
		if got == nil {
			s.failure()
			return
		}
		if got[0] != unit || (got[1] != fc && got[1] != fc|0x80) {
			t.Fatalf("reply % X does not answer unit %d function %d", got, unit, fc)
		}
		if l := rtuReplyLen(fc, got); l != len(got) {
			t.Fatalf("reply % X has length %d, its header says %d", got, len(got), l)
		}
		if !crcOK(got) {
			t.Fatalf("reply % X has a wrong CRC", got)
		}
		if !bytes.Contains(in, got) {
			t.Fatalf("reply % X is not in the input", got)
		}
	})
}

// FuzzASCIIScanner feeds arbitrary bytes to the ASCII frame scanner: it
// must never panic, and a frame it returns must be a valid frame (LRC
// included) for the request's unit and function.
func FuzzASCIIScanner(f *testing.F) {
	f.Add(byte(7), byte(3), uint8(0), []byte(":070304002A0100C7\r\n"))
	f.Add(byte(7), byte(3), uint8(2), []byte("\x00garbage\r\n:07830274\r\n"))
	f.Add(byte(7), byte(3), uint8(1), []byte(":070304002A0100C8\r\n"))
	f.Add(byte(1), byte(6), uint8(4), []byte("::::\r\n:01\r\n:0106006400"))
	f.Add(byte(1), byte(6), uint8(7), bytes.Repeat([]byte("0"), 2000))
	f.Fuzz(func(t *testing.T, unit, fc byte, step uint8, in []byte) {
		if len(in) > maxFuzzInput {
			return
		}
		s := asciiScanner{unit: unit, fc: fc}
		n := int(step)%16 + 1
		for i := 0; i < len(in); i += n {
			s.write(in[i:min(i+n, len(in))])
			if len(s.buf)-s.start > 2*asciiMaxFrame+16 {
				t.Fatalf("pending input grew to %d bytes", len(s.buf)-s.start)
			}
			got, err := s.next()
			if err != nil {
				return
			}
			if got == nil {
				continue
			}
			msg, ok := decodeASCII(got, make([]byte, 256))
			if !ok {
				t.Fatalf("frame %q is not valid", got)
			}
			if msg[0] != unit || (msg[1] != fc && msg[1] != fc|0x80) {
				t.Fatalf("frame %q does not answer unit %d function %d", got, unit, fc)
			}
			return
		}
		s.partial()
	})
}
