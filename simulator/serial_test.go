package simulator

import (
	"bytes"
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"fieldbridge/adapters"
)

// servePipe serves s with serve on one end of net.Pipe until the test ends
// and returns the other end, the master's.
func servePipe(t *testing.T, serve func(context.Context, io.ReadWriter) error) net.Conn {
	t.Helper()
	master, slave := net.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, slave) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		master.Close()
		slave.Close()
	})
	return master
}

// rtuFrame is an RTU frame with a correct CRC.
func rtuFrame(unit byte, pdu []byte) []byte { return rtuFraming{}.appendFrame(nil, unit, pdu, false) }

// readN reads exactly n bytes, or fails after timeout.
func readN(c net.Conn, n int, timeout time.Duration) ([]byte, error) {
	c.SetReadDeadline(time.Now().Add(timeout))
	defer c.SetReadDeadline(time.Time{})
	buf := make([]byte, n)
	_, err := io.ReadFull(c, buf)
	return buf, err
}

// expectSilence checks that nothing arrives within d.
func expectSilence(t *testing.T, c net.Conn, d time.Duration) {
	t.Helper()
	if got, err := readN(c, 1, d); !isTimeout(err) {
		t.Fatalf("got % X, %v; want no reply", got, err)
	}
}

func TestRTUCRC(t *testing.T) {
	// Modbus over serial line guide: 01 03 00 00 00 0A has CRC C5 CD.
	got := rtuFrame(1, []byte{0x03, 0x00, 0x00, 0x00, 0x0A})
	if want := []byte{0x01, 0x03, 0x00, 0x00, 0x00, 0x0A, 0xC5, 0xCD}; !bytes.Equal(got, want) {
		t.Fatalf("frame = % X, want % X", got, want)
	}
}

func TestServeRTU(t *testing.T) {
	s, err := New(Config{UnknownUnit: UnknownUnitException}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.AddUnit(1).SetRegisters(adapters.HoldingRegister, 0, []uint16{0x0102, 0x0304})
	s.AddUnit(2)
	c := servePipe(t, s.ServeRTU)
	read := rtuFrame(1, readHolding(0, 2))
	want := rtuFrame(1, []byte{0x03, 0x04, 0x01, 0x02, 0x03, 0x04})

	t.Run("request in pieces", func(t *testing.T) {
		for _, b := range read {
			c.Write([]byte{b})
		}
		got, err := readN(c, len(want), time.Second)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("reply = % X, %v; want % X", got, err, want)
		}
	})
	t.Run("noise before the request", func(t *testing.T) {
		c.Write(append([]byte{0x01, 0x10, 0xFF}, read...))
		got, err := readN(c, len(want), time.Second)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("reply = % X, %v; want % X", got, err, want)
		}
	})
	t.Run("unknown unit is silent whatever UnknownUnit says", func(t *testing.T) {
		c.Write(rtuFrame(9, readHolding(0, 1)))
		expectSilence(t, c, 50*time.Millisecond)
		if n := s.UnitRequests(9); n != 1 {
			t.Errorf("requests for unit 9 = %d, want 1", n)
		}
	})
	t.Run("wrong crc is ignored", func(t *testing.T) {
		bad := append([]byte(nil), read...)
		bad[len(bad)-1] ^= 0xFF
		c.Write(bad)
		expectSilence(t, c, 50*time.Millisecond)
	})
	t.Run("unknown function", func(t *testing.T) {
		c.Write(rtuFrame(1, []byte{0x2B, 0x0E, 0x01, 0x00}))
		want := rtuFrame(1, []byte{0xAB, adapters.ExIllegalFunction})
		got, err := readN(c, len(want), time.Second)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("reply = % X, %v; want % X", got, err, want)
		}
	})
	t.Run("broadcast write", func(t *testing.T) {
		c.Write(rtuFrame(0, cat([]byte{FuncWriteSingleRegister}, be(7, 99))))
		expectSilence(t, c, 50*time.Millisecond)
		for _, u := range []byte{1, 2} {
			regs, _ := s.Unit(u).Registers(adapters.HoldingRegister, 7, 1)
			if regs[0] != 99 {
				t.Errorf("unit %d register 7 = %d after a broadcast, want 99", u, regs[0])
			}
		}
	})
	t.Run("faults", func(t *testing.T) {
		tests := []struct {
			name  string
			f     Faults
			check func(got []byte) bool
			n     int
		}{
			{"garbage spoils the crc", Faults{Garbage: true}, func(got []byte) bool {
				return bytes.Equal(got[:len(want)-2], want[:len(want)-2]) && !bytes.Equal(got, want)
			}, len(want)},
			{"wrong unit", Faults{WrongTransactionID: true}, func(got []byte) bool { return got[0] == 2 && rtuCRCOK(got) }, len(want)},
			{"noise", Faults{Noise: 5}, func(got []byte) bool { return bytes.Equal(got[5:], want) }, len(want) + 5},
			{"truncated", Faults{Truncate: true}, func(got []byte) bool { return bytes.Equal(got, want[:len(want)/2]) }, len(want) / 2},
			{"exception", Faults{Exception: adapters.ExDeviceBusy}, func(got []byte) bool {
				return bytes.Equal(got, rtuFrame(1, []byte{0x83, adapters.ExDeviceBusy}))
			}, 5},
		}
		for _, tt := range tests {
			s.SetFaults(1, tt.f)
			c.Write(read)
			got, err := readN(c, tt.n, time.Second)
			if err != nil || !tt.check(got) {
				t.Errorf("%s: reply = % X, %v", tt.name, got, err)
			}
			expectSilence(t, c, 20*time.Millisecond)
		}
		s.ClearFaults(1)
	})
	t.Run("delay", func(t *testing.T) {
		s.SetFaults(1, Faults{Delay: 100 * time.Millisecond})
		defer s.ClearFaults(1)
		start := time.Now()
		c.Write(read)
		got, err := readN(c, len(want), time.Second)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("reply = % X, %v", got, err)
		}
		if took := time.Since(start); took < 100*time.Millisecond {
			t.Errorf("reply after %v, want the delay of 100ms", took)
		}
	})
}

