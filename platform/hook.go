package platform

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// deniedPrefix marks a forbidden filter in OnSubscribe so that OnACLCheck
// refuses it and mochi answers SUBACK 0x80 (rule S3, SubscribeFailure mode).
// A marked filter never reaches the topic tree.
const deniedPrefix = "$platform-denied/"

// hook enforces the platform's rules inside mochi. Where each rule lives:
//
//	OnConnect          C3, C4, C5, C6 (connect), will topic authorisation
//	OnSessionEstablish C7 (record the takeover mochi is about to perform)
//	OnPacketRead       P2, P3, P5, P6, C6 (publish); S1, S2, S5, C6 (subscribe) → disconnect
//	OnPublish          P1 (clear RETAIN), R1 (qualify device topics), interim P4 drop, quickstart rate
//	OnSubscribe        qualify device filters (R2), S3 SUBACK-failure mode, S4 QoS cap
//	OnACLCheck         deny marked filters; gateway delivery limited to permitted devices
//	OnPacketEncode     R2: qualified topics back to the device's relative view
//	OnWill             P1 and R1 for wills
//
// mochi calls the hook from every client's goroutines; its state is the
// Platform's (concurrency-safe) plus the quickstart rate map under qsMu.
type hook struct {
	mqtt.HookBase
	p *Platform

	qsMu   sync.Mutex
	qsLast map[*mqtt.Client]time.Time // last accepted quickstart event per connection
}

func (h *hook) ID() string { return "fieldbridge-platform" }

func (h *hook) Provides(b byte) bool {
	switch b {
	case mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnACLCheck,
		mqtt.OnSessionEstablish, mqtt.OnSessionEstablished, mqtt.OnDisconnect,
		mqtt.OnPacketRead, mqtt.OnPacketEncode, mqtt.OnPublish,
		mqtt.OnSubscribe, mqtt.OnUnsubscribe, mqtt.OnWill:
		return true
	}
	return false
}

// identity parses the ID of a connected client; OnConnect refused every
// client whose ID does not parse, so ok is false only for inline clients.
func (h *hook) identity(cl *mqtt.Client) (identity, bool) {
	if cl.Net.Inline {
		return identity{}, false
	}
	id, err := parseClientID(cl.ID)
	return id, err == nil
}

// OnConnect applies the connect rules and refuses with a CONNACK code of its
// own choosing (mochi's OnConnectAuthenticate path can only send "bad user
// name or password").
func (h *hook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	raw := pk.Connect.ClientIdentifier
	id, err := parseClientID(raw)
	if err != nil {
		return h.refuse(cl, raw, deny(disconnect, "C3", CodeClientIDInvalid, "%v", err), packets.ErrClientIdentifierNotValid)
	}
	if id.org != h.p.cfg.Org {
		return h.refuse(cl, raw, deny(disconnect, "C3", CodeNotAuthorized, "org %q is not the served org %q", id.org, h.p.cfg.Org), notAuthorized(cl))
	}
	if d := h.p.authenticate(id, string(pk.Connect.Username), string(pk.Connect.Password)); d.verdict != allow {
		return h.refuse(cl, raw, d, notAuthorized(cl))
	}
	if pk.Connect.WillFlag {
		_, d := h.p.policy.publish(id, pk.Connect.WillTopic, len(pk.Connect.WillPayload), pk.Connect.WillQos)
		if d.verdict != allow {
			d.detail = "will message: " + d.detail
			return h.refuse(cl, raw, d, notAuthorized(cl))
		}
	}
	return nil
}

// notAuthorized is CONNACK 5 for MQTT 3.x (mochi maps "bad user name or
// password" to it) and reason 0x87 for MQTT 5.
func notAuthorized(cl *mqtt.Client) packets.Code {
	if cl.Properties.ProtocolVersion == 5 {
		return packets.ErrNotAuthorized
	}
	return packets.ErrBadUsernameOrPassword
}

func (h *hook) refuse(cl *mqtt.Client, rawID string, d decision, code packets.Code) error {
	h.p.rec.refused.Add(1)
	h.p.record(Violation{ClientID: rawID, Rule: d.rule, Action: ActionRefused, Code: d.code, Detail: d.detail})
	if err := h.p.srv.SendConnack(cl, code, false, nil); err != nil {
		h.p.log.Debug("connack not sent", "client_id", short(rawID), "err", err)
	}
	return code
}

// OnConnectAuthenticate accepts: OnConnect has already decided.
func (h *hook) OnConnectAuthenticate(*mqtt.Client, packets.Packet) bool { return true }

