package modbus

import (
	"bytes"
	"errors"
	"net"
	"testing"
	"time"

	"fieldbridge/adapters"
)

// rtu builds an RTU frame with a correct CRC.
func rtu(b ...byte) []byte {
	crc := crc16(b)
	return append(append([]byte(nil), b...), byte(crc), byte(crc>>8))
}

// badCRC spoils the CRC of an RTU frame.
func badCRC(f []byte) []byte {
	f = append([]byte(nil), f...)
	f[len(f)-1] ^= 0xFF
	return f
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestCRC16(t *testing.T) {
	// The example of the Modbus over serial line guide: read 10 holding
	// registers from unit 1 at address 0.
	got := rtu(0x01, 0x03, 0x00, 0x00, 0x00, 0x0A)
	want := []byte{0x01, 0x03, 0x00, 0x00, 0x00, 0x0A, 0xC5, 0xCD}
	if !bytes.Equal(got, want) {
		t.Fatalf("rtu(...) = % X, want % X", got, want)
	}
}

func TestRTUScanner(t *testing.T) {
	reply := rtu(0x07, 0x03, 0x04, 0x00, 0x2A, 0x01, 0x00) // unit 7, FC3, 2 registers
	exc := rtu(0x07, 0x83, 0x02)
	other := rtu(0x08, 0x03, 0x04, 0x00, 0x2A, 0x01, 0x00)
	tests := []struct {
		name    string
		in      []byte
		want    []byte // nil: no reply
		wantErr bool   // failure() reports a bad frame
	}{
		{"reply", reply, reply, false},
		{"exception", exc, exc, false},
		{"noise before", cat([]byte{0x00, 0xFF, 0x07, 0x55, 0x03}, reply), reply, false},
		{"noise that looks like a header before", cat([]byte{0x07, 0x03, 0xF0}, reply), reply, false},
		{"noise after", cat(reply, []byte{0x01, 0x02}), reply, false},
		{"wrong crc", badCRC(reply), nil, true},
		{"truncated", reply[:5], nil, true},
		{"wrong unit", other, nil, true},
		{"wrong unit then ours", cat(other, reply), reply, false},
		{"noise only", []byte{0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77}, nil, false},
		{"wrong function", rtu(0x07, 0x04, 0x04, 0, 0, 0, 0), nil, false},
		{"byte count past the largest frame", []byte{0x07, 0x03, 0xFF, 0, 0}, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, step := range []int{1, 3, len(tt.in)} { // bytes per arrival
				s := newRTUScanner(0x07, 0x03, nil)
				var got []byte
				for i := 0; i < len(tt.in) && got == nil; i += step {
					s.write(tt.in[i:min(i+step, len(tt.in))])
					got = s.scan(false)
				}
				if got == nil {
					got = s.scan(true)
				}
				if !bytes.Equal(got, tt.want) {
					t.Errorf("step %d: scan(% X) = % X, want % X", step, tt.in, got, tt.want)
				}
				if err := s.failure(); got == nil && (err != nil) != tt.wantErr {
					t.Errorf("step %d: failure() = %v, want error %v", step, err, tt.wantErr)
				}
			}
		})
	}
}

// pipePort is one end of net.Pipe; the test drives the device end.
func pipePort(t *testing.T) (bus, dev net.Conn) {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// device writes the chunks with pauses between them, in its own goroutine.
func device(t *testing.T, dev net.Conn, pause time.Duration, chunks ...[]byte) <-chan struct{} {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i, c := range chunks {
			if i > 0 {
				tm := time.NewTimer(pause)
				<-tm.C
			}
			if _, err := dev.Write(c); err != nil {
				return
			}
		}
	}()
	return done
}

