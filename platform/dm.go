package platform

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Response codes of the Device Management Protocol (protocol.md §7.8).
const (
	RCOK           = 200
	RCAccepted     = 202
	RCChanged      = 204
	RCBadRequest   = 400
	RCForbidden    = 403
	RCNotFound     = 404
	RCConflict     = 409
	RCInternal     = 500
	RCNotSupported = 501
)

// Limits of the DM emulation.
const (
	minLifetime      = 3600             // seconds; a non-zero Manage lifetime below it is rc 400
	maxLifetime      = 10 * 365 * 86400 // seconds; beyond it rc 400 (the platform states no maximum)
	maxDiagEntries   = 100              // error codes and log entries kept per device, oldest dropped
	maxBundleLen     = 255              // bundle and action IDs (protocol.md §1.2)
	dmSubscriptionID = -1               // inline subscription ID of the DM server (Subscribe uses positive IDs)
)

// The DM request topics an action name maps to, and the capability a device
// must have advertised in Manage (rule D2).
var builtinActions = map[string]struct{ rest, capability string }{
	"device/reboot":       {"mgmt/initiate/device/reboot", "deviceActions"},
	"device/factoryReset": {"mgmt/initiate/device/factory_reset", "deviceActions"},
	"firmware/download":   {"mgmt/initiate/firmware/download", "firmwareActions"},
	"firmware/update":     {"mgmt/initiate/firmware/update", "firmwareActions"},
}

// The deviceInfo attributes a Manage may set (protocol.md §7.5.1).
var deviceInfoKeys = map[string]bool{
	"serialNumber": true, "manufacturer": true, "model": true, "deviceClass": true,
	"description": true, "fwVersion": true, "hwVersion": true, "descriptiveLocation": true,
}

// DMState is what the device-management server emulation knows about a
// device (protocol.md §7). Location and diagnostics are kept for unmanaged
// devices too (rule D3).
type DMState struct {
	// Managed is true after a successful Manage until Unmanage or dormancy.
	Managed bool
	// ManagedBy is the client ID that sent the last Manage: the device's own
	// d: ID, or the g: ID of the gateway that manages it. DM requests go to
	// it and to nobody else (rule R3).
	ManagedBy string
	// Lifetime is the Manage lifetime; 0 means the device never goes dormant.
	Lifetime time.Duration
	// DormantAt is when the device becomes dormant (unmanaged) unless it sends
	// Manage again; zero when Lifetime is 0.
	DormantAt time.Time
	// Dormant is true once DormantAt passed without another Manage (rule
	// D7): the device is unmanaged and its mgmt.* attributes (Supports,
	// PendingAction, Observed, Firmware) are gone until the next Manage.
	Dormant bool
	// Manages counts the accepted Manage requests; after a reboot a test
	// waits for it to grow (rule D6).
	Manages int
	// PendingAction is device/reboot or device/factoryReset from the
	// device's 202 until its next Manage, which completes the action (D6).
	PendingAction string
	Supports      map[string]bool   // d.supports of the last Manage
	DeviceInfo    map[string]string // d.deviceInfo of the last Manage
	Metadata      json.RawMessage   // d.metadata of the last Manage, compact JSON
	Location      json.RawMessage   // d of the last location update, compact JSON
	ErrorCodes    []int             // diag.errorCodes, at most 100, oldest first
	Logs          []DiagLog         // diag.log, at most 100, oldest first
	// Observed are the attributes the platform observes: an observe was
	// answered 200 and no cancel since (protocol.md §7.6.1).
	Observed map[string]bool
	// Attributes holds the latest value of each attribute a device reported
	// in an observe response or a notify, compact JSON, by field name.
	Attributes map[string]json.RawMessage
	// Firmware is mgmt.firmware as the platform knows it: staged by a
	// device/update the device accepted (204), changed by notifies.
	Firmware Firmware
}

// Firmware is the mgmt.firmware attribute (protocol.md §7.7).
type Firmware struct {
	Version, Name, URI, Verifier string
	State                        int // FirmwareIdle, FirmwareDownloading, FirmwareDownloaded
	UpdateStatus                 int // FirmwareSuccess ... FirmwareInvalidURI
	UpdatedDateTime              string
}