// OnSessionEstablish runs after authentication and just before mochi closes
// an existing connection with the same client ID (rule C7); it records that.
func (h *hook) OnSessionEstablish(cl *mqtt.Client, _ packets.Packet) {
	if cl.Net.Inline {
		return
	}
	if old, ok := h.p.srv.Clients.Get(cl.ID); ok && old != cl && !old.Closed() {
		h.p.rec.takeovers.Add(1)
		h.p.record(Violation{
			ClientID: cl.ID, Rule: "C7", Action: ActionClosedOld, Code: CodeClientIDReused,
			Detail: fmt.Sprintf("client id reused; older connection from %s closed", old.Net.Remote),
		})
	}
}

func (h *hook) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	if cl.Net.Inline {
		return
	}
	h.p.rec.accepted.Add(1)
	h.p.rec.connected.Add(1)
	h.p.log.Info("client connected", "client_id", cl.ID, "remote", cl.Net.Remote,
		"listener", cl.Net.Listener, "protocol_version", cl.Properties.ProtocolVersion)
}

func (h *hook) OnDisconnect(cl *mqtt.Client, err error, _ bool) {
	if cl.Net.Inline {
		return
	}
	h.p.rec.connected.Add(-1)
	h.qsMu.Lock()
	delete(h.qsLast, cl)
	h.qsMu.Unlock()

	cause := cl.StopCause()
	if cause == nil {
		cause = err
	}
	if errors.Is(err, packets.ErrPacketTooLarge) {
		// mochi's packet-size backstop fired before the packet reached OnPacketRead.
		h.p.record(Violation{ClientID: cl.ID, Rule: "P2", Action: ActionDisconnected, Code: CodeTooLarge,
			Detail: fmt.Sprintf("packet larger than %d bytes", maxPacketSize)})
	}
	attrs := []any{"client_id", cl.ID, "remote", cl.Net.Remote}
	if cause != nil {
		attrs = append(attrs, "reason", cause.Error())
	}
	h.p.log.Info("client disconnected", attrs...)
}

// OnPacketRead sees every packet before mochi validates it, which is the one
// place where a violation can close the connection: returning ErrRejectPacket
// ends the client's read loop. Publishes that mochi would drop silently (a
// wildcard or $SYS topic) are caught here too.
func (h *hook) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	id, ok := h.identity(cl)
	if !ok {
		return pk, nil
	}
	switch pk.FixedHeader.Type {
	case packets.Publish:
		if _, d := h.p.policy.publish(id, pk.TopicName, len(pk.Payload), pk.FixedHeader.Qos); d.verdict == disconnect {
			h.kill(cl, d)
			return pk, packets.ErrRejectPacket
		}
	case packets.Subscribe:
		for _, sub := range pk.Filters {
			_, d := h.p.policy.subscribe(id, sub.Filter)
			if d.verdict == disconnect || d.verdict == forbid && h.p.cfg.OnForbiddenSubscribe == SubscribeDisconnect {
				h.kill(cl, d)
				return pk, packets.ErrRejectPacket
			}
		}
	}
	return pk, nil
}

// kill records d and closes the connection; MQTT 5 clients get a DISCONNECT
// with a reason code first.
func (h *hook) kill(cl *mqtt.Client, d decision) {
	h.p.record(Violation{ClientID: cl.ID, Rule: d.rule, Action: ActionDisconnected, Code: d.code, Detail: d.detail})
	reason := packets.ErrNotAuthorized
	switch d.code {
	case CodeTopicInvalid:
		reason = packets.ErrTopicNameInvalid
	case CodeTooLarge:
		reason = packets.ErrPacketTooLarge
	}
	if cl.Properties.ProtocolVersion == 5 {
		_ = h.p.srv.DisconnectClient(cl, reason) // returns reason as an error
		return
	}
	cl.Stop(reason)
}

