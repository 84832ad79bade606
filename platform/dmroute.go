package platform

import (
	"strings"

	mqtt "github.com/mochi-mqtt/server/v2"
)

// Rule R3: every iotdm-1 message the DM server publishes concerns one
// device and goes to one client: a response to the client that sent the
// request, a request to the client that manages the device (the sender of
// its latest accepted Manage). A device subscribed to iotdm-1/# receives
// its own messages only while it manages itself; a gateway subscribed to
// iotdm-1/# or iotdm-1/type/+/id/+/# receives only what is addressed to it.
//
// mochi's delivery check (OnACLCheck) sees a client and a topic, not the
// message, so the DM server publishes one message at a time (dmServer.pubMu)
// and names the recipient of the one in flight (inFlight); the delivery to
// every subscriber, and the queuing for offline ones, run synchronously on
// the publishing goroutine. A SUBSCRIBE with an iotdm-1 filter holds pubMu
// for reading from OnSubscribe to OnSubscribed, so that its own check of a
// concrete filter, which may equal the in-flight topic, is never mistaken
// for a delivery.

// dmDelivery is the DM message being published and its only recipient.
type dmDelivery struct{ topic, target string }

// publish publishes a DM server message on the qualified topic for the
// device key to the client target only, at QoS 1.
func (s *dmServer) publish(key deviceKey, rest string, payload []byte, target string) error {
	topic := dmTopic(key.typ, key.id, rest)
	s.pubMu.Lock()
	defer s.pubMu.Unlock()
	s.inFlight.Store(&dmDelivery{topic: topic, target: target})
	defer s.inFlight.Store(nil)
	return s.p.publishPlatform(topic, payload, 1, false)
}

// recipient returns the recipient of the DM message on topic being
// published now; ok is false when none is.
func (s *dmServer) recipient(topic string) (target string, ok bool) {
	d := s.inFlight.Load()
	if d == nil || d.topic != topic {
		return "", false
	}
	return d.target, true
}

// holdForSubscribe is called by OnSubscribe: a SUBSCRIBE with an iotdm-1
// filter waits for the DM message in flight and holds further ones until
// release (OnSubscribed).
func (s *dmServer) holdForSubscribe(filters []string) bool {
	for _, f := range filters {
		if strings.HasPrefix(f, prefixDM+"/") {
			s.pubMu.RLock()
			return true
		}
	}
	return false
}

func (s *dmServer) releaseSubscribe() { s.pubMu.RUnlock() }

// selfClientID is the client ID device key connects with itself.
func (s *dmServer) selfClientID(key deviceKey) string {
	class := "d:"
	if d, ok := s.p.reg.device(key.typ, key.id); ok && d.Gateway {
		class = "g:"
	}
	return class + s.p.cfg.Org + ":" + key.typ + ":" + key.id
}

// speaksFor reports whether the client origin may send DM requests about
// key (rule R3): no one but the managing gateway and the device itself
// while a gateway manages it; anyone who may act for it otherwise (a
// gateway may take over a device that manages itself, and a device its own
// management). It returns the manager when it refuses.
func (s *dmServer) speaksFor(key deviceKey, origin string) (manager string, ok bool) {
	s.mu.Lock()
	st := s.currentLocked(key)
	managed := st != nil && st.Managed
	if managed {
		manager = st.ManagedBy
	}
	s.mu.Unlock()
	self := s.selfClientID(key)
	byGateway := managed && strings.HasPrefix(manager, "g:") && manager != self
	if !byGateway || manager == origin || origin == self {
		return manager, true
	}
	return manager, false
}

// mayReceiveDM applies rule R3 to the delivery of topic to cl; decided is
// false when topic is not a DM message in flight.
func (h *hook) mayReceiveDM(cl *mqtt.Client, topic string) (ok, decided bool) {
	if !strings.HasPrefix(topic, prefixDM+"/") {
		return false, false
	}
	target, inFlight := h.p.dm.recipient(topic)
	if !inFlight {
		return false, false
	}
	return cl.ID == target, true
}
