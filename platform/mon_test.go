package platform

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	pahopackets "github.com/eclipse/paho.mqtt.golang/packets"
)

const pump17Mon = "iot-2/type/pump/id/P-17/mon"

// nextStatus receives the next message of s and decodes it as a Status.
func nextStatus(t *testing.T, s *Subscription) (Message, Status) {
	t.Helper()
	m := recv(t, s)
	return m, decodeJSON[Status](t, m.Payload)
}

func TestStatusConnectAndDisconnect(t *testing.T) {
	p := startPlatform(t, nil)
	mon := mustSubscribePlatform(t, p, "iot-2/type/+/id/+/mon")
	_, port, _ := net.SplitHostPort(p.Addr())

	dev := mustDial(t, p, pump17, tokenAuth, pump17Token)
	m, s := nextStatus(t, mon)
	if m.Topic != pump17Mon || m.QoS != 0 || m.Retain || m.ClientID != platformClientID {
		t.Errorf("Connect message: topic %q qos %d retain %v from %q; want %s, qos 0, live, from the platform",
			m.Topic, m.QoS, m.Retain, m.ClientID, pump17Mon)
	}
	if s.Action != StatusConnect || s.ClientID != pump17 || s.ClientAddr != "127.0.0.1" ||
		strconv.Itoa(s.Port) != port || s.Secure || s.Protocol != "mqtt4" || s.User != tokenAuth ||
		s.CloseCode != 0 || s.ConnectTime == "" {
		t.Errorf("Connect status %+v", s)
	}
	if _, err := time.Parse(timeLayout, s.Time); err != nil {
		t.Errorf("Time %q: %v", s.Time, err)
	}

	// The Connect is retained: a later subscriber (also an MQTT application) gets it.
	late := mustSubscribePlatform(t, p, pump17Mon)
	if m, s := nextStatus(t, late); !m.Retain || s.Action != StatusConnect {
		t.Errorf("late subscriber got %s (retain %v), want the retained Connect", s.Action, m.Retain)
	}
	app := mustDial(t, p, "a:ab12cd:dash", testKey.Key, testKey.Token)
	app.mustSubscribe(t, "iot-2/type/+/id/+/mon", 1)
	if m := app.nextOn(t, pump17Mon); !m.Retained() || m.Qos() != 0 {
		t.Errorf("application got the Connect retained %v qos %d, want retained at qos 0 (S4)", m.Retained(), m.Qos())
	}

	dev.publish(t, "iot-2/evt/reading/fmt/json", 1, false, []byte(`{"v":1}`))
	dev.Disconnect(100)
	m, s = nextStatus(t, mon)
	if m.Topic != pump17Mon || s.Action != StatusDisconnect || s.CloseCode != 0 || s.Reason != "" ||
		s.ReadMsg != 1 || s.ReadBytes == 0 || s.WriteBytes == 0 || s.ConnectTime == "" {
		t.Errorf("Disconnect status after a normal close: %+v", s)
	}
	if m := app.nextOn(t, pump17Mon); m.Retained() {
		t.Error("live Disconnect delivered retained")
	}
	again := mustSubscribePlatform(t, p, pump17Mon)
	if m, s := nextStatus(t, again); !m.Retain || s.Action != StatusDisconnect {
		t.Errorf("retained state after disconnect: %s (retain %v), want Disconnect", s.Action, m.Retain)
	}
}

func TestStatusTakeover(t *testing.T) {
	p := startPlatform(t, nil)
	mon := mustSubscribePlatform(t, p, pump17Mon)
	older := mustDial(t, p, pump17, tokenAuth, pump17Token)
	if _, s := nextStatus(t, mon); s.Action != StatusConnect {
		t.Fatalf("first status %s, want Connect", s.Action)
	}
	mustDial(t, p, pump17, tokenAuth, pump17Token)
	older.waitLost(t)

	// C7: Disconnect with 288 for the older connection, then the newer's Connect.
	_, s := nextStatus(t, mon)
	if s.Action != StatusDisconnect || s.CloseCode != CodeClientIDReused || s.Reason != "The clientID was reused" {
		t.Errorf("status after takeover %+v, want Disconnect 288", s)
	}
	if _, s := nextStatus(t, mon); s.Action != StatusConnect {
		t.Errorf("then %s, want Connect", s.Action)
	}
	if late := mustSubscribePlatform(t, p, pump17Mon); len(late.C) != 1 {
		t.Fatalf("%d retained messages, want 1", len(late.C))
	} else if _, s := nextStatus(t, late); s.Action != StatusConnect {
		t.Errorf("retained state %s, want Connect", s.Action)
	}
	noMessage(t, mon) // exactly one Disconnect
}

