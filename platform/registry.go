package platform

import (
	"bufio"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
)

// Device is a registered device or gateway: the pair (Type, ID) is unique in
// the org, Token is the password it presents with the user name
// "use-token-auth", and Gateway marks the gateway device class (rule C4: a
// gateway connects only as g:, a plain device only as d:). Role matters for
// gateways only.
type Device struct {
	Type    string
	ID      string
	Token   string
	Gateway bool
	Role    GatewayRole
}

// GatewayRole is a gateway's role (protocol.md §5.6). The zero value is the
// platform's default for new gateways, RolePrivileged.
type GatewayRole uint8

// The gateway roles.
const (
	// RolePrivileged gateways may register devices automatically (rules P4, S2).
	RolePrivileged GatewayRole = iota
	// RoleStandard gateways may not: acting for an unknown device is rejected.
	RoleStandard
)

func (r GatewayRole) String() string {
	switch r {
	case RolePrivileged:
		return "privileged"
	case RoleStandard:
		return "standard"
	}
	return fmt.Sprintf("role(%d)", uint8(r))
}

// APIKey is an application credential: the user name an application presents
// (an API key of the form a-<org>-<random>) and its password (the API token).
type APIKey struct {
	Key   string
	Token string
}

// Registry is the content of a registry file; see doc.go for the format.
type Registry struct {
	Devices []Device
	APIKeys []APIKey
}

// LoadRegistry reads a registry file. It is the only function of the package
// that reads files apart from Start's TLS key pair; a caller copies the
// result into Config.Devices and Config.APIKeys.
func LoadRegistry(path string) (Registry, error) {
	f, err := os.Open(path)
	if err != nil {
		return Registry{}, err
	}
	defer f.Close()
	return ReadRegistry(f, path)
}

// ReadRegistry parses registry lines from r; name prefixes error messages
// ("name:line: ..."). Every malformed line is reported, joined into one
// error that matches ErrInvalidRegistry.
func ReadRegistry(r io.Reader, name string) (Registry, error) {
	var (
		reg  Registry
		errs []error
		line int
	)
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s:%d: %s", ErrInvalidRegistry, name, line, fmt.Sprintf(format, args...)))
	}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line++
		fields := strings.Fields(sc.Text())
		for i, f := range fields {
			if strings.HasPrefix(f, "#") {
				fields = fields[:i]
				break
			}
		}
		if len(fields) == 0 {
			continue
		}
		switch kind := fields[0]; kind {
		case "device":
			if len(fields) != 4 {
				bad("want \"device\" <type> <id> <token>, got %d fields", len(fields))
				continue
			}
			d := Device{Type: fields[1], ID: fields[2], Token: fields[3]}
			if err := d.validate(); err != nil {
				bad("%v", err)
				continue
			}
			reg.Devices = append(reg.Devices, d)
		case "gateway":
			if len(fields) != 4 && len(fields) != 5 {
				bad("want \"gateway\" <type> <id> <token> [privileged|standard], got %d fields", len(fields))
				continue
			}
			d := Device{Type: fields[1], ID: fields[2], Token: fields[3], Gateway: true}
			if len(fields) == 5 {
				switch fields[4] {
				case "privileged":
				case "standard":
					d.Role = RoleStandard
				default:
					bad("unknown gateway role %q (want privileged or standard)", fields[4])
					continue
				}
			}
			if err := d.validate(); err != nil {
				bad("%v", err)
				continue
			}
			reg.Devices = append(reg.Devices, d)
		case "apikey":
			if len(fields) != 3 {
				bad("want \"apikey\" <key> <token>, got %d fields", len(fields))
				continue
			}
			k := APIKey{Key: fields[1], Token: fields[2]}
			if err := k.validate(""); err != nil {
				bad("%v", err)
				continue
			}
			reg.APIKeys = append(reg.APIKeys, k)
		default:
			bad("unknown entry %q (want device, gateway or apikey)", kind)
		}
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, fmt.Errorf("%w: %s: %w", ErrInvalidRegistry, name, err))
	}
	if err := errors.Join(errs...); err != nil {
		return Registry{}, err
	}
	return reg, nil
}

// validate checks identifiers and the token rules of protocol.md §1.2.
func (d Device) validate() error {
	if err := checkIdent(d.Type); err != nil {
		return fmt.Errorf("device type %q: %w", d.Type, err)
	}
	if err := checkIdent(d.ID); err != nil {
		return fmt.Errorf("device id %q: %w", d.ID, err)
	}
	if err := checkToken(d.Token); err != nil {
		return fmt.Errorf("token of %s/%s: %w", d.Type, d.ID, err)
	}
	if d.Role != RolePrivileged && d.Role != RoleStandard {
		return fmt.Errorf("device %s/%s: unknown gateway role %d", d.Type, d.ID, d.Role)
	}
	return nil
}

// checkToken applies the rule for device tokens: 8 to 36 characters of
// A-Z a-z 0-9 and _ . ! & @ ? * + ( ) -. The token itself never appears in
// an error.
func checkToken(t string) error {
	if len(t) < 8 || len(t) > 36 {
		return fmt.Errorf("length %d, want 8 to 36 characters", len(t))
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !identChar(c) && !strings.ContainsRune("!&@?*+()", rune(c)) {
			return fmt.Errorf("character at position %d not allowed", i+1)
		}
	}
	return nil
}

// validate checks an API key; with a non-empty org the key must also have
// the form a-<org>-<something>.
func (k APIKey) validate(org string) error {
	if k.Key == "" || strings.ContainsAny(k.Key, " \t\r\n#") {
		return fmt.Errorf("api key %q: empty or contains white space or '#'", k.Key)
	}
	if p := "a-" + org + "-"; org != "" && (!strings.HasPrefix(k.Key, p) || len(k.Key) == len(p)) {
		return fmt.Errorf("api key %q: want %s<random>", k.Key, p)
	}
	if k.Token == "" || strings.ContainsAny(k.Token, " \t\r\n#") {
		return fmt.Errorf("token of api key %q: empty or contains white space or '#'", k.Key)
	}
	return nil
}

type deviceKey struct{ typ, id string }

// registry is the platform's live, concurrency-safe credential store.
type registry struct {
	mu      sync.RWMutex
	devices map[deviceKey]Device
	apiKeys map[string]string
}

func newRegistry() *registry {
	return &registry{devices: map[deviceKey]Device{}, apiKeys: map[string]string{}}
}

func (r *registry) device(typ, id string) (Device, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	d, ok := r.devices[deviceKey{typ, id}]
	return d, ok
}

func (r *registry) putDevice(d Device) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.devices[deviceKey{d.Type, d.ID}] = d
}

// addDevice adds d unless (d.Type, d.ID) is registered already and reports
// whether it did.
func (r *registry) addDevice(d Device) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := deviceKey{d.Type, d.ID}
	if _, ok := r.devices[k]; ok {
		return false
	}
	r.devices[k] = d
	return true
}

func (r *registry) deleteDevice(typ, id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := deviceKey{typ, id}
	_, ok := r.devices[k]
	delete(r.devices, k)
	return ok
}

func (r *registry) putAPIKey(k APIKey) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.apiKeys[k.Key] = k.Token
}

// checkAPIKey reports whether key is registered with token.
func (r *registry) checkAPIKey(key, token string) bool {
	r.mu.RLock()
	want, ok := r.apiKeys[key]
	r.mu.RUnlock()
	return ok && tokenEqual(want, token)
}

func tokenEqual(want, got string) bool {
	return subtle.ConstantTimeCompare([]byte(want), []byte(got)) == 1
}
