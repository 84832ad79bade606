package buffer

import (
	"bytes"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestRecordRoundTrip(t *testing.T) {
	at := time.Date(2026, 11, 24, 10, 15, 30, 120_000_000, time.UTC)
	for _, c := range []struct {
		name    string
		seq     uint64
		topic   string
		payload []byte
	}{
		{"event", 18234, "iot-2/evt/reading/fmt/json", []byte(`{"d":{"voltage_l1":231.4},"seq":18234}`)},
		{"empty_payload", 1, "t", nil},
		{"max_payload", 1<<63 - 1, "iot-2/type/t/id/i/evt/e/fmt/json", bytes.Repeat([]byte{0xff}, MaxPayload)},
		{"max_topic", 7, string(bytes.Repeat([]byte("a"), maxTopic)), []byte("x")},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := appendRecord(nil, c.seq, at, c.topic, c.payload)
			if len(b) != recordSize(c.topic, c.payload) {
				t.Errorf("len = %d, recordSize = %d", len(b), recordSize(c.topic, c.payload))
			}
			got, err := decodeRecord(b)
			if err != nil {
				t.Fatalf("decodeRecord: %v", err)
			}
			want := record{Seq: c.seq, Appended: at, Topic: c.topic, Payload: c.payload}
			if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b []byte) bool { return bytes.Equal(a, b) }),
				cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
		})
	}
}

// TestRecordDetectsDamage flips every bit and truncates at every length of
// one record: each damage must be reported, never decoded.
func TestRecordDetectsDamage(t *testing.T) {
	b := appendRecord(nil, 42, time.Unix(1_700_000_000, 0), "iot-2/evt/x/fmt/json", []byte(`{"seq":42}`))
	for i := range len(b) * 8 {
		d := bytes.Clone(b)
		d[i/8] ^= 1 << (i % 8)
		if _, err := decodeRecord(d); err == nil {
			t.Errorf("bit %d flipped: decoded without error", i)
		}
	}
	for n := range len(b) {
		if _, err := decodeRecord(b[:n]); err == nil {
			t.Errorf("truncated to %d bytes: decoded without error", n)
		}
	}
}

// FuzzDecodeRecord: the decoder never panics, and whatever it accepts
// re-encodes to the same bytes.
func FuzzDecodeRecord(f *testing.F) {
	f.Add(appendRecord(nil, 1, time.Unix(0, 0), "t", nil))
	f.Add(appendRecord(nil, 18234, time.Unix(1_795_000_000, 120), "iot-2/evt/reading/fmt/json", []byte(`{"d":{"v":1},"seq":18234}`)))
	f.Add([]byte{})
	f.Add([]byte{recordVersion, 0, 0, 0})
	f.Add(bytes.Repeat([]byte{0}, recordHeader+recordTrailer))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1<<20 {
			return
		}
		rec, err := decodeRecord(b)
		if err != nil {
			return
		}
		if again := appendRecord(nil, rec.Seq, rec.Appended, rec.Topic, rec.Payload); !bytes.Equal(again, b) {
			t.Fatalf("decode/encode round trip changed the record:\n in  %x\n out %x", b, again)
		}
	})
}