func TestStatusCloseCodes(t *testing.T) {
	p := startPlatform(t, nil)
	mon := mustSubscribePlatform(t, p, pump17Mon)

	t.Run("rule violation", func(t *testing.T) {
		dev := mustDial(t, p, pump17, tokenAuth, pump17Token)
		nextStatus(t, mon)
		dev.Publish("iot-2/cmd/x/fmt/json", 0, false, []byte("x")) // P3
		dev.waitLost(t)
		if _, s := nextStatus(t, mon); s.Action != StatusDisconnect || s.CloseCode != CodeNotAuthorized ||
			!strings.Contains(s.Reason, "iot-2/cmd/x/fmt/json") {
			t.Errorf("status %+v, want Disconnect 180 naming the topic", s)
		}
	})
	t.Run("network close", func(t *testing.T) {
		conn, err := net.Dial("tcp", p.Addr())
		if err != nil {
			t.Fatal(err)
		}
		writeConnect(t, conn, pump17, tokenAuth, pump17Token)
		nextStatus(t, mon)
		conn.Close()
		if _, s := nextStatus(t, mon); s.Action != StatusDisconnect || s.CloseCode != CodeClientClosed {
			t.Errorf("status %+v, want Disconnect %d", s, CodeClientClosed)
		}
	})
	t.Run("failed connect", func(t *testing.T) {
		if _, rc, err := dial(t, "tcp://"+p.Addr(), pump17, tokenAuth, "wrong-token"); err == nil || rc != pahopackets.ErrRefusedNotAuthorised {
			t.Fatalf("bad token: rc %d err %v", rc, err)
		}
		m, s := nextStatus(t, mon)
		if m.Retain || s.Action != StatusFailedConnect || s.CloseCode != CodeNotAuthorized || s.ConnectTime != "" {
			t.Errorf("status %+v (retain %v), want FailedConnect 180, not retained", s, m.Retain)
		}
		if late := mustSubscribePlatform(t, p, pump17Mon); len(late.C) == 1 {
			if _, s := nextStatus(t, late); s.Action == StatusFailedConnect {
				t.Error("FailedConnect was retained")
			}
		}
	})
	t.Run("shutdown", func(t *testing.T) {
		mustDial(t, p, pump17, tokenAuth, pump17Token)
		nextStatus(t, mon)
		p.Close()
		var last Status
		for m := range mon.C {
			last = decodeJSON[Status](t, m.Payload)
		}
		if last.Action != StatusDisconnect || last.CloseCode != CodeServerShutdown {
			t.Errorf("last status %+v, want Disconnect %d", last, CodeServerShutdown)
		}
	})
}

// writeConnect sends an MQTT 3.1.1 CONNECT on conn and reads the CONNACK.
func writeConnect(t *testing.T, conn net.Conn, clientID, user, password string) {
	t.Helper()
	pk := pahopackets.NewControlPacket(pahopackets.Connect).(*pahopackets.ConnectPacket)
	pk.ProtocolName, pk.ProtocolVersion = "MQTT", 4
	pk.ClientIdentifier, pk.CleanSession, pk.Keepalive = clientID, true, 60
	pk.UsernameFlag, pk.Username = true, user
	pk.PasswordFlag, pk.Password = true, []byte(password)
	if err := pk.Write(conn); err != nil {
		t.Fatal(err)
	}
	ack, err := pahopackets.ReadPacket(conn)
	if err != nil {
		t.Fatal(err)
	}
	if ca, ok := ack.(*pahopackets.ConnackPacket); !ok || ca.ReturnCode != 0 {
		t.Fatalf("CONNACK %v", ack)
	}
}

func TestStatusOfApplications(t *testing.T) {
	p := startPlatform(t, nil)
	mon := mustSubscribePlatform(t, p, "iot-2/app/+/mon")
	app := mustDial(t, p, "a:ab12cd:dash", testKey.Key, testKey.Token)
	if m, s := nextStatus(t, mon); m.Topic != "iot-2/app/dash/mon" || s.Action != StatusConnect || s.User != testKey.Key {
		t.Errorf("application Connect on %q: %+v", m.Topic, s)
	}
	app.Disconnect(100)
	if m, s := nextStatus(t, mon); m.Retain || s.Action != StatusDisconnect {
		t.Errorf("application Disconnect %+v (retain %v), want not retained", s, m.Retain)
	}
	// Its retained Connect was cleared; retained messages are replayed
	// synchronously by Subscribe, so an empty channel means none.
	noMessage(t, mustSubscribePlatform(t, p, "iot-2/app/+/mon"))
}

func TestStatusForGateways(t *testing.T) {
	p := startPlatform(t, withGateway2)
	gw := mustDial(t, p, gw01, tokenAuth, gw01Token)
	gw.mustSubscribe(t, "iot-2/type/+/id/+/mon", 0)
	if s := decodeJSON[Status](t, gw.nextOn(t, "iot-2/type/edge-gw/id/gw-01/mon").Payload()); s.Action != StatusConnect {
		t.Errorf("gateway's own retained status %s, want Connect", s.Action)
	}
	// Another gateway is not a device gw-01 may act for: had its status
	// leaked, it would arrive before P-18's.
	mustDial(t, p, gw02, tokenAuth, gw02Token)
	mustDial(t, p, pump18, tokenAuth, pump18Token)
	if s := decodeJSON[Status](t, gw.nextOn(t, "iot-2/type/pump/id/P-18/mon").Payload()); s.ClientID != pump18 {
		t.Errorf("status of %q, want %q", s.ClientID, pump18)
	}
}
