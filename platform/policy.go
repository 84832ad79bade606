package platform

import "fmt"

// Close codes of protocol.md §2.10, reported in Violation.Code.
const (
	CodeClientIDInvalid = 166 // client ID not valid
	CodeNotAuthorized   = 180 // connection or an action in it not authorised
	CodeTopicInvalid    = 276 // topic name or filter not valid
	CodeTooLarge        = 287 // message too large for the endpoint
	CodeClientIDReused  = 288 // client ID reused by a newer connection
)

// MaxPayload is the largest publish payload the platform accepts (rule P2).
const MaxPayload = 131072

// verdict is what the platform does with one publish or one subscription.
type verdict uint8

const (
	allow      verdict = iota
	drop               // publish: acknowledge, do not deliver, keep the connection
	forbid             // subscribe: rule S3 decides (disconnect or SUBACK failure)
	disconnect         // close the connection
)

// decision is the policy's answer; rule, code and detail say why when the
// verdict is not allow. register qualifies an allow: the topic names a device
// that is not registered, and the (privileged) gateway asking registers it by
// acting for it (auto-registration, rules P4 and S2). The caller performs the
// registration; for delivery (OnACLCheck) such a decision is a refusal.
type decision struct {
	verdict  verdict
	register bool
	rule     string
	code     int
	detail   string
}

var allowed = decision{verdict: allow}

func deny(v verdict, rule string, code int, format string, args ...any) decision {
	return decision{verdict: v, rule: rule, code: code, detail: fmt.Sprintf(format, args...)}
}

// deviceLookup finds a registered device; *registry implements it.
type deviceLookup interface {
	device(typ, id string) (Device, bool)
}

// policy holds the platform's publish and subscribe rules (protocol.md §10).
// Its methods are pure apart from registry lookups, so they are safe for
// concurrent use and easy to test. Each client class has its own method.
// Side effects (auto-registration, notify messages) are the hook's.
type policy struct {
	quickstart bool
	devices    deviceLookup
}

// publish decides on a publish of size payload bytes at qos to name by the
// client id (rules P2, P3, P4, P5, P6, C6). The returned topic
// is the parsed name, valid when the verdict is allow or drop.
func (p policy) publish(id identity, name string, size int, qos byte) (topic, decision) {
	t, err := parseTopic(name, false)
	if err != nil {
		return t, deny(disconnect, "P6", CodeTopicInvalid, "topic %q: %v", short(name), err)
	}
	if size > MaxPayload {
		return t, deny(disconnect, "P2", CodeTooLarge, "payload of %d bytes exceeds %d", size, MaxPayload)
	}
	switch id.class {
	case ClassDevice:
		return t, p.devicePublish(t, name, qos)
	case ClassGateway:
		return t, p.gatewayPublish(id, t, name)
	}
	return t, p.appPublish(t, name)
}

func (p policy) devicePublish(t topic, name string, qos byte) decision {
	event := t.kind == kindEvent && !t.qualified
	if p.quickstart {
		switch {
		case !event:
			return deny(disconnect, "C6", CodeNotAuthorized, "quickstart device may only publish iot-2/evt/<event>/fmt/<format>, not %q", short(name))
		case qos > 0:
			return deny(disconnect, "C6", CodeNotAuthorized, "quickstart supports qos 0 only, got qos %d", qos)
		}
		return allowed
	}
	if event || t.kind == kindDMDevice && !t.qualified {
		return allowed
	}
	return deny(disconnect, "P3", CodeNotAuthorized, "device may not publish to %q", short(name))
}

// gatewayPublish is rule P4: qualified events and iotdevice-1 messages for
// the gateway itself or a device it may act for (actFor). Anything else is
// dropped: the platform reports a gateway's rejected publish on its notify
// topic rather than closing the connection.
func (p policy) gatewayPublish(gw identity, t topic, name string) decision {
	if !t.qualified || t.kind != kindEvent && t.kind != kindDMDevice {
		return deny(drop, "P4", CodeNotAuthorized, "topic %q matches no rule for gateway publications", short(name))
	}
	return p.actFor(gw, t, "P4", drop)
}

func (p policy) appPublish(t topic, name string) decision {
	if t.qualified && (t.kind == kindEvent || t.kind == kindCommand) &&
		checkIdent(t.typ) == nil && checkIdent(t.id) == nil {
		if p.quickstart && t.kind == kindCommand {
			return deny(disconnect, "C6", CodeNotAuthorized, "quickstart application may not publish commands")
		}
		return allowed
	}
	return deny(disconnect, "P5", CodeNotAuthorized, "application may not publish to %q", short(name))
}

