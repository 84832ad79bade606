// Package platform is the strict local platform: an embeddable MQTT broker,
// built on github.com/mochi-mqtt/server/v2, that enforces the rules of the
// IBM Watson IoT Platform's MQTT service ("iot-2" protocol, see
// protocol.md §10) and offers an application-side Go API for tests and the
// demo (Subscribe, SendCommand, Violations, Stats).
//
// # Place and imports
//
// The platform stands in for the cloud at the far end of the bridge's uplink;
// `bridge platform` and `bridge demo` run it, and integration tests run it
// in-process on 127.0.0.1:0. It imports no other fieldbridge package and
// must not: only the standard library, mochi and gorilla/websocket (already
// a dependency of mochi); paho and go-cmp in tests only. Nothing of ours
// but cmd/bridge and tests should import it.
//
// # Topic model
//
// mochi's topic tree holds the application view only: every topic and every
// subscription in it is qualified (iot-2/type/T/id/D/...). A device's
// relative topics are translated at the edge: its publishes and filters are
// qualified on the way in (rules R1, R2), and messages to it are made
// relative again just before they are encoded (OnPacketEncode). A device's
// filters therefore only ever match its own topics, which is why devices
// never see each other's traffic. Subscribe and SendCommand work on the
// qualified view directly.
//
// # Rules and what a violation does
//
//   - C3 Client ID d:<org>:<type>:<id>, g:<org>:<type>:<id>, a:<org>:<appId>,
//     A:<org>:<appId>[:<instanceId>], segments of 1–36 characters
//     [A-Za-z0-9._-]. Malformed: CONNACK 2 (identifier rejected). A
//     well-formed ID of another org: CONNACK 5 (not authorized), following
//     the observed behaviour in protocol.md §2.10 rather than C3's inferred 2.
//   - C4 d:/g: need user name "use-token-auth" and the registered token of
//     (type, id); gateways connect only as g:, other devices only as d:.
//     Else CONNACK 5. C5 a:/A: need a registered API key and token, else
//     CONNACK 5. A will the client could not publish: CONNACK 5 (MQTT 5: the
//     reason codes 0x85/0x87 instead of 2/5).
//   - C6 quickstart (org "quickstart"): no credentials; only d: and a: (else
//     CONNACK 5); devices publish only events and only at QoS 0 — a QoS 1/2
//     publish disconnects (chosen over a silent downgrade, which would leave
//     the client waiting for a PUBACK); devices may not subscribe;
//     applications may not publish or subscribe to commands nor use "+" for
//     the device or app ID; optional event rate (QuickstartEventInterval):
//     excess events are acknowledged and dropped; SendCommand returns
//     ErrQuickstart.
//   - C7 a second connection with a client ID closes the older one (mochi's
//     session takeover); recorded as rule C7, code 288. Shared A: IDs are
//     taken over too (shared subscriptions are not emulated).
//   - P1 RETAIN is cleared on every inbound publish and will; nothing a
//     client sends is ever stored.
//   - P2 a payload above 131072 bytes (MaxPayload) disconnects; the message
//     is not delivered. mochi refuses any packet above 204799 bytes
//     (payload + longest topic + 8 KiB of properties) before reading it; that
//     is recorded as P2 too.
//   - P3 a device may publish only iot-2/evt/<e>/fmt/<f> and the nine
//     iotdevice-1/... topics of protocol.md §7.3; anything else disconnects.
//   - P5 an application may publish only qualified events and commands to a
//     valid type/id; anything else disconnects.
//   - P6 an empty topic, an empty level, a wildcard in a publish topic, a
//     misplaced wildcard in a filter, invalid UTF-8 or U+0000 disconnects
//     (also for gateways and in S3's SUBACK mode). Inbound MQTT 5 topic
//     aliases are not supported (topic alias maximum 0).
//   - S1 a device may subscribe only to iot-2/cmd/<c|+>/fmt/<f|+>,
//     iotdm-1/#, iotdm-1/mgmt/custom/# and the concrete iotdm-1 topics
//     (custom bundle/action may be "+"). S5 (this package's name) an
//     application may subscribe only to the filters of protocol.md §6.1.
//     S3 decides what a forbidden filter does: Config.OnForbiddenSubscribe
//     SubscribeDisconnect (default) or SubscribeFailure (SUBACK 0x80 for
//     that filter, the others are granted, the connection stays).
//   - S4 iotdm-1 subscriptions are granted at QoS ≤ 1.
//   - R1/R2 as described under Topic model.
//
// Interim gateway rules, until issue #5 brings P4, S2, notify and
// auto-registration: a gateway may publish qualified events and iotdevice-1
// messages, and subscribe to qualified commands, mon and iotdm-1 topics
// (plus iotdm-1/# and its own notify topic), for itself or any registered
// non-gateway device; messages to it are filtered the same way at delivery.
// A disallowed gateway publish is acknowledged and dropped (rule P4), a
// disallowed filter is rule S2 under S3's action. No notify message is sent
// and nothing is auto-registered. Not implemented yet: mon messages (Q4),
// offline queue limits (Q1), DM server emulation, rate quotas (P7) and
// in-flight limits (C9).
//
// iotdevice-1 messages are qualified like events; no MQTT client may
// subscribe to them, so only Subscribe sees them (the future DM emulation).
//
// # Extending (issue #5)
//
// policy.go has one method per client class and direction; P4/S2 replace
// gatewayPublish and gatewaySubscribe (and actFor's idea of a permitted
// device). Platform-generated messages (notify, mon, iotdm-1 requests) go
// through the inline client the way SendCommand does: RETAIN is cleared only
// for client publishes, so retained mon messages work, and an iotdm-1
// message published on the qualified topic reaches a device in relative form
// through OnPacketEncode. mon belongs in OnSessionEstablished and
// OnDisconnect, where C7's takeover is already known.
//
// Every enforcement is logged at Warn ("rule enforced") and kept in
// Violations with its rule, action and close code of protocol.md §2.10.
//
// # Registry file
//
// LoadRegistry reads a text file, one entry per line, fields separated by
// white space; "#" starts a comment, blank lines are ignored:
//
//	# kind    type / api key          id       token
//	device    pump                    P-17     s3cret-pump-17
//	gateway   edge-gw                 gw-01    gw-token-0001
//	apikey    a-ab12cd-q8w7e6r5t4              api-token-value
//
// Types and IDs are 1–36 characters of [A-Za-z0-9._-]; device tokens are
// 8–36 characters of [A-Za-z0-9._-!&@?*+()]; API keys must look like
// a-<org>-<random> (checked by New, which knows the org). Errors name the
// file and line. New does no I/O: a caller loads the file and copies the
// result into Config; Register, Unregister and RegisterAPIKey change the
// registry at run time. Tokens never appear in logs or errors.
//
// # Concurrency
//
// All methods of Platform and Subscription are safe for concurrent use. New
// does no I/O and starts no goroutines; Start binds the listeners (this
// package's own, see listener.go) and starts the goroutines: one per
// listener, two per connection, mochi's event loop. Run and Close stop them;
// Close returns only after every connection goroutine has ended, including
// connections that never sent CONNECT. Hooks run on mochi's connection
// goroutines; a Subscription's delivery runs on the publisher's goroutine and
// never blocks (a full channel drops and counts).
package platform
