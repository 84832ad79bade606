package serialline

import (
	"time"

	"fieldbridge/adapters/serialport"
)

// Port is the byte stream of a serial-line bus; see serialport.Port for its
// contract. In addition, Write may be called while a Read is blocked (push
// mode reads all the time).
type Port = serialport.Port

// minReadWindow is the least time a read is given, even when its deadline
// has passed: some ports (os.File, net.Conn) fail a read whose deadline has
// passed without looking at the bytes already received.
const minReadWindow = 100 * time.Microsecond

// newLine validates the serial settings of cfg with the defaults of text
// instruments: DefaultBaud, 8 data bits, no parity, one stop bit.
func newLine(cfg Config) (serialport.Settings, error) {
	s := serialport.Settings{Path: cfg.Port, Baud: cfg.Baud, DataBits: cfg.DataBits, Parity: cfg.Parity, StopBits: cfg.StopBits}
	return s.Check(serialport.Settings{Baud: DefaultBaud, DataBits: 8, Parity: serialport.ParityNone, StopBits: 1})
}

var (
	isTimeout = serialport.IsTimeout
	closePort = serialport.Close
)
