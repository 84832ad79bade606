package uplink

import "errors"

// Errors reported by Publish (through its result channel), by Run's state
// callback, and by New. Branch on them with errors.Is; the values may be
// wrapped with detail.
var (
	// ErrNotConnected: Publish was called while there was no open
	// connection. Nothing was sent.
	ErrNotConnected = errors.New("uplink: not connected")

	// ErrConnectionLost: the connection the message was accepted on ended
	// before the broker acknowledged it. The message may or may not have
	// reached the broker; publish it again (duplicates are allowed).
	ErrConnectionLost = errors.New("uplink: connection lost before acknowledgement")

	// ErrTooLarge: the payload is larger than MaxPayload. Nothing was sent;
	// the platform would close the connection for it.
	ErrTooLarge = errors.New("uplink: payload larger than 131072 bytes")

	// ErrInvalidTopic: a topic or subscription filter breaks MQTT's rules.
	// Nothing was sent; the platform would close the connection for it.
	ErrInvalidTopic = errors.New("uplink: invalid topic")

	// ErrAckTimeout: the broker did not acknowledge the message within
	// Config.AckTimeout of the Publish call. The message may or may not have
	// reached the broker.
	ErrAckTimeout = errors.New("uplink: no acknowledgement in time")

	// ErrBusy: Config.MaxPending publishes are already waiting for their
	// result. Nothing was sent; retry after some results have arrived.
	ErrBusy = errors.New("uplink: too many publishes pending")

	// ErrNotAuthorized: the broker refused the connection with CONNACK
	// return code 5 (not authorized) or 4 (bad user name or password): a
	// wrong token, an unregistered device, or a wrong organisation. Run
	// retries only after Config.LongBackoff.
	ErrNotAuthorized = errors.New("uplink: broker refused the credentials (not authorized)")

	// ErrIdentifierRejected: the broker refused the client id (CONNACK
	// return code 2). Run retries only after Config.LongBackoff.
	ErrIdentifierRejected = errors.New("uplink: broker rejected the client id")

	// ErrTakeover: the broker closed the connection several times in a row
	// shortly after it was established. On the platform this is what a
	// client-id takeover looks like: another client (a second bridge with
	// the same configuration?) connects with the same client id and the
	// platform closes the older connection each time (close code 288). It is
	// also what a broker does that rejects something this client sends
	// straight after connecting. Run retries only after Config.LongBackoff.
	ErrTakeover = errors.New("uplink: connection closed by the broker repeatedly right after connecting (client id in use elsewhere?)")
)
