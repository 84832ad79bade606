package mqtttest

import (
	"io"
	"net"
	"testing"
	"time"
)

// mqttConnect sends a minimal MQTT 3.1.1 CONNECT and reports whether the
// broker accepted it (CONNACK return code 0).
func mqttConnect(t *testing.T, addr string) bool {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	clientID := "mqtttest"
	// Variable header: protocol name "MQTT", level 4, flags clean session, keepalive 10.
	body := []byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 10, 0, byte(len(clientID))}
	body = append(body, clientID...)
	pkt := append([]byte{0x10, byte(len(body))}, body...)
	if _, err := conn.Write(pkt); err != nil {
		return false
	}
	ack := make([]byte, 4)
	if _, err := io.ReadFull(conn, ack); err != nil {
		return false
	}
	return ack[0] == 0x20 && ack[3] == 0
}

func TestMosquittoStopStart(t *testing.T) {
	m := NewMosquitto(t)
	addr := m.Addr()
	if !mqttConnect(t, addr) {
		t.Fatalf("CONNECT to %s not accepted after NewMosquitto", addr)
	}

	m.Stop()
	if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		conn.Close()
		t.Fatalf("dial %s succeeded after Stop", addr)
	}
	m.Stop() // idempotent

	m.Start()
	if m.Addr() != addr {
		t.Fatalf("Addr() after Start = %s, want %s", m.Addr(), addr)
	}
	if !mqttConnect(t, addr) {
		t.Fatalf("CONNECT to %s not accepted after Start", addr)
	}

	m.Restart()
	if !mqttConnect(t, addr) {
		t.Fatalf("CONNECT to %s not accepted after Restart", addr)
	}
}

func TestStartMosquittoAddr(t *testing.T) {
	addr := StartMosquitto(t)
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host != "127.0.0.1" {
		t.Fatalf("StartMosquitto() = %q, want 127.0.0.1:<port> (err %v)", addr, err)
	}
	if !mqttConnect(t, addr) {
		t.Fatalf("CONNECT to %s not accepted", addr)
	}
}
