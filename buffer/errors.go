package buffer

import "errors"

// Errors returned by Store. Callers branch with errors.Is; the returned error
// may wrap the sentinel with detail.
var (
	// ErrClosed is returned by every method called after Close, and by
	// Forward when the Store is closed under it.
	ErrClosed = errors.New("buffer: closed")
	// ErrFull is returned by Append under the drop_newest policy when the
	// event does not fit in MaxBytes. The event is not stored, no seq is
	// consumed, and the refusal is counted as dropped.
	ErrFull = errors.New("buffer: full")
	// ErrTooLarge is returned by Append for a payload above MaxPayload. The
	// event is never queued and no seq is consumed.
	ErrTooLarge = errors.New("buffer: payload too large")
	// ErrDiskFull is returned by Append when the file system holding the
	// buffer has less than Config.MinFree available. The event is not
	// stored; its seq is consumed (receivers see the gap) and it is counted
	// in QueueStats.Failed. Appends succeed again once space returns.
	ErrDiskFull = errors.New("buffer: not enough free disk space")
)
