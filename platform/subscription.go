package platform

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Message is a message as an application sees it: qualified topic, RETAIN
// cleared for everything a client published.
type Message struct {
	Topic    string
	Payload  []byte // the receiver's own copy
	QoS      byte   // QoS the publisher used
	Retain   bool   // true only for platform-retained messages replayed on subscribe
	ClientID string // publisher's client ID, e.g. d:<org>:<type>:<id>; "platform" for mon, notify and iotdm-1 messages
	Time     time.Time
}

// Subscription delivers the messages matching one filter on C. Delivery never
// blocks the broker: when C's buffer (Config.SubscriptionBuffer) is full the
// message is dropped for this subscription and counted in Dropped. C is
// closed by Close and by Platform.Close.
type Subscription struct {
	C <-chan Message

	p       *Platform
	filter  string
	id      int
	ch      chan Message
	dropped atomic.Uint64
	once    sync.Once

	mu     sync.RWMutex // guards closed against sends on a closed ch
	closed bool
}

// Subscribe subscribes to filter in the application view of the topic tree,
// e.g. "iot-2/type/+/id/+/evt/+/fmt/+". It bypasses the MQTT rules for
// applications, so any valid filter works, "#" included.
func (p *Platform) Subscribe(filter string) (*Subscription, error) {
	if err := checkTopicSyntax(filter, true); err != nil {
		return nil, fmt.Errorf("%w: filter %q: %v", ErrInvalidTopic, filter, err)
	}
	ch := make(chan Message, p.cfg.SubscriptionBuffer)
	s := &Subscription{C: ch, ch: ch, p: p, filter: filter, id: int(p.subID.Add(1))}

	p.mu.Lock()
	if p.state == stateClosed {
		p.mu.Unlock()
		return nil, ErrClosed
	}
	p.subs[s] = struct{}{}
	p.mu.Unlock()

	if err := p.srv.Subscribe(filter, s.id, s.deliver); err != nil {
		s.Close()
		return nil, fmt.Errorf("%w: filter %q: %v", ErrInvalidTopic, filter, err)
	}
	return s, nil
}

// Filter returns the subscribed filter.
func (s *Subscription) Filter() string { return s.filter }

// Dropped returns how many messages were dropped because C was full.
func (s *Subscription) Dropped() uint64 { return s.dropped.Load() }

// Close unsubscribes and closes C. It is idempotent.
func (s *Subscription) Close() {
	s.p.mu.Lock()
	delete(s.p.subs, s)
	s.p.mu.Unlock()
	s.close()
}

func (s *Subscription) close() {
	s.once.Do(func() {
		_ = s.p.srv.Unsubscribe(s.filter, s.id) // fails only for invalid filters
		s.mu.Lock()
		s.closed = true
		close(s.ch)
		s.mu.Unlock()
	})
}

// deliver is mochi's inline handler; it runs on the publisher's goroutine.
func (s *Subscription) deliver(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return
	}
	if strings.HasPrefix(pk.TopicName, "$") && (s.filter[0] == '#' || s.filter[0] == '+') {
		return // [MQTT-4.7.2-1]; mochi applies it to client subscriptions only
	}
	m := Message{
		Topic:    pk.TopicName,
		Payload:  bytes.Clone(pk.Payload),
		QoS:      pk.FixedHeader.Qos,
		Retain:   pk.FixedHeader.Retain,
		ClientID: pk.Origin,
		Time:     time.Now(),
	}
	select {
	case s.ch <- m:
	default:
		s.dropped.Add(1)
	}
}
