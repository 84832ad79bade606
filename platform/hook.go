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
//	OnConnect            C3, C4, C5, C6 (connect), will authorisation; Q4 FailedConnect
//	OnSessionEstablish   C7 (record the takeover mochi is about to perform), Q4 Disconnect 288 of
//	                     the older connection, Q1 discard the offline queue of a clean session
//	OnSessionEstablished Q4 Connect, Q1 redeliver the offline queue
//	OnDisconnect         Q4 Disconnect
//	OnPacketRead         P2, P3, P5, P6, C6 (publish); S1, S2, S5, C6 (subscribe) → disconnect
//	OnPublish            P1 (clear RETAIN), R1 (qualify device topics), P4 drop + notify and
//	                     auto-registration, quickstart rate, Q1 queue for offline durable sessions
//	OnSubscribe          qualify device filters (R2), S2 auto-registration, S3 SUBACK-failure
//	                     mode + gateway notify, S4 QoS cap
//	OnACLCheck           deny marked filters; gateway delivery limited to permitted devices;
//	                     no mochi queuing of what Q1 queued
//	OnPacketEncode       R2: qualified topics back to the device's relative view
//	OnPacketSent         publish count for mon
//	OnWill               P1 and R1 for wills
//
// mochi calls the hook from every client's goroutines; its state is the
// Platform's (concurrency-safe) plus three maps under their own mutexes.
type hook struct {
	mqtt.HookBase
	p *Platform

	qsMu   sync.Mutex
	qsLast map[*mqtt.Client]time.Time // last accepted quickstart event per connection

	connMu sync.Mutex
	conns  map[*mqtt.Client]*connState // established connections, for mon

	skipMu sync.Mutex
	skip   map[*mqtt.Client]map[string]int // deliveries queued by queueOffline, by topic

	dmSubMu sync.Mutex
	dmSub   map[*mqtt.Client]bool // clients in a SUBSCRIBE holding dmServer.pubMu (dmroute.go)
}

func newHook(p *Platform) *hook {
	return &hook{
		p:      p,
		qsLast: map[*mqtt.Client]time.Time{},
		conns:  map[*mqtt.Client]*connState{},
		skip:   map[*mqtt.Client]map[string]int{},
		dmSub:  map[*mqtt.Client]bool{},
	}
}

func (h *hook) ID() string { return "fieldbridge-platform" }