// DiagLog is one diagnostic log entry (protocol.md §7.5.4).
type DiagLog struct {
	Message   string
	Timestamp string
	Severity  int
	Data      []byte
}

func (s DMState) clone() DMState {
	s.Supports = maps.Clone(s.Supports)
	s.DeviceInfo = maps.Clone(s.DeviceInfo)
	s.Metadata = bytes.Clone(s.Metadata)
	s.Location = bytes.Clone(s.Location)
	s.ErrorCodes = slices.Clone(s.ErrorCodes)
	s.Logs = slices.Clone(s.Logs)
	s.Observed = maps.Clone(s.Observed)
	s.Attributes = maps.Clone(s.Attributes)
	return s
}

// expire applies rule D7 at now: a managed device whose lifetime passed
// becomes dormant and loses its mgmt.* attributes.
func (s *DMState) expire(now time.Time) {
	if !s.Managed || s.DormantAt.IsZero() || now.Before(s.DormantAt) {
		return
	}
	s.Managed, s.Dormant = false, true
	s.Supports, s.PendingAction, s.Observed, s.Firmware = nil, "", nil, Firmware{}
	for name := range s.Attributes {
		if name == "mgmt" || strings.HasPrefix(name, "mgmt.") {
			delete(s.Attributes, name)
		}
	}
}

// dmServer emulates the platform's device-management server (rules D1–D4,
// R4): it consumes every iotdevice-1 message through an inline subscription,
// answers on iotdm-1/type/T/id/D/response (a device sees iotdm-1/response),
// and starts actions for DeviceAction.
type dmServer struct {
	p       *Platform
	bundles map[string]bool   // every known bundle ID (rule D1)
	defs    map[string]Bundle // declared bundles, by ID: custom actions are checked against them

	mu      sync.Mutex
	devices map[deviceKey]*DMState
	waiters map[string]*dmWaiter // by reqId

	fwWatch map[deviceKey]chan firmwareNotice // the running firmware action's notifies, by device

	pubMu    sync.RWMutex // one DM publication at a time (writers); SUBSCRIBEs of iotdm-1 filters (readers); see dmroute.go
	inFlight atomic.Pointer[dmDelivery]
}

// dmWaiter is a request waiting for its response: from device key, sent by
// the client target (rule R3).
type dmWaiter struct {
	key     deviceKey
	target  string
	onReply func(*DMState, Response) // applies a decoded response to the device's state, under dmServer.mu; may be nil
	ch      chan dmReply             // capacity 1
}

// dmReply is a decoded iotdevice-1/response, or the reason it did not decode.
type dmReply struct {
	resp Response
	err  error
}

func newDMServer(p *Platform, ids []string, defs []Bundle) *dmServer {
	s := &dmServer{p: p, bundles: map[string]bool{}, defs: map[string]Bundle{},
		devices: map[deviceKey]*DMState{}, waiters: map[string]*dmWaiter{},
		fwWatch: map[deviceKey]chan firmwareNotice{}}
	for _, b := range ids {
		s.bundles[b] = true
	}
	for _, b := range defs {
		s.bundles[b.ID] = true
		s.defs[b.ID] = b
	}
	return s
}

// handle is the inline subscription handler for iotdevice-1/#; it runs on
// the publisher's goroutine. Topics are qualified: R1 rewrote a device's.
func (s *dmServer) handle(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
	t, err := parseTopic(pk.TopicName, false)
	if err != nil || t.kind != kindDMDevice || !t.qualified {
		return
	}
	key := deviceKey{t.typ, t.id}
	if t.rest == "response" {
		s.reply(key, pk.Payload, pk.Origin)
		return
	}
	env, rc, msg := decodeEnvelope(pk.Payload)
	if rc == RCOK {
		if manager, ok := s.speaksFor(key, pk.Origin); !ok {
			rc, msg = RCConflict, "device is managed by another gateway"
			s.p.record(Violation{ClientID: pk.Origin, Rule: "R3", Action: ActionRejected, Code: CodeNotAuthorized,
				Detail: fmt.Sprintf("%s about %s/%s, which %s manages: rc 409", t.rest, t.typ, t.id, manager)})
		}
	}
	if rc == RCOK {
		rc, msg = s.apply(key, t.rest, env, pk.Origin)
	}
	if env.reqID == "" && rc == RCOK {
		return // nothing to correlate a response with (e.g. a notify without reqId)
	}
	s.respond(key, env.reqID, rc, msg, pk.Origin)
	s.p.log.Debug("dm request handled", "type", t.typ, "id", t.id, "request", t.rest, "rc", rc)
}

