// Package modbus implements adapters.Bus for Modbus: TCP (NewTCP), RTU on a
// serial line (NewRTU), RTU frames over a TCP connection to a serial device
// server (NewRTUOverTCP) and ASCII on a serial line (NewASCII). It owns the
// connection or port, splitting requests within protocol limits, register
// encoding on the wire, the translation of goburrow/modbus errors into the
// adapters errors, and the recovery rules.
//
// # TCP
//
// After a timeout or a reply that does not match its request the
// connection is closed, so a late reply can never be taken as the answer to
// the next request.
//
// # Serial framings
//
// RTU and ASCII use goburrow's packagers (request encoding, CRC/LRC and
// unit checks) with a transporter of ours on go.bug.st/serial, written
// against Port (an io.ReadWriter with a read deadline) so that its frame
// readers run on net.Pipe, pseudo-terminals and fuzzers alike. goburrow's
// own serial transport sleeps for a computed frame time and uses another
// serial library; ours does not:
//
//   - Before each request it waits until the line has been quiet for the
//     3.5-character time (1.75 ms above 19200 baud; on RTU only) and drops
//     whatever arrives meanwhile: the tail of a late reply, noise.
//   - It reads the reply as its bytes arrive and ends it as soon as its
//     expected length is there (from the function code and byte count;
//     exceptions are 5 bytes). A silence of RTUConfig.Silence (default the
//     3.5-character time) ends a frame that stopped short.
//   - It checks the CRC (LRC), the unit id and the function code. Noise
//     before a reply is skipped byte by byte until a frame with the right
//     header, length and CRC begins, so it does not hide the reply.
//
// Outcomes: no reply by the timeout wraps adapters.ErrTimeout (one timeout
// per request; the loop then skips the device's other ranges and backs it
// off); a wrong CRC or LRC, a truncated reply, a reply from another unit or
// with another function wraps adapters.ErrBadFrame; an exception reply is an
// *adapters.ExceptionError; a port that cannot be opened or fails (an
// unplugged USB adapter) wraps adapters.ErrNotConnected and is opened again
// by the next request. Unlike TCP, a timeout does not close the port: there
// is no transaction id to resynchronise, the quiet-line wait does that.
// After three timeouts in a row with not a byte received the port is
// reopened anyway, which revives a re-plugged adapter or a half-dead device
// server connection. Stats counts requests, timeouts, bad frames,
// exceptions, discarded bytes and opens.
//
// Not supported: broadcast (unit 0) requests, which get no reply and so
// time out; RS-485 adapters that echo the master's own bytes.
//
// # Imports
//
// adapters and adapters/serialport of ours, plus github.com/goburrow/modbus (imported as mb)
// (the serial port itself is in serialport). It must not import mapping, buffer, uplink, dm, hcl,
// badger or paho.
//
// # Concurrency
//
// A *TCP, *RTU or *ASCII is used by the one goroutine of the adapters.Loop
// that owns its bus; it is not safe for concurrent use, except Stats. A
// request whose context is cancelled ends at once: the port is closed from
// the context's goroutine, and the next request opens it again.
package modbus
