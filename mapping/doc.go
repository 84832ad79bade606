// Package mapping turns raw registers into JSON events and, in the other
// direction, values into register writes. It owns the data types and byte
// orders (the codec), the points of a device type, the read plan (which
// ranges a device needs per poll cycle), the decision whether an event is due
// and the JSON payloads of design.md §4 (events and status).
//
// Place in the pipeline: a bus loop hands a device's adapters.Reading to a
// *Device; the Device decodes it and returns the events that are due; the
// caller (cmd/bridge) appends them to the buffer, which assigns seq and asks
// the Device's payload functions for the bytes.
//
// Commands go the other way: DeviceType.PlanCommand checks a command's JSON
// payload against the points (writable, type, min/max, enum) and encodes it
// into an ordered list of adapters.WriteRequests (Point.EncodeWrite, the
// exact inverse of decoding; a bit of a register becomes a masked
// read-modify-write that the bus owner performs) plus the ranges to read
// back. A refused command plans no write at all.
//
// Mapping is pure: no I/O, no goroutines, no clocks (times come in with the
// readings). It imports only adapters for value types and must not import
// adapters/* implementations, buffer, uplink, dm, hcl, badger or paho.
//
// Concurrency: a *Device holds report state and belongs to the one goroutine
// that owns its bus. Rules built from configuration (Point, DeviceType) are
// immutable after construction and safe to share.
package mapping
