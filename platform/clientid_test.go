package platform

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseClientID(t *testing.T) {
	tests := []struct {
		in   string
		want identity
	}{
		{"d:ab12cd:pump:P-17", identity{class: ClassDevice, org: "ab12cd", typ: "pump", id: "P-17"}},
		{"g:ab12cd:edge-gw:gw.01", identity{class: ClassGateway, org: "ab12cd", typ: "edge-gw", id: "gw.01"}},
		{"a:ab12cd:dash_1", identity{class: ClassApp, org: "ab12cd", app: "dash_1"}},
		{"A:ab12cd:workers", identity{class: ClassSharedApp, org: "ab12cd", app: "workers"}},
		{"A:ab12cd:workers:i1", identity{class: ClassSharedApp, org: "ab12cd", app: "workers", instance: "i1"}},
		{"d:quickstart:t:" + strings.Repeat("x", 36), identity{class: ClassDevice, org: "quickstart", typ: "t", id: strings.Repeat("x", 36)}},
	}
	for _, tt := range tests {
		got, err := parseClientID(tt.in)
		if err != nil {
			t.Errorf("parseClientID(%q): %v", tt.in, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(identity{})); diff != "" {
			t.Errorf("parseClientID(%q) (-want +got):\n%s", tt.in, diff)
		}
	}
}

func TestParseClientIDRejects(t *testing.T) {
	for _, in := range []string{
		"", "d", "d:", "dx:ab12cd:t:i", "x:ab12cd:t:i", "D:ab12cd:t:i", "G:ab12cd:t:i",
		"d:ab12cd:t", "d:ab12cd:t:i:j", "d::t:i", "d:ab12cd::i", "d:ab12cd:t:",
		"d:ab12cd:t:i/j", "d:ab12cd:t:i+", "d:ab12cd:t:i j", "d:ab12cd:t:" + strings.Repeat("x", 37),
		"g:ab12cd:t", "a:ab12cd", "a:ab12cd:app:x", "A:ab12cd", "A:ab12cd:app:i:x", "a:ab12cd:äpp",
	} {
		if _, err := parseClientID(in); !errors.Is(err, errClientID) {
			t.Errorf("parseClientID(%q) = %v, want errClientID", in, err)
		}
	}
}

func FuzzParseClientID(f *testing.F) {
	for _, s := range []string{"d:ab12cd:pump:P-17", "g:o:t:i", "a:o:app", "A:o:app:inst", "x", "d:::", ":::", "A:o:a:b:c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := parseClientID(s)
		if err != nil {
			return
		}
		// A parsed ID rebuilds to the input.
		parts := []string{string(id.class), id.org}
		switch {
		case id.isDeviceLike():
			parts = append(parts, id.typ, id.id)
		case id.instance != "":
			parts = append(parts, id.app, id.instance)
		default:
			parts = append(parts, id.app)
		}
		if got := strings.Join(parts, ":"); got != s {
			t.Errorf("parseClientID(%q) rebuilds to %q", s, got)
		}
	})
}
