package uplink

import (
	"bytes"
	"net"
	"testing"

	"github.com/eclipse/paho.mqtt.golang/packets"
)

// countingConn is a net.Conn whose reads come from a buffer and are counted.
type countingConn struct {
	net.Conn // nil: only Read is used
	data     *bytes.Reader
	reads    int
}

func (c *countingConn) Read(p []byte) (int, error) {
	c.reads++
	return c.data.Read(p)
}

// TestWatchedConnBuffersReads: paho reads a packet's fixed header a byte at
// a time; through the session's connection 100 PUBACKs that arrived
// together cost a handful of reads on the socket, not three each.
func TestWatchedConnBuffersReads(t *testing.T) {
	var wire bytes.Buffer
	for id := range uint16(100) {
		ack := packets.NewControlPacket(packets.Puback).(*packets.PubackPacket)
		ack.MessageID = id + 1
		if err := ack.Write(&wire); err != nil {
			t.Fatal(err)
		}
	}
	// A command larger than the read buffer after them arrives intact.
	big := packets.NewControlPacket(packets.Publish).(*packets.PublishPacket)
	big.TopicName, big.Qos, big.MessageID = "iot-2/cmd/reboot/fmt/json", 1, 7
	big.Payload = bytes.Repeat([]byte("x"), 3*readBuffer)
	if err := big.Write(&wire); err != nil {
		t.Fatal(err)
	}
	raw := &countingConn{data: bytes.NewReader(wire.Bytes())}
	conn := newWatchedConn(raw, &session{}, 0)
	for id := range uint16(100) {
		p, err := packets.ReadPacket(conn)
		if err != nil {
			t.Fatal(err)
		}
		if ack, ok := p.(*packets.PubackPacket); !ok || ack.MessageID != id+1 {
			t.Fatalf("packet %d = %v, want PUBACK %d", id, p, id+1)
		}
	}
	p, err := packets.ReadPacket(conn)
	if err != nil {
		t.Fatal(err)
	}
	if pub, ok := p.(*packets.PublishPacket); !ok || pub.TopicName != big.TopicName || !bytes.Equal(pub.Payload, big.Payload) {
		t.Fatalf("last packet = %v, want the %d-byte command", p, len(big.Payload))
	}
	// 400 bytes of PUBACKs fill one buffer; the command takes a few more.
	if raw.reads > 8 {
		t.Errorf("%d reads on the socket for 100 PUBACKs and a command, want at most 8 (unbuffered: over 300)", raw.reads)
	}
}