// subscribe decides on one topic filter of a SUBSCRIBE (rules S1, S2, S5, C6
// and P6).
func (p policy) subscribe(id identity, filter string) (topic, decision) {
	t, err := parseTopic(filter, true)
	if err != nil {
		return t, deny(disconnect, "P6", CodeTopicInvalid, "filter %q: %v", short(filter), err)
	}
	switch id.class {
	case ClassDevice:
		return t, p.deviceSubscribe(t, filter)
	case ClassGateway:
		return t, p.gatewaySubscribe(id, t, filter)
	}
	return t, p.appSubscribe(t, filter)
}

func (p policy) deviceSubscribe(t topic, filter string) decision {
	if p.quickstart {
		return deny(forbid, "C6", CodeNotAuthorized, "quickstart device may not subscribe (filter %q)", short(filter))
	}
	if !t.qualified && (t.kind == kindCommand || t.kind == kindDMRequest) {
		return allowed
	}
	return deny(forbid, "S1", CodeNotAuthorized, "device may not subscribe to %q", short(filter))
}

// gatewaySubscribe is rule S2: qualified command, mon and iotdm-1 filters for
// the gateway itself or a device it may act for ("+" allowed for type and
// id), plain iotdm-1/# (SDK practice) and the gateway's own notify topic.
// Delivery is limited to permitted devices per message (OnACLCheck).
func (p policy) gatewaySubscribe(gw identity, t topic, filter string) decision {
	switch {
	case t.qualified && (t.kind == kindCommand || t.kind == kindMon || t.kind == kindDMRequest):
		return p.actFor(gw, t, "S2", forbid)
	case t.kind == kindDMRequest && !t.qualified && t.rest == "#":
		return allowed
	case t.kind == kindNotify && t.typ == gw.typ && t.id == gw.id:
		return allowed
	}
	return deny(forbid, "S2", CodeNotAuthorized, "filter %q matches no rule for gateway subscriptions", short(filter))
}

// appSubscribe allows the application topics of protocol.md §6.1. Rule "S5"
// is this package's name for it; protocol.md lists no app subscribe rule.
func (p policy) appSubscribe(t topic, filter string) decision {
	ok := t.qualified && (t.kind == kindEvent || t.kind == kindCommand || t.kind == kindMon) ||
		t.kind == kindAppMon
	if !ok {
		return deny(forbid, "S5", CodeNotAuthorized, "application may not subscribe to %q", short(filter))
	}
	if p.quickstart {
		switch {
		case t.kind == kindCommand:
			return deny(forbid, "C6", CodeNotAuthorized, "quickstart application may not subscribe to commands")
		case t.id == "+" || t.app == "+":
			return deny(forbid, "C6", CodeNotAuthorized, "quickstart application may not use + for the device or app id")
		}
	}
	return allowed
}

// actFor decides whether gateway gw may act for the device named in t: itself
// or a registered device that is not a gateway (resource groups are not
// emulated, so that is every such device). A device that is not registered
// is allowed with register set if gw is privileged (auto-registration) and
// refused otherwise. A "+" in t's type or id is allowed here; delivery is
// checked per message.
func (p policy) actFor(gw identity, t topic, rule string, v verdict) decision {
	if t.typ == "+" || t.id == "+" {
		return allowed
	}
	if checkIdent(t.typ) != nil {
		return deny(v, rule, CodeTopicInvalid, "device type %q is not valid", short(t.typ))
	}
	if checkIdent(t.id) != nil {
		return deny(v, rule, CodeTopicInvalid, "device id %q is not valid", short(t.id))
	}
	if t.typ == gw.typ && t.id == gw.id {
		return allowed
	}
	d, ok := p.devices.device(t.typ, t.id)
	switch {
	case !ok && p.privileged(gw):
		return decision{verdict: allow, register: true}
	case !ok:
		return deny(v, rule, CodeNotAuthorized, "device %s/%s is not registered and gateway %s/%s may not register devices (standard role)",
			t.typ, t.id, gw.typ, gw.id)
	case d.Gateway:
		return deny(v, rule, CodeNotAuthorized, "gateway may not act for gateway %s/%s", t.typ, t.id)
	}
	return allowed
}

// privileged reports whether gateway gw is registered with the privileged role.
func (p policy) privileged(gw identity) bool {
	d, ok := p.devices.device(gw.typ, gw.id)
	return ok && d.Gateway && d.Role == RolePrivileged
}

// short truncates s for logs and violation details.
func short(s string) string {
	const max = 200
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