func TestServeRTUStopsOnClose(t *testing.T) {
	s, err := New(Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	master, slave := net.Pipe()
	defer master.Close()
	done := make(chan error, 1)
	go func() { done <- s.ServeRTU(context.Background(), slave) }()
	s.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("ServeRTU = %v after Close, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ServeRTU did not return after Close")
	}
}

func TestServeASCII(t *testing.T) {
	s, err := New(Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.AddUnit(0x11).SetRegisters(adapters.HoldingRegister, 0x6B, []uint16{0x022B, 0x0000, 0x0064})
	c := servePipe(t, s.ServeASCII)
	// The example of the Modbus over serial line guide, §2.5.2.1.
	c.Write([]byte("noise:1103006B00037E\r\n"))
	want := ":110306022B00000064" + "55\r\n"
	got, err := readN(c, len(want), time.Second)
	if err != nil || string(got) != want {
		t.Fatalf("reply = %q, %v; want %q", got, err, want)
	}
	c.Write([]byte(":1103006B00037F\r\n")) // wrong LRC
	expectSilence(t, c, 50*time.Millisecond)
	s.SetFaults(0x11, Faults{Garbage: true})
	c.Write([]byte(":1103006B00037E\r\n"))
	got, err = readN(c, len(want), time.Second)
	if err != nil || string(got) == want || !strings.HasPrefix(string(got), want[:len(want)-4]) {
		t.Fatalf("garbage reply = %q, %v; want a wrong LRC", got, err)
	}
}

func TestInstrumentPush(t *testing.T) {
	in, err := NewInstrument(InstrumentConfig{
		Template: "ST,GS,{weight:%+09.3f},kg\r\n",
		Values:   map[string]Generator{"weight": Counter(1.5, 1, 0)},
		Interval: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	c := servePipe(t, in.Serve)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	r := newLineReader(c)
	for _, want := range []string{"ST,GS,+0001.500,kg\r\n", "ST,GS,+0002.500,kg\r\n"} {
		if got := r.line(t); got != want {
			t.Fatalf("line = %q, want %q", got, want)
		}
	}
	in.Malform(1)
	if got, want := r.line(t), "ST,GS,+????.???,kg\r\n"; got != want {
		t.Fatalf("malformed line = %q, want %q", got, want)
	}
	in.Inject("garbage\r\n")
	for {
		got := r.line(t)
		if got == "garbage\r\n" {
			break
		}
		if !strings.HasPrefix(got, "ST,GS,+") {
			t.Fatalf("line = %q while waiting for the injected one", got)
		}
	}
}

func TestInstrumentQuery(t *testing.T) {
	in, err := NewInstrument(InstrumentConfig{
		Template: "\x02{t:%.1f};{rh:%.0f}\x03",
		Values:   map[string]Generator{"t": Fixed(21.25), "rh": Fixed(40)},
		Request:  "R?\r",
	})
	if err != nil {
		t.Fatal(err)
	}
	c := servePipe(t, in.Serve)
	want := "\x0221.2;40\x03"
	c.Write([]byte("xxR")) // a request split over two writes, after noise
	expectSilence(t, c, 20*time.Millisecond)
	c.Write([]byte("?\r"))
	got, err := readN(c, len(want), time.Second)
	if err != nil || string(got) != want {
		t.Fatalf("reply = %q, %v; want %q", got, err, want)
	}
	in.Inject("\x02bad\x03")
	c.Write([]byte("R?\rR?\r"))
	got, err = readN(c, len("\x02bad\x03")+len(want), time.Second)
	if err != nil || string(got) != "\x02bad\x03"+want {
		t.Fatalf("replies = %q, %v", got, err)
	}
	if n := in.Frames(); n != 3 {
		t.Errorf("Frames() = %d, want 3", n)
	}
}

func TestInstrumentConfig(t *testing.T) {
	for _, cfg := range []InstrumentConfig{
		{Template: "{x}\n", Values: map[string]Generator{"x": Fixed(1)}},                       // neither mode
		{Template: "{x}\n", Interval: time.Second},                                             // no generator
		{Template: "{x\n", Values: map[string]Generator{"x": Fixed(1)}, Interval: time.Second}, // unclosed
		{Template: "", Interval: time.Second},
	} {
		if _, err := NewInstrument(cfg); err == nil {
			t.Errorf("NewInstrument(%+v) accepted a bad configuration", cfg)
		}
	}
	in, err := NewInstrument(InstrumentConfig{Template: "{{{x}}}", Values: map[string]Generator{"x": Fixed(2)}, Request: "?"})
	if err != nil {
		t.Fatal(err)
	}
	if got := in.Render(time.Now()); got != "{2}}" {
		t.Errorf("Render = %q, want %q", got, "{2}}")
	}
}

// lineReader reads CR LF terminated lines.
type lineReader struct {
	c   net.Conn
	buf []byte
}

func newLineReader(c net.Conn) *lineReader { return &lineReader{c: c} }

func (r *lineReader) line(t *testing.T) string {
	t.Helper()
	for {
		if i := bytes.Index(r.buf, []byte("\r\n")); i >= 0 {
			l := string(r.buf[:i+2])
			r.buf = r.buf[i+2:]
			return l
		}
		chunk := make([]byte, 256)
		n, err := r.c.Read(chunk)
		if err != nil {
			t.Fatalf("read line: %v (have %q)", err, r.buf)
		}
		r.buf = append(r.buf, chunk[:n]...)
	}
}

func FuzzRTURequest(f *testing.F) {
	f.Add(rtuFrame(1, readHolding(0, 2)))
	f.Add(append([]byte{0x01, 0x10, 0xFF}, rtuFrame(1, readHolding(0, 2))...))
	f.Add(rtuFrame(1, cat([]byte{FuncWriteMultipleRegisters}, be(0, 2), []byte{4}, be(1, 2))))
	f.Add(rtuFrame(1, []byte{0x2B, 0x0E, 0x01, 0x00}))
	f.Add([]byte{0x01, 0x17, 0, 0, 0, 1, 0, 0, 0, 1, 0xFF})
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) > maxFuzzInput {
			return
		}
		var fr rtuFraming
		buf := append([]byte(nil), in...)
		for final := range 2 {
			for len(buf) > 0 {
				unit, pdu, n, ok := fr.cut(buf, final == 1)
				if n == 0 {
					if final == 1 {
						t.Fatalf("cut(% X, final) needs more bytes", buf)
					}
					break
				}
				if n > len(buf) {
					t.Fatalf("cut consumed %d of %d bytes", n, len(buf))
				}
				if ok && (!rtuCRCOK(buf[:n]) || unit != buf[0] || !bytes.Equal(pdu, buf[1:n-2])) {
					t.Fatalf("cut(% X) = unit %d pdu % X, not a checked frame", buf, unit, pdu)
				}
				buf = buf[n:]
			}
		}
	})
}
