// Command loadrig runs the process-level load rig (package
// internal/loadrig): the Modbus simulator, Mosquitto and the system under
// test (`bridge run`, or Telegraf with -telegraf) as separate processes, and
// prints a summary measured from outside the system under test.
//
//	go run ./scripts/loadrig -devices 500 -points 20 -poll 1s -mode gateway -duration 2m -timeline
//	go run ./scripts/loadrig -devices 500 -points 20 -telegraf /work/telegraf/telegraf
//	go run ./scripts/loadrig -devices 500 -points 20 -poll 100ms -pin -duration 2m -timeline
//	go run ./scripts/loadrig -devices 500 -points 20 -mode device -broker-down 10m -duration 12m
//
// Without -bridge it builds ./cmd/bridge into a temporary directory first.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"fieldbridge/internal/loadrig"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "loadrig:", err)
		os.Exit(1)
	}
}

func run() error {
	var o loadrig.Options
	var env string
	var timeline bool
	flag.StringVar(&o.BridgeBin, "bridge", "", "bridge binary (default: go build ./cmd/bridge into a temp dir)")
	flag.StringVar(&o.TelegrafBin, "telegraf", "", "run this Telegraf binary as the system under test instead of the bridge")
	flag.IntVar(&o.Devices, "devices", 50, "devices")
	flag.IntVar(&o.Points, "points", 20, "float32 points per device (one request)")
	flag.IntVar(&o.Buses, "buses", 10, "Modbus TCP buses (simulator endpoints)")
	flag.DurationVar(&o.Poll, "poll", time.Second, "poll interval")
	flag.StringVar(&o.Mode, "mode", loadrig.ModeGateway, "bridge mode: gateway or device")
	flag.DurationVar(&o.Warmup, "warmup", 10*time.Second, "time before the measured window")
	flag.DurationVar(&o.Duration, "duration", 30*time.Second, "measured window")
	flag.DurationVar(&o.BrokerDown, "broker-down", 0, "stop Mosquitto this long after the warm-up, then wait for the drain")
	flag.DurationVar(&o.DrainTimeout, "drain-timeout", 10*time.Minute, "longest wait for the backlog to drain after the broker is back")
	flag.BoolVar(&o.Pin, "pin", false, "pin the system under test to CPU 0 and everything else to CPU 1")
	flag.DurationVar(&o.ScrapeEvery, "scrape", time.Second, "read the bridge's /metrics (backlog) this often; 0: only at the start and end (each scrape costs the bridge CPU)")
	flag.StringVar(&env, "env", "", "extra environment of the system under test, comma-separated (e.g. GOMEMLIMIT=48MiB)")
	flag.BoolVar(&timeline, "timeline", false, "print a per-second timeline")
	flag.StringVar(&o.Dir, "dir", "", "keep configs, logs and the buffer here (default: a temp dir, removed)")
	flag.Parse()
	if env != "" {
		o.Env = strings.Split(env, ",")
	}
	if timeline {
		o.Timeline = os.Stdout
	}
	if o.BridgeBin == "" {
		bin, cleanup, err := loadrig.BuildBridge()
		if err != nil {
			return err
		}
		defer cleanup()
		o.BridgeBin = bin
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	s, err := loadrig.Run(ctx, o)
	if err != nil {
		return err
	}
	s.Print(os.Stdout)
	return nil
}
