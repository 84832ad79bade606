package main

import (
	"log/slog"

	"fieldbridge/config"
)

// The soft memory limit the bridge gives the Go runtime when the operator
// did not (GOMEMLIMIT unset). It grows with the configuration, because what
// the bridge holds does: each device has its queues, forwarders and mapping
// state (~30 KiB of heap and ~15 KiB of goroutine stacks in gateway mode at
// 500 devices), each MQTT connection its client, paho's ten goroutines and
// our Run (~38 KiB of stacks and ~18 KiB of heap, uplink's
// BenchmarkMemoryPerConnection; stacks grow to ~45 KiB after an outage's
// drain); the rest (Badger's
// memtable arena and the tables it builds at a flush or compaction, the
// runtime) is fixed. The limit sits above that live memory with room for a
// flush or compaction, so that the GC collects early instead of letting the
// heap double (GOGC=100), without running all the time: a limit below the
// live heap makes the GC thrash (GOMEMLIMIT=48MiB did, at 500 devices in
// device mode: ~40 collections a second). Measured in docs/performance.md,
// "Memory (RSS)".
const (
	memoryLimitBase          = 32 << 20
	memoryLimitPerDevice     = 64 << 10
	memoryLimitPerConnection = 80 << 10
)

// memoryLimitFor is the soft memory limit for cfg, in bytes.
func memoryLimitFor(cfg *config.Config) int64 {
	devices := int64(len(cfg.Devices))
	connections := devices // device and quickstart mode: one per device
	if cfg.Platform.Mode == config.ModeGateway {
		connections = 1
	}
	return memoryLimitBase + devices*memoryLimitPerDevice + connections*memoryLimitPerConnection
}

// applyMemoryLimit sets memoryLimitFor(cfg) with set (debug.SetMemoryLimit),
// at start and again after each applied reload, unless GOMEMLIMIT is in the
// environment (getenv: os.LookupEnv): the
// operator's value, or "off", wins. set is nil in tests that run the
// bridge in-process, where the limit would apply to the whole test binary.
func applyMemoryLimit(cfg *config.Config, getenv func(string) (string, bool), set func(int64) int64, logger *slog.Logger) {
	if set == nil {
		return
	}
	if v, ok := getenv("GOMEMLIMIT"); ok {
		logger.Info("memory limit from GOMEMLIMIT", "GOMEMLIMIT", v)
		return
	}
	limit := memoryLimitFor(cfg)
	set(limit)
	logger.Info("memory limit set", "MiB", limit>>20, "devices", len(cfg.Devices), "mode", cfg.Platform.Mode)
}

// gcPercent is the GC's target for `bridge run` when the operator did not
// set GOGC: a collection starts when the heap has grown by half of what
// the last one left live, instead of doubling (GOGC=100). The soft limit
// above is a ceiling for bursts; below it the heap would otherwise sit at
// twice the live heap. Device mode at 500 devices (docs/performance.md,
// "Device mode's memory (session 3)"): anonymous memory 65-73 MiB instead
// of 75-79 (peaks 74-78 instead of 89), twice the collections (0.8 a
// second), GC work +20-40 ms per second by gctrace, which the CPU per
// point of the whole process did not resolve. GOGC=25 saves a few MiB
// more for 1.5 collections a second; GOMEMLIMIT=64MiB thrashes (3 a
// second, twice the CPU per point).
const gcPercent = 50

// applyGCPercent sets gcPercent with set (debug.SetGCPercent) unless GOGC
// is in the environment (getenv: os.LookupEnv): the operator's value, or
// "off", wins. set is nil in tests that run the bridge in-process.
func applyGCPercent(getenv func(string) (string, bool), set func(int) int, logger *slog.Logger) {
	if set == nil {
		return
	}
	if v, ok := getenv("GOGC"); ok {
		logger.Info("gc target from GOGC", "GOGC", v)
		return
	}
	set(gcPercent)
}
