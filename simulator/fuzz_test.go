package simulator

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"fieldbridge/adapters"
)

// maxFuzzInput caps fuzz inputs: larger ones explore nothing new.
const maxFuzzInput = 4096

// fuzzServer is an unstarted server with a small unit 1 (holes and a busy
// range), a full-size unit 2 with no input registers, and unknown units
// answered with an exception, so every well-framed request gets a reply.
func fuzzServer(t testing.TB) *Server {
	t.Helper()
	s, err := New(Config{UnknownUnit: UnknownUnitException}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := NewBank(BankConfig{Coils: 100, DiscreteInputs: 50, InputRegisters: 20, HoldingRegisters: 300})
	b.MarkUnreadable(adapters.HoldingRegister, 10, 5)
	b.SetException(adapters.Coil, 90, 10, adapters.ExDeviceBusy)
	s.SetUnit(1, b)
	s.SetUnit(2, NewBank(BankConfig{InputRegisters: -1}))
	return s
}

func FuzzHandlePDU(f *testing.F) {
	seeds := [][]byte{
		readHolding(0, 10),
		readHolding(10, 1),
		readHolding(0, 126),
		{FuncReadCoils, 0, 90, 0, 5},
		{FuncReadDiscreteInputs, 0, 0, 0x07, 0xD0},
		{FuncReadInputRegisters, 0, 0, 0, 1},
		cat([]byte{FuncWriteSingleCoil}, be(1, 0xFF00)),
		cat([]byte{FuncWriteSingleCoil}, be(1, 0x1234)),
		cat([]byte{FuncWriteSingleRegister}, be(299, 7)),
		cat([]byte{FuncWriteMultipleCoils}, be(0, 10), []byte{2, 0xFF, 0x03}),
		cat([]byte{FuncWriteMultipleRegisters}, be(0, 2), []byte{4}, be(1, 2)),
		cat([]byte{FuncWriteMultipleRegisters}, be(0, 2), []byte{3}, be(1, 2)),
		cat([]byte{FuncReadWriteMultipleRegisters}, be(0, 2, 5, 1), []byte{2}, be(9)),
		{0x2B, 0x0E, 0x01, 0x00},
		{0x83},
		{},
	}
	for _, pdu := range seeds {
		for _, unit := range []byte{1, 2, 9} {
			f.Add(unit, pdu)
		}
	}
	f.Fuzz(func(t *testing.T, unit byte, pdu []byte) {
		if len(pdu) > maxFuzzInput {
			t.Skip()
		}
		s := fuzzServer(t)
		resp := s.handlePDU(unit, pdu)
		if len(pdu) == 0 {
			if resp != nil {
				t.Fatalf("response % x to an empty PDU", resp)
			}
			return
		}
		if len(resp) > MaxPDU {
			t.Fatalf("response of %d bytes to % x", len(resp), pdu)
		}
		checkResponse(t, pdu, resp)
	})
}

func FuzzTCPFrame(f *testing.F) {
	f.Add(frame{1, 1, readHolding(0, 10)}.bytes())
	f.Add(cat(frame{1, 1, readHolding(0, 1)}.bytes(), frame{2, 9, readHolding(0, 1)}.bytes()))
	f.Add(frame{0xFFFF, 2, cat([]byte{FuncWriteMultipleRegisters}, be(0, 2), []byte{4}, be(1, 2))}.bytes())
	f.Add(frame{3, 1, []byte{0x2B}}.bytes())
	f.Add(cat(be(1, 1, 6), []byte{1}, readHolding(0, 1)))           // bad protocol id
	f.Add(cat(be(1, 0, 1), []byte{1}))                              // length 1
	f.Add(cat(be(1, 0, 255), []byte{1}, make([]byte, 254)))         // length 255
	f.Add(frame{1, 1, readHolding(0, 1)}.bytes()[:9])               // truncated
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))                         // not modbus
	f.Add(cat(frame{1, 1, readHolding(0, 1)}.bytes(), be(1, 2, 3))) // then garbage
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > maxFuzzInput {
			t.Skip()
		}
		s := fuzzServer(t)
		var out bytes.Buffer
		err := s.serveStream(struct {
			io.Reader
			io.Writer
		}{bytes.NewReader(data), &out}, nil)
		if err != nil && !errors.Is(err, errBadFrame) {
			t.Fatalf("serveStream(% x) = %v, want nil or errBadFrame", data, err)
		}

		// Every well-framed request before the first bad one gets exactly
		// one reply, in order, echoing transaction and unit id.
		reqs, bad := splitFrames(data)
		if (err != nil) != bad {
			t.Fatalf("serveStream(% x) = %v, but the input has a bad frame: %v", data, err, bad)
		}
		resps, badResp := splitFrames(out.Bytes())
		if badResp {
			t.Fatalf("serveStream(% x) wrote a malformed frame: % x", data, out.Bytes())
		}
		if len(resps) != len(reqs) {
			t.Fatalf("serveStream(% x): %d replies to %d requests", data, len(resps), len(reqs))
		}
		for i, req := range reqs {
			resp := resps[i]
			if resp.tid != req.tid || resp.unit != req.unit {
				t.Fatalf("reply %d: transaction %d unit %d, want %d and %d", i, resp.tid, resp.unit, req.tid, req.unit)
			}
			checkResponse(t, req.pdu, resp.pdu)
		}
	})
}

// splitFrames is an independent reference parser: the complete Modbus TCP
// frames at the start of b, and whether anything else follows them (a bad
// header or a truncated frame).
func splitFrames(b []byte) (frames []frame, bad bool) {
	for len(b) >= mbapLen {
		pid := binary.BigEndian.Uint16(b[2:])
		n := int(binary.BigEndian.Uint16(b[4:]))
		if pid != 0 || n < 2 || n > MaxPDU+1 {
			return frames, true
		}
		if len(b) < 6+n {
			return frames, true // truncated: the stream ended inside a frame
		}
		frames = append(frames, frame{binary.BigEndian.Uint16(b), b[6], b[7 : 6+n]})
		b = b[6+n:]
	}
	return frames, len(b) > 0
}
