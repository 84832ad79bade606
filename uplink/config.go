package uplink

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultKeepAlive      = 60 * time.Second
	DefaultConnectTimeout = 30 * time.Second
	DefaultMinBackoff     = 1 * time.Second
	DefaultMaxBackoff     = 10 * time.Second
	DefaultLongBackoff    = 5 * time.Minute
	DefaultStableAfter    = 1 * time.Minute
	DefaultAckTimeout     = 30 * time.Second
	DefaultWriteTimeout   = 30 * time.Second
	// DefaultMaxInflight is the platform's limit of unacknowledged messages
	// from one device (protocol.md §2.12); a gateway may use up to 1000.
	DefaultMaxInflight = 10
	DefaultMaxPending  = 1024
)

// quiesce is how long Run, when its context ends, waits for in-flight
// publishes to be acknowledged and then for the DISCONNECT to be written.
const quiesce = 250 * time.Millisecond

// takeoverThreshold is how many connections in a row must be closed by the
// broker within Config.StableAfter before Run reports ErrTakeover. A failed
// connection attempt in between (the broker unreachable: a restart or an
// outage, not a takeover) starts the count again.
const takeoverThreshold = 3

// Config describes one MQTT connection. Zero durations and limits take the
// defaults above.
type Config struct {
	// Broker is the broker's URL: tcp://host:port (plain), ssl://host:port
	// (TLS; also tls://, mqtts://), ws://host:port/path or
	// wss://host:port/path (the platform: wss://<org>.messaging.<domain>:443/mqtt).
	// No user info in the URL: use Username and Password.
	Broker string

	ClientID string
	Username string
	// Password is the device or gateway token. It is sent only in CONNECT
	// and never logged.
	Password string

	// TLS is used for ssl:// and wss:// brokers; nil there means system
	// roots. A MinVersion below TLS 1.2 is raised to 1.2 (on a copy). It
	// must be nil for tcp:// and ws://.
	// NewTLSConfig builds one from files.
	TLS *tls.Config

	KeepAlive time.Duration // default 60s; at most 65535s

	// CleanSession false (the platform's recommendation for commands) makes
	// the broker keep the subscriptions and queue QoS 1 messages while the
	// client is away. Subscriptions are sent again on every connect anyway.
	CleanSession bool

	// QoS of every Publish: 0 or 1.
	QoS byte

	ConnectTimeout time.Duration // dial, TLS and CONNACK, and SUBACK; default 30s

	// MinBackoff and MaxBackoff bound the exponential, jittered wait between
	// connection attempts. The wait grows with every failed attempt and every
	// connection that lasted less than StableAfter. Defaults 1s and 10s: a
	// broker that is back is found again within 10 s.
	MinBackoff, MaxBackoff time.Duration

	// Reachable, if set, is shared by the Clients of one broker: when one of
	// them connects, the others that are waiting to retry after a failure
	// (not after a refusal or a takeover) try again within MinBackoff (at
	// most 1 s), so that all connections come back together once the broker
	// is back.
	Reachable *Reachability

	// LongBackoff is the wait after the broker refused the credentials or the
	// client id, or after a suspected client-id takeover (ErrNotAuthorized,
	// ErrIdentifierRejected, ErrTakeover): retrying sooner would only hammer
	// the platform. Default 5m.
	LongBackoff time.Duration

	// StableAfter is how long a connection must last to count as healthy:
	// it resets the backoff. Shorter connections closed by the broker count
	// towards ErrTakeover. Default 1m.
	StableAfter time.Duration

	// AckTimeout bounds each Publish from the call to the acknowledgement;
	// default 30s.
	AckTimeout time.Duration

	// WriteTimeout bounds one write to the network connection; a write that
	// takes longer ends the connection. Default 30s.
	WriteTimeout time.Duration

	// MaxInflight is how many messages may be written and not yet
	// acknowledged at once; more wait in order. The platform allows 10 per
	// device and 1000 per gateway connection. Default 10.
	MaxInflight int

	// MaxPending is how many Publish calls may wait for their result at once
	// (queued plus in flight); beyond it Publish reports ErrBusy. Default 1024.
	MaxPending int

	// Subscriptions are made on every connect.
	Subscriptions []Subscription

	// Handler receives every inbound message. Required when Subscriptions is
	// not empty; with CleanSession false a broker may deliver queued messages
	// even without subscriptions, and those are acknowledged and dropped when
	// Handler is nil.
	Handler Handler

	// OnStateChange, if set, is called from Run's goroutine when a connection
	// is established (true, nil), when it ends (false, why: ErrConnectionLost
	// or ErrTakeover, wrapped with the cause), after every failed attempt
	// (false, why: ErrNotAuthorized, ErrIdentifierRejected, or a network,
	// TLS or subscribe error), and when Run stops after a clean disconnect
	// (false, nil). It must return quickly and must not call Run.
	OnStateChange func(connected bool, err error)
}

// Subscription is one topic filter and the QoS (0 or 1) to subscribe with.
type Subscription struct {
	Filter string
	QoS    byte
}

// Handler handles inbound messages.
type Handler interface {
	// HandleMessage is called for each inbound message, one at a time and in
	// the order they arrived (not always from the same goroutine: the
	// dispatcher runs only while messages wait). ctx ends when Run stops.
	// The message is acknowledged to the broker after HandleMessage returns,
	// whatever it returns; a non-nil error is logged. The handler may keep
	// payload. It should return promptly: while it runs, later messages wait,
	// and after a short queue fills up the connection stops reading. Run
	// waits for a running HandleMessage before it returns; when ctx has ended
	// the message is not acknowledged (a durable session delivers it again).
	// Messages may arrive twice (QoS 1 redelivery after a reconnect).
	HandleMessage(ctx context.Context, topic string, payload []byte) error
}

