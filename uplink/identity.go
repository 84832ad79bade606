package uplink

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Platform constants (protocol.md §0, §2).
const (
	// MaxPayload is the largest payload the platform accepts, in bytes. A
	// larger message makes the platform close the connection (close code
	// 287), so Publish refuses it before anything is sent.
	MaxPayload = 131072

	// TokenAuthUsername is the literal username that devices and gateways
	// send with their authentication token as the password.
	TokenAuthUsername = "use-token-auth"

	// QuickstartOrg is the organisation id of the platform's quickstart
	// service: no credentials, plain TCP, QoS 0, devices only.
	QuickstartOrg = "quickstart"

	// DefaultDomain is the messaging domain the SDKs use by default.
	DefaultDomain = "internetofthings.ibmcloud.com"

	// MaxIDLength is the longest type, device or application id the platform
	// accepts.
	MaxIDLength = 36
)

// Identity names a device or a gateway on the platform: its organisation,
// its device type and its device id.
type Identity struct {
	Org  string // organisation id, e.g. "ab12cd" or QuickstartOrg
	Type string // device type id
	ID   string // device id
}

// Validate checks the organisation, type and id against the platform's
// character rules (ValidateOrg, ValidateID).
func (id Identity) Validate() error {
	if err := ValidateOrg(id.Org); err != nil {
		return fmt.Errorf("org: %w", err)
	}
	if err := ValidateID(id.Type); err != nil {
		return fmt.Errorf("type: %w", err)
	}
	if err := ValidateID(id.ID); err != nil {
		return fmt.Errorf("id: %w", err)
	}
	return nil
}

// DeviceClientID returns the MQTT client id of a device, d:<org>:<type>:<id>.
// Quickstart devices use the same form with Org set to QuickstartOrg.
func DeviceClientID(id Identity) string {
	return "d:" + id.Org + ":" + id.Type + ":" + id.ID
}

// GatewayClientID returns the MQTT client id of a gateway, g:<org>:<type>:<id>.
func GatewayClientID(id Identity) string {
	return "g:" + id.Org + ":" + id.Type + ":" + id.ID
}

// Host returns the platform's messaging host for an organisation,
// <org>.messaging.<domain>. An empty domain means DefaultDomain.
func Host(org, domain string) string {
	if domain == "" {
		domain = DefaultDomain
	}
	return org + ".messaging." + domain
}

// DeviceEventTopic returns the topic a device publishes an event on,
// iot-2/evt/<event>/fmt/<format>. The platform attributes it to the
// connection's own identity.
func DeviceEventTopic(event, format string) string {
	return "iot-2/evt/" + event + "/fmt/" + format
}

// GatewayEventTopic returns the topic a gateway publishes an event on for
// itself or for an attached device,
// iot-2/type/<type>/id/<id>/evt/<event>/fmt/<format>. dev.Org is not part of
// the topic.
func GatewayEventTopic(dev Identity, event, format string) string {
	return "iot-2/type/" + dev.Type + "/id/" + dev.ID + "/evt/" + event + "/fmt/" + format
}

// DeviceCommandTopic returns the topic (or, with "+" for command or format,
// the filter) on which a device receives commands,
// iot-2/cmd/<command>/fmt/<format>. Devices usually subscribe to
// DeviceCommandTopic("+", "+").
func DeviceCommandTopic(command, format string) string {
	return "iot-2/cmd/" + command + "/fmt/" + format
}

// GatewayCommandTopic returns the qualified topic (or filter: "+" is allowed
// in type, id, command and format) on which a gateway receives commands for
// itself or an attached device,
// iot-2/type/<type>/id/<id>/cmd/<command>/fmt/<format>.
func GatewayCommandTopic(dev Identity, command, format string) string {
	return "iot-2/type/" + dev.Type + "/id/" + dev.ID + "/cmd/" + command + "/fmt/" + format
}

// GatewayNotifyTopic returns the topic on which the platform reports a
// gateway's rejected publishes and subscriptions and failed
// auto-registrations, iot-2/type/<type>/id/<id>/notify.
func GatewayNotifyTopic(gw Identity) string {
	return "iot-2/type/" + gw.Type + "/id/" + gw.ID + "/notify"
}

// ErrInvalidID is wrapped by every error of ValidateOrg, ValidateID and
// ValidateEventID.
var ErrInvalidID = errors.New("invalid identifier")

