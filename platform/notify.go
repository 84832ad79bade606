package platform

import (
	"encoding/json"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
)

// timeLayout is the ISO 8601 form of the Time fields of notify and mon
// messages: UTC with milliseconds, e.g. 2024-05-01T10:15:31.120Z.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// Notification is the payload of a gateway notify message (protocol.md §5.4),
// published by the platform on iot-2/type/<gwType>/id/<gwId>/notify when it
// rejects a publish or subscription of the gateway (rules P4, S2, P6). The
// JSON keys are capitalised as on the platform.
type Notification struct {
	Request string `json:"Request"`        // "publish" or "subscribe"
	Time    string `json:"Time"`           // ISO 8601, UTC, milliseconds
	Topic   string `json:"Topic"`          // the topic or filter the gateway used
	Type    string `json:"Type,omitempty"` // device type from Topic; absent if Topic has none
	ID      string `json:"Id,omitempty"`   // device ID from Topic; absent if Topic has none
	Client  string `json:"Client"`         // the gateway's client ID
	// RC is the reason as a close code of protocol.md §2.10: CodeTopicInvalid
	// for an invalid topic, device type or device ID, CodeNotAuthorized for
	// anything the gateway may not do, CodeTooLarge for P2. The platform
	// documents no values; these are this package's choice.
	RC      int    `json:"RC"`
	Message string `json:"Message"` // what was wrong, in words
}

// newNotification builds the notify payload for a rejected request ("publish"
// or "subscribe") on name (a topic or filter) by client; t is name parsed
// (zero if it did not parse), d the rejection.
func newNotification(request, name string, t topic, client string, d decision, now time.Time) Notification {
	n := Notification{
		Request: request,
		Time:    now.UTC().Format(timeLayout),
		Topic:   name,
		Client:  client,
		RC:      d.code,
		Message: d.detail,
	}
	if t.qualified {
		n.Type, n.ID = t.typ, t.id
	}
	return n
}

// notify publishes a notify message to gateway cl (identity gw) at QoS 0,
// not retained: SDKs subscribe to notify at QoS 0.
func (h *hook) notify(cl *mqtt.Client, gw identity, request, name string, t topic, d decision) {
	b, err := json.Marshal(newNotification(request, name, t, cl.ID, d, h.p.now()))
	if err != nil { // cannot happen: strings and ints only
		h.p.log.Error("notify message not encoded", "client_id", cl.ID, "err", err)
		return
	}
	if err := h.p.publishPlatform(notifyTopic(gw.typ, gw.id), b, 0, false); err != nil {
		h.p.log.Debug("notify message not sent", "client_id", cl.ID, "err", err)
		return
	}
	h.p.rec.notifications.Add(1)
	h.p.log.Debug("notify message sent", "client_id", cl.ID, "request", request, "rc", d.code)
}
