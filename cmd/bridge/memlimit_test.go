package main

import (
	"testing"

	"fieldbridge/config"
)

func memlimitConfig(mode string, devices int) *config.Config {
	cfg := &config.Config{Platform: config.Platform{Mode: mode}}
	for range devices {
		cfg.Devices = append(cfg.Devices, &config.Device{})
	}
	return cfg
}

// The limit grows with the devices, and in device and quickstart mode with
// their connections too; a gateway has one connection.
func TestMemoryLimitFor(t *testing.T) {
	for _, tc := range []struct {
		mode    string
		devices int
		want    int64
	}{
		{config.ModeGateway, 0, 32<<20 + 80<<10},
		{config.ModeGateway, 500, 32<<20 + 500*64<<10 + 80<<10},
		{config.ModeDevice, 500, 32<<20 + 500*(64+80)<<10},
		{config.ModeQuickstart, 3, 32<<20 + 3*(64+80)<<10},
	} {
		if got := memoryLimitFor(memlimitConfig(tc.mode, tc.devices)); got != tc.want {
			t.Errorf("%s, %d devices: %d bytes, want %d", tc.mode, tc.devices, got, tc.want)
		}
	}
}

// applyMemoryLimit sets the computed limit unless GOMEMLIMIT is in the
// environment (any value, "off" included), and does nothing without a
// setter (the bridge run in-process by a test).
func TestApplyMemoryLimit(t *testing.T) {
	cfg := memlimitConfig(config.ModeDevice, 10)
	var set []int64
	setter := func(v int64) int64 { set = append(set, v); return 0 }
	unset := func(string) (string, bool) { return "", false }

	applyMemoryLimit(cfg, unset, setter, quietLogger())
	if len(set) != 1 || set[0] != memoryLimitFor(cfg) {
		t.Fatalf("without GOMEMLIMIT: set %v, want [%d]", set, memoryLimitFor(cfg))
	}

	for _, v := range []string{"120MiB", "off", ""} {
		set = nil
		applyMemoryLimit(cfg, func(k string) (string, bool) { return v, k == "GOMEMLIMIT" }, setter, quietLogger())
		if len(set) != 0 {
			t.Errorf("GOMEMLIMIT=%q: the bridge set its own limit %v; the operator's must win", v, set)
		}
	}

	applyMemoryLimit(cfg, unset, nil, quietLogger()) // must not panic
}

// applyGCPercent sets gcPercent unless GOGC is in the environment (any
// value, "off" included), and does nothing without a setter.
func TestApplyGCPercent(t *testing.T) {
	var set []int
	setter := func(v int) int { set = append(set, v); return 100 }
	applyGCPercent(func(string) (string, bool) { return "", false }, setter, quietLogger())
	if len(set) != 1 || set[0] != gcPercent {
		t.Fatalf("without GOGC: set %v, want [%d]", set, gcPercent)
	}
	for _, v := range []string{"100", "off", ""} {
		set = nil
		applyGCPercent(func(k string) (string, bool) { return v, k == "GOGC" }, setter, quietLogger())
		if len(set) != 0 {
			t.Errorf("GOGC=%q: the bridge set its own target %v; the operator's must win", v, set)
		}
	}
	applyGCPercent(func(string) (string, bool) { return "", false }, nil, quietLogger()) // must not panic
}
