// Package loadrig is a process-level load rig: it runs the Modbus simulator
// (`bridge simulate`), Mosquitto and a system under test (`bridge run`, or
// Telegraf doing the same work) as separate processes, subscribes to what
// the system under test publishes, and measures the system under test from
// outside: CPU time and memory from /proc/<pid>, the bridge's backlog from
// its metrics endpoint, delivered points, poll→subscriber latency, and lost
// or duplicated (device, seq) pairs.
//
// In-process benchmarks count the harness too; this rig counts only the
// process under test, so "CPU per point" and "within one core" (with
// pinning, Options.Pin) are statements about the bridge process alone.
//
// Owns: generated configurations (bridge HCL, Telegraf TOML), the child
// processes it starts (each is stopped before Run returns), one subscriber
// connection, and the per-second samples. It never optimises or changes the
// bridge; it only measures it.
//
// Imports: uplink only (the subscriber), never cmd/bridge or the pipeline
// packages: the bridge is a binary here, like it is on a gateway box.
// Linux only (/proc, taskset).
package loadrig
