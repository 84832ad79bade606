// Command compare-telegraf measures the bridge against Telegraf doing the
// same work (issue #12) with the process-level load rig: for each device
// count it runs Telegraf, the bridge in gateway mode and the bridge in
// device mode, one after the other on the same simulator shape and a fresh
// Mosquitto, and prints CPU per delivered point of each process and the
// ratios bridge/Telegraf against the targets (gateway ≤ 0.5×, device ≤ 1×),
// with RSS, as a Markdown table.
//
//	go run ./scripts/compare-telegraf [flags] TELEGRAF_BIN
//
// Telegraf needs inputs.modbus, outputs.mqtt and serializers.json; the
// build line is in docs/performance.md. By default the system under test is
// pinned to CPU 0 and the rest to CPU 1, and /metrics is read only at the
// start and end of each window so that scraping costs the bridge nothing.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"fieldbridge/internal/loadrig"
)

// Targets of issue #12: bridge CPU per point relative to Telegraf's.
const (
	gatewayTarget = 0.5
	deviceTarget  = 1.0
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "compare-telegraf:", err)
		os.Exit(1)
	}
}

func run() error {
	bridgeBin := flag.String("bridge", "", "bridge binary (default: go build ./cmd/bridge into a temp dir)")
	deviceCounts := flag.String("devices", "50,200,500", "device counts, comma-separated")
	points := flag.Int("points", 20, "float32 points per device")
	buses := flag.Int("buses", 10, "Modbus TCP buses")
	poll := flag.Duration("poll", time.Second, "poll interval")
	warmup := flag.Duration("warmup", 10*time.Second, "warm-up before each window")
	duration := flag.Duration("duration", 60*time.Second, "measured window of each run")
	pin := flag.Bool("pin", true, "pin the system under test to CPU 0, the rest to CPU 1")
	rounds := flag.Int("rounds", 1, "repeat the whole comparison this many times")
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "usage: compare-telegraf [flags] TELEGRAF_BIN")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		return fmt.Errorf("want the Telegraf binary as the only argument")
	}
	var counts []int
	for _, f := range strings.Split(*deviceCounts, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return fmt.Errorf("-devices: %q is not a positive number", f)
		}
		counts = append(counts, n)
	}
	if *bridgeBin == "" {
		bin, cleanup, err := loadrig.BuildBridge()
		if err != nil {
			return err
		}
		defer cleanup()
		*bridgeBin = bin
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var rows []row
	for round := 1; round <= *rounds; round++ {
		for _, n := range counts {
			var telegraf *loadrig.Summary
			for _, sut := range []string{"telegraf", loadrig.ModeGateway, loadrig.ModeDevice} {
				o := loadrig.Options{
					BridgeBin: *bridgeBin, Devices: n, Points: *points, Buses: *buses, Poll: *poll,
					Mode: loadrig.ModeGateway, Warmup: *warmup, Duration: *duration, Pin: *pin,
				}
				if sut == "telegraf" {
					o.TelegrafBin = flag.Arg(0)
				} else {
					o.Mode = sut
				}
				fmt.Fprintf(os.Stderr, "round %d: %d devices, %s ...\n", round, n, o.SUT())
				s, err := loadrig.Run(ctx, o)
				if err != nil {
					return fmt.Errorf("%d devices, %s: %w", n, o.SUT(), err)
				}
				s.Print(os.Stderr)
				if sut == "telegraf" {
					telegraf = s
				}
				rows = append(rows, row{round: round, s: s, telegraf: telegraf})
			}
		}
	}
	printTable(os.Stdout, rows)
	return nil
}

// row is one run and the Telegraf run of the same round and device count.
type row struct {
	round    int
	s        *loadrig.Summary
	telegraf *loadrig.Summary
}

func printTable(w io.Writer, rows []row) {
	fmt.Fprintln(w, "| round | devices × points | system | CPU-s/s | µs CPU per point | × Telegraf | target | points/s delivered | RSS steady MiB | RSS peak MiB | lost / dup |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, r := range rows {
		o := r.s.Options
		ratio, target := "1", "—"
		if o.TelegrafBin == "" && r.telegraf != nil && r.telegraf.MicrosPerPt > 0 {
			x := r.s.MicrosPerPt / r.telegraf.MicrosPerPt
			limit := deviceTarget
			if o.Mode == loadrig.ModeGateway {
				limit = gatewayTarget
			}
			verdict := "met"
			if x > limit {
				verdict = "not met"
			}
			ratio, target = fmt.Sprintf("%.2f", x), fmt.Sprintf("≤ %.1f: %s", limit, verdict)
		}
		loss := "n/a"
		if r.s.Seqs != nil {
			loss = fmt.Sprintf("%d / %d", r.s.Seqs.Lost, r.s.Seqs.Duplicates)
		}
		fmt.Fprintf(w, "| %d | %d × %d | %s | %.3f | %.2f | %s | %s | %.0f | %.1f | %.1f | %s |\n",
			r.round, o.Devices, o.Points, o.SUT(), r.s.CPUPerSecond, r.s.MicrosPerPt, ratio, target, r.s.PointsPerSec, r.s.RSSSteadyMiB, r.s.RSSPeakMiB, loss)
	}
}
