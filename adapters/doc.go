// Package adapters holds what every field-bus adapter shares: the value types
// that describe a read or a write on a bus (Table, Range, Block, Reading,
// WriteRequest), the adapter-level errors, and the generic bus loop that owns
// one physical bus and runs every poll and write for the devices on it.
//
// Place in the pipeline: the bus loop is the producer of telemetry. It hands
// each device's cycle to a ReadingHandler (wired in cmd/bridge to mapping and
// the buffer) and executes WriteRequests queued by the downlink.
//
// Imports: standard library only. It must not import any other package of
// ours, nor goburrow, serial, hcl, badger or paho; protocol implementations
// live in sub-packages (adapters/modbus, ...) that import this one.
//
// Concurrency: a Bus is used by exactly one goroutine, its Loop. Nothing else
// touches the handle, so Bus implementations need no locks. Loop.Write is safe
// for concurrent use; it hands the write to the loop goroutine and waits.
//
// Writes: they run ahead of pending polls, a masked write (WriteRequest.Mask)
// is a read-modify-write done as one job so that nothing interleaves, a
// write is never retried (a timeout is ErrUnknownOutcome), and a device the
// last poll found unreachable fails at once with ErrDeviceDown.
// Loop.Stats is safe for concurrent use too: the loop counts requests,
// errors, timeouts and latencies with atomics, for the bridge's metrics.
package adapters