func TestReadRTU(t *testing.T) {
	req := rtu(0x07, 0x03, 0x00, 0x00, 0x00, 0x02)
	reply := rtu(0x07, 0x03, 0x04, 0x00, 0x2A, 0x01, 0x00)
	// A reader that must end before its deadline gets one far beyond any
	// exchange on a loaded machine, so ending before it proves it did not
	// wait; the silence is far above the pauses inside a reply.
	const longTimeout = 30 * time.Second
	const timeout = 300 * time.Millisecond
	const silence = 100 * time.Millisecond
	tests := []struct {
		name    string
		pause   time.Duration
		chunks  [][]byte
		wantErr error
		fast    bool // the reader ends before its deadline
	}{
		{"reply in one piece", 0, [][]byte{reply}, nil, true},
		{"reply in pieces", 2 * time.Millisecond, [][]byte{reply[:1], reply[1:4], reply[4:]}, nil, true},
		{"noise, silence, reply", 2 * silence, [][]byte{{0x99, 0x98}, reply}, nil, true},
		{"no reply", 0, nil, adapters.ErrTimeout, false},
		{"truncated", 0, [][]byte{reply[:6]}, adapters.ErrBadFrame, true},
		{"wrong crc", 0, [][]byte{badCRC(reply)}, adapters.ErrBadFrame, true},
		// Another unit's reply may be a late one; ours can still follow.
		{"wrong unit", 0, [][]byte{rtu(0x09, 0x03, 0x04, 0, 0, 0, 0)}, adapters.ErrBadFrame, false},
		{"wrong unit, silence, reply", 2 * silence, [][]byte{rtu(0x09, 0x03, 0x04, 0, 0, 0, 0), reply}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bus, dev := pipePort(t)
			done := device(t, dev, tt.pause, tt.chunks...)
			limit := timeout
			if tt.fast {
				limit = longTimeout
			}
			start := time.Now()
			got, _, err := readRTU(bus, req, start.Add(limit), silence, nil)
			took := time.Since(start)
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("readRTU = % X, %v; want error %v", got, err, tt.wantErr)
			}
			if tt.wantErr == nil && !bytes.Equal(got, reply) {
				t.Errorf("readRTU = % X, want % X", got, reply)
			}
			if tt.fast && took >= limit {
				t.Errorf("readRTU took %v, want it to end before its deadline (%v)", took, limit)
			}
			if !tt.fast && took < timeout {
				t.Errorf("readRTU gave up after %v, before the timeout of %v", took, timeout)
			}
			bus.Close()
			<-done
		})
	}
}

func TestReadASCII(t *testing.T) {
	req := []byte(":070300000002F4\r\n")
	reply := []byte(":070304002A0100C7\r\n")
	const timeout = time.Second // the pieces of a reply must all arrive within it on a loaded machine
	tests := []struct {
		name    string
		chunks  [][]byte
		wantErr error
	}{
		{"reply", [][]byte{reply}, nil},
		{"reply in pieces with noise", [][]byte{[]byte("\x00\xff"), reply[:5], reply[5:]}, nil},
		{"lower-case hex", [][]byte{bytes.ToLower(reply)}, nil},
		{"exception", [][]byte{[]byte(":07830274\r\n")}, nil},
		{"wrong lrc", [][]byte{[]byte(":070304002A0100C8\r\n")}, adapters.ErrBadFrame},
		{"wrong unit", [][]byte{[]byte(":080304002A0100C6\r\n")}, adapters.ErrBadFrame},
		{"truncated", [][]byte{reply[:10]}, adapters.ErrBadFrame},
		{"no reply", nil, adapters.ErrTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, ok := decodeASCII(req, make([]byte, 256)); !ok {
				t.Fatalf("request %q is not a valid frame", req)
			}
			bus, dev := pipePort(t)
			done := device(t, dev, time.Millisecond, tt.chunks...)
			got, _, err := readASCII(bus, req, time.Now().Add(timeout), 0, nil)
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("readASCII = %q, %v; want error %v", got, err, tt.wantErr)
			}
			if err == nil {
				if _, ok := decodeASCII(got, make([]byte, 256)); !ok {
					t.Errorf("readASCII returned %q, not a valid frame", got)
				}
			}
			bus.Close()
			<-done
		})
	}
}

func TestLineSettings(t *testing.T) {
	tests := []struct {
		baud, data, stop int
		parity           string
		wantChar, want35 time.Duration
	}{
		{9600, 8, 1, "even", 11 * time.Second / 9600, 11 * time.Second / 9600 * 7 / 2},
		{19200, 8, 2, "none", 11 * time.Second / 19200, 11 * time.Second / 19200 * 7 / 2},
		{9600, 8, 1, "none", 10 * time.Second / 9600, 10 * time.Second / 9600 * 7 / 2},
		{115200, 8, 1, "even", 11 * time.Second / 115200, 1750 * time.Microsecond},
	}
	for _, tt := range tests {
		s, err := newLineSettings("/dev/null", tt.baud, tt.data, tt.parity, tt.stop, 8)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.CharTime(); got != tt.wantChar {
			t.Errorf("%d %d%s%d: charTime = %v, want %v", tt.baud, tt.data, tt.parity, tt.stop, got, tt.wantChar)
		}
		if got := t35(s); got != tt.want35 {
			t.Errorf("%d %d%s%d: t35 = %v, want %v", tt.baud, tt.data, tt.parity, tt.stop, got, tt.want35)
		}
	}
	for _, bad := range []RTUConfig{{Port: "x", Parity: "mark"}, {Port: "x", DataBits: 7}, {Port: "x", StopBits: 3}, {Port: "x", Baud: -1}, {}} {
		if _, err := NewRTU(bad); err == nil {
			t.Errorf("NewRTU(%+v) accepted an invalid configuration", bad)
		}
	}
}
