package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"fieldbridge/adapters"
	"fieldbridge/adapters/modbus"
	"fieldbridge/mapping"
	"fieldbridge/simulator"
)

// sparseMap is a realistic sparse map: 48 points in 8 clusters of 6 (a
// meter's voltages, currents, powers, ...), float32 with a register or two
// of unused space between them, clusters 100 registers apart.
func sparseMap() []mapping.Point {
	var pts []mapping.Point
	for c := range 8 {
		for i := range 6 {
			pts = append(pts, mapping.Point{
				Name: fmt.Sprintf("p%d_%d", c, i), Table: adapters.InputRegister,
				Address: uint16(c*100 + i*3), Type: mapping.TypeFloat32, Bit: -1, Scale: 1, Decimals: -1,
			})
		}
	}
	return pts
}

// BenchmarkPollSparseMap polls the sparse map against the simulator over
// loopback TCP with the planner (max_gap 4) and with one request per point,
// and reports requests and wall time per cycle.
func BenchmarkPollSparseMap(b *testing.B) {
	srv, err := simulator.NewServer(simulator.Config{}, quietLogger())
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	srv.AddUnit(1)
	pts := sparseMap()
	perPoint := make([]adapters.Range, len(pts))
	for i, p := range pts {
		perPoint[i] = adapters.Range{Unit: 1, Table: p.Table, Address: p.Address, Count: uint16(p.Registers())}
	}
	for _, tc := range []struct {
		name string
		plan []adapters.Range
	}{
		{"plan=max_gap_4", mapping.Plan(pts, 1, mapping.PlanOptions{MaxGap: 4})},
		{"plan=one_per_point", perPoint},
	} {
		b.Run(tc.name, func(b *testing.B) {
			bus, err := modbus.NewTCP(modbus.TCPConfig{Address: srv.Addr(), Timeout: time.Second})
			if err != nil {
				b.Fatal(err)
			}
			defer bus.Close()
			ctx := context.Background()
			for b.Loop() {
				for _, r := range tc.plan {
					if _, err := bus.ReadRange(ctx, r); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(len(tc.plan)), "requests/cycle")
		})
	}
}
