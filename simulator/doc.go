// Package simulator is a Modbus slave (server) with changing values: the
// device on the other side of the wire for `bridge simulate`, `bridge demo`
// and every integration test. It owns the simulated register banks, the
// Modbus request handling (function codes 1, 2, 3, 4, 5, 6, 15, 16 and 23
// with the specification's exception responses), the Modbus TCP framing,
// fault injection, request counters, and value generators with a ticker.
//
// # Shape
//
// A Server holds up to 256 unit ids, each served from a Bank (the four
// Modbus tables, sizes configurable, storage allocated on first write).
// Like net/http/httptest, NewServer starts a server on a free loopback
// port, Addr says where, and Close stops it and waits for requests in
// progress; the bridge command uses Serve(ctx, listener) instead.
//
//	s, err := simulator.NewServer(simulator.Config{}, logger)
//	if err != nil { ... }
//	defer s.Close()
//	bank := s.AddUnit(1)
//	bank.SetRegisters(adapters.HoldingRegister, 0, []uint16{230, 231})
//	// point a client at s.Addr()
//
// Request handling is separate from framing: one function turns a request
// PDU into a response PDU for every framing. Requests on one TCP connection
// are answered in order, one at a time, as a simple device does; each
// connection has its own goroutine. A frame with a protocol id other than 0
// or an impossible length closes that connection only.
//
// # Serial lines
//
// ServeRTU and ServeASCII serve the same units as Modbus RTU or ASCII
// slaves on one end of a serial line: a port opened with OpenSerial
// (go.bug.st/serial), one end of a socat pty pair, or net.Pipe. Unknown unit
// ids stay silent, as on a shared RS-485 line, and unit 0 is a broadcast.
// Instrument is a line-oriented instrument (a scale, an analyser) that
// prints text frames from a template with changing values, by itself every
// interval (push mode) or in answer to a request string (query mode), and
// prints malformed frames on demand (Malform, Inject). For `bridge
// simulate` on a serial port: port, err := OpenSerial(cfg); then
// server.ServeRTU(ctx, port) or instrument.Serve(ctx, port), which close the
// port when ctx ends. With socat:
//
//	socat -d -d pty,raw,echo=0,link=/tmp/bridge pty,raw,echo=0,link=/tmp/device
//	# serve on /tmp/device, point the bridge's bus at /tmp/bridge
//
// # Faults
//
// Tests make a unit misbehave at run time with Server.SetFaults (a reply
// Delay, Silent, a forced Exception for everything, Garbage replies, a
// WrongTransactionID, one LateReply; on serial lines also Noise before a
// reply and Truncate), make ranges answer with an exception
// with Bank.SetException and Bank.MarkUnreadable, answer unknown units
// silently or with exception 0x0B (Config.UnknownUnit), and take the whole
// server away and back on the same port with Pause and Resume.
//
// # Values
//
// Generators (Fixed, Counter, Sine, RandomWalk, or any GeneratorFunc)
// compute a float64 per tick; Every calls an update function on a ticker.
// Encoding the values into registers is the caller's job (it uses the
// mapping codec, so the simulator and the bridge agree on byte orders).
//
// # Imports
//
// Standard library, go.bug.st/serial (OpenSerial) and the adapters package
// of ours (Table and exception codes) only. It must not import adapters/*,
// mapping, buffer, uplink, dm, hcl, badger or paho: it is the device, not
// the bridge, and must not share the bridge's Modbus code (a shared bug
// would go unnoticed; the CRC and LRC are computed here on their own).
//
// # Concurrency
//
// Every exported method of Server and Bank and every generator of this
// package is safe for concurrent use. Every goroutine the server starts
// (one accept loop per listening period, one per connection) ends by Close;
// held-back replies wait on a timer or the connection's closing, never in a
// bare sleep. Every ends when its context is done. ServeRTU, ServeASCII and
// Instrument.Serve run on the caller's goroutine with one reader goroutine
// each, and return (after it ended) when their context is done; ServeRTU
// and ServeASCII also when the Server is closed.
package simulator