// ValidateID checks a device type, device id, application id or instance id
// against the platform's rules: 1 to 36 characters from A-Z a-z 0-9 - _ .
// (protocol.md §1.2). The platform's newer documentation leaves out the dot
// for device ids; it is accepted here because the original rules allow it.
func ValidateID(s string) error {
	if s == "" {
		return fmt.Errorf("%w: empty", ErrInvalidID)
	}
	if len(s) > MaxIDLength {
		return fmt.Errorf("%w: %q is %d characters long, at most %d are allowed", ErrInvalidID, s, len(s), MaxIDLength)
	}
	for i := 0; i < len(s); i++ {
		if !isIDChar(s[i]) {
			r, _ := utf8.DecodeRuneInString(s[i:])
			return fmt.Errorf("%w: %q contains %q at offset %d (allowed: A-Z a-z 0-9 - _ .)", ErrInvalidID, s, r, i)
		}
	}
	return nil
}

func isIDChar(b byte) bool {
	return 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '-' || b == '_' || b == '.'
}

// ValidateOrg checks an organisation id. The platform assigns 6-character
// lower-case ids (or "quickstart"); since the id becomes the first label of
// the messaging host name, any DNS label is accepted here (1 to 63
// characters from A-Z a-z 0-9 -, not starting or ending with -) so that
// dedicated and local platforms work too.
func ValidateOrg(s string) error {
	if s == "" {
		return fmt.Errorf("%w: empty organisation id", ErrInvalidID)
	}
	if len(s) > 63 {
		return fmt.Errorf("%w: organisation id %q is longer than 63 characters", ErrInvalidID, s)
	}
	if s[0] == '-' || s[len(s)-1] == '-' {
		return fmt.Errorf("%w: organisation id %q starts or ends with '-'", ErrInvalidID, s)
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if !('a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '-') {
			r, _ := utf8.DecodeRuneInString(s[i:])
			return fmt.Errorf("%w: organisation id %q contains %q at offset %d (allowed: A-Z a-z 0-9 -)", ErrInvalidID, s, r, i)
		}
	}
	return nil
}

// ValidateEventID checks an event id, command id or format: the platform
// accepts "any string valid in MQTT" that fits one topic level, so it must
// be non-empty valid UTF-8 without '/', the wildcards '+' and '#', and
// control characters. Use it for configured names; topic filters that
// subscribe with "+" are not ids.
func ValidateEventID(s string) error {
	if s == "" {
		return fmt.Errorf("%w: empty", ErrInvalidID)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: %q is not valid UTF-8", ErrInvalidID, s)
	}
	if i := strings.IndexFunc(s, func(r rune) bool {
		return r == '/' || r == '+' || r == '#' || r < 0x20 || r == 0x7f
	}); i >= 0 {
		r, _ := utf8.DecodeRuneInString(s[i:])
		return fmt.Errorf("%w: %q contains %q at offset %d (one topic level: no '/', '+', '#' or control characters)", ErrInvalidID, s, r, i)
	}
	return nil
}

// validateTopicName checks a topic Publish is asked to send: MQTT forbids
// wildcards and NUL in topic names, and the platform closes the connection
// (close code 276) on an invalid topic, so such a topic is refused locally.
func validateTopicName(topic string) error {
	switch {
	case topic == "":
		return fmt.Errorf("%w: empty topic", ErrInvalidTopic)
	case len(topic) > 65535:
		return fmt.Errorf("%w: topic longer than 65535 bytes", ErrInvalidTopic)
	case strings.ContainsAny(topic, "+#\x00"):
		return fmt.Errorf("%w: %q contains a wildcard or NUL", ErrInvalidTopic, topic)
	case !utf8.ValidString(topic):
		return fmt.Errorf("%w: %q is not valid UTF-8", ErrInvalidTopic, topic)
	}
	return nil
}

// validateFilter checks a subscription filter: non-empty, valid UTF-8, '#'
// only as the whole last level and '+' only as a whole level.
func validateFilter(filter string) error {
	if filter == "" || !utf8.ValidString(filter) || strings.ContainsRune(filter, 0) {
		return fmt.Errorf("%w: %q is not a valid topic filter", ErrInvalidTopic, filter)
	}
	levels := strings.Split(filter, "/")
	for i, l := range levels {
		if strings.ContainsAny(l, "+#") && len(l) > 1 {
			return fmt.Errorf("%w: %q: a wildcard must fill a whole level", ErrInvalidTopic, filter)
		}
		if l == "#" && i != len(levels)-1 {
			return fmt.Errorf("%w: %q: '#' must be the last level", ErrInvalidTopic, filter)
		}
	}
	return nil
}
