package platform

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Topic prefixes of the platform's topic tree (protocol.md §3).
const (
	prefixIoT      = "iot-2"
	prefixDM       = "iotdm-1"     // platform → device (device management requests/responses)
	prefixDMDevice = "iotdevice-1" // device → platform (device management)
)

// topicKind is the family a topic or filter belongs to.
type topicKind uint8

const (
	kindUnknown   topicKind = iota // anything the platform does not define
	kindEvent                      // iot-2[/type/T/id/I]/evt/E/fmt/F
	kindCommand                    // iot-2[/type/T/id/I]/cmd/C/fmt/F
	kindMon                        // iot-2/type/T/id/I/mon
	kindNotify                     // iot-2/type/T/id/I/notify
	kindAppMon                     // iot-2/app/A/mon
	kindDMRequest                  // iotdm-1[/type/T/id/I]/<rest>
	kindDMDevice                   // iotdevice-1[/type/T/id/I]/<rest>
)

func (k topicKind) String() string {
	switch k {
	case kindEvent:
		return "event"
	case kindCommand:
		return "command"
	case kindMon:
		return "mon"
	case kindNotify:
		return "notify"
	case kindAppMon:
		return "app mon"
	case kindDMRequest:
		return "dm request"
	case kindDMDevice:
		return "dm device message"
	}
	return "unknown"
}

// topic is a classified topic name or topic filter. Fields that the kind does
// not use are empty. In a filter, any of typ, id, name, format and app may be
// "+", and rest may end in "#".
type topic struct {
	kind      topicKind
	qualified bool   // carries type/id (application and gateway view)
	typ, id   string // qualified forms
	name      string // event or command ID
	format    string
	app       string // kindAppMon
	rest      string // DM kinds: the path after the (qualified) prefix, e.g. "mgmt/manage"
}

// The nine device-management topics a device publishes (protocol.md §7.3 rows 1–9).
var dmDeviceRests = map[string]bool{
	"mgmt/manage":            true,
	"mgmt/unmanage":          true,
	"device/update/location": true,
	"add/diag/errorCodes":    true,
	"clear/diag/errorCodes":  true,
	"add/diag/log":           true,
	"clear/diag/log":         true,
	"notify":                 true,
	"response":               true,
}

// The device-management topics the platform publishes (protocol.md §7.3 rows 10–17;
// row 18, mgmt/custom/<bundleId>/<actionId>, is matched separately).
var dmRequestRests = map[string]bool{
	"response":                           true,
	"observe":                            true,
	"cancel":                             true,
	"device/update":                      true,
	"mgmt/initiate/device/reboot":        true,
	"mgmt/initiate/device/factory_reset": true,
	"mgmt/initiate/firmware/download":    true,
	"mgmt/initiate/firmware/update":      true,
}

// Errors from checkTopicSyntax; all of them are rule P6.
var (
	errTopicEmpty    = errors.New("empty topic")
	errTopicSegment  = errors.New("empty topic level")
	errTopicWildcard = errors.New("wildcard in topic name")
	errFilterSyntax  = errors.New("misplaced wildcard in topic filter")
	errTopicChars    = errors.New("topic is not valid UTF-8 or contains U+0000")
	errTopicLong     = errors.New("topic longer than 65535 bytes")
)

// checkTopicSyntax applies the platform's syntax rules (P6) to a topic name
// (filter false) or a topic filter (filter true): not empty, no empty levels,
// valid UTF-8 without U+0000, and wildcards only as whole levels of a filter,
// "#" last.
func checkTopicSyntax(s string, filter bool) error {
	switch {
	case s == "":
		return errTopicEmpty
	case len(s) > 65535:
		return errTopicLong
	case !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0:
		return errTopicChars
	}
	rest := s
	for {
		seg, tail, more := strings.Cut(rest, "/")
		if seg == "" {
			return errTopicSegment
		}
		if strings.ContainsAny(seg, "+#") {
			if !filter {
				return errTopicWildcard
			}
			if len(seg) != 1 || seg == "#" && more {
				return errFilterSyntax
			}
		}
		if !more {
			return nil
		}
		rest = tail
	}
}

// parseTopic checks the syntax of s (P6) and classifies it. A syntactically
// valid topic that matches no platform form has kind kindUnknown and a nil
// error: whether that is allowed is the policy's decision, not the parser's.
func parseTopic(s string, filter bool) (topic, error) {
	if err := checkTopicSyntax(s, filter); err != nil {
		return topic{}, err
	}
	segs := strings.Split(s, "/")
	switch segs[0] {
	case prefixIoT:
		return parseIoT(segs), nil
	case prefixDM, prefixDMDevice:
		return parseDM(segs, filter), nil
	}
	return topic{}, nil
}

func parseIoT(segs []string) topic {
	switch {
	case len(segs) == 5 && segs[3] == "fmt":
		if k := evtOrCmd(segs[1]); k != kindUnknown {
			return topic{kind: k, name: segs[2], format: segs[4]}
		}
	case len(segs) == 4 && segs[1] == "app" && segs[3] == "mon":
		return topic{kind: kindAppMon, app: segs[2]}
	case len(segs) >= 6 && segs[1] == "type" && segs[3] == "id":
		t := topic{qualified: true, typ: segs[2], id: segs[4]}
		tail := segs[5:]
		switch {
		case len(tail) == 4 && tail[2] == "fmt" && evtOrCmd(tail[0]) != kindUnknown:
			t.kind, t.name, t.format = evtOrCmd(tail[0]), tail[1], tail[3]
			return t
		case len(tail) == 1 && tail[0] == "mon":
			t.kind = kindMon
			return t
		case len(tail) == 1 && tail[0] == "notify":
			t.kind = kindNotify
			return t
		}
	}
	return topic{}
}

