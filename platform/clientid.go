package platform

import (
	"errors"
	"fmt"
	"strings"
)

// Class is the client class encoded in the first letter of an MQTT client ID
// (protocol.md §1.1).
type Class byte

// The client classes of the platform.
const (
	ClassDevice    Class = 'd' // d:<org>:<type>:<id>
	ClassGateway   Class = 'g' // g:<org>:<type>:<id>
	ClassApp       Class = 'a' // a:<org>:<appId>
	ClassSharedApp Class = 'A' // A:<org>:<appId>[:<instanceId>]
)

func (c Class) String() string {
	switch c {
	case ClassDevice:
		return "device"
	case ClassGateway:
		return "gateway"
	case ClassApp:
		return "application"
	case ClassSharedApp:
		return "shared application"
	}
	return fmt.Sprintf("class(%q)", byte(c))
}

// maxIdentLen is the longest type, device, app or instance ID (protocol.md §1.2).
const maxIdentLen = 36

// identity is a parsed client ID.
type identity struct {
	class    Class
	org      string
	typ      string // device and gateway
	id       string // device and gateway
	app      string // applications
	instance string // shared applications, optional
}

// isDeviceLike reports whether the client is a device or a gateway, i.e. one
// registered (type, id) pair that authenticates with a token.
func (i identity) isDeviceLike() bool {
	return i.class == ClassDevice || i.class == ClassGateway
}

// isApp reports whether the client is an application of either kind.
func (i identity) isApp() bool {
	return i.class == ClassApp || i.class == ClassSharedApp
}

var errClientID = errors.New("malformed client id")

// parseClientID checks a client ID against rule C3's grammar. It does not
// compare the org with the served one; the caller does (a well-formed ID of
// another org is refused as "not authorized", see doc.go).
func parseClientID(s string) (identity, error) {
	if len(s) < 2 || s[1] != ':' {
		return identity{}, fmt.Errorf("%w: want <class>:<org>:...", errClientID)
	}
	parts := strings.Split(s, ":")
	for i, p := range parts[1:] {
		if err := checkIdent(p); err != nil {
			return identity{}, fmt.Errorf("%w: segment %d: %w", errClientID, i+2, err)
		}
	}
	c := Class(s[0])
	switch c {
	case ClassDevice, ClassGateway:
		if len(parts) != 4 {
			return identity{}, fmt.Errorf("%w: want %c:<org>:<type>:<id>", errClientID, c)
		}
		return identity{class: c, org: parts[1], typ: parts[2], id: parts[3]}, nil
	case ClassApp:
		if len(parts) != 3 {
			return identity{}, fmt.Errorf("%w: want a:<org>:<appId>", errClientID)
		}
		return identity{class: c, org: parts[1], app: parts[2]}, nil
	case ClassSharedApp:
		switch len(parts) {
		case 3:
			return identity{class: c, org: parts[1], app: parts[2]}, nil
		case 4:
			return identity{class: c, org: parts[1], app: parts[2], instance: parts[3]}, nil
		}
		return identity{}, fmt.Errorf("%w: want A:<org>:<appId>[:<instanceId>]", errClientID)
	}
	return identity{}, fmt.Errorf("%w: unknown class %q", errClientID, s[:1])
}

// checkIdent checks one ID segment: 1 to 36 characters of A-Z a-z 0-9 - _ .
func checkIdent(s string) error {
	if s == "" {
		return errors.New("empty")
	}
	if len(s) > maxIdentLen {
		return fmt.Errorf("longer than %d characters", maxIdentLen)
	}
	for i := 0; i < len(s); i++ {
		if !identChar(s[i]) {
			return fmt.Errorf("character %q not allowed", s[i])
		}
	}
	return nil
}

func identChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '-' || c == '_' || c == '.'
}
