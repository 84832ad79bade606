package platform

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// writeTestCert writes a self-signed certificate for 127.0.0.1 and its key
// into a temporary directory and returns their paths and a pool trusting it.
func writeTestCert(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "local platform"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func TestTLS(t *testing.T) {
	certFile, keyFile, pool := writeTestCert(t)
	p := startPlatform(t, func(c *Config) {
		c.TLSCertFile, c.TLSKeyFile = certFile, keyFile
		c.WSAddr = "127.0.0.1:0"
	})
	sub, err := p.Subscribe("iot-2/type/+/id/+/evt/+/fmt/+")
	if err != nil {
		t.Fatal(err)
	}
	withTLS := func(o *paho.ClientOptions) {
		o.SetTLSConfig(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
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
