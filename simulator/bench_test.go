package simulator

import (
	"fmt"
	"testing"
	"time"
)

func BenchmarkHandlePDU(b *testing.B) {
	s := pduTestServer(b, Config{})
	for _, n := range []uint16{1, 125} {
		b.Run(fmt.Sprintf("registers=%d", n), func(b *testing.B) {
			req := readHolding(200, n)
			b.ReportAllocs()
			for b.Loop() {
				s.handlePDU(1, req)
			}
		})
	}
}

// BenchmarkTCPRoundTrip measures one request and its reply over loopback:
// the simulator's share of an end-to-end poll.
func BenchmarkTCPRoundTrip(b *testing.B) {
	s := newTestServer(b, Config{})
	s.AddUnit(1)
	c := dial(b, s.Addr())
	req := frame{1, 1, readHolding(0, 10)}.bytes()
	start := time.Now()
	for b.Loop() {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		if _, err := readFrame(c, 5*time.Second); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "requests/s")
}
