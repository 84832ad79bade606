// Package serialline implements adapters.Bus for line-oriented serial
// instruments: scales, gas analysers, meters and the like that speak no
// Modbus but send their readings as text frames ("ST,GS,+001.234,kg\r\n").
// The package is named after the protocol family, not the transport: the
// same bus runs on a serial port or on a serial device server's raw TCP
// port.
//
// # Frames, fields and registers
//
// Frames are cut out of the byte stream by a delimiter ("\r\n"), by a fixed
// length, and optionally by a start sequence (STX ... ETX). Fields are taken
// out of a frame by a regular expression with named groups or by
// delimiter-separated columns. A frame that does not parse, is too long or
// is cut short is malformed: it is counted (Stats.Malformed, with the
// reason of the latest in Stats.LastMalformed) and skipped, never fatal.
//
// The bus presents each instrument as a virtual Modbus device, so the
// mapping, event and status machinery of the bridge applies unchanged: the
// fields fill holding registers from address 0 in their configured order
// (Layout). A Number field is a float64 in four registers (byte order
// ABCDEFGH), a Text field a string of its Length registers (byte order AB).
// A device type for an instrument therefore declares its points as
//
//	table = "holding", address = slot.Address, type = "float64"            (Number)
//	table = "holding", address = slot.Address, type = "string", length = n (Text)
//
// with scale, offset, decimals and unit as for any point. float64 carries
// every decimal an instrument prints up to 15 significant digits exactly.
//
// # Push and query mode
//
// Without a request the bus is in push mode: the instrument prints on its
// own, a goroutine of the bus reads the port all the time and keeps the
// latest good frame, and a read returns it while it is younger than MaxAge
// (otherwise the read waits up to Timeout for a new frame, then reports
// adapters.ErrTimeout, so the device goes down like a Modbus device that
// stopped answering). With a request the bus is in query mode: each read
// drains stray input, sends the request (with {unit} replaced by the unit
// id, so addressable instruments can share a line) and waits up to Timeout
// for a frame that parses; malformed frames in between are counted and
// skipped.
//
// Commands send text: WriteRange writes a WriteRequest's Text to the same
// port, between the loop's reads (register writes are refused with
// errors.ErrUnsupported).
//
// # Imports
//
// adapters and adapters/serialport of ours (the port itself). It must not import
// adapters/modbus, mapping, buffer, uplink, dm, hcl, badger or paho.
//
// # Concurrency
//
// A *Bus is used by the one goroutine of the adapters.Loop that owns its
// line (ReadRange, WriteRange, Close). In push mode it also runs one reader
// goroutine, started by the first read and ended by Close (which the loop
// calls when it stops). Stats is safe for concurrent use.
package serialline