// apply carries out a device request with a well-formed envelope and
// returns the response code.
func (s *dmServer) apply(key deviceKey, rest string, env dmEnvelope, origin string) (int, string) {
	var (
		update func(*DMState)
		rc     = RCOK
		msg    string
	)
	switch rest {
	case "mgmt/manage":
		var m manageRequest
		m, rc, msg = decodeManage(env, s.bundles)
		update = func(st *DMState) {
			if st.PendingAction != "" {
				s.p.log.Info("device management action completed by manage", "type", key.typ, "id", key.id, "action", st.PendingAction)
			}
			st.Managed, st.ManagedBy, st.Lifetime, st.Dormant = true, origin, m.lifetime, false
			st.Manages++
			st.PendingAction = "" // rule D6
			st.DormantAt = time.Time{}
			if m.lifetime > 0 {
				st.DormantAt = s.p.now().Add(m.lifetime)
			}
			st.Supports, st.DeviceInfo, st.Metadata = m.supports, m.deviceInfo, m.metadata
		}
	case "mgmt/unmanage":
		update = func(st *DMState) { st.Managed = false }
	case "device/update/location":
		var loc json.RawMessage
		loc, rc, msg = decodeLocation(env)
		update = func(st *DMState) { st.Location = loc }
	case "add/diag/errorCodes":
		var code int
		code, rc, msg = decodeErrorCode(env)
		update = func(st *DMState) { st.ErrorCodes = appendBounded(st.ErrorCodes, code) }
	case "clear/diag/errorCodes":
		update = func(st *DMState) { st.ErrorCodes = nil }
	case "add/diag/log":
		var l DiagLog
		l, rc, msg = decodeLog(env)
		update = func(st *DMState) { st.Logs = appendBounded(st.Logs, l) }
	case "clear/diag/log":
		update = func(st *DMState) { st.Logs = nil }
	case "notify":
		var fields []Field
		fields, rc, msg = decodeNotify(env)
		update = func(st *DMState) { s.notified(key, st, fields, origin) }
	default: // parseTopic admits no other rest
		return RCBadRequest, "unknown request"
	}
	if rc != RCOK {
		return rc, msg
	}
	if _, ok := s.p.reg.device(key.typ, key.id); !ok {
		return RCNotFound, "device is not registered"
	}
	s.update(key, update)
	if rest == "mgmt/manage" || rest == "mgmt/unmanage" {
		s.p.log.Info("device management state changed", "type", key.typ, "id", key.id, "managed", rest == "mgmt/manage", "client_id", origin)
	}
	return RCOK, ""
}

func appendBounded[T any](list []T, v T) []T {
	if len(list) >= maxDiagEntries {
		list = slices.Delete(list, 0, len(list)-maxDiagEntries+1)
	}
	return append(list, v)
}

// respond publishes the DM server's response at QoS 1 to the client that
// sent the request (rule R3).
func (s *dmServer) respond(key deviceKey, reqID string, rc int, msg, target string) {
	b, _ := json.Marshal(struct {
		RC      int    `json:"rc"`
		Message string `json:"message,omitempty"`
		ReqID   string `json:"reqId,omitempty"`
	}{rc, msg, reqID}) // cannot fail
	if err := s.publish(key, "response", b, target); err != nil {
		s.p.log.Debug("dm response not sent", "type", key.typ, "id", key.id, "err", err)
	}
}

