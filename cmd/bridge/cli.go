package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"fieldbridge/adapters"
	"fieldbridge/config"
	"fieldbridge/mapping"
)

// Exit codes (design.md §2).
const (
	exitOK      = 0 // clean stop
	exitConfig  = 1 // configuration or start-up error: do not restart-loop on it
	exitRuntime = 2 // runtime failure
)

// version is set at build time with -ldflags "-X main.version=..."
// (scripts/release does).
var version = "dev"

// errConfig marks errors that are the configuration's or the start-up's fault.
var errConfig = errors.New("configuration error")

const usage = `bridge: Modbus field devices to the platform's MQTT service.

Usage:
  bridge run      -config FILE    run the daemon (also: bridge -config FILE)
  bridge validate -config FILE    check a configuration; print every problem with file:line:col
                  [-plan]         also print each device's read requests per poll cycle
  bridge demo     [-duration D]   simulator + local platform + bridge on this machine, events printed
  bridge simulate -config FILE    serve the config's devices as Modbus TCP slaves with changing values
  bridge platform [flags]         run the local platform (a strict MQTT broker with the platform's rules)
  bridge platform send [flags]    send a command to a device as an application (API key and token)
  bridge platform action [flags] reboot|factory-reset|firmware-download|firmware-update|update|observe|cancel|custom
                                  start a device-management action on a running platform (its -http API)
  bridge probe (-tcp HOST:PORT | -rtu PORT [-baud B -parity P]) -unit N -table T -address A -count C
                                  read registers once and print every interpretation (types, byte orders,
                                  0- and 1-based addresses) to find a device's map
  bridge version                  print the version, the commit it was built from and the Go version

Flags common to run, demo, simulate and platform:
  -log-level debug|info|warn|error   (default info)
  -log-format text|json              (default: text on a terminal, json otherwise)
`

// process is what main hands the commands besides the arguments.
type process struct {
	// stop cancels ctx's signal handling, so that a second Ctrl-C during
	// shutdown kills the process.
	stop func()
	// hangups receives SIGHUP; nil when the caller (a test) sends none.
	hangups <-chan os.Signal
	// setMemoryLimit is debug.SetMemoryLimit; nil when the caller (a test)
	// runs the bridge in-process. See applyMemoryLimit.
	setMemoryLimit func(int64) int64
	// setGCPercent is debug.SetGCPercent; nil when the caller (a test)
	// runs the bridge in-process. See applyGCPercent.
	setGCPercent func(int) int
}

// run is runProcess for callers that deliver no SIGHUP.
func run(ctx context.Context, stop func(), args []string, stdout, stderr io.Writer) int {
	return runProcess(ctx, process{stop: stop}, args, stdout, stderr)
}

// runProcess is main without the process: it parses args, runs one
// subcommand and returns the exit code.
func runProcess(ctx context.Context, proc process, args []string, stdout, stderr io.Writer) int {
	cmd := "run"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "run":
		err = cmdRun(ctx, proc, args, stderr)
	case "validate":
		err = cmdValidate(args, stdout, stderr)
	case "demo":
		err = cmdDemo(ctx, proc, args, stdout, stderr)
	case "simulate":
		err = cmdSimulate(ctx, args, stderr)
	case "platform":
		err = cmdPlatform(ctx, args, stdout, stderr)
	case "probe":
		err = cmdProbe(ctx, args, stdout, stderr)
	case "version":
		cmdVersion(stdout)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "bridge: unknown command %q\n\n%s", cmd, usage)
		return exitConfig
	}
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.Is(err, errConfig):
		if msg := strings.TrimSuffix(err.Error(), ": "+errConfig.Error()); msg != errConfig.Error() {
			fmt.Fprintf(stderr, "bridge: %s\n", msg)
		}
		return exitConfig
	default:
		fmt.Fprintf(stderr, "bridge: %v\n", err)
		return exitRuntime
	}
}

// logFlags are the logging flags every long-running subcommand takes.
type logFlags struct{ level, format string }

func (l *logFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&l.level, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&l.format, "log-format", "", "text or json (default: text on a terminal, json otherwise)")
}

// parse parses args (with the logging flags registered earlier) and builds
// the logger.
func (l *logFlags) parse(fs *flag.FlagSet, args []string, w io.Writer) (*slog.Logger, error) {
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	return l.logger(w)
}

// logger builds the process logger: text on a terminal, JSON otherwise. It
// writes through a logWriter, so that a log nobody can read any more (a
// closed stderr pipe) never stops the bridge.
func (l *logFlags) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(l.level)); err != nil {
		return nil, fmt.Errorf("-log-level %q: %w", l.level, errConfig)
	}
	opts := &slog.HandlerOptions{Level: level}
	format := l.format
	if format == "" {
		format = "json"
		if f, ok := w.(*os.File); ok {
			if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
				format = "text"
			}
		}
	}
	lw := logWriter{w: w}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(lw, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(lw, opts)), nil
	}
	return nil, fmt.Errorf("-log-format %q: %w", l.format, errConfig)
}

func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("bridge "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parseFlags parses and turns a usage error into a configuration error.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errConfig
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q: %w", fs.Arg(0), errConfig)
	}
	return nil
}

