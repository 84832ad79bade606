package main

import (
	"context"
	"fmt"
	"io"

	"fieldbridge/platform"
)

func cmdPlatform(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("platform", stderr)
	org := fs.String("org", "", "organisation id the platform serves (\"quickstart\" for quickstart mode)")
	addr := fs.String("listen", "127.0.0.1:1883", "MQTT listen address")
	registry := fs.String("devices", "", "registry file of devices, gateways and tokens (see README)")
	show := fs.Bool("print", true, "print every event as it arrives")
	var lf logFlags
	lf.register(fs)
	logger, err := lf.parse(fs, args, stderr)
	if err != nil {
		return err
	}
	cfg := platform.Config{Org: *org, Addr: *addr}
	if *registry != "" {
		reg, err := platform.LoadRegistry(*registry)
		if err != nil {
			return fmt.Errorf("%v: %w", err, errConfig)
		}
		cfg.Devices, cfg.APIKeys = reg.Devices, reg.APIKeys
	}
	if cfg.Org == "" {
		return fmt.Errorf("-org is required: %w", errConfig)
	}
	p, err := platform.New(cfg, logger.With("component", "platform"))
	if err != nil {
		return fmt.Errorf("%v: %w", err, errConfig)
	}
	if err := p.Start(); err != nil {
		return fmt.Errorf("%v: %w", err, errConfig)
	}
	logger.Info("platform listening", "address", p.Addr(), "org", cfg.Org)
	if *show {
		events, err := p.Subscribe("iot-2/type/+/id/+/evt/+/fmt/+")
		if err != nil {
			return err
		}
		defer events.Close()
		go printEvents(ctx, stdout, events.C)
	}
	<-ctx.Done()
	return p.Close()
}
