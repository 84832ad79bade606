package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"fieldbridge/config"
	"fieldbridge/platform"
)

//go:embed demo.hcl
var demoConfig []byte

// noEnv is the environment of the built-in demo configuration: it reads nothing from outside.
var noEnv = config.Environment{
	LookupEnv: func(string) (string, bool) { return "", false },
	ReadFile:  func(p string) ([]byte, error) { return nil, errors.New("the demo reads no files") },
}

func cmdDemo(ctx context.Context, proc process, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("demo", stderr)
	duration := fs.Duration("duration", 0, "stop after this long (default: run until Ctrl-C)")
	var lf logFlags
	lf.register(fs)
	fs.Lookup("log-level").DefValue, lf.level = "warn", "warn"
	logger, err := lf.parse(fs, args, stderr)
	if err != nil {
		return err
	}
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}

	cfg, diags := config.Parse("demo.hcl", demoConfig, noEnv)
	if diags.HasErrors() {
		config.Render(stderr, cfg.Files, diags)
		return fmt.Errorf("built-in demo configuration: %w", errConfig)
	}

	sims, err := startSimulators(cfg, func(*config.Bus) string { return "127.0.0.1:0" }, logger)
	if err != nil {
		return err
	}
	sims.pointBuses(cfg)

	var devices []platform.Device
	for _, d := range cfg.Devices {
		devices = append(devices, platform.Device{Type: d.Type.Name, ID: d.Name, Token: d.Token})
	}
	plat, err := platform.New(platform.Config{Org: cfg.Platform.Org, Addr: "127.0.0.1:0", Devices: devices}, logger.With("component", "platform"))
	if err != nil {
		sims.Close()
		return err
	}
	if err := plat.Start(); err != nil {
		sims.Close()
		return err
	}
	events, err := plat.Subscribe("iot-2/type/+/id/+/evt/+/fmt/+")
	if err != nil {
		sims.Close()
		plat.Close()
		return err
	}

	b, err := newBridge(cfg, bridgeOptions{Broker: "tcp://" + plat.Addr(), InMemoryBuffer: true, Drain: time.Second}, logger)
	if err != nil {
		sims.Close()
		plat.Close()
		return err
	}
	fmt.Fprintf(stdout, "fieldbridge demo: simulated Modbus devices -> bridge -> local platform on %s (Ctrl-C stops)\n", plat.Addr())
	for _, s := range sims.servers {
		fmt.Fprintf(stdout, "  bus %-6s Modbus TCP simulator on %s, units %v\n", s.bus, s.server.Addr(), s.units)
	}
	fmt.Fprintln(stdout)

	simCtx, stopSims := context.WithCancel(context.WithoutCancel(ctx))
	simDone := make(chan error, 1)
	go func() { simDone <- sims.Run(simCtx) }()
	bridgeDone := make(chan error, 1)
	go func() { bridgeDone <- b.Run(ctx) }()
	hupCtx, stopHangups := context.WithCancel(ctx)
	defer stopHangups()
	go handleHangups(hupCtx, proc.hangups, func() { logger.Warn("SIGHUP ignored: the demo has nothing to reload") })

	demoEvents(ctx, stdout, events.C, plat, sims, managedWatcher(plat, cfg.Devices))
	err = <-bridgeDone
	events.Close()
	plat.Close()
	stopSims()
	<-simDone
	return err
}

// The demo's command: sent once, after the boiler's first telemetry event.
const (
	demoCommandType   = "boiler"
	demoCommandDevice = "boiler-1"
	demoCommand       = "set_setpoint"
	demoCommandBody   = `{"d":{"value":65.5},"reqId":"demo-1"}`
)

// demoEvents prints events like printEvents, and sends the demo command
// once the boiler has reported; when its result arrives it also prints the
// write as the simulated device recorded it. Five times a second it prints
// the lines managed returns (devices managed or unmanaged since).
func demoEvents(ctx context.Context, w io.Writer, events <-chan platform.Message, plat *platform.Platform, sims *simulation, managed func() []string) {
	sent := false
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			for _, line := range managed() {
				fmt.Fprintln(w, line)
			}
		case m, ok := <-events:
			if !ok {
				return
			}
			fmt.Fprintln(w, formatEvent(m))
			prefix := "iot-2/type/" + demoCommandType + "/id/" + demoCommandDevice + "/evt/"
			switch {
			case !sent && strings.HasPrefix(m.Topic, prefix+"telemetry/"):
				sent = true
				if err := plat.SendCommand(demoCommandType, demoCommandDevice, demoCommand, "json", []byte(demoCommandBody)); err != nil {
					fmt.Fprintf(w, "%s  command %s not sent: %v\n", time.Now().Format("15:04:05.000"), demoCommand, err)
					continue
				}
				fmt.Fprintf(w, "%s  %-22s -> command %s %s\n", time.Now().Format("15:04:05.000"), demoCommandType+"/"+demoCommandDevice, demoCommand, demoCommandBody)
			case strings.HasPrefix(m.Topic, prefix+"command/"):
				for _, wr := range sims.writes(demoCommandDevice) {
					fmt.Fprintf(w, "%s  %-22s <- simulator saw FC%d %s %d = %v\n", time.Now().Format("15:04:05.000"), demoCommandType+"/"+demoCommandDevice, wr.Function, wr.Table, wr.Address, wr.Registers)
				}
			}
		}
	}
}

// printEvents prints each event as the platform received it until ctx ends.
func printEvents(ctx context.Context, w io.Writer, events <-chan platform.Message) {
	for {
		select {
		case <-ctx.Done():
			return
		case m, ok := <-events:
			if !ok {
				return
			}
			fmt.Fprintln(w, formatEvent(m))
		}
	}
}

// managedWatcher returns a function that reports, as lines to print, the
// devices whose device-management state on the platform changed since the
// last call.
func managedWatcher(plat *platform.Platform, devices []*config.Device) func() []string {
	was := map[string]bool{}
	return func() []string {
		var out []string
		for _, d := range devices {
			st, managed := plat.Managed(d.Type.Name, d.Name)
			if managed == was[d.Name] {
				continue
			}
			was[d.Name] = managed
			who := d.Type.Name + "/" + d.Name
			if !managed {
				out = append(out, fmt.Sprintf("%s  %-22s %-10s", time.Now().Format("15:04:05.000"), who, "unmanaged"))
				continue
			}
			info, _ := json.Marshal(st.DeviceInfo)
			line := fmt.Sprintf("%s  %-22s %-10s deviceInfo=%s", time.Now().Format("15:04:05.000"), who, "managed", info)
			if len(st.Metadata) > 0 {
				line += " metadata=" + string(st.Metadata)
			}
			out = append(out, line)
		}
		return out
	}
}

// formatEvent renders "15:04:05.000  type/id  event  seq=N  {values}" from
// a qualified topic iot-2/type/T/id/D/evt/E/fmt/F.
func formatEvent(m platform.Message) string {
	parts := strings.Split(m.Topic, "/")
	who, event := m.Topic, ""
	if len(parts) == 9 {
		who, event = parts[2]+"/"+parts[4], parts[6]
	}
	var p struct {
		D   json.RawMessage `json:"d"`
		TS  string          `json:"ts"`
		Seq uint64          `json:"seq"`
	}
	if err := json.Unmarshal(m.Payload, &p); err != nil {
		return fmt.Sprintf("%s  %-22s %-10s %s", m.Time.Format("15:04:05.000"), who, event, m.Payload)
	}
	return fmt.Sprintf("%s  %-22s %-10s seq=%-5d %s", m.Time.Format("15:04:05.000"), who, event, p.Seq, p.D)
}