func (h *hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	id, ok := h.identity(cl)
	if !ok {
		return pk, nil
	}
	t, d := h.p.policy.publish(id, pk.TopicName, len(pk.Payload), pk.FixedHeader.Qos)
	switch d.verdict {
	case disconnect: // OnPacketRead closes first; kept for safety
		h.kill(cl, d)
		return pk, packets.ErrRejectPacket
	case drop:
		h.p.record(Violation{ClientID: cl.ID, Rule: d.rule, Action: ActionDropped, Code: d.code, Detail: d.detail})
		return pk, packets.CodeSuccessIgnore
	}
	if h.p.quickstart && t.kind == kindEvent && !h.quickstartEventDue(cl) {
		h.p.record(Violation{ClientID: cl.ID, Rule: "C6", Action: ActionDropped, Code: CodeNotAuthorized,
			Detail: fmt.Sprintf("more than one event per %s", h.p.cfg.QuickstartEventInterval)})
		return pk, packets.CodeSuccessIgnore
	}
	if pk.FixedHeader.Retain {
		pk.FixedHeader.Retain = false
		h.p.rec.retainCleared.Add(1)
	}
	if id.class == ClassDevice {
		pk.TopicName = qualify(pk.TopicName, id.typ, id.id)
	}
	switch t.kind {
	case kindEvent:
		h.p.rec.events.Add(1)
	case kindCommand:
		h.p.rec.commands.Add(1)
	}
	return pk, nil
}

// quickstartEventDue applies the optional quickstart event rate.
func (h *hook) quickstartEventDue(cl *mqtt.Client) bool {
	every := h.p.cfg.QuickstartEventInterval
	if every <= 0 {
		return true
	}
	now := time.Now()
	h.qsMu.Lock()
	defer h.qsMu.Unlock()
	if last, ok := h.qsLast[cl]; ok && now.Sub(last) < every {
		return false
	}
	h.qsLast[cl] = now
	return true
}

func (h *hook) OnSubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	id, ok := h.identity(cl)
	if !ok {
		return pk
	}
	filters := make(packets.Subscriptions, len(pk.Filters))
	for i, sub := range pk.Filters {
		t, d := h.p.policy.subscribe(id, sub.Filter)
		if d.verdict == allow {
			if id.class == ClassDevice {
				sub.Filter = qualify(sub.Filter, id.typ, id.id)
			}
			if t.kind == kindDMRequest && sub.Qos > 1 {
				sub.Qos = 1 // S4: device management is delivered at QoS ≤ 1
			}
		} else {
			h.p.record(Violation{ClientID: cl.ID, Rule: d.rule, Action: ActionSubackFailure, Code: d.code, Detail: d.detail})
			sub.Filter = deniedPrefix + sub.Filter
		}
		filters[i] = sub
	}
	pk.Filters = filters
	return pk
}

func (h *hook) OnUnsubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	id, ok := h.identity(cl)
	if !ok || id.class != ClassDevice {
		return pk
	}
	filters := make(packets.Subscriptions, len(pk.Filters))
	for i, sub := range pk.Filters {
		if _, d := h.p.policy.subscribe(id, sub.Filter); d.verdict == allow {
			sub.Filter = qualify(sub.Filter, id.typ, id.id)
		}
		filters[i] = sub
	}
	pk.Filters = filters
	return pk
}

// OnACLCheck: publishes were decided in OnPacketRead and OnPublish. For reads
// mochi passes the (rewritten) filter at SUBSCRIBE and the topic of every
// message it delivers.
func (h *hook) OnACLCheck(cl *mqtt.Client, topicOrFilter string, write bool) bool {
	if write {
		return true
	}
	if strings.HasPrefix(topicOrFilter, deniedPrefix) {
		return false
	}
	id, ok := h.identity(cl)
	if !ok || id.class != ClassGateway {
		return true // a device's filters only match its own topics; apps see the org
	}
	_, d := h.p.policy.subscribe(id, topicOrFilter)
	return d.verdict == allow
}

// OnPacketEncode shows a device its own topics in relative form (R2 and the
// iotdm-1 side of R3).
func (h *hook) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if pk.FixedHeader.Type != packets.Publish || pk.TopicName == "" || !strings.HasPrefix(cl.ID, "d:") {
		return pk
	}
	if id, ok := h.identity(cl); ok && id.class == ClassDevice {
		if rel, ok := relativize(pk.TopicName, id.typ, id.id); ok {
			pk.TopicName = rel
		}
	}
	return pk
}

// OnWill clears RETAIN and qualifies a device's will topic; OnConnect has
// already refused any will the client could not publish.
func (h *hook) OnWill(cl *mqtt.Client, will mqtt.Will) (mqtt.Will, error) {
	id, ok := h.identity(cl)
	if !ok {
		return will, nil
	}
	if will.Retain {
		will.Retain = false
		h.p.rec.retainCleared.Add(1)
	}
	if id.class == ClassDevice {
		if t, err := parseTopic(will.TopicName, false); err == nil && t.kind != kindUnknown && !t.qualified {
			will.TopicName = qualify(will.TopicName, id.typ, id.id)
		}
	}
	return will, nil
}
