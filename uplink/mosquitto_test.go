package uplink

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"fieldbridge/internal/mqtttest"

	"fieldbridge/internal/testwait"
)

// TestMosquitto checks the basics against a real third-party broker, from a
// subscriber's side: topic, payload, QoS and retain of what a device-mode
// client publishes (up to the platform's size limit), and an outage.
func TestMosquitto(t *testing.T) {
	m := mqtttest.NewMosquitto(t)
	sub := newSubscriber(t, m.URL(), "iot-2/#")
	cfg := testConfig(m.URL())
	cfg.CleanSession = false
	states := &stateLog{}
	c, _ := runClient(t, cfg, states)
	testwait.For(t, waitLong, "connected", c.Connected)

	topic := DeviceEventTopic("reading", "json")
	payloads := [][]byte{
		[]byte(`{"d":{"voltage_l1":231.4},"seq":1}`),
		bytes.Repeat([]byte{'x'}, MaxPayload),
	}
	for _, p := range payloads {
		if err := result(t, c.Publish(context.Background(), topic, p), waitLong); err != nil {
			t.Fatalf("Publish(%d bytes) = %v, want nil", len(p), err)
		}
	}
	testwait.For(t, waitLong, "the subscriber to receive both events", func() bool { return len(sub.list()) == 2 })
	for i, msg := range sub.list() {
		if msg.Topic() != topic || msg.Qos() != 1 || msg.Retained() || !bytes.Equal(msg.Payload(), payloads[i]) {
			t.Errorf("message %d: topic %s qos %d retained %v, %d bytes; want %s, QoS 1, not retained, %d bytes",
				i, msg.Topic(), msg.Qos(), msg.Retained(), len(msg.Payload()), topic, len(payloads[i]))
		}
	}

	// Outage: the broker dies and comes back on the same port.
	m.Stop()
	testwait.For(t, waitLong, "Connected() to turn false", func() bool { return !c.Connected() })
	if err := result(t, c.Publish(context.Background(), topic, []byte("down")), waitLong); !errors.Is(err, ErrNotConnected) {
		t.Errorf("Publish while mosquitto is down = %v, want ErrNotConnected", err)
	}
	m.Start()
	testwait.For(t, waitLong, "reconnect", func() bool { return states.connects() == 2 && c.Connected() })
	sub2 := newSubscriber(t, m.URL(), "iot-2/#")
	if err := result(t, c.Publish(context.Background(), topic, []byte("up")), waitLong); err != nil {
		t.Fatalf("Publish after the restart = %v, want nil", err)
	}
	testwait.For(t, waitLong, "the new subscriber to receive the event", func() bool { return len(sub2.list()) == 1 })
	if msg := sub2.list()[0]; string(msg.Payload()) != "up" || msg.Retained() {
		t.Errorf("after restart: payload %q retained %v", msg.Payload(), msg.Retained())
	}
}
