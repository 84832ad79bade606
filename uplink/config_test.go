package uplink

import (
	"context"
	"crypto/tls"
	"os"
	"path/filepath"
	"testing"
	"time"

	"fieldbridge/internal/testpki"
)

func TestNewRejects(t *testing.T) {
	base := func() Config { return testConfig("tcp://127.0.0.1:1883") }
	tests := []struct {
		name   string
		mutate func(*Config)
	}{
		{"unparsable URL", func(c *Config) { c.Broker = "tcp://[::1" }},
		{"unknown scheme", func(c *Config) { c.Broker = "http://127.0.0.1:1883" }},
		{"no host", func(c *Config) { c.Broker = "tcp://" }},
		{"no port", func(c *Config) { c.Broker = "tcp://127.0.0.1" }},
		{"user info in URL", func(c *Config) { c.Broker = "tcp://u:secret@127.0.0.1:1883" }},
		{"TLS with tcp", func(c *Config) { c.TLS = &tls.Config{MinVersion: tls.VersionTLS12} }},
		{"TLS with ws", func(c *Config) {
			c.Broker = "ws://127.0.0.1:80/mqtt"
			c.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
		}},
		{"empty client id", func(c *Config) { c.ClientID = "" }},
		{"password without username", func(c *Config) { c.Username = "" }},
		{"QoS 2", func(c *Config) { c.QoS = 2 }},
		{"negative keepalive", func(c *Config) { c.KeepAlive = -time.Second }},
		{"huge keepalive", func(c *Config) { c.KeepAlive = 70000 * time.Second }},
		{"min above max backoff", func(c *Config) { c.MinBackoff = time.Minute; c.MaxBackoff = time.Second }},
		{"negative inflight", func(c *Config) { c.MaxInflight = -1 }},
		{"inflight above packet ids", func(c *Config) { c.MaxInflight = 70000 }},
		{"bad filter", func(c *Config) {
			c.Subscriptions = []Subscription{{Filter: "iot-2/#/x", QoS: 1}}
			c.Handler = HandlerFunc(func(context.Context, string, []byte) error { return nil })
		}},
		{"subscription QoS 2", func(c *Config) {
			c.Subscriptions = []Subscription{{Filter: "iot-2/cmd/+/fmt/+", QoS: 2}}
			c.Handler = HandlerFunc(func(context.Context, string, []byte) error { return nil })
		}},
		{"subscriptions without handler", func(c *Config) { c.Subscriptions = []Subscription{{Filter: "iot-2/cmd/+/fmt/+", QoS: 1}} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base()
			tt.mutate(&cfg)
			if c, err := New(cfg, nil); err == nil {
				t.Errorf("New(%+v) = %v, nil; want an error", cfg, c)
			}
		})
	}
}

func TestNewDefaults(t *testing.T) {
	c, err := New(Config{Broker: "ssl://broker.example:8883", ClientID: "d:ab12cd:t:i"}, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	got := c.cfg
	if got.KeepAlive != DefaultKeepAlive || got.ConnectTimeout != DefaultConnectTimeout ||
		got.MinBackoff != DefaultMinBackoff || got.MaxBackoff != DefaultMaxBackoff ||
		got.LongBackoff != DefaultLongBackoff || got.StableAfter != DefaultStableAfter ||
		got.AckTimeout != DefaultAckTimeout || got.WriteTimeout != DefaultWriteTimeout ||
		got.MaxInflight != DefaultMaxInflight || got.MaxPending != DefaultMaxPending {
		t.Errorf("defaults not applied: %+v", got)
	}
	if got.TLS == nil || got.TLS.MinVersion != tls.VersionTLS12 {
		t.Errorf("ssl:// without TLS: got TLS %+v, want system roots with TLS 1.2 minimum", got.TLS)
	}
	if c.Connected() {
		t.Error("Connected() before Run = true")
	}
}

func TestNewRaisesTLSMinVersion(t *testing.T) {
	in := &tls.Config{MinVersion: tls.VersionTLS10} //nolint:gosec // the point of the test
	c, err := New(Config{Broker: "wss://broker.example:443/mqtt", ClientID: "x", TLS: in}, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if c.cfg.TLS.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion = %x, want TLS 1.2", c.cfg.TLS.MinVersion)
	}
	if in.MinVersion != tls.VersionTLS10 {
		t.Error("New modified the caller's tls.Config")
	}
}

func TestPublishBeforeRun(t *testing.T) {
	c, err := New(testConfig("tcp://127.0.0.1:1"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := result(t, c.Publish(context.Background(), DeviceEventTopic("reading", "json"), []byte("{}")), time.Second); err != ErrNotConnected {
		t.Errorf("Publish before Run = %v, want ErrNotConnected", err)
	}
}

func TestBackoff(t *testing.T) {
	b := backoff{base: 100 * time.Millisecond, max: time.Second}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i, w := range want {
		w *= time.Millisecond
		d := b.next()
		if d < w/2 || d > w {
			t.Errorf("wait %d = %v, want within [%v, %v]", i, d, w/2, w)
		}
	}
	for range 100 { // no overflow however long it grows
		if d := b.next(); d < 500*time.Millisecond || d > time.Second {
			t.Fatalf("capped wait = %v, want within [500ms, 1s]", d)
		}
	}
	b.reset()
	if d := b.next(); d > 100*time.Millisecond {
		t.Errorf("wait after reset = %v, want at most 100ms", d)
	}
}

func TestNewTLSConfig(t *testing.T) {
	pki := testpki.New(t)
	dir := t.TempDir()
	caFile, certFile, keyFile := pki.CAFile, pki.CertFile, pki.KeyFile
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}

	cfg, err := NewTLSConfig(caFile, certFile, keyFile, false)
	if err != nil {
		t.Fatalf("NewTLSConfig: %v", err)
	}
	if cfg.MinVersion != tls.VersionTLS12 || cfg.RootCAs == nil || len(cfg.Certificates) != 1 || cfg.InsecureSkipVerify {
		t.Errorf("NewTLSConfig = %+v, want TLS 1.2 minimum, pinned roots, one client certificate", cfg)
	}
	cfg, err = NewTLSConfig("", "", "", false)
	if err != nil || cfg.RootCAs != nil || cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("NewTLSConfig with no files = %+v, %v; want system roots, TLS 1.2", cfg, err)
	}
	if cfg, _ := NewTLSConfig("", "", "", true); !cfg.InsecureSkipVerify {
		t.Error("insecureSkipVerify not applied")
	}

	for name, args := range map[string][3]string{
		"missing CA file":     {filepath.Join(dir, "nope.pem"), "", ""},
		"CA file without PEM": {notPEM, "", ""},
		"cert without key":    {"", certFile, ""},
		"key without cert":    {"", "", keyFile},
		"bad key pair":        {"", caFile, keyFile},
	} {
		if _, err := NewTLSConfig(args[0], args[1], args[2], false); err == nil {
			t.Errorf("NewTLSConfig (%s) = nil error, want one", name)
		}
	}
}
