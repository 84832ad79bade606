// Package platform is the strict local platform: an embeddable MQTT broker,
// built on github.com/mochi-mqtt/server/v2, that enforces the rules of the
// IBM Watson IoT Platform's MQTT service ("iot-2" protocol, see
// protocol.md §10) and offers an application-side Go API for tests, the demo
// and `bridge platform` (Subscribe, SendCommand, DeviceAction, Observe,
// Cancel, UpdateAttributes, FirmwareDownload, FirmwareUpdate, Managed,
// Device, Violations, Stats, APIHandler).
//
// # Place and imports
//
// The platform stands in for the cloud at the far end of the bridge's uplink;
// `bridge platform` and `bridge demo` run it, and integration tests run it
// in-process on 127.0.0.1:0. It imports no other fieldbridge package and
// must not: only the standard library, mochi and gorilla/websocket (already
// a dependency of mochi); paho and go-cmp in tests only. net/http serves
// APIHandler; the caller owns the HTTP server. Nothing of ours
// but cmd/bridge and tests should import it.
//
// # Topic model
//
// mochi's topic tree holds the application view only: every topic and every
// subscription in it is qualified (iot-2/type/T/id/D/...). A device's
// relative topics are translated at the edge: its publishes and filters are
// qualified on the way in (rules R1, R2), and messages to it are made
// relative again just before they are encoded (OnPacketEncode), which also
// covers messages queued while it was offline. A device's filters therefore
// only ever match its own topics, which is why devices never see each
// other's traffic. Subscribe, SendCommand and the platform's own messages
// (mon, notify, iotdm-1) work on the qualified view directly; the latter
// come from the inline client "platform" (Message.ClientID).
//
// # Rules and what a violation does
//
// Connection
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
//     excess events are acknowledged and dropped; SendCommand and
//     DeviceAction return ErrQuickstart; no device management.
//   - C7 a second connection with a client ID closes the older one (mochi's
//     session takeover); recorded as rule C7, code 288, and reported by a
//     mon Disconnect with CloseCode 288 before the newer Connect. Shared A:
//     IDs are taken over too (shared subscriptions are not emulated).
//
// Publish
//
//   - P1 RETAIN is cleared on every inbound publish and will; nothing a
//     client sends is ever stored.
//   - P2 a payload above 131072 bytes (MaxPayload) disconnects; the message
//     is not delivered. mochi refuses any packet above 204799 bytes
//     (payload + longest topic + 8 KiB of properties) before reading it; that
//     is recorded as P2 too.
//   - P3 a device may publish only iot-2/evt/<e>/fmt/<f> and the nine
//     iotdevice-1/... topics of protocol.md §7.3; anything else disconnects.
//   - P4 a gateway may publish iot-2/type/<t>/id/<i>/evt/<e>/fmt/<f> and
//     iotdevice-1/type/<t>/id/<i>/<dm-topic> for itself or a device it may
//     act for: any registered device that is not a gateway (resource groups
//     are not emulated). An unknown device is registered automatically
//     (random token; Stats.AutoRegistered) if the gateway's Device.Role is
//     RolePrivileged, the default, and rejected if it is RoleStandard.
//     Anything else — another gateway, an invalid type or ID, commands,
//     relative topics — is rejected: acknowledged, dropped, and reported on
//     the gateway's notify topic; the connection stays. Registration is
//     immediate, so the platform's limit of 128 pending registrations per
//     gateway is never reached.
//   - P5 an application may publish only qualified events and commands to a
//     valid type/id; anything else (iotdm-1, mon, notify, ...) disconnects.
//   - P6 an empty topic, an empty level, a wildcard in a publish topic, a
//     misplaced wildcard in a filter, invalid UTF-8 or U+0000 disconnects
//     (also gateways, which get a notify message first, and also in S3's
//     SUBACK mode). Inbound MQTT 5 topic aliases are not supported (topic
//     alias maximum 0).
//
// Subscribe
//
//   - S1 a device may subscribe only to iot-2/cmd/<c|+>/fmt/<f|+>,
//     iotdm-1/#, iotdm-1/mgmt/custom/# and the concrete iotdm-1 topics
//     (custom bundle/action may be "+").
//   - S2 a gateway may subscribe to iot-2/type/<t|+>/id/<i|+>/cmd/<c|+>/fmt/<f|+>,
//     iot-2/type/<t|+>/id/<i|+>/mon, iotdm-1/type/<t|+>/id/<i|+>/# and the
//     concrete qualified iotdm-1 topics for itself or a device it may act
//     for, to plain iotdm-1/# and to its own notify topic. Messages are
//     delivered only for itself and permitted devices (never for another
//     gateway or an unregistered device). A concrete unknown device is
//     registered automatically as under P4; a refused filter gets a notify
//     message (Request "subscribe") and S3's action.
//   - S5 (this package's name) an application may subscribe only to the
//     filters of protocol.md §6.1.
//   - S3 decides what a forbidden filter does: Config.OnForbiddenSubscribe
//     SubscribeDisconnect (default) or SubscribeFailure (SUBACK 0x80 for
//     that filter, the others are granted, the connection stays).
//   - S4 iotdm-1 subscriptions are granted at QoS ≤ 1; mon is published at
//     QoS 0.
//
// Routing
//
//   - R1/R2 as described under Topic model.
//   - R3 every iotdm-1 message concerns one device and goes to one client:
//     a DM server response to the client that sent the request, a request
//     to the device's manager, the sender of its latest accepted Manage
//     (DMState.ManagedBy: the device's own d: connection or a gateway).
//     Nobody else receives it, whatever it subscribed to: a gateway on
//     iotdm-1/# or iotdm-1/type/+/id/+/# sees only its own devices' DM
//     traffic, and a device managed through a gateway sees none of its own
//     on a direct connection. The same holds for messages queued for
//     offline durable sessions. While a gateway manages a device, DM
//     requests about it (Manage included) from any client but that gateway
//     and the device itself get rc 409 (a gateway may take over a device
//     that manages itself); a response from a client the request was not
//     sent to is dropped. Both are recorded as R3 (actions rejected and
//     dropped). dmroute.go says how delivery is decided per
//     message.
//   - R4 iotdevice-1 messages are consumed by the DM server emulation; no
//     MQTT client may subscribe to them, so only Subscribe sees them too.
//
// Sessions and status
//
//   - Q1 a client connecting with clean session false (MQTT 5: a session
//     expiry interval above 0) keeps its subscriptions while offline, and
//     QoS ≥ 1 messages for it (commands, iotdm-1 requests, at the QoS they
//     would have been delivered with) are queued: at most QueueLimit (50)
//     per subscription, the oldest dropped when full; older than QueueMaxAge
//     (48 h) or past their MQTT 5 message expiry dropped. They are delivered
//     in order on reconnect, after the CONNACK. Clean session true discards
//     the old session and its queue. A gateway's queue holds messages for
//     its devices and belongs to its client ID (Q3). mochi keeps messages
//     that were in flight when the connection dropped and resends them
//     itself (see queue.go for why the queue is the platform's own).
//   - Q4 status messages (type Status) on iot-2/type/<T>/id/<D>/mon for
//     devices and gateways: Connect (retained), Disconnect (retained, with
//     CloseCode and Reason unless the client sent DISCONNECT: 91 network,
//     93 shutdown, 160 keepalive, 180/276/287 rules, 288 takeover) and
//     FailedConnect (not retained, for a refused client ID of the served
//     org). Applications on iot-2/app/<appId>/mon: Connect retained until
//     the Disconnect, which is not retained and clears it. Applications and
//     gateways (for permitted devices) subscribe to them under S5 and S2.
//
// Device management (protocol.md §7 and §8)
//
//   - D1 Manage: a JSON object {"reqId", "d"} (else rc 400), d.lifetime 0
//     or ≥ 3600 s (400), d.supports booleans named deviceActions,
//     firmwareActions or a known bundle (Config.Bundles or
//     Config.ExtensionBundles; else 403), d.deviceInfo the documented
//     string attributes, d.metadata an object (400), a registered device
//     (404); else 200 and the state is recorded (Managed, DMState).
//   - D2 requests go only to a managed device that advertised the
//     capability (deviceActions for reboot and factory reset,
//     firmwareActions for the firmware actions, the bundle ID for its
//     custom actions; observe, cancel and device/update need Manage only),
//     with a fresh UUID reqId at QoS 1; the caller waits for the matching
//     iotdevice-1/response. An rc the protocol does not document for the
//     request (e.g. 200 to a reboot, 202 to a custom action; 400 is always
//     allowed) is returned and recorded as D2 (action recorded).
//     DeviceAction sends one initiate or custom
//     request; Observe, Cancel, UpdateAttributes (with reqId) and
//     PushAttributes (without, no answer) the other requests.
//   - D3 location, error codes, logs and notify are accepted (200) from
//     managed and unmanaged devices alike, after validation (400). A notify
//     is d.fields [{field, value}], mgmt.firmware values with their
//     documented types and ranges; values are kept in DMState.Attributes
//     and DMState.Firmware.
//   - D4 Unmanage: 200; no more requests until the next Manage.
//   - D5 FirmwareDownload and FirmwareUpdate run the sequences of
//     protocol.md §7.7: stage mgmt.firmware with device/update (204), observe
//     mgmt.firmware (200), initiate (202), follow the notifies to state 2 or
//     a failure (download) or to updateStatus 0 or a failure (update), and
//     cancel the observation (200) — also after a failure, once observe
//     succeeded. FirmwareResult lists every rc and each notified
//     state/updateStatus. One firmware action per device at a time (ErrBusy).
//   - D6 a 202 to reboot or factory reset leaves DMState.PendingAction set
//     until the device's next Manage, which completes it.
//   - D7 a managed device whose lifetime passes without another Manage is
//     dormant: unmanaged, DMState.Dormant, mgmt.* attributes removed.
//     Config.Now replaces the clock so tests can let a lifetime pass.
//   - N1 (this package's name) a notify of an attribute the platform does
//     not observe is answered 200 (no other rc is documented) and recorded.
//   - Custom actions (§8): a bundle declared in Config.Bundles (or a bundle
//     file, ReadBundles: the platform's package JSON, one object or a list)
//     lists its actions and their parameters; DeviceAction refuses unknown
//     bundles, actions and parameters, missing required ones and values
//     that do not match the parameter's regular expression
//     (ErrInvalidAction), and fills in default values.
//
// The DM server answers on iotdm-1/type/T/id/D/response (a device sees
// iotdm-1/response, a gateway the qualified topic) when the request has a
// reqId or was malformed.
//
// APIHandler serves the same actions over HTTP for other processes
// (`bridge platform action`): POST /api/v0002/mgmt/requests with the
// platform's request body for one device, basic auth with a registered API
// key, answered when the action has ended (the platform's REST API answers
// at once; waiting suits tests and shells).
//
// Not emulated: P7 rate quotas, C8 keepalive clamping for A:, C9 in-flight
// and subscription limits, resource groups, the retry pause after a failed
// auto-registration, REST request timeouts and cancellation (the caller's
// ctx stands in), shared subscriptions.
//
// Every enforcement is logged at Warn ("rule enforced") and kept in
// Violations with its rule, action and close code of protocol.md §2.10.
//
// # Extending
//
// policy.go has one method per client class and direction; it is pure apart
// from registry lookups, and a decision's register flag asks the hook to
// auto-register. Platform-generated messages go through publishPlatform
// (the inline client "platform"): RETAIN is cleared only for client
// publishes, and retained messages are stored first and published live
// without RETAIN. Anything published with QoS ≥ 1 is queued for offline
// durable sessions by OnPublish, whoever published it.
//
// # Registry file
//
// LoadRegistry reads a text file, one entry per line, fields separated by
// white space; "#" starts a comment, blank lines are ignored:
//
//	# kind    type / api key          id       token            [role]
//	device    pump                    P-17     s3cret-pump-17
//	gateway   edge-gw                 gw-01    gw-token-0001
//	gateway   edge-gw                 gw-02    gw-token-0002    standard
//	apikey    a-ab12cd-q8w7e6r5t4              api-token-value
//
// A gateway's role is privileged (the default) or standard. Types and IDs
// are 1–36 characters of [A-Za-z0-9._-]; device tokens are 8–36 characters
// of [A-Za-z0-9._-!&@?*+()]; API keys must look like a-<org>-<random>
// (checked by New, which knows the org). Errors name the file and line. New
// does no I/O: a caller loads the file and copies the result into Config;
// Register, Unregister and RegisterAPIKey change the registry at run time.
// Tokens never appear in logs or errors.
//
// LoadBundles reads a bundle file (see Device management); it is the
// other function that reads files.
//
// # Sending commands from another process
//
// An application connects as a:<org>:<appId> with a registered API key as
// user name and its token as password, and publishes at QoS 1 to
// CommandTopic(type, id, command, format). In-process, SendCommand does the
// same as a:<org>:<AppID>.
//
// # Concurrency
//
// All methods of Platform and Subscription are safe for concurrent use. New
// does no I/O and starts no goroutines; Start binds the listeners (this
// package's own, see listener.go) and starts the goroutines: one per
// listener, two per connection, mochi's event loop. Run and Close stop them;
// Close returns only after every connection goroutine has ended, including
// connections that never sent CONNECT. Hooks run on mochi's connection
// goroutines; a Subscription's delivery and the DM server run on the
// publisher's goroutine and never block (a full channel drops and counts).
// DeviceAction, Observe, Cancel, UpdateAttributes and the firmware actions
// block their caller until the answer, ctx or Close. The DM server
// publishes one iotdm-1 message at a time (R3).
package platform