// reply routes a device's iotdevice-1/response to the request waiting for
// its reqId. Only the client the request was sent to may answer it (rule
// R3); anyone else's response is dropped and recorded.
func (s *dmServer) reply(key deviceKey, payload []byte, origin string) {
	reqID, resp, err := decodeResponse(payload)
	s.mu.Lock()
	w, ok := s.waiters[reqID]
	match := ok && w.key == key && w.target == origin
	if match {
		delete(s.waiters, reqID)
		if err == nil && w.onReply != nil {
			// Here rather than in the caller: the device's next message
			// (a notify, a Manage after a reboot) must find the state the
			// response created.
			if st := s.currentLocked(key); st != nil {
				w.onReply(st, resp)
			}
		}
	}
	s.mu.Unlock()
	switch {
	case ok && w.key == key && !match:
		s.p.record(Violation{ClientID: origin, Rule: "R3", Action: ActionDropped, Code: CodeNotAuthorized,
			Detail: fmt.Sprintf("response to request %s of %s/%s, which was sent to %s", short(reqID), key.typ, key.id, w.target)})
		return
	case !match:
		s.p.log.Debug("dm response without a request", "type", key.typ, "id", key.id, "req_id", short(reqID))
		return
	}
	w.ch <- dmReply{resp: resp, err: err}
}

func (s *dmServer) state(key deviceKey) (DMState, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.currentLocked(key)
	if st == nil {
		return DMState{}, false
	}
	return st.clone(), st.Managed
}

// currentLocked returns the state of key after rule D7 (s.mu held), nil
// when the DM server has heard nothing of the device.
func (s *dmServer) currentLocked(key deviceKey) *DMState {
	st := s.devices[key]
	if st != nil {
		was := st.Managed
		st.expire(s.p.now())
		if was && st.Dormant {
			s.p.log.Info("device went dormant", "type", key.typ, "id", key.id, "managed_by", st.ManagedBy)
		}
	}
	return st
}

// update changes the state of key under s.mu, creating it if needed.
func (s *dmServer) update(key deviceKey, f func(*DMState)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.currentLocked(key)
	if st == nil {
		st = &DMState{}
		s.devices[key] = st
	}
	f(st)
}

func (s *dmServer) forget(key deviceKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.devices, key)
}

// Managed returns what the device-management emulation knows about device
// typ/id and whether it is managed now (Manage accepted, no Unmanage since,
// not dormant). The state is a copy.
func (p *Platform) Managed(typ, id string) (DMState, bool) {
	return p.dm.state(deviceKey{typ, id})
}

// DeviceAction starts a device-management action the way the platform's
// REST API would (rule D2) and waits for the device's answer: it publishes
// the iotdm-1 request with a fresh UUID reqId at QoS 1 on
// iotdm-1/type/<typ>/id/<id>/<request> (a device sees iotdm-1/<request>, a
// gateway the qualified topic) and returns the rc of the matching
// iotdevice-1 response.
//
// action is one of device/reboot, device/factoryReset, firmware/download,
// firmware/update (no params; only the initiate request is sent, for tests
// of a device's answers: FirmwareDownload and FirmwareUpdate run the whole
// sequence of rule D5) or <bundleId>/<actionId> for a custom action, whose
// params become d.fields after the check against a declared bundle. The
// device must be managed and have advertised the capability
// (deviceActions, firmwareActions or the bundle ID), else ErrNotManaged or
// ErrUnsupportedAction; an unknown or malformed action, an unknown bundle
// or params the bundle does not allow are ErrInvalidAction. A 202 to a
// reboot or factory reset sets DMState.PendingAction (rule D6).
//
// DeviceAction waits until the response arrives, ctx is done (ctx.Err(); a
// device with a durable session that is offline still gets the request when
// it reconnects, as on the platform) or the platform closes (ErrClosed). A
// response without an integer rc is an error.
func (p *Platform) DeviceAction(ctx context.Context, typ, id, action string, params map[string]string) (int, error) {
	if p.quickstart {
		return 0, ErrQuickstart
	}
	rest, capability, params, err := p.dm.actionRequest(action, params)
	if err != nil {
		return 0, err
	}
	key, err := p.dmTarget(typ, id, capability)
	if err != nil {
		return 0, err
	}
	var pending func(*DMState, Response)
	if capability == "deviceActions" {
		pending = func(st *DMState, r Response) {
			if r.RC == RCAccepted {
				st.PendingAction = action // completed by the next Manage (rule D6)
			}
		}
	}
	resp, err := p.dmCall(ctx, key, rest, func(reqID string) []byte { return actionPayload(reqID, params) }, pending)
	if err != nil {
		return 0, fmt.Errorf("%s of %s/%s: %w", action, typ, id, err)
	}
	return resp.RC, nil
}

