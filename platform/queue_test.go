package platform

import (
	"errors"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/mochi-mqtt/server/v2/packets"
)

func TestMatchFilter(t *testing.T) {
	tests := []struct {
		filter, name string
		want         bool
	}{
		{"a/b", "a/b", true},
		{"a/b", "a/c", false},
		{"a/+", "a/b", true},
		{"a/+", "a/b/c", false},
		{"a/+", "a", false},
		{"+/+", "a/b", true},
		{"a/#", "a", true},
		{"+/#", "a", false}, // as mochi routes it
		{"+/#", "a/b", true},
		{"a/#", "a/b/c", true},
		{"#", "a/b", true},
		{"a/b/#", "a/c", false},
		{"a/+/c", "a/b/c", true},
		{"a/+/c", "a/b/d", false},
		{"iot-2/type/pump/id/P-17/cmd/+/fmt/+", "iot-2/type/pump/id/P-17/cmd/go/fmt/json", true},
		{"iot-2/type/pump/id/P-17/cmd/+/fmt/+", "iot-2/type/pump/id/P-18/cmd/go/fmt/json", false},
		{"iotdm-1/type/pump/id/P-17/#", "iotdm-1/type/pump/id/P-17/mgmt/initiate/device/reboot", true},
	}
	for _, tt := range tests {
		if got := matchFilter(tt.filter, tt.name); got != tt.want {
			t.Errorf("matchFilter(%q, %q) = %v, want %v", tt.filter, tt.name, got, tt.want)
		}
	}
}

func queued(topic string, at time.Time, filters ...string) queuedMessage {
	return queuedMessage{pk: packets.Packet{TopicName: topic}, filters: filters, at: at}
}

func topics(ms []queuedMessage) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.pk.TopicName)
	}
	return out
}

func TestOfflineQueue(t *testing.T) {
	now := time.Now()
	t.Run("limit per subscription drops the oldest of that subscription", func(t *testing.T) {
		q := newOfflineQueue(2, time.Hour)
		var dropped int
		for i, f := range []string{"A", "B", "A", "A", "B"} {
			d, _ := q.add("c", queued(fmt.Sprintf("%s%d", f, i), now, f))
			dropped += d
		}
		if dropped != 1 || q.len() != 4 {
			t.Errorf("dropped %d, len %d; want 1 and 4", dropped, q.len())
		}
		got, _ := q.take("c", now)
		if diff := cmp.Diff([]string{"B1", "A2", "A3", "B4"}, topics(got)); diff != "" {
			t.Errorf("queue (-want +got):\n%s", diff)
		}
		if q.len() != 0 {
			t.Errorf("len after take %d", q.len())
		}
	})
	t.Run("a message of two subscriptions counts for both", func(t *testing.T) {
		q := newOfflineQueue(1, time.Hour)
		q.add("c", queued("AB", now, "A", "B"))
		if d, _ := q.add("c", queued("B", now, "B")); d != 1 {
			t.Errorf("dropped %d, want 1", d)
		}
		got, _ := q.take("c", now)
		if diff := cmp.Diff([]string{"B"}, topics(got)); diff != "" {
			t.Errorf("queue (-want +got):\n%s", diff)
		}
	})
	t.Run("age and message expiry", func(t *testing.T) {
		q := newOfflineQueue(10, time.Hour)
		q.add("c", queued("old", now.Add(-30*time.Minute), "A"))
		m := queued("expires", now, "A")
		m.pk.Expiry = now.Add(50 * time.Minute).Unix() // MQTT 5 message expiry
		q.add("c", m)
		q.add("c", queued("fresh", now, "A"))
		_, expiredOnAdd := q.add("c", queued("later", now.Add(45*time.Minute), "A")) // "old" is 75 minutes old
		got, expiredOnTake := q.take("c", now.Add(55*time.Minute))
		if diff := cmp.Diff([]string{"fresh", "later"}, topics(got)); diff != "" || expiredOnAdd != 1 || expiredOnTake != 1 {
			t.Errorf("expired %d on add and %d on take, want 1 and 1; queue (-want +got):\n%s", expiredOnAdd, expiredOnTake, diff)
		}
	})
	t.Run("discard and other clients", func(t *testing.T) {
		q := newOfflineQueue(10, time.Hour)
		q.add("c1", queued("x", now, "A"))
		q.add("c2", queued("y", now, "A"))
		if n := q.discard("c1"); n != 1 || q.len() != 1 {
			t.Errorf("discard = %d, len %d; want 1 and 1", n, q.len())
		}
		if got, _ := q.take("c1", now); len(got) != 0 {
			t.Errorf("discarded queue still holds %v", topics(got))
		}
	})
}

func TestCloseCode(t *testing.T) {
	tests := []struct {
		cause error
		want  int
	}{
		{nil, 0},
		{packets.CodeDisconnect, 0},
		{packets.ErrServerShuttingDown, CodeServerShutdown},
		{packets.ErrSessionTakenOver, CodeClientIDReused},
		{packets.ErrPacketTooLarge, CodeTooLarge},
		{fmt.Errorf("read: %w", os.ErrDeadlineExceeded), CodeKeepaliveTimeout},
		{io.EOF, CodeClientClosed},
		{errors.New("connection reset by peer"), CodeClientClosed},
	}
	for _, tt := range tests {
		if got := closeCode(tt.cause); got != tt.want {
			t.Errorf("closeCode(%v) = %d, want %d", tt.cause, got, tt.want)
		}
	}
	for _, v := range []struct {
		version byte
		ws      bool
		want    string
	}{{3, false, "mqtt3"}, {4, false, "mqtt4"}, {5, false, "mqtt5"}, {3, true, "mqtt3-ws"}, {4, true, "mqtt4-ws"}, {5, true, "mqttv5-ws"}} {
		if got := protocolName(v.version, v.ws); got != v.want {
			t.Errorf("protocolName(%d, %v) = %q, want %q", v.version, v.ws, got, v.want)
		}
	}
}
