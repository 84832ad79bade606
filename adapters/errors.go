package adapters

import (
	"errors"
	"fmt"
)

// Sentinel errors that Bus implementations return (wrapped) so that the bus
// loop and the status reports can tell transport trouble from a device that
// answered "no".
var (
	// ErrTimeout means the device did not answer in time. The bus loop treats
	// the connection as suspect: a TCP connection is closed and reopened so
	// that a late reply is never taken as the answer to the next request.
	ErrTimeout = errors.New("device did not answer in time")

	// ErrBadFrame means a reply could not be parsed or did not belong to the
	// request (wrong transaction id, unit id, function code, length or CRC).
	// The connection is reset like after a timeout.
	ErrBadFrame = errors.New("malformed or mismatched reply")

	// ErrNotConnected means the bus is down (connect failed or the link broke).
	ErrNotConnected = errors.New("bus not connected")

	// ErrClosed is returned by Loop.Write after the loop stopped.
	ErrClosed = errors.New("bus loop stopped")

	// ErrUnknownOutcome means a write was sent (or may have been) but no
	// confirmation came back: a timeout, a malformed reply, or the caller
	// giving up while the write was on the bus. The device may or may not
	// have acted on it. Such a write is never retried by the bridge.
	ErrUnknownOutcome = errors.New("unknown outcome: the write may or may not have been applied")

	// ErrDeviceDown is returned at once by Loop.Write and Loop.Read for a
	// device whose last poll cycle found it unreachable: nothing is sent.
	ErrDeviceDown = errors.New("device is down")
)

// ExceptionError is a Modbus exception response: the device is reachable and
// answered, but refused the request (illegal address, busy, ...).
type ExceptionError struct {
	Function byte
	Code     byte
}

// Exception codes from the Modbus application protocol, §7.
const (
	ExIllegalFunction   byte = 0x01
	ExIllegalAddress    byte = 0x02
	ExIllegalValue      byte = 0x03
	ExDeviceFailure     byte = 0x04
	ExAcknowledge       byte = 0x05
	ExDeviceBusy        byte = 0x06
	ExGatewayPath       byte = 0x0A
	ExGatewayNoResponse byte = 0x0B
)

var exceptionNames = map[byte]string{
	ExIllegalFunction:   "illegal function",
	ExIllegalAddress:    "illegal data address",
	ExIllegalValue:      "illegal data value",
	ExDeviceFailure:     "server device failure",
	ExAcknowledge:       "acknowledge",
	ExDeviceBusy:        "server device busy",
	ExGatewayPath:       "gateway path unavailable",
	ExGatewayNoResponse: "gateway target device failed to respond",
}

func (e *ExceptionError) Error() string {
	name, ok := exceptionNames[e.Code]
	if !ok {
		name = "unknown exception"
	}
	return fmt.Sprintf("modbus exception %d (%s) on function %d", e.Code, name, e.Function)
}

// IsTransport reports whether err means the device could not be reached or
// its reply could not be trusted, as opposed to an answer that refused the
// request. A device whose every range fails with a transport error is down.
func IsTransport(err error) bool {
	return errors.Is(err, ErrTimeout) || errors.Is(err, ErrBadFrame) || errors.Is(err, ErrNotConnected)
}
