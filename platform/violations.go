package platform

import (
	"sync"
	"sync/atomic"
	"time"
)

// Action is what the platform did when a rule fired.
type Action string

// Actions recorded in Violation.Action.
const (
	ActionRefused       Action = "refused"        // CONNACK with a failure code, then close
	ActionDisconnected  Action = "disconnected"   // live connection closed
	ActionDropped       Action = "dropped"        // publish acknowledged but not delivered
	ActionSubackFailure Action = "suback_failure" // SUBACK 0x80 for the filter, connection kept
	ActionClosedOld     Action = "closed_old"     // rule C7: the older connection of a client ID was closed
	ActionRejected      Action = "rejected"       // DM request answered with an error rc (rule R3: 409)
	ActionRecorded      Action = "recorded"       // accepted, but off the protocol (rule N1)
)

// Violation records one rule that fired. Rule C7 (client-ID takeover) is
// recorded here too although it is the platform's normal behaviour, so tests
// and operators see code 288 in one place.
type Violation struct {
	Time     time.Time
	ClientID string
	Rule     string // rule name of protocol.md §10, e.g. "P2"; "S5" is this package's app subscribe rule
	Action   Action
	Code     int    // close code of protocol.md §2.10 (Code* constants)
	Detail   string // human-readable reason; never contains a token
}

// Stats are cumulative counters since New, except Connected.
type Stats struct {
	Connected     int64 // clients connected now
	Accepted      int64 // connections accepted
	Refused       int64 // connections refused (rules C3–C6)
	Takeovers     int64 // older connections closed by a reused client ID (rule C7)
	Violations    int64 // violations recorded, including those evicted from Violations()
	RetainCleared int64 // inbound publishes whose RETAIN flag was cleared (rule P1)
	Events        int64 // device and gateway events accepted
	Commands      int64 // commands accepted from applications and SendCommand

	AutoRegistered int64 // devices registered automatically by a privileged gateway (rules P4, S2)
	Notifications  int64 // gateway notify messages sent (rules P4, S2)
	Queued         int64 // messages waiting now for offline clients with a durable session (rule Q1)
	QueueDropped   int64 // queued messages dropped because a subscription's queue was full
	QueueExpired   int64 // queued messages dropped as older than QueueMaxAge or past their MQTT 5 expiry
	Redelivered    int64 // queued messages delivered on reconnect
}

// defaultMaxViolations bounds the list Violations returns.
const defaultMaxViolations = 1000

type recorder struct {
	mu   sync.Mutex
	list []Violation // oldest first
	max  int

	connected, accepted, refused, takeovers, violations atomic.Int64
	retainCleared, events, commands                     atomic.Int64
	autoRegistered, notifications                       atomic.Int64
	queueDropped, queueExpired, redelivered             atomic.Int64
}

func (r *recorder) add(v Violation) {
	r.violations.Add(1)
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.list) >= r.max {
		n := copy(r.list, r.list[len(r.list)-r.max+1:])
		r.list = r.list[:n]
	}
	r.list = append(r.list, v)
}

func (r *recorder) snapshot() []Violation {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Violation(nil), r.list...)
}

func (r *recorder) stats() Stats {
	return Stats{
		Connected:     r.connected.Load(),
		Accepted:      r.accepted.Load(),
		Refused:       r.refused.Load(),
		Takeovers:     r.takeovers.Load(),
		Violations:    r.violations.Load(),
		RetainCleared: r.retainCleared.Load(),
		Events:        r.events.Load(),
		Commands:      r.commands.Load(),

		AutoRegistered: r.autoRegistered.Load(),
		Notifications:  r.notifications.Load(),
		QueueDropped:   r.queueDropped.Load(),
		QueueExpired:   r.queueExpired.Load(),
		Redelivered:    r.redelivered.Load(),
	}
}