// actionRequest maps an action name to its request topic rest, the
// capability it needs and the parameters to send: for a custom action of a
// declared bundle (Config.Bundles) checked and completed with defaults. A
// bundle known only by ID (Config.ExtensionBundles) takes any parameters.
func (s *dmServer) actionRequest(action string, params map[string]string) (rest, capability string, send map[string]string, err error) {
	if a, ok := builtinActions[action]; ok {
		if len(params) > 0 {
			return "", "", nil, fmt.Errorf("%w: %s takes no parameters here", ErrInvalidAction, action)
		}
		return a.rest, a.capability, nil, nil
	}
	bundle, act, ok := strings.Cut(action, "/")
	if bundle == "device" || bundle == "firmware" {
		return "", "", nil, fmt.Errorf("%w: unknown built-in action %q", ErrInvalidAction, action)
	}
	if !ok || checkBundleIdent(bundle) != nil || checkBundleIdent(act) != nil {
		return "", "", nil, fmt.Errorf("%w: %q is neither a built-in action nor <bundleId>/<actionId>", ErrInvalidAction, action)
	}
	if !s.bundles[bundle] {
		return "", "", nil, fmt.Errorf("%w: unknown extension bundle %q (declare it in Config.Bundles)", ErrInvalidAction, bundle)
	}
	for name := range params {
		if checkBundleIdent(name) != nil {
			return "", "", nil, fmt.Errorf("%w: parameter name %q", ErrInvalidAction, short(name))
		}
	}
	send = params
	if def, ok := s.defs[bundle]; ok {
		if send, err = def.customParams(act, params); err != nil {
			return "", "", nil, err
		}
	}
	return "mgmt/custom/" + bundle + "/" + act, bundle, send, nil
}

// checkBundleIdent checks a bundle, action or parameter ID: 1 to 255
// characters of A-Z a-z 0-9 - _ . (protocol.md §1.2).
func checkBundleIdent(s string) error {
	if s == "" || len(s) > maxBundleLen {
		return fmt.Errorf("length %d, want 1 to %d", len(s), maxBundleLen)
	}
	for i := 0; i < len(s); i++ {
		if !identChar(s[i]) {
			return fmt.Errorf("character %q not allowed", s[i])
		}
	}
	return nil
}

// actionPayload is {"reqId": ...} plus, with params, d.fields sorted by name.
func actionPayload(reqID string, params map[string]string) []byte {
	type field struct {
		Field string `json:"field"`
		Value string `json:"value"`
	}
	req := struct {
		ReqID string `json:"reqId"`
		D     *struct {
			Fields []field `json:"fields"`
		} `json:"d,omitempty"`
	}{ReqID: reqID}
	if len(params) > 0 {
		req.D = &struct {
			Fields []field `json:"fields"`
		}{}
		names := slices.Sorted(maps.Keys(params))
		for _, n := range names {
			req.D.Fields = append(req.D.Fields, field{n, params[n]})
		}
	}
	b, _ := json.Marshal(req) // cannot fail
	return b
}

// newUUID returns a random (version 4) UUID string, as the SDKs use for reqId.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// dmEnvelope is a decoded DM message: {"reqId": "...", "d": {...}}, both
// optional (protocol.md §7.2). d holds d's members; it is nil when d is
// absent or null.
type dmEnvelope struct {
	reqID string
	d     map[string]json.RawMessage
}

