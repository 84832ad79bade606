package platform

import (
	"encoding/json"
	"errors"
	"net"
	"os"
	"strconv"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Close codes of protocol.md §2.10 that only appear in mon messages
// (Status.CloseCode); the others are the Code* constants of policy.go.
const (
	CodeClientClosed     = 91  // closed by the client side or the network (no DISCONNECT)
	CodeServerShutdown   = 93  // the platform shut down
	CodeKeepaliveTimeout = 160 // nothing received within 1.5 keepalive periods
)

// closeReasons are the Reason texts of mon Disconnect and FailedConnect
// messages, paraphrasing protocol.md §2.10.
var closeReasons = map[int]string{
	CodeClientClosed:     "The connection was closed by the client or the network",
	CodeServerShutdown:   "The server was shut down",
	CodeKeepaliveTimeout: "The keepalive timeout expired",
	CodeClientIDInvalid:  "The client ID is not valid",
	CodeNotAuthorized:    "The operation is not authorized",
	CodeTopicInvalid:     "The topic name or filter is not valid",
	CodeTooLarge:         "The message size is too large for this endpoint",
	CodeClientIDReused:   "The clientID was reused",
}

// The values of Status.Action.
const (
	StatusConnect       = "Connect"
	StatusDisconnect    = "Disconnect"
	StatusFailedConnect = "FailedConnect"
)

// Status is the payload of a connection status message (protocol.md §6.3,
// rule Q4), published by the platform at QoS 0 on iot-2/type/<T>/id/<D>/mon
// for devices and gateways and on iot-2/app/<appId>/mon for applications.
// A device's or gateway's Connect and Disconnect are retained, so a new
// subscriber learns the current state; an application's Connect is retained
// until its Disconnect (not retained) clears it; FailedConnect is never
// retained.
type Status struct {
	Action      string `json:"Action"`     // StatusConnect, StatusDisconnect or StatusFailedConnect
	Time        string `json:"Time"`       // ISO 8601, UTC, milliseconds
	ClientAddr  string `json:"ClientAddr"` // the client's IP address
	ClientID    string `json:"ClientID"`
	Port        int    `json:"Port"`     // the platform's listening port
	Secure      bool   `json:"Secure"`   // TLS
	Protocol    string `json:"Protocol"` // mqtt3, mqtt4, mqtt5, mqtt3-ws, mqtt4-ws, mqttv5-ws (sic)
	User        string `json:"User,omitempty"`
	ConnectTime string `json:"ConnectTime,omitempty"` // when the connection was established
	CloseCode   int    `json:"CloseCode,omitempty"`   // protocol.md §2.10; absent for Connect and a normal close
	Reason      string `json:"Reason,omitempty"`
	ReadBytes   int64  `json:"ReadBytes"`
	ReadMsg     int64  `json:"ReadMsg"` // publishes received from the client
	WriteBytes  int64  `json:"WriteBytes"`
	WriteMsg    int64  `json:"WriteMsg"` // publishes sent to the client
}

// connState is what the hook remembers about an established connection for
// its Disconnect message.
type connState struct {
	since  time.Time
	ended  bool   // the Disconnect message is sent or being sent (guarded by hook.connMu)
	code   int    // close code decided by the platform (kill, takeover), else 0
	reason string // detail for code
}

// closeCode maps why mochi ended a connection to a close code of
// protocol.md §2.10; 0 means a normal close (the client sent DISCONNECT).
func closeCode(cause error) int {
	switch {
	case cause == nil, errors.Is(cause, packets.CodeDisconnect):
		return 0
	case errors.Is(cause, packets.ErrServerShuttingDown):
		return CodeServerShutdown
	case errors.Is(cause, packets.ErrSessionTakenOver):
		return CodeClientIDReused
	case errors.Is(cause, packets.ErrPacketTooLarge):
		return CodeTooLarge
	case errors.Is(cause, os.ErrDeadlineExceeded):
		return CodeKeepaliveTimeout
	}
	return CodeClientClosed
}

// protocolName is the Protocol field for an MQTT protocol version on a
// listener.
func protocolName(version byte, ws bool) string {
	name := "mqtt" + strconv.Itoa(int(version))
	if ws {
		if version == 5 {
			return "mqttv5-ws" // as the platform spells it
		}
		return name + "-ws"
	}
	return name
}

// newStatus builds a mon payload for cl; since is the connection's start
// (zero for FailedConnect).
func (p *Platform) newStatus(cl *mqtt.Client, action string, since time.Time, code int, reason string) Status {
	host, _, err := net.SplitHostPort(cl.Net.Remote)
	if err != nil {
		host = cl.Net.Remote
	}
	port, ws := p.listenerInfo(cl.Net.Listener)
	s := Status{
		Action:     action,
		Time:       p.now().UTC().Format(timeLayout),
		ClientAddr: host,
		ClientID:   cl.ID,
		Port:       port,
		Secure:     p.cfg.TLSCertFile != "",
		Protocol:   protocolName(cl.Properties.ProtocolVersion, ws),
		User:       string(cl.Properties.Username),
		CloseCode:  code,
	}
	if !since.IsZero() {
		s.ConnectTime = since.UTC().Format(timeLayout)
	}
	if code != 0 {
		s.Reason = closeReasons[code]
		if reason != "" {
			s.Reason = reason
		}
	}
	if mc, ok := cl.Net.Conn.(*meteredConn); ok {
		s.ReadBytes, s.WriteBytes = mc.readBytes.Load(), mc.writeBytes.Load()
		s.ReadMsg, s.WriteMsg = mc.readMsgs.Load(), mc.writeMsgs.Load()
	}
	return s
}

// publishStatus publishes a mon message about client cl (identity id) under
// the retention rules of Status.
func (p *Platform) publishStatus(cl *mqtt.Client, id identity, s Status) {
	b, err := json.Marshal(s)
	if err != nil { // cannot happen: strings, ints and bools only
		p.log.Error("status message not encoded", "client_id", cl.ID, "err", err)
		return
	}
	var topic string
	retain := s.Action != StatusFailedConnect
	if id.isApp() {
		topic = appMonTopic(id.app)
		if s.Action == StatusDisconnect {
			retain = false
			p.clearRetained(topic)
		}
	} else {
		topic = monTopic(id.typ, id.id)
	}
	if err := p.publishPlatform(topic, b, 0, retain); err != nil {
		p.log.Debug("status message not sent", "client_id", cl.ID, "err", err)
		return
	}
	p.log.Debug("status message sent", "client_id", cl.ID, "action", s.Action, "code", s.CloseCode)
}
