package main

import (
	"bytes"
	"context"
	"regexp"
	"testing"

	"fieldbridge/adapters"
	"fieldbridge/internal/serialtest"
	"fieldbridge/simulator"
)

func TestProbe(t *testing.T) {
	r := startSimulation(t)
	srv := r.sims.servers[0].server
	bank := srv.AddUnit(5)
	bank.SetRegisters(adapters.HoldingRegister, 100, []uint16{0x8000, 0x4366, 0x4142})
	var out, errs bytes.Buffer
	code := run(context.Background(), func() {}, []string{"probe", "-tcp", srv.Addr(), "-unit", "5", "-table", "holding", "-address", "100", "-count", "3"}, &out, &errs)
	if code != exitOK {
		t.Fatalf("probe exit %d: %s", code, errs.String())
	}
	// The float is found under CDAB at address 100 (1-based 101) and marked.
	if !regexp.MustCompile(`(?m)^\s+100\s+101\s+32\s+CDAB\s+43668000\s+\S+\s+\S+\s+230\.5\s+\*`).Match(out.Bytes()) {
		t.Errorf("probe output lacks the CDAB float32 line:\n%s", out.String())
	}
	// The register before the asked start is shown too (0- vs 1-based manuals).
	if !regexp.MustCompile(`(?m)^\s+99\s+100\s+16\s+AB\s`).Match(out.Bytes()) {
		t.Errorf("probe output lacks address 99:\n%s", out.String())
	}
}

func TestValidateExitCodes(t *testing.T) {
	var out, errs bytes.Buffer
	if code := run(context.Background(), func() {}, []string{"validate", "-plan", "-config", "../../config.example.hcl"}, &out, &errs); code != exitOK {
		t.Fatalf("validate example: exit %d\n%s%s", code, out.String(), errs.String())
	}
	if !bytes.Contains(out.Bytes(), []byte("requests per cycle")) {
		t.Errorf("validate -plan printed no plan:\n%s", out.String())
	}
	out.Reset()
	if code := run(context.Background(), func() {}, []string{"validate", "-config", "../../config/testdata/invalid/unknown_bus_and_type.hcl"}, &out, &errs); code != exitConfig {
		t.Fatalf("validate invalid: exit %d, want %d", code, exitConfig)
	}
	if !bytes.Contains(out.Bytes(), []byte(`unknown_bus_and_type.hcl:16:11: error: Unknown bus`)) {
		t.Errorf("validate output lacks file:line:col:\n%s", out.String())
	}
	if code := run(context.Background(), func() {}, []string{"bogus"}, &out, &errs); code != exitConfig {
		t.Errorf("unknown command: exit %d, want %d", code, exitConfig)
	}
}

func TestProbeRTU(t *testing.T) {
	bridgeEnd, deviceEnd := serialtest.Pair(t)
	srv, err := simulator.New(simulator.Config{}, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	srv.AddUnit(4).SetRegisters(adapters.InputRegister, 10, []uint16{0x4366, 0x8000})
	port, err := simulator.OpenSerial(simulator.SerialConfig{Port: deviceEnd, Baud: 19200, Parity: "even"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.ServeRTU(ctx, port) }()
	t.Cleanup(func() { cancel(); port.Close(); <-done })

	var out, errs bytes.Buffer
	code := run(context.Background(), func() {}, []string{"probe", "-rtu", bridgeEnd, "-unit", "4", "-table", "input", "-address", "10", "-count", "2"}, &out, &errs)
	if code != exitOK {
		t.Fatalf("probe exit %d: %s", code, errs.String())
	}
	if !regexp.MustCompile(`(?m)^\s+10\s+11\s+32\s+ABCD\s+43668000\s+\S+\s+\S+\s+230\.5\s+\*`).Match(out.Bytes()) {
		t.Errorf("probe over RTU lacks the ABCD float32 line:\n%s", out.String())
	}
}
