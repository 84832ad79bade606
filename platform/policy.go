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
// verdict is not allow.
type decision struct {
	verdict verdict
	rule    string
	code    int
	detail  string
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
// concurrent use and easy to test. Each client class has its own method so
// the gateway and device-management rules of issue #5 replace one method
// without touching the others.
type policy struct {
	quickstart bool
	devices    deviceLookup
}

// publish decides on a publish of size payload bytes at qos to name by the
// client id (rules P2, P3, P5, P6, C6 and the interim P4). The returned topic
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

// gatewayPublish is the interim rule P4 until issue #5: qualified events and
// iotdevice-1 messages for the gateway itself or a registered non-gateway
// device. Anything else is dropped, as the platform drops (and notifies)
// rather than disconnects a gateway. No notify message, no auto-registration.
func (p policy) gatewayPublish(gw identity, t topic, name string) decision {
	if !t.qualified || t.kind != kindEvent && t.kind != kindDMDevice {
		return deny(drop, "P4", CodeNotAuthorized, "gateway may not publish to %q", short(name))
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

// subscribe decides on one topic filter of a SUBSCRIBE (rules S1, S5, C6, P6
// and the interim S2).
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

// gatewaySubscribe is the interim rule S2 until issue #5.
func (p policy) gatewaySubscribe(gw identity, t topic, filter string) decision {
	switch {
	case t.qualified && (t.kind == kindCommand || t.kind == kindMon || t.kind == kindDMRequest):
		return p.actFor(gw, t, "S2", forbid)
	case t.kind == kindDMRequest && !t.qualified && t.rest == "#":
		return allowed // iotdm-1/#: delivery is limited to permitted devices (OnACLCheck)
	case t.kind == kindNotify && t.typ == gw.typ && t.id == gw.id:
		return allowed
	}
	return deny(forbid, "S2", CodeNotAuthorized, "gateway may not subscribe to %q", short(filter))
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

// actFor decides whether gateway gw may act for the device named in t: itself,
// or a registered device that is not a gateway (no resource groups yet). A
// "+" in t's type or id is allowed here; delivery is checked per message.
func (p policy) actFor(gw identity, t topic, rule string, v verdict) decision {
	if t.typ == "+" || t.id == "+" {
		return allowed
	}
	if checkIdent(t.typ) != nil {
		return deny(v, rule, CodeNotAuthorized, "device type %q is not valid", short(t.typ))
	}
	if checkIdent(t.id) != nil {
		return deny(v, rule, CodeNotAuthorized, "device id %q is not valid", short(t.id))
	}
	if t.typ == gw.typ && t.id == gw.id {
		return allowed
	}
	d, ok := p.devices.device(t.typ, t.id)
	switch {
	case !ok:
		return deny(v, rule, CodeNotAuthorized, "device %s/%s is not registered (auto-registration is not implemented)", t.typ, t.id)
	case d.Gateway:
		return deny(v, rule, CodeNotAuthorized, "gateway may not act for gateway %s/%s", t.typ, t.id)
	}
	return allowed
}

// short truncates s for logs and violation details.
func short(s string) string {
	const max = 200
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