// loadConfig loads and checks path, printing every diagnostic to w.
func loadConfig(path string, w io.Writer) (*config.Config, error) {
	if path == "" {
		return nil, fmt.Errorf("-config FILE is required: %w", errConfig)
	}
	cfg, diags := config.Load(path)
	config.Render(w, cfg.Files, diags)
	if diags.HasErrors() {
		return nil, fmt.Errorf("%s has errors: %w", path, errConfig)
	}
	return cfg, nil
}

func cmdValidate(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("validate", stderr)
	path := fs.String("config", "", "configuration file")
	plan := fs.Bool("plan", false, "print each device's read requests per poll cycle")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(*path, stdout)
	if err != nil {
		return err
	}
	if *plan {
		if err := printPlans(stdout, cfg); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "%s: ok: %d buses, %d device types, %d devices\n", *path, len(cfg.Buses), len(cfg.DeviceTypes), len(cfg.Devices))
	return nil
}

func cmdRun(ctx context.Context, proc process, args []string, stderr io.Writer) error {
	fs := newFlagSet("run", stderr)
	path := fs.String("config", "", "configuration file")
	drain := fs.Duration("drain", 5*time.Second, "on stop, how long to keep sending buffered events before closing")
	var lf logFlags
	lf.register(fs)
	logger, err := lf.parse(fs, args, stderr)
	if err != nil {
		return err
	}
	cfg, err := loadConfig(*path, stderr)
	if err != nil {
		return err
	}
	applyMemoryLimit(cfg, os.LookupEnv, proc.setMemoryLimit, logger)
	applyGCPercent(os.LookupEnv, proc.setGCPercent, logger)
	b, err := newBridge(cfg, bridgeOptions{Drain: *drain, OnStop: proc.stop}, logger)
	if err != nil {
		return fmt.Errorf("%v: %w", err, errConfig)
	}
	logger.Info("bridge started", "version", version, "config", *path, "devices", len(cfg.Devices), "mode", cfg.Platform.Mode)
	hupCtx, stopHangups := context.WithCancel(ctx)
	defer stopHangups()
	go handleHangups(hupCtx, proc.hangups, func() {
		if applied := b.reloadFile(hupCtx, *path); applied != nil {
			// What the bridge holds follows its devices and connections.
			applyMemoryLimit(applied, os.LookupEnv, proc.setMemoryLimit, logger)
		}
	})
	return b.Run(ctx)
}

// handleHangups calls onHangup for each SIGHUP until ctx ends. A SIGHUP
// after that (during shutdown) is still received by main's Notify, and
// ignored.
func handleHangups(ctx context.Context, hangups <-chan os.Signal, onHangup func()) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hangups:
			onHangup()
		}
	}
}

// reloadFile re-reads the configuration file and applies it (SIGHUP), and
// returns the configuration it applied, or nil. An invalid file is logged
// with the same diagnostics validate prints, and the running configuration
// stays.
func (b *bridge) reloadFile(ctx context.Context, path string) *config.Config {
	b.logger.Info("SIGHUP: reloading the configuration", "config", path)
	var diags bytes.Buffer
	cfg, err := loadConfig(path, &diags)
	if diags.Len() > 0 {
		level := slog.LevelWarn
		if err != nil {
			level = slog.LevelError
		}
		b.logger.Log(ctx, level, "configuration diagnostics", "config", path, "diagnostics", diags.String())
	}
	if err != nil {
		b.logger.Error("reload refused: the configuration has errors; the running configuration stays", "config", path)
		return nil
	}
	rep, err := b.Reload(ctx, cfg)
	b.logReload(path, rep, err)
	if err != nil {
		return nil
	}
	return cfg
}

// logWriter is the log's writer: it drops a line it could not write and
// never returns an error, so that a log nobody can read any more (stderr a
// pipe whose reader is gone, a full disk) never stops the bridge. slog's
// handlers already serialize their writes.
type logWriter struct{ w io.Writer }

func (l logWriter) Write(p []byte) (int, error) {
	l.w.Write(p) // a failed log line is dropped: there is nowhere to report it
	return len(p), nil
}

// printPlans prints, per device, the requests of one poll cycle and how many
// registers they read for points and how many they read only to join them.
func printPlans(w io.Writer, cfg *config.Config) error {
	for _, d := range cfg.Devices {
		dev, err := mapping.NewDevice(d.Name, d.Type.DeviceType, d.Unit, d.Plan)
		if err != nil {
			return err
		}
		used := map[adapters.Table]map[int]bool{}
		for _, p := range d.Type.Points {
			if used[p.Table] == nil {
				used[p.Table] = map[int]bool{}
			}
			for a := int(p.Address); a < int(p.Address)+p.Registers(); a++ {
				used[p.Table][a] = true
			}
		}
		read, wasted := 0, 0
		fmt.Fprintf(w, "device %s (bus %s, unit %d, every %v): %d requests per cycle\n", d.Name, d.Bus.Name, d.Unit, d.Poll, len(dev.Plan()))
		for _, r := range dev.Plan() {
			unused := 0
			for a := int(r.Address); a < r.End(); a++ {
				if !used[r.Table][a] {
					unused++
				}
			}
			read += int(r.Count)
			wasted += unused
			fmt.Fprintf(w, "  %-8s %5d +%-3d  (%d unused)\n", r.Table, r.Address, r.Count, unused)
		}
		fmt.Fprintf(w, "  read %d, of them %d only to join points\n", read, wasted)
	}
	return nil
}
