// Command bridge polls field devices on Modbus and publishes their values to
// the platform's MQTT service through a durable store-and-forward buffer.
// See README.md and config.example.hcl; `bridge -h` lists the subcommands.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, stop, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
