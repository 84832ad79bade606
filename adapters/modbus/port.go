package modbus

import (
	"time"

	"fieldbridge/adapters/serialport"
)

// Port is the byte stream under a serial framing (RTU or ASCII); see
// serialport.Port for its contract.
type Port = serialport.Port

// Serial line settings shared by RTU and ASCII.
const (
	ParityNone = serialport.ParityNone
	ParityEven = serialport.ParityEven
	ParityOdd  = serialport.ParityOdd
)

// newLineSettings validates and completes the settings of a serial port
// with the Modbus serial line specification's defaults: 19200 baud, even
// parity, one stop bit.
func newLineSettings(port string, baud, dataBits int, parity string, stopBits int, defaultDataBits int) (serialport.Settings, error) {
	s := serialport.Settings{Path: port, Baud: baud, DataBits: dataBits, Parity: parity, StopBits: stopBits}
	return s.Check(serialport.Settings{Baud: 19200, DataBits: defaultDataBits, Parity: ParityEven, StopBits: 1})
}

// t35 is the RTU inter-frame silence: 3.5 character times, fixed at 1.75 ms
// above 19200 baud (Modbus over serial line v1.02, §2.5.1.1).
func t35(s serialport.Settings) time.Duration {
	if s.Baud > 19200 {
		return 1750 * time.Microsecond
	}
	return s.CharTime() * 7 / 2
}

var (
	isTimeout = serialport.IsTimeout
	closePort = serialport.Close
)
