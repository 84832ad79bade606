package platform

import (
	"crypto/tls"
	"path/filepath"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"fieldbridge/internal/testpki"
)

func TestTLS(t *testing.T) {
	pki := testpki.New(t)
	p := startPlatform(t, func(c *Config) {
		c.TLSCertFile, c.TLSKeyFile = pki.CertFile, pki.KeyFile
		c.WSAddr = "127.0.0.1:0"
	})
	sub, err := p.Subscribe("iot-2/type/+/id/+/evt/+/fmt/+")
	if err != nil {
		t.Fatal(err)
	}
	withTLS := func(o *paho.ClientOptions) {
		o.SetTLSConfig(&tls.Config{RootCAs: pki.Pool, MinVersion: tls.VersionTLS12})
	}
	for _, broker := range []string{"ssl://" + p.Addr(), "wss://" + p.WSAddr() + "/mqtt"} {
		c, rc, err := dial(t, broker, pump17, tokenAuth, pump17Token, withTLS)
		if err != nil {
			t.Fatalf("%s: rc %d: %v", broker, rc, err)
		}
		c.publish(t, "iot-2/evt/secure/fmt/json", 1, false, []byte(`{}`))
		if m := recv(t, sub); m.Topic != "iot-2/type/pump/id/P-17/evt/secure/fmt/json" {
			t.Errorf("%s: event on %q", broker, m.Topic)
		}
		c.Disconnect(0)
	}
	if _, _, err := dial(t, "tcp://"+p.Addr(), pump18, tokenAuth, pump18Token, func(o *paho.ClientOptions) {
		o.SetConnectTimeout(time.Second)
	}); err == nil {
		t.Error("plain MQTT connection to a TLS listener succeeded")
	}
}

func TestStartFailsWithoutKeyPair(t *testing.T) {
	dir := t.TempDir()
	p, err := New(Config{Org: testOrg, TLSCertFile: filepath.Join(dir, "c.pem"), TLSKeyFile: filepath.Join(dir, "k.pem")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	if err := p.Start(); err == nil {
		t.Fatal("Start without a key pair succeeded")
	}
}
