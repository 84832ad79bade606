package platform

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseTopic(t *testing.T) {
	tests := []struct {
		in     string
		filter bool
		want   topic
	}{
		{"iot-2/evt/reading/fmt/json", false, topic{kind: kindEvent, name: "reading", format: "json"}},
		{"iot-2/cmd/+/fmt/+", true, topic{kind: kindCommand, name: "+", format: "+"}},
		{"iot-2/type/pump/id/P-17/evt/e/fmt/f", false, topic{kind: kindEvent, qualified: true, typ: "pump", id: "P-17", name: "e", format: "f"}},
		{"iot-2/type/+/id/+/cmd/+/fmt/+", true, topic{kind: kindCommand, qualified: true, typ: "+", id: "+", name: "+", format: "+"}},
		{"iot-2/type/t/id/i/mon", false, topic{kind: kindMon, qualified: true, typ: "t", id: "i"}},
		{"iot-2/type/t/id/i/notify", false, topic{kind: kindNotify, qualified: true, typ: "t", id: "i"}},
		{"iot-2/app/dash/mon", false, topic{kind: kindAppMon, app: "dash"}},
		{"iotdevice-1/mgmt/manage", false, topic{kind: kindDMDevice, rest: "mgmt/manage"}},
		{"iotdevice-1/type/t/id/i/response", false, topic{kind: kindDMDevice, qualified: true, typ: "t", id: "i", rest: "response"}},
		{"iotdm-1/#", true, topic{kind: kindDMRequest, rest: "#"}},
		{"iotdm-1/mgmt/custom/#", true, topic{kind: kindDMRequest, rest: "mgmt/custom/#"}},
		{"iotdm-1/mgmt/custom/b/a", false, topic{kind: kindDMRequest, rest: "mgmt/custom/b/a"}},
		{"iotdm-1/mgmt/custom/+/+", true, topic{kind: kindDMRequest, rest: "mgmt/custom/+/+"}},
		{"iotdm-1/mgmt/initiate/firmware/update", false, topic{kind: kindDMRequest, rest: "mgmt/initiate/firmware/update"}},
		{"iotdm-1/type/+/id/+/#", true, topic{kind: kindDMRequest, qualified: true, typ: "+", id: "+", rest: "#"}},
		// Valid syntax, no platform form.
		{"iotdm-1/+", true, topic{}},
		{"iotdm-1/mgmt/custom/b/#", true, topic{}},
		{"iotdm-1/type", false, topic{}},
		{"iotdevice-1/mgmt/other", false, topic{}},
		{"iot-2/evt/e/fmt", false, topic{}},
		{"iot-2/type/t/id/i/evt/e", false, topic{}},
		{"iot-2/type/t/id/i/status", false, topic{}},
		{"#", true, topic{}},
		{"foo", false, topic{}},
		{"$SYS/x", false, topic{}},
	}
	for _, tt := range tests {
		got, err := parseTopic(tt.in, tt.filter)
		if err != nil {
			t.Errorf("parseTopic(%q, %v): %v", tt.in, tt.filter, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(topic{})); diff != "" {
			t.Errorf("parseTopic(%q, %v) (-want +got):\n%s", tt.in, tt.filter, diff)
		}
	}
}

func TestCheckTopicSyntax(t *testing.T) {
	tests := []struct {
		in     string
		filter bool
		want   error
	}{
		{"a/b", false, nil},
		{"a/+/#", true, nil},
		{"#", true, nil},
		{"", false, errTopicEmpty},
		{"", true, errTopicEmpty},
		{"/a", false, errTopicSegment},
		{"a/", true, errTopicSegment},
		{"a//b", false, errTopicSegment},
		{"a/+", false, errTopicWildcard},
		{"a/#", false, errTopicWildcard},
		{"a/b+", true, errFilterSyntax},
		{"a/#/b", true, errFilterSyntax},
		{"a/##", true, errFilterSyntax},
		{"a\x00b", false, errTopicChars},
		{"a\xffb", false, errTopicChars},
		{strings.Repeat("a", 65536), false, errTopicLong},
	}
	for _, tt := range tests {
		if err := checkTopicSyntax(tt.in, tt.filter); !errors.Is(err, tt.want) {
			t.Errorf("checkTopicSyntax(%.20q, %v) = %v, want %v", tt.in, tt.filter, err, tt.want)
		}
	}
}

func TestQualifyRelativize(t *testing.T) {
	tests := []struct{ rel, qual string }{
		{"iot-2/evt/e/fmt/f", "iot-2/type/T/id/D/evt/e/fmt/f"},
		{"iot-2/cmd/+/fmt/+", "iot-2/type/T/id/D/cmd/+/fmt/+"},
		{"iotdm-1/#", "iotdm-1/type/T/id/D/#"},
		{"iotdm-1/mgmt/custom/b/a", "iotdm-1/type/T/id/D/mgmt/custom/b/a"},
		{"iotdevice-1/mgmt/manage", "iotdevice-1/type/T/id/D/mgmt/manage"},
	}
	for _, tt := range tests {
		if got := qualify(tt.rel, "T", "D"); got != tt.qual {
			t.Errorf("qualify(%q) = %q, want %q", tt.rel, got, tt.qual)
		}
		if got, ok := relativize(tt.qual, "T", "D"); !ok || got != tt.rel {
			t.Errorf("relativize(%q) = %q, %v, want %q", tt.qual, got, ok, tt.rel)
		}
	}
	for _, other := range []string{
		"iot-2/type/T/id/E/cmd/c/fmt/f", "iot-2/type/T/id/DD/cmd/c/fmt/f", "iot-2/type/T/id/D/",
		"foo/type/T/id/D/x", "iot-2", "iot-2/cmd/c/fmt/f",
	} {
		if got, ok := relativize(other, "T", "D"); ok {
			t.Errorf("relativize(%q) = %q, true; want false", other, got)
		}
	}
}

// FuzzParseTopic checks that the parser never panics, that what it accepts
// passes the syntax check, and that a device's relative topic survives the
// qualify/relativize round trip with the same meaning.
func FuzzParseTopic(f *testing.F) {
	for _, s := range []string{
		"iot-2/evt/reading/fmt/json", "iot-2/cmd/+/fmt/+", "iot-2/type/t/id/i/evt/e/fmt/f",
		"iot-2/type/+/id/+/mon", "iot-2/app/a/mon", "iotdm-1/#", "iotdm-1/mgmt/custom/#",
		"iotdm-1/mgmt/custom/b/a", "iotdevice-1/mgmt/manage", "iotdevice-1/type/t/id/i/notify",
		"iotdm-1/type/t/id/i/type/x/id/y/response", "a//b", "/", "#", "+/+", "a/#/b", "$SYS/#", "\x00",
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, s string, filter bool) {
		got, err := parseTopic(s, filter)
		if err != nil {
			return
		}
		if err := checkTopicSyntax(s, filter); err != nil {
			t.Fatalf("parseTopic(%q) accepted what the syntax check rejects: %v", s, err)
		}
		if got.kind == kindUnknown || got.qualified {
			return
		}
		if got.kind == kindMon || got.kind == kindNotify || got.kind == kindAppMon {
			return // never relative device topics
		}
		q := qualify(s, "T", "D")
		back, err := parseTopic(q, filter)
		if err != nil || !back.qualified || back.typ != "T" || back.id != "D" {
			t.Fatalf("qualify(%q) = %q parses as %+v, %v", s, q, back, err)
		}
		back.qualified, back.typ, back.id = false, "", ""
		if back != got {
			t.Fatalf("qualify(%q) = %q changes its meaning: %+v, want %+v", s, q, back, got)
		}
		if rel, ok := relativize(q, "T", "D"); !ok || rel != s {
			t.Fatalf("relativize(qualify(%q)) = %q, %v", s, rel, ok)
		}
	})
}