func evtOrCmd(s string) topicKind {
	switch s {
	case "evt":
		return kindEvent
	case "cmd":
		return kindCommand
	}
	return kindUnknown
}

func parseDM(segs []string, filter bool) topic {
	var t topic
	restSegs := segs[1:]
	if len(segs) >= 6 && segs[1] == "type" && segs[3] == "id" {
		t.qualified, t.typ, t.id = true, segs[2], segs[4]
		restSegs = segs[5:]
	}
	if len(restSegs) == 0 {
		return topic{}
	}
	t.rest = strings.Join(restSegs, "/")
	if segs[0] == prefixDMDevice {
		if !dmDeviceRests[t.rest] {
			return topic{}
		}
		t.kind = kindDMDevice
		return t
	}
	if !dmRequestRest(restSegs, filter) {
		return topic{}
	}
	t.kind = kindDMRequest
	return t
}

// dmRequestRest reports whether the path after iotdm-1[/type/T/id/I] is one
// the platform publishes, or, for a filter, one of the documented
// subscriptions: "#", "mgmt/custom/#" and the concrete topics (the custom
// action's bundle and action levels may be "+").
func dmRequestRest(rest []string, filter bool) bool {
	if len(rest) == 1 && rest[0] == "#" {
		return filter
	}
	if len(rest) >= 3 && rest[0] == "mgmt" && rest[1] == "custom" {
		switch {
		case len(rest) == 3 && rest[2] == "#":
			return filter
		case len(rest) == 4:
			return rest[3] != "#" // bundle/action; "#" would make it a deeper filter
		}
		return false
	}
	for _, s := range rest {
		if s == "+" || s == "#" {
			return false
		}
	}
	return dmRequestRests[strings.Join(rest, "/")]
}

// qualifiedPrefix returns "<prefix>/type/<typ>/id/<id>/".
func qualifiedPrefix(prefix, typ, id string) string {
	return prefix + "/type/" + typ + "/id/" + id + "/"
}

// qualify rewrites a device's relative topic or filter s into the qualified
// form for (typ, id) (rule R1 and the filter side of R2):
// iot-2/evt/E/fmt/F → iot-2/type/T/id/D/evt/E/fmt/F, iotdm-1/X → iotdm-1/type/T/id/D/X.
// s must be relative and start with one of the platform prefixes.
func qualify(s, typ, id string) string {
	prefix, rest, _ := strings.Cut(s, "/")
	return qualifiedPrefix(prefix, typ, id) + rest
}

// relativize is the inverse of qualify for topics that belong to (typ, id); it
// reports false for any other topic.
func relativize(s, typ, id string) (string, bool) {
	prefix, rest, ok := strings.Cut(s, "/")
	if !ok {
		return "", false
	}
	switch prefix {
	case prefixIoT, prefixDM, prefixDMDevice:
	default:
		return "", false
	}
	q := "type/" + typ + "/id/" + id + "/"
	if !strings.HasPrefix(rest, q) || len(rest) == len(q) {
		return "", false
	}
	return prefix + "/" + rest[len(q):], true
}

// CommandTopic returns the qualified topic an application publishes a command
// on, iot-2/type/<typ>/id/<id>/cmd/<command>/fmt/<format>, after checking
// typ and id against the platform's ID rules and command and format for a
// single topic level without wildcards. Errors match ErrInvalidTopic.
func CommandTopic(typ, id, command, format string) (string, error) {
	for _, f := range []struct{ name, v string }{{"type", typ}, {"id", id}} {
		if err := checkIdent(f.v); err != nil {
			return "", fmt.Errorf("%w: device %s %q: %w", ErrInvalidTopic, f.name, f.v, err)
		}
	}
	for _, f := range []struct{ name, v string }{{"command", command}, {"format", format}} {
		if f.v == "" || strings.ContainsAny(f.v, "/+#\x00") || !utf8.ValidString(f.v) {
			return "", fmt.Errorf("%w: %s %q must be one non-empty topic level without wildcards", ErrInvalidTopic, f.name, f.v)
		}
	}
	return qualifiedPrefix(prefixIoT, typ, id) + "cmd/" + command + "/fmt/" + format, nil
}

// matchFilter reports whether topic name matches filter the way mochi routes
// messages: "+" one level, "#" the rest including the parent level, except
// after a "+" (mochi does not match "+/#" with a one-level topic). Both must
// be syntactically valid; topics starting with "$" are not special here (the
// platform's topics never start with it).
func matchFilter(filter, name string) bool {
	for {
		f, frest, fmore := strings.Cut(filter, "/")
		if f == "#" {
			return true
		}
		n, nrest, nmore := strings.Cut(name, "/")
		if f != "+" && f != n {
			return false
		}
		switch {
		case !fmore && !nmore:
			return true
		case !nmore:
			return frest == "#" && f != "+" // "a/#" matches "a"
		case !fmore:
			return false
		}
		filter, name = frest, nrest
	}
}

// monTopic returns the status topic of a device or gateway.
func monTopic(typ, id string) string {
	return qualifiedPrefix(prefixIoT, typ, id) + "mon"
}

// appMonTopic returns the status topic of an application.
func appMonTopic(app string) string {
	return prefixIoT + "/app/" + app + "/mon"
}

// notifyTopic returns a gateway's notify topic.
func notifyTopic(typ, id string) string {
	return qualifiedPrefix(prefixIoT, typ, id) + "notify"
}

// dmTopic returns the qualified iotdm-1 topic of (typ, id) for rest, e.g.
// "response" or "mgmt/initiate/device/reboot".
func dmTopic(typ, id, rest string) string {
	return qualifiedPrefix(prefixDM, typ, id) + rest
}