// decodeEnvelope decodes a device's DM message. Anything but a JSON object
// with at most the members reqId (a string) and d (an object or null) is
// rc 400; the reqId is kept when it could be read, so the 400 can be
// correlated.
func decodeEnvelope(b []byte) (dmEnvelope, int, string) {
	var env dmEnvelope
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil || top == nil {
		return env, RCBadRequest, "message is not a JSON object"
	}
	if raw, ok := top["reqId"]; ok {
		if err := json.Unmarshal(raw, &env.reqID); err != nil {
			return env, RCBadRequest, "reqId is not a string"
		}
	}
	for k := range top {
		if k != "reqId" && k != "d" {
			return env, RCBadRequest, fmt.Sprintf("unknown member %q", short(k))
		}
	}
	if raw, ok := top["d"]; ok && !isNull(raw) {
		if err := json.Unmarshal(raw, &env.d); err != nil {
			return env, RCBadRequest, "d is not a JSON object"
		}
	}
	return env, RCOK, ""
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

// manageRequest is a decoded, valid Manage request (rule D1).
type manageRequest struct {
	lifetime   time.Duration
	supports   map[string]bool
	deviceInfo map[string]string
	metadata   json.RawMessage // compact
}

// decodeManage validates a Manage request's d (rule D1): lifetime 0 or
// 3600 s and more (rc 400 otherwise), supports a map of booleans whose keys
// are deviceActions, firmwareActions or a known bundle ID (rc 403 for any
// other key), deviceInfo a map of the documented string attributes,
// metadata an object; every member optional, no others (rc 400).
func decodeManage(env dmEnvelope, bundles map[string]bool) (manageRequest, int, string) {
	var m manageRequest
	for k, raw := range env.d {
		if isNull(raw) {
			continue
		}
		switch k {
		case "lifetime":
			var f float64
			if err := json.Unmarshal(raw, &f); err != nil || f != math.Trunc(f) || f < 0 || f > maxLifetime {
				return m, RCBadRequest, "lifetime must be a whole number of seconds"
			}
			if f > 0 && f < minLifetime {
				return m, RCBadRequest, fmt.Sprintf("lifetime must be 0 or at least %d seconds", minLifetime)
			}
			m.lifetime = time.Duration(f) * time.Second
		case "supports":
			if err := json.Unmarshal(raw, &m.supports); err != nil || m.supports == nil {
				return m, RCBadRequest, "supports must be an object of booleans"
			}
		case "deviceInfo":
			if err := json.Unmarshal(raw, &m.deviceInfo); err != nil || m.deviceInfo == nil {
				return m, RCBadRequest, "deviceInfo must be an object of strings"
			}
			for name := range m.deviceInfo {
				if !deviceInfoKeys[name] {
					return m, RCBadRequest, fmt.Sprintf("unknown deviceInfo attribute %q", short(name))
				}
			}
		case "metadata":
			var obj map[string]json.RawMessage
			if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
				return m, RCBadRequest, "metadata must be an object"
			}
			var buf bytes.Buffer
			_ = json.Compact(&buf, raw) // valid: it decoded
			m.metadata = buf.Bytes()
		default:
			return m, RCBadRequest, fmt.Sprintf("unknown member d.%s", short(k))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(m.supports)) {
		if name != "deviceActions" && name != "firmwareActions" && !bundles[name] {
			return m, RCForbidden, fmt.Sprintf("supports names unknown action set %q", short(name))
		}
	}
	return m, RCOK, ""
}

// decodeLocation validates a location update (protocol.md §7.5.3) and
// returns its d, compact.
func decodeLocation(env dmEnvelope) (json.RawMessage, int, string) {
	numbers := map[string]bool{"latitude": true, "longitude": true, "elevation": true, "accuracy": true}
	strs := map[string]bool{"measuredDateTime": true, "updatedDateTime": true}
	for k, raw := range env.d {
		var err error
		switch {
		case numbers[k]:
			var f float64
			err = json.Unmarshal(raw, &f)
		case strs[k]:
			var s string
			err = json.Unmarshal(raw, &s)
		default:
			return nil, RCBadRequest, fmt.Sprintf("unknown member d.%s", short(k))
		}
		if err != nil || isNull(raw) {
			return nil, RCBadRequest, fmt.Sprintf("d.%s has the wrong type", k)
		}
	}
	if env.d["latitude"] == nil || env.d["longitude"] == nil {
		return nil, RCBadRequest, "latitude and longitude are required"
	}
	b, _ := json.Marshal(env.d) // cannot fail: raw members that decoded
	return b, RCOK, ""
}

// decodeErrorCode validates an error-code addition: d.errorCode, an integer.
func decodeErrorCode(env dmEnvelope) (int, int, string) {
	var code int32
	raw, ok := env.d["errorCode"]
	if !ok || len(env.d) != 1 || json.Unmarshal(raw, &code) != nil || isNull(raw) {
		return 0, RCBadRequest, "d must hold exactly errorCode, an integer"
	}
	return int(code), RCOK, ""
}

// decodeLog validates a log addition: d.message (required), d.timestamp, d.data
// (base64) and d.severity (0, 1 or 2).
func decodeLog(env dmEnvelope) (DiagLog, int, string) {
	var l struct {
		Message   *string `json:"message"`
		Timestamp string  `json:"timestamp"`
		Data      string  `json:"data"`
		Severity  int     `json:"severity"`
	}
	for k := range env.d {
		switch k {
		case "message", "timestamp", "data", "severity":
		default:
			return DiagLog{}, RCBadRequest, fmt.Sprintf("unknown member d.%s", short(k))
		}
	}
	b, _ := json.Marshal(env.d)
	if err := json.Unmarshal(b, &l); err != nil || l.Message == nil {
		return DiagLog{}, RCBadRequest, "d.message (a string) is required; timestamp and data are strings, severity a number"
	}
	if l.Severity < 0 || l.Severity > 2 {
		return DiagLog{}, RCBadRequest, "severity must be 0, 1 or 2"
	}
	data, err := base64.StdEncoding.DecodeString(l.Data)
	if err != nil {
		return DiagLog{}, RCBadRequest, "data must be base64"
	}
	return DiagLog{Message: *l.Message, Timestamp: l.Timestamp, Severity: l.Severity, Data: data}, RCOK, ""
}

// decodeNotify validates a notify (protocol.md §7.5.5): d.fields, a
// non-empty list of {"field": name, "value": ...}, every value present; the
// mgmt.firmware attributes must have their documented types and ranges.
func decodeNotify(env dmEnvelope) ([]Field, int, string) {
	raw, ok := env.d["fields"]
	if !ok || len(env.d) != 1 {
		return nil, RCBadRequest, "d must hold exactly fields, a list of {field, value}"
	}
	fields, err := decodeFields(raw, true)
	if err != nil {
		return nil, RCBadRequest, err.Error()
	}
	if len(fields) == 0 {
		return nil, RCBadRequest, "d.fields is empty"
	}
	var fw Firmware
	for _, f := range fields {
		if err := fw.apply(f); err != nil {
			return nil, RCBadRequest, err.Error()
		}
	}
	return fields, RCOK, ""
}

// decodeResponse decodes a device's response (protocol.md §7.2): reqId,
// an integer rc, optionally message and d.fields.
func decodeResponse(b []byte) (reqID string, resp Response, err error) {
	var r struct {
		RC      *float64 `json:"rc"`
		ReqID   string   `json:"reqId"`
		Message string   `json:"message"`
		D       *struct {
			Fields json.RawMessage `json:"fields"`
		} `json:"d"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return "", resp, fmt.Errorf("response is not a JSON object with a string reqId and message: %v", err)
	}
	if r.RC == nil || *r.RC != math.Trunc(*r.RC) || *r.RC < 0 || *r.RC > 999 {
		return r.ReqID, resp, fmt.Errorf("response rc is missing or not a code")
	}
	resp.RC, resp.Message = int(*r.RC), r.Message
	if r.D != nil && r.D.Fields != nil && !isNull(r.D.Fields) {
		if resp.Fields, err = decodeFields(r.D.Fields, false); err != nil {
			return r.ReqID, resp, fmt.Errorf("response d.fields: %v", err)
		}
	}
	return r.ReqID, resp, nil
}
