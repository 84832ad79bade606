// Command bridge polls field devices on Modbus and publishes their values to
// the platform's MQTT service through a durable store-and-forward buffer.
// See README.md and config.example.hcl; `bridge -h` lists the subcommands.
package main

import (
	"context"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

// stopProfile ends a CPU profile started by a -tags profile build.
var stopProfile = func() {}

func main() {
	// SIGHUP (a closed terminal, or an operator asking for a reload) must
	// never kill the bridge: it is received on hangups and handled by the
	// command. SIGPIPE is received too, so that a write to a closed stdout
	// or stderr fails with EPIPE instead of killing the process (os/signal:
	// "If the program has called Notify to receive SIGPIPE signals, the file
	// descriptor number does not matter"); nobody reads the channel.
	hangups := make(chan os.Signal, 1)
	signal.Notify(hangups, syscall.SIGHUP)
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// `bridge run` sets a soft memory limit from its configuration unless
	// GOMEMLIMIT is set, and the GC's target unless GOGC is (memlimit.go).
	proc := process{stop: stop, hangups: hangups, setMemoryLimit: debug.SetMemoryLimit, setGCPercent: debug.SetGCPercent}
	code := runProcess(ctx, proc, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	stopProfile()
	os.Exit(code)
}
