package simulator

import "errors"

// Errors returned by Bank accessors and by the Server's life-cycle methods.
var (
	// ErrOutOfRange means an address range does not lie inside the table
	// (or the table was left out of the bank).
	ErrOutOfRange = errors.New("address range outside the table")

	// ErrWrongTable means a register accessor was used on a bit table
	// (coils, discrete inputs) or a bit accessor on a register table, or
	// the table is not one of the four Modbus tables.
	ErrWrongTable = errors.New("wrong table for this access")

	// ErrServerClosed is returned by Start, Serve and Resume after Close.
	ErrServerClosed = errors.New("simulator server closed")

	// ErrAlreadyStarted is returned by Start and Serve when the server is
	// already listening (or paused after it listened).
	ErrAlreadyStarted = errors.New("simulator server already started")

	// ErrNotStarted is returned by Pause and Resume before Start or Serve.
	ErrNotStarted = errors.New("simulator server not started")
)