// HandlerFunc lets an ordinary function be a Handler.
type HandlerFunc func(ctx context.Context, topic string, payload []byte) error

// HandleMessage calls f(ctx, topic, payload).
func (f HandlerFunc) HandleMessage(ctx context.Context, topic string, payload []byte) error {
	return f(ctx, topic, payload)
}

// NewTLSConfig builds the TLS configuration for a broker connection: TLS 1.2
// at least; the CA certificates in caFile as the only trusted roots (empty:
// the system roots); a client certificate from certFile and keyFile (both or
// neither). insecureSkipVerify turns off server certificate checks and is for
// tests only; the caller should log a warning when it is set.
func NewTLSConfig(caFile, certFile, keyFile string, insecureSkipVerify bool) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: insecureSkipVerify} //nolint:gosec // explicit opt-in, documented
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("uplink: read CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("uplink: CA file %s contains no PEM certificate", caFile)
		}
		cfg.RootCAs = pool
	}
	switch {
	case certFile != "" && keyFile != "":
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("uplink: load client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	case certFile != "" || keyFile != "":
		return nil, errors.New("uplink: a client certificate needs both a certificate file and a key file")
	}
	return cfg, nil
}

// withDefaults returns cfg with defaults filled in, or the first problem.
func (cfg Config) withDefaults() (Config, error) {
	u, err := url.Parse(cfg.Broker)
	if err != nil {
		return cfg, fmt.Errorf("uplink: broker URL: %w", err)
	}
	if u.User != nil {
		return cfg, errors.New("uplink: broker URL must not contain user info; set Username and Password")
	}
	if u.Host == "" {
		return cfg, fmt.Errorf("uplink: broker URL %q has no host", cfg.Broker)
	}
	switch strings.ToLower(u.Scheme) {
	case "tcp", "mqtt":
		if cfg.TLS != nil {
			return cfg, fmt.Errorf("uplink: TLS configured but broker URL %q is plain; use ssl://", cfg.Broker)
		}
		if u.Port() == "" {
			return cfg, fmt.Errorf("uplink: broker URL %q has no port", cfg.Broker)
		}
	case "ws":
		if cfg.TLS != nil {
			return cfg, fmt.Errorf("uplink: TLS configured but broker URL %q is plain; use wss://", cfg.Broker)
		}
	case "ssl", "tls", "mqtts", "tcps":
		if u.Port() == "" {
			return cfg, fmt.Errorf("uplink: broker URL %q has no port", cfg.Broker)
		}
		if cfg.TLS == nil {
			cfg.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
		}
	case "wss":
		if cfg.TLS == nil {
			cfg.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
		}
	default:
		return cfg, fmt.Errorf("uplink: broker URL %q: scheme must be tcp, ssl, ws or wss", cfg.Broker)
	}
	if cfg.TLS != nil && cfg.TLS.MinVersion < tls.VersionTLS12 {
		cfg.TLS = cfg.TLS.Clone()
		cfg.TLS.MinVersion = tls.VersionTLS12 // the platform requires TLS 1.2
	}
	if cfg.ClientID == "" {
		return cfg, errors.New("uplink: empty client id")
	}
	if cfg.Password != "" && cfg.Username == "" {
		return cfg, errors.New("uplink: a password needs a username (MQTT 3.1.1)")
	}
	if cfg.QoS > 1 {
		return cfg, fmt.Errorf("uplink: QoS %d not supported (0 or 1)", cfg.QoS)
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"KeepAlive", &cfg.KeepAlive, DefaultKeepAlive},
		{"ConnectTimeout", &cfg.ConnectTimeout, DefaultConnectTimeout},
		{"MinBackoff", &cfg.MinBackoff, DefaultMinBackoff},
		{"MaxBackoff", &cfg.MaxBackoff, DefaultMaxBackoff},
		{"LongBackoff", &cfg.LongBackoff, DefaultLongBackoff},
		{"StableAfter", &cfg.StableAfter, DefaultStableAfter},
		{"AckTimeout", &cfg.AckTimeout, DefaultAckTimeout},
		{"WriteTimeout", &cfg.WriteTimeout, DefaultWriteTimeout},
	} {
		if *d.v < 0 {
			return cfg, fmt.Errorf("uplink: %s must not be negative", d.name)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if cfg.KeepAlive > 65535*time.Second {
		return cfg, errors.New("uplink: KeepAlive is at most 65535s")
	}
	if cfg.MinBackoff > cfg.MaxBackoff {
		return cfg, fmt.Errorf("uplink: MinBackoff %v is above MaxBackoff %v", cfg.MinBackoff, cfg.MaxBackoff)
	}
	if cfg.MaxInflight < 0 || cfg.MaxPending < 0 {
		return cfg, errors.New("uplink: MaxInflight and MaxPending must not be negative")
	}
	if cfg.MaxInflight == 0 {
		cfg.MaxInflight = DefaultMaxInflight
	}
	if cfg.MaxInflight > 65535 {
		return cfg, errors.New("uplink: MaxInflight is at most 65535 (MQTT packet ids)")
	}
	if cfg.MaxPending == 0 {
		cfg.MaxPending = DefaultMaxPending
	}
	for _, s := range cfg.Subscriptions {
		if err := validateFilter(s.Filter); err != nil {
			return cfg, err
		}
		if s.QoS > 1 {
			return cfg, fmt.Errorf("uplink: subscription %q: QoS %d not supported (0 or 1)", s.Filter, s.QoS)
		}
	}
	if len(cfg.Subscriptions) > 0 && cfg.Handler == nil {
		return cfg, errors.New("uplink: subscriptions need a Handler")
	}
	cfg.Subscriptions = append([]Subscription(nil), cfg.Subscriptions...)
	return cfg, nil
}
