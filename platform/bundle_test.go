package platform

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// acmeBundles is testdata/bundles.json, the package of protocol.md §8 plus
// an action without parameters, and a second bundle.
func acmeBundles(t *testing.T) []Bundle {
	t.Helper()
	b, err := LoadBundles("testdata/bundles.json")
	if err != nil {
		t.Fatal(err)
	}
	return append(b, Bundle{ID: "other-v1", Actions: map[string]BundleAction{"ping": {}}})
}

func TestReadBundles(t *testing.T) {
	got := acmeBundles(t)[0]
	want := Bundle{
		ID: "acme-modbus-v1", Version: "1.0", Provider: "Acme Edge",
		DisplayName: map[string]string{"en_US": "Acme Modbus gateway actions"},
		Actions: map[string]BundleAction{
			"rescanBus": {DisplayName: map[string]string{"en_US": "Rescan serial bus"}, Parameters: []BundleParameter{
				{Name: "port", Value: "^(rs485-[0-9])$", Required: true},
				{Name: "unitRange", Value: "^[0-9]+-[0-9]+$", DefaultValue: "1-247"},
			}},
			"ping": {DisplayName: map[string]string{"en_US": "Ping"}},
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("bundle (-want +got):\n%s", diff)
	}

	const ok = `{"bundleId":"b","displayName":{"en":"B"},"actions":{"a":{"actionDisplayName":{"en":"A"}}}}`
	if list, err := ReadBundles(strings.NewReader("["+ok+","+strings.Replace(ok, `"b"`, `"c"`, 1)+"]"), "list"); err != nil || len(list) != 2 {
		t.Errorf("a list of two: %d, %v", len(list), err)
	}
	for _, tt := range []struct{ name, in, want string }{
		{"not json", `{`, "unexpected EOF"},
		{"unknown member", `{"bundleId":"b","colour":1}`, `unknown field "colour"`},
		{"no display name", strings.Replace(ok, `"displayName":{"en":"B"},`, "", 1), "displayName needs"},
		{"no action display name", strings.Replace(ok, `"actionDisplayName":{"en":"A"}`, "", 1), "actionDisplayName needs"},
		{"no actions", `{"bundleId":"b","displayName":{"en":"B"},"actions":{}}`, "at least one action"},
		{"bad id", strings.Replace(ok, `"b"`, `"b b"`, 1), "bundleId"},
		{"built-in id", strings.Replace(ok, `"b"`, `"deviceActions"`, 1), "built-in"},
		{"bad regexp", strings.Replace(ok, `"actionDisplayName"`, `"parameters":[{"name":"p","value":"("}],"actionDisplayName"`, 1), "not a regular expression"},
		{"default does not match", strings.Replace(ok, `"actionDisplayName"`, `"parameters":[{"name":"p","value":"^x$","defaultValue":"y"}],"actionDisplayName"`, 1), "does not match"},
		{"parameter twice", strings.Replace(ok, `"actionDisplayName"`, `"parameters":[{"name":"p"},{"name":"p"}],"actionDisplayName"`, 1), "twice"},
		{"trailing data", ok + ok, "data after"},
	} {
		_, err := ReadBundles(strings.NewReader(tt.in), "f.json")
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "f.json") {
			t.Errorf("%s: %v, want ErrInvalidConfig naming f.json and %q", tt.name, err, tt.want)
		}
	}
	if _, err := New(Config{Org: testOrg, Bundles: []Bundle{{ID: "x"}}}, nil); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("New with a bundle without actions: %v", err)
	}
}

func TestCustomActionsCheckedAgainstBundles(t *testing.T) {
	p := startPlatform(t, func(c *Config) { c.Bundles = acmeBundles(t) })
	dev := mustDial(t, p, pump17, tokenAuth, pump17Token)
	dev.mustSubscribe(t, "iotdm-1/#", 1)
	manage(t, dev, `{"d":{"supports":{"unknown-v1":true}},"reqId":"m0"}`, RCForbidden)
	manage(t, dev, `{"d":{"supports":{"acme-modbus-v1":true,"other-v1":false}},"reqId":"m"}`, RCOK)

	// The default of unitRange is filled in.
	done := startAction(p, "pump", "P-17", "acme-modbus-v1/rescanBus", map[string]string{"port": "rs485-1"})
	req := answer(t, dev, "iotdm-1/mgmt/custom/acme-modbus-v1/rescanBus", "iotdevice-1/response", RCOK)
	wantD := map[string]any{"fields": []any{
		map[string]any{"field": "port", "value": "rs485-1"},
		map[string]any{"field": "unitRange", "value": "1-247"},
	}}
	if diff := cmp.Diff(wantD, req["d"]); diff != "" {
		t.Errorf("custom action d (-want +got):\n%s", diff)
	}
	if r := <-done; r.err != nil || r.rc != RCOK {
		t.Errorf("rescanBus = %d, %v", r.rc, r.err)
	}

	ctx := context.Background()
	for _, tt := range []struct {
		name, action string
		params       map[string]string
		want         error
	}{
		{"unknown action", "acme-modbus-v1/explode", nil, ErrInvalidAction},
		{"missing required", "acme-modbus-v1/rescanBus", nil, ErrInvalidAction},
		{"value does not match", "acme-modbus-v1/rescanBus", map[string]string{"port": "usb0"}, ErrInvalidAction},
		{"unknown parameter", "acme-modbus-v1/ping", map[string]string{"x": "1"}, ErrInvalidAction},
		{"unknown bundle", "nope-v1/ping", nil, ErrInvalidAction},
		{"bundle not advertised", "other-v1/ping", nil, ErrUnsupportedAction},
	} {
		if _, err := p.DeviceAction(ctx, "pump", "P-17", tt.action, tt.params); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
}