func (h *hook) Provides(b byte) bool {
	switch b {
	case mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnACLCheck,
		mqtt.OnSessionEstablish, mqtt.OnSessionEstablished, mqtt.OnDisconnect,
		mqtt.OnPacketRead, mqtt.OnPacketEncode, mqtt.OnPacketSent, mqtt.OnPublish,
		mqtt.OnSubscribe, mqtt.OnSubscribed, mqtt.OnUnsubscribe, mqtt.OnWill:
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
		return h.refuse(cl, raw, nil, deny(disconnect, "C3", CodeClientIDInvalid, "%v", err), packets.ErrClientIdentifierNotValid)
	}
	if id.org != h.p.cfg.Org {
		return h.refuse(cl, raw, nil, deny(disconnect, "C3", CodeNotAuthorized, "org %q is not the served org %q", id.org, h.p.cfg.Org), notAuthorized(cl))
	}
	if d := h.p.authenticate(id, string(pk.Connect.Username), string(pk.Connect.Password)); d.verdict != allow {
		return h.refuse(cl, raw, &id, d, notAuthorized(cl))
	}
	if pk.Connect.WillFlag {
		_, d := h.p.policy.publish(id, pk.Connect.WillTopic, len(pk.Connect.WillPayload), pk.Connect.WillQos)
		if d.verdict != allow {
			d.detail = "will message: " + d.detail
			return h.refuse(cl, raw, &id, d, notAuthorized(cl))
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

// refuse records d, sends a FailedConnect status message when the client ID
// names a client of the served org (id not nil), and answers CONNACK code.
func (h *hook) refuse(cl *mqtt.Client, rawID string, id *identity, d decision, code packets.Code) error {
	h.p.rec.refused.Add(1)
	h.p.record(Violation{ClientID: rawID, Rule: d.rule, Action: ActionRefused, Code: d.code, Detail: d.detail})
	if id != nil {
		h.p.publishStatus(cl, *id, h.p.newStatus(cl, StatusFailedConnect, time.Time{}, d.code, ""))
	}
	if err := h.p.srv.SendConnack(cl, code, false, nil); err != nil {
		h.p.log.Debug("connack not sent", "client_id", short(rawID), "err", err)
	}
	return code
}

// OnConnectAuthenticate accepts: OnConnect has already decided.
func (h *hook) OnConnectAuthenticate(*mqtt.Client, packets.Packet) bool { return true }

// OnSessionEstablish runs after authentication and just before mochi takes
// over an existing session with the same client ID (inheritClientSession).
// A live older connection is about to be closed (rule C7): record it and send
// its Disconnect with code 288 now, so that it precedes the new Connect
// (rule Q4). A clean session, or a durable one with no session left to
// inherit, discards the offline queue (rule Q1).
func (h *hook) OnSessionEstablish(cl *mqtt.Client, pk packets.Packet) {
	if cl.Net.Inline {
		return
	}
	old, ok := h.p.srv.Clients.Get(cl.ID)
	if pk.Connect.Clean || !ok {
		if n := h.p.queue.discard(cl.ID); n > 0 {
			h.p.log.Info("queued messages discarded", "client_id", cl.ID, "count", n, "clean_session", pk.Connect.Clean)
		}
	}
	if !ok || old == cl {
		return
	}
	h.skipMu.Lock()
	delete(h.skip, old)
	h.skipMu.Unlock()
	if old.Closed() {
		return // a durable session whose client is offline: no takeover
	}
	h.p.rec.takeovers.Add(1)
	h.p.record(Violation{
		ClientID: cl.ID, Rule: "C7", Action: ActionClosedOld, Code: CodeClientIDReused,
		Detail: fmt.Sprintf("client id reused; older connection from %s closed", old.Net.Remote),
	})
	if st, ok := h.claimEnd(old); ok {
		if id, ok := h.identity(old); ok {
			h.p.publishStatus(old, id, h.p.newStatus(old, StatusDisconnect, st.since, CodeClientIDReused, ""))
		}
	}
}

// claimEnd marks cl's Disconnect message as sent and returns a copy of its
// state; ok is false if it was claimed already or cl never got established.
func (h *hook) claimEnd(cl *mqtt.Client) (st connState, ok bool) {
	h.connMu.Lock()
	defer h.connMu.Unlock()
	p := h.conns[cl]
	if p == nil || p.ended {
		return connState{}, false
	}
	p.ended = true
	return *p, true
}

func (h *hook) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	id, ok := h.identity(cl)
	if !ok {
		return
	}
	h.p.rec.accepted.Add(1)
	h.p.rec.connected.Add(1)
	st := &connState{since: h.p.now()}
	h.connMu.Lock()
	h.conns[cl] = st
	h.connMu.Unlock()
	h.p.log.Info("client connected", "client_id", cl.ID, "remote", cl.Net.Remote,
		"listener", cl.Net.Listener, "protocol_version", cl.Properties.ProtocolVersion,
		"clean_session", cl.Properties.Clean)
	h.p.publishStatus(cl, id, h.p.newStatus(cl, StatusConnect, st.since, 0, ""))
	h.redeliver(cl)
}

func (h *hook) OnDisconnect(cl *mqtt.Client, err error, _ bool) {
	id, ok := h.identity(cl)
	if !ok {
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

	st, ok := h.claimEnd(cl)
	h.connMu.Lock()
	delete(h.conns, cl)
	h.connMu.Unlock()
	if ok {
		code, reason := st.code, st.reason
		if code == 0 {
			code = closeCode(cause)
		}
		h.p.publishStatus(cl, id, h.p.newStatus(cl, StatusDisconnect, st.since, code, reason))
	}
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
		if mc, ok := cl.Net.Conn.(*meteredConn); ok {
			mc.readMsgs.Add(1)
		}
		if t, d := h.p.policy.publish(id, pk.TopicName, len(pk.Payload), pk.FixedHeader.Qos); d.verdict == disconnect {
			if id.class == ClassGateway {
				h.notify(cl, id, "publish", pk.TopicName, t, d)
			}
			h.kill(cl, d)
			return pk, packets.ErrRejectPacket
		}
	case packets.Subscribe:
		for _, sub := range pk.Filters {
			t, d := h.p.policy.subscribe(id, sub.Filter)
			if d.verdict == disconnect || d.verdict == forbid && h.p.cfg.OnForbiddenSubscribe == SubscribeDisconnect {
				if id.class == ClassGateway {
					h.notify(cl, id, "subscribe", sub.Filter, t, d)
				}
				h.kill(cl, d)
				return pk, packets.ErrRejectPacket
			}
		}
	}
	return pk, nil
}

// kill records d and closes the connection; MQTT 5 clients get a DISCONNECT
// with a reason code first. The close code goes into the Disconnect status
// message.
func (h *hook) kill(cl *mqtt.Client, d decision) {
	h.p.record(Violation{ClientID: cl.ID, Rule: d.rule, Action: ActionDisconnected, Code: d.code, Detail: d.detail})
	h.connMu.Lock()
	if st := h.conns[cl]; st != nil && st.code == 0 {
		st.code, st.reason = d.code, closeReasons[d.code]+": "+d.detail
	}
	h.connMu.Unlock()
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
	if !ok { // the platform's own messages
		h.queueOffline(pk)
		return pk, nil
	}
	t, d := h.p.policy.publish(id, pk.TopicName, len(pk.Payload), pk.FixedHeader.Qos)
	switch d.verdict {
	case disconnect: // OnPacketRead closes first; kept for safety
		h.kill(cl, d)
		return pk, packets.ErrRejectPacket
	case drop:
		h.p.record(Violation{ClientID: cl.ID, Rule: d.rule, Action: ActionDropped, Code: d.code, Detail: d.detail})
		if id.class == ClassGateway {
			h.notify(cl, id, "publish", pk.TopicName, t, d)
		}
		return pk, packets.CodeSuccessIgnore
	}
	if h.p.quickstart && t.kind == kindEvent && !h.quickstartEventDue(cl) {
		h.p.record(Violation{ClientID: cl.ID, Rule: "C6", Action: ActionDropped, Code: CodeNotAuthorized,
			Detail: fmt.Sprintf("more than one event per %s", h.p.cfg.QuickstartEventInterval)})
		return pk, packets.CodeSuccessIgnore
	}
	if d.register {
		h.p.autoRegister(cl, t.typ, t.id)
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
	h.queueOffline(pk)
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
	names := make([]string, len(pk.Filters))
	for i, sub := range pk.Filters {
		names[i] = sub.Filter
	}
	if h.p.dm.holdForSubscribe(names) {
		h.dmSubMu.Lock()
		h.dmSub[cl] = true
		h.dmSubMu.Unlock()
	}
	filters := make(packets.Subscriptions, len(pk.Filters))
	for i, sub := range pk.Filters {
		t, d := h.p.policy.subscribe(id, sub.Filter)
		if d.verdict == allow {
			if d.register {
				h.p.autoRegister(cl, t.typ, t.id)
			}
			if id.class == ClassDevice {
				sub.Filter = qualify(sub.Filter, id.typ, id.id)
			}
			if t.kind == kindDMRequest && sub.Qos > 1 {
				sub.Qos = 1 // S4: device management is delivered at QoS ≤ 1
			}
		} else {
			h.p.record(Violation{ClientID: cl.ID, Rule: d.rule, Action: ActionSubackFailure, Code: d.code, Detail: d.detail})
			if id.class == ClassGateway {
				h.notify(cl, id, "subscribe", sub.Filter, t, d)
			}
			sub.Filter = deniedPrefix + sub.Filter
		}
		filters[i] = sub
	}
	pk.Filters = filters
	return pk
}

// OnSubscribed ends what OnSubscribe began: mochi has checked and stored
// the filters, so DM publications may go on (rule R3, dmroute.go).
func (h *hook) OnSubscribed(cl *mqtt.Client, _ packets.Packet, _ []byte) {
	h.dmSubMu.Lock()
	held := h.dmSub[cl]
	delete(h.dmSub, cl)
	h.dmSubMu.Unlock()
	if held {
		h.p.dm.releaseSubscribe()
	}
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
// message it delivers, including to offline clients with a durable session,
// which it would queue as in-flight messages: those queueOffline has queued
// already are refused here.
func (h *hook) OnACLCheck(cl *mqtt.Client, topicOrFilter string, write bool) bool {
	if write {
		return true
	}
	if strings.HasPrefix(topicOrFilter, deniedPrefix) {
		return false
	}
	if cl.Closed() && h.queuedByPlatform(cl, topicOrFilter) {
		return false
	}
	return h.mayReceive(cl, topicOrFilter)
}

// mayReceive reports whether cl may receive messages on topic (or subscribe
// to it as a filter): a DM message only its recipient (rule R3), else
// gateways only for themselves and permitted devices,
// without auto-registration; a device's filters only match its own topics
// and applications see the org.
func (h *hook) mayReceive(cl *mqtt.Client, topic string) bool {
	if ok, decided := h.mayReceiveDM(cl, topic); decided {
		return ok
	}
	id, ok := h.identity(cl)
	if !ok || id.class != ClassGateway {
		return true
	}
	_, d := h.p.policy.subscribe(id, topic)
	return d.verdict == allow && !d.register
}

// OnPacketEncode shows a device its own topics in relative form (R2 and the
// iotdm-1 side of R3). It also applies to queued messages delivered on
// reconnect: they are encoded for the new connection.
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

// OnPacketSent counts publishes sent, for mon messages.
func (h *hook) OnPacketSent(cl *mqtt.Client, pk packets.Packet, _ []byte) {
	if pk.FixedHeader.Type != packets.Publish {
		return
	}
	if mc, ok := cl.Net.Conn.(*meteredConn); ok {
		mc.writeMsgs.Add(1)
	}
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
