// Package uplink owns the MQTT session with the platform: connecting and
// reconnecting, publishing with an acknowledgement the caller can trust,
// subscriptions dispatched to a Handler, and the connection state. It also
// owns the platform's identity and topic rules for every mode: client ids
// (d:/g:), event, command and notify topics, the character rules for ids
// (used by config validation), the messaging host name and the payload limit.
//
// Place in the pipeline: the buffer's forward loop calls Client.Publish and
// deletes an event only after a nil result; inbound commands and
// device-management requests go to a Handler (the dm package, wired in
// cmd/bridge). In device mode the bridge runs one Client per device, in
// gateway mode one Client for the gateway.
//
// Imports: no package of ours (its tests use internal/mqtttest); not
// badger, not hcl. The paho client stays inside this package: no paho type
// or error crosses its API.
//
// # What a nil result means
//
// Run gives every connection its own paho client, with paho's
// AutoReconnect off, and never reuses it; a paho client thus sees exactly
// one connection, and its tokens can only be completed by what happened on
// it. On top of that each connection has an epoch; a publish is reported
// acknowledged only when its token completed without error while the
// connection it was written to was still the latest one. Everything else
// (connection lost, timeout, ctx) is an error, and the caller keeps the
// message: delivery is at least once, duplicates are possible.
//
// # Reconnecting
//
// After a failed attempt or a lost connection Run waits a jittered,
// exponentially growing time, at most Config.MaxBackoff (default 10 s), and
// the long Config.LongBackoff after a refusal or a suspected client id
// takeover (ErrTakeover: three connections in a row closed by the broker
// within Config.StableAfter, with no failed attempt between them; a failed
// attempt shows the broker was gone, as in a restart, which no takeover
// does). Clients of one broker may
// share a Reachability (Config.Reachable): when one of them connects, the
// others waiting after a failure try again within a second, so that after
// an outage every device connection is back together. A woken attempt that
// fails waits its own backoff, so a Client that keeps failing does not retry
// on every other Client's connection.
//
// # Concurrency
//
// Publish, Connected and Run are safe for concurrent use; Run must be called
// once. Publish never blocks: it queues the message, and a pump goroutine
// per connection hands the queue to paho in call order while at most
// Config.MaxInflight messages are unacknowledged (the platform closes a
// device connection with more than 10), and settles each written message
// from its paho token, oldest first. The pump runs only while something is
// queued or unacknowledged. A publish costs no goroutine, timer or context
// of its own: Run's goroutine keeps one Config.AckTimeout timer per
// connection (for the oldest unsettled publish) and watches each distinct
// publish ctx once per connection (publish.go). Publish keeps the payload
// slice until its result arrives. The connection's writes go through a
// gather (gather.go): while the pump hands paho a run of queued messages,
// their PUBLISH packets share one write(2); anything else, and a lone
// message, is written at once. Handler.HandleMessage is called from one
// goroutine at a time, in arrival order; that dispatcher runs only while a
// received message waits. Config.OnStateChange is called from Run's
// goroutine. Every goroutine is started by Run or by Publish and has ended
// when Run returns. A connected, idle Client costs Run's goroutine and
// paho's ten (TestGoroutinesPerClient).
//
// # Secrets
//
// The password (the device or gateway token) is sent in CONNECT and nowhere
// else: it is not logged and not part of any error.
package uplink
