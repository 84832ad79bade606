package modbus

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"fieldbridge/adapters"
	"fieldbridge/internal/serialtest"
	"fieldbridge/simulator"
)

// The serial benchmarks run over a socat pty pair with the simulator
// serving RTU on the other end. A pty moves bytes as fast as the processes
// read them: there is no baud-rate delay, so these figures are the software
// cost (bridge, kernel tty layer, socat, simulator) that adds to the wire
// time of a real line. docs/performance-serial.md sets them beside the
// wire time at 9600, 19200 and 115200 baud.
//
//	go test -run XXX -bench 'RTUPty' -benchtime 3s ./adapters/modbus/

// benchLine serves units 1 and 2 (a meter: 60 input registers, 20 holding
// registers, 16 coils) on a pty pair and returns the path of the bus end.
func benchLine(b *testing.B) (string, *simulator.Server) {
	b.Helper()
	busEnd, devEnd := serialtest.Pair(b)
	srv, err := simulator.New(simulator.Config{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(srv.Close)
	for _, u := range []byte{1, 2} {
		bank := srv.AddUnit(u)
		regs := make([]uint16, 125)
		for i := range regs {
			regs[i] = uint16(i)
		}
		bank.SetRegisters(adapters.InputRegister, 0, regs)
		bank.SetRegisters(adapters.HoldingRegister, 100, regs[:20])
		bank.SetBits(adapters.Coil, 0, make([]bool, 16))
	}
	port, err := simulator.OpenSerial(simulator.SerialConfig{Port: devEnd, Baud: 115200})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.ServeRTU(ctx, port) }()
	b.Cleanup(func() {
		cancel()
		<-done
		port.Close()
	})
	return busEnd, srv
}

func benchRTU(b *testing.B, path string, gap bool) *RTU {
	b.Helper()
	bus, err := NewRTU(RTUConfig{Port: path, Baud: 115200, Timeout: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	if !gap {
		bus.bus.link.gap = 0
	}
	b.Cleanup(func() { bus.Close() })
	return bus
}

// report adds the domain metrics: requests and registers per second, and
// the time per request.
func report(b *testing.B, requests, registers int) {
	s := b.Elapsed().Seconds()
	b.ReportMetric(float64(requests)/s, "req/s")
	b.ReportMetric(float64(registers)/s, "regs/s")
	b.ReportMetric(s*1e6/float64(requests), "µs/req")
}

// BenchmarkRTUPtyRead reads N input registers per request. gap=t3.5 is the
// bus as it runs (it keeps the 1.75 ms inter-frame silence of 115200 baud
// before each request); gap=0 leaves the silence out to show the
// transporter's own cost.
func BenchmarkRTUPtyRead(b *testing.B) {
	path, _ := benchLine(b)
	for _, gap := range []bool{true, false} {
		for _, n := range []uint16{1, 10, 60, 125} {
			name := fmt.Sprintf("gap=0/regs=%d", n)
			if gap {
				name = fmt.Sprintf("gap=t3.5/regs=%d", n)
			}
			b.Run(name, func(b *testing.B) {
				bus := benchRTU(b, path, gap)
				r := adapters.Range{Unit: 1, Table: adapters.InputRegister, Count: n}
				ctx := context.Background()
				b.ResetTimer()
				for range b.N {
					if _, err := bus.ReadRange(ctx, r); err != nil {
						b.Fatal(err)
					}
				}
				report(b, b.N, b.N*int(n))
			})
		}
	}
}

// BenchmarkRTUPtyPoll polls a realistic map: two meters on one line, each
// read as 60 input registers (30 float32 values), 20 holding registers and
// 16 coils: six requests and 176 values per poll of the line.
func BenchmarkRTUPtyPoll(b *testing.B) {
	path, _ := benchLine(b)
	plan := []adapters.Range{
		{Unit: 1, Table: adapters.InputRegister, Address: 0, Count: 60},
		{Unit: 1, Table: adapters.HoldingRegister, Address: 100, Count: 20},
		{Unit: 1, Table: adapters.Coil, Address: 0, Count: 16},
		{Unit: 2, Table: adapters.InputRegister, Address: 0, Count: 60},
		{Unit: 2, Table: adapters.HoldingRegister, Address: 100, Count: 20},
		{Unit: 2, Table: adapters.Coil, Address: 0, Count: 16},
	}
	values := 0
	for _, r := range plan {
		values += int(r.Count)
	}
	for _, gap := range []bool{true, false} {
		name := "gap=0"
		if gap {
			name = "gap=t3.5"
		}
		b.Run(name, func(b *testing.B) {
			bus := benchRTU(b, path, gap)
			ctx := context.Background()
			b.ResetTimer()
			for range b.N {
				for _, r := range plan {
					if _, err := bus.ReadRange(ctx, r); err != nil {
						b.Fatal(err)
					}
				}
			}
			report(b, b.N*len(plan), b.N*values)
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "polls/s")
		})
	}
}

// BenchmarkRTUPtyRaw is the baseline: the same requests written as prebuilt
// frames and the replies read with io.ReadFull of their known length on a
// plain go.bug.st port, with no packager, no scanning, no gap and no
// checks. RTUPtyRead gap=0 minus this is the time the transporter adds.
func BenchmarkRTUPtyRaw(b *testing.B) {
	path, _ := benchLine(b)
	line, err := newLineSettings(path, 115200, 8, "even", 1, 8)
	if err != nil {
		b.Fatal(err)
	}
	p, err := line.Open()
	if err != nil {
		b.Fatal(err)
	}
	defer closePort(p)
	p.SetReadDeadline(time.Time{})
	for _, n := range []uint16{1, 10, 60, 125} {
		b.Run(fmt.Sprintf("regs=%d", n), func(b *testing.B) {
			req := rtu(1, 0x04, 0, 0, byte(n>>8), byte(n))
			reply := make([]byte, 5+2*int(n))
			b.ResetTimer()
			for range b.N {
				if _, err := p.Write(req); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(p, reply); err != nil {
					b.Fatal(err)
				}
			}
			report(b, b.N, b.N*int(n))
		})
	}
}

// BenchmarkRTUScan is the CPU cost of recognising a 125-register reply
// that arrives in one piece, and in 16-byte pieces behind 32 noise bytes.
func BenchmarkRTUScan(b *testing.B) {
	payload := make([]byte, 3+250)
	payload[0], payload[1], payload[2] = 1, 0x04, 250
	reply := rtu(payload...)
	noisy := append(make([]byte, 32), reply...)
	for i := range 32 {
		noisy[i] = byte(0xA0 + i)
	}
	buf := make([]byte, 0, rtuMaxBuffered)
	for _, c := range []struct {
		name  string
		in    []byte
		piece int
	}{{"whole", reply, len(reply)}, {"noisy-pieces", noisy, 16}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.in)))
			for range b.N {
				s := newRTUScanner(1, 0x04, buf)
				var f []byte
				for i := 0; f == nil && i < len(c.in); i += c.piece {
					s.write(c.in[i:min(i+c.piece, len(c.in))])
					f = s.scan(false)
				}
				if len(f) != len(reply) {
					b.Fatalf("scan found %d bytes", len(f))
				}
			}
		})
	}
}
