package platform

import (
	"bytes"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Defaults and bounds of rule Q1 (protocol.md §2.12: 50 buffered messages per
// subscription per device, cloud→device persistence 48 h by default, 7 days
// at most).
const (
	defaultQueueLimit  = 50
	defaultQueueMaxAge = 48 * time.Hour
	maxQueueMaxAge     = 7 * 24 * time.Hour
)

// offlineQueue holds the QoS ≥ 1 messages for durable sessions whose client
// is offline (rule Q1), keyed by client ID, oldest first.
//
// Why not mochi's own queue: mochi keeps such messages as in-flight packets
// of the offline client and resends them on reconnect, but sorts them by
// uint16(Created), a Unix time in seconds truncated to 16 bits, so messages
// of the same second come back in random order and the order wraps every 18
// hours; it has no per-subscription cap either. The hook therefore queues
// here (OnPublish) and keeps mochi from queuing the same message
// (OnACLCheck); on reconnect it hands the queue to mochi as in-flight
// packets in order and writes them (OnSessionEstablished). Messages that were
// in flight when the client went away stay mochi's and are resent by mochi.
type offlineQueue struct {
	limit  int           // per subscription (filter) of a client
	maxAge time.Duration // older messages are dropped

	mu     sync.Mutex
	queues map[string][]queuedMessage // client ID → oldest first
	size   int
}

// queuedMessage is a message waiting for an offline client.
type queuedMessage struct {
	pk      packets.Packet // qualified topic, delivery QoS, own payload copy
	filters []string       // the client's subscriptions it matched
	at      time.Time      // when it was queued
}

func newOfflineQueue(limit int, maxAge time.Duration) *offlineQueue {
	return &offlineQueue{limit: limit, maxAge: maxAge, queues: map[string][]queuedMessage{}}
}

// expired reports whether m is older than the age limit or past its MQTT 5
// message expiry.
func (q *offlineQueue) expired(m queuedMessage, now time.Time) bool {
	return now.Sub(m.at) > q.maxAge || m.pk.Expiry > 0 && now.Unix() > m.pk.Expiry
}

// prune removes expired messages from list (q.mu held) and returns the rest
// and how many it removed.
func (q *offlineQueue) prune(list []queuedMessage, now time.Time) ([]queuedMessage, int) {
	kept := list[:0]
	for _, m := range list {
		if !q.expired(m, now) {
			kept = append(kept, m)
		}
	}
	n := len(list) - len(kept)
	clear(list[len(kept):]) // drop references to the removed payloads
	return kept, n
}

// add queues m for clientID. When a subscription m matched already holds
// limit messages, the oldest of them is dropped (the platform drops the
// oldest of a full buffer). It returns how many messages were dropped for
// the limit and how many because they had expired.
func (q *offlineQueue) add(clientID string, m queuedMessage) (dropped, expired int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	list, expired := q.prune(q.queues[clientID], m.at)
	for _, f := range m.filters {
		for q.count(list, f) >= q.limit {
			list = removeOldest(list, f)
			dropped++
		}
	}
	list = append(list, m)
	q.queues[clientID] = list
	q.size += 1 - dropped - expired
	return dropped, expired
}

// count returns how many messages of list matched filter.
func (q *offlineQueue) count(list []queuedMessage, filter string) int {
	n := 0
	for _, m := range list {
		for _, f := range m.filters {
			if f == filter {
				n++
				break
			}
		}
	}
	return n
}

// removeOldest removes the first (oldest) message of list that matched filter.
func removeOldest(list []queuedMessage, filter string) []queuedMessage {
	for i, m := range list {
		for _, f := range m.filters {
			if f == filter {
				copy(list[i:], list[i+1:])
				list[len(list)-1] = queuedMessage{}
				return list[:len(list)-1]
			}
		}
	}
	return list
}

// take removes and returns clientID's unexpired messages, oldest first, and
// how many had expired.
func (q *offlineQueue) take(clientID string, now time.Time) ([]queuedMessage, int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	list := q.queues[clientID]
	delete(q.queues, clientID)
	q.size -= len(list)
	list, expired := q.prune(list, now)
	return list, expired
}

// discard drops clientID's queue (a clean session) and returns its length.
func (q *offlineQueue) discard(clientID string) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := len(q.queues[clientID])
	delete(q.queues, clientID)
	q.size -= n
	return n
}

// len returns how many messages are queued for all clients.
func (q *offlineQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.size
}

// durable reports whether cl's session outlives its connection: MQTT 3.x
// clean session false, or an MQTT 5 session expiry interval above 0 (the
// condition under which mochi keeps the client and its subscriptions).
func durable(cl *mqtt.Client) bool {
	if cl.Properties.ProtocolVersion == 5 {
		return cl.Properties.Props.SessionExpiryInterval > 0
	}
	return !cl.Properties.Clean
}

// queueOffline queues an accepted publish (any QoS ≥ 1, clients' and the
// platform's own) for every offline client with a durable session whose
// subscriptions match it, at the QoS it would have been delivered with, and
// marks those deliveries so that OnACLCheck keeps mochi from queuing them
// too. It runs in OnPublish, before mochi delivers the message.
func (h *hook) queueOffline(pk packets.Packet) {
	if pk.FixedHeader.Qos == 0 || pk.TopicName == "" {
		return
	}
	now := h.p.now()
	for clientID, sub := range h.p.srv.Topics.Subscribers(pk.TopicName).Subscriptions {
		qos := min(pk.FixedHeader.Qos, sub.Qos)
		if qos == 0 || sub.NoLocal && pk.Origin == clientID {
			continue
		}
		cl, ok := h.p.srv.Clients.Get(clientID)
		if !ok || cl.Net.Inline || !cl.Closed() || !durable(cl) || !h.mayReceive(cl, pk.TopicName) {
			continue
		}
		var filters []string
		for f := range cl.State.Subscriptions.GetAll() {
			if matchFilter(f, pk.TopicName) {
				filters = append(filters, f)
			}
		}
		if len(filters) == 0 {
			continue
		}
		out := pk.Copy(false)
		out.Payload = bytes.Clone(pk.Payload)
		out.FixedHeader.Qos, out.FixedHeader.Retain, out.FixedHeader.Dup = qos, false, false
		dropped, expired := h.p.queue.add(clientID, queuedMessage{pk: out, filters: filters, at: now})
		h.p.rec.queueDropped.Add(int64(dropped))
		h.p.rec.queueExpired.Add(int64(expired))
		if dropped > 0 {
			h.p.log.Debug("offline queue full", "client_id", clientID, "topic", pk.TopicName, "dropped", dropped)
		}
		h.skipMu.Lock()
		if h.skip[cl] == nil {
			h.skip[cl] = map[string]int{}
		}
		h.skip[cl][pk.TopicName]++
		h.skipMu.Unlock()
	}
}

// queuedByPlatform consumes a mark set by queueOffline for (cl, topic).
func (h *hook) queuedByPlatform(cl *mqtt.Client, topic string) bool {
	h.skipMu.Lock()
	defer h.skipMu.Unlock()
	m := h.skip[cl]
	if m[topic] == 0 {
		return false
	}
	if m[topic]--; m[topic] == 0 {
		delete(m, topic)
		if len(m) == 0 {
			delete(h.skip, cl)
		}
	}
	return true
}

// redeliver hands cl's queued messages to mochi as in-flight packets, in
// order, and writes them. A message mochi cannot take (packet IDs exhausted)
// is dropped and counted; one that cannot be written stays in flight, and
// mochi resends it on the next reconnect of the durable session.
func (h *hook) redeliver(cl *mqtt.Client) {
	msgs, expired := h.p.queue.take(cl.ID, h.p.now())
	h.p.rec.queueExpired.Add(int64(expired))
	if len(msgs) == 0 {
		return
	}
	out := make([]packets.Packet, 0, len(msgs))
	for _, m := range msgs {
		id, err := cl.NextPacketID()
		if err != nil {
			h.p.rec.queueDropped.Add(int64(len(msgs) - len(out)))
			h.p.log.Warn("queued messages dropped", "client_id", cl.ID, "count", len(msgs)-len(out), "err", err)
			break
		}
		pk := m.pk
		pk.PacketID = uint16(id)
		if cl.State.Inflight.Set(pk) {
			atomic.AddInt64(&h.p.srv.Info.Inflight, 1) // mochi's gauge; it decrements on PUBACK
		}
		out = append(out, pk)
	}
	for i, pk := range out {
		if err := cl.WritePacket(pk); err != nil {
			h.p.log.Debug("queued messages not written", "client_id", cl.ID, "count", len(out)-i, "err", err)
			break
		}
		h.p.rec.redelivered.Add(1)
	}
	h.p.log.Info("queued messages delivered", "client_id", cl.ID, "count", len(out), "expired", expired)
}
