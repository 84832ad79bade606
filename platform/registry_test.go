package platform

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestLoadRegistry(t *testing.T) {
	got, err := LoadRegistry(filepath.Join("testdata", "registry.txt"))
	if err != nil {
		t.Fatal(err)
	}
	want := Registry{Devices: testDevices(), APIKeys: []APIKey{testKey}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("LoadRegistry (-want +got):\n%s", diff)
	}
	// The file is usable as a platform config.
	if _, err := New(Config{Org: testOrg, Devices: got.Devices, APIKeys: got.APIKeys}, nil); err != nil {
		t.Errorf("New with the loaded registry: %v", err)
	}
}

func TestReadRegistryGatewayRoles(t *testing.T) {
	in := "gateway gw g-1 token-123\ngateway gw g-2 token-123 privileged\ngateway gw g-3 token-123 standard\n"
	got, err := ReadRegistry(strings.NewReader(in), "reg")
	if err != nil {
		t.Fatal(err)
	}
	var roles []GatewayRole
	for _, d := range got.Devices {
		roles = append(roles, d.Role)
	}
	if diff := cmp.Diff([]GatewayRole{RolePrivileged, RolePrivileged, RoleStandard}, roles); diff != "" {
		t.Errorf("roles (-want +got):\n%s", diff)
	}
}

func TestLoadRegistryMissingFile(t *testing.T) {
	if _, err := LoadRegistry(filepath.Join(t.TempDir(), "none.txt")); err == nil {
		t.Error("LoadRegistry of a missing file succeeded")
	}
}

func TestReadRegistryErrors(t *testing.T) {
	tests := []struct {
		name, in  string
		wantLines []string // "reg:N:" for each reported line
	}{
		{"unknown kind", "devise pump P-1 token-123", []string{"reg:1:"}},
		{"missing token", "device pump P-1", []string{"reg:1:"}},
		{"extra field", "gateway gw g-1 token-123 extra", []string{"reg:1:"}},
		{"role for a device", "device pump P-1 token-123 standard", []string{"reg:1:"}},
		{"too many gateway fields", "gateway gw g-1 token-123 standard x", []string{"reg:1:"}},
		{"short token", "\n\ndevice pump P-1 short", []string{"reg:3:"}},
		{"bad id", "device pump P/1 token-123", []string{"reg:1:"}},
		{"api key without token", "apikey a-ab12cd-x", []string{"reg:1:"}},
		{"every bad line", "device pump P-1 short\ndevice pump P-2 token-123\napikey k", []string{"reg:1:", "reg:3:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadRegistry(strings.NewReader(tt.in), "reg")
			if !errors.Is(err, ErrInvalidRegistry) {
				t.Fatalf("ReadRegistry(%q) = %v, want ErrInvalidRegistry", tt.in, err)
			}
			for _, l := range tt.wantLines {
				if !strings.Contains(err.Error(), l) {
					t.Errorf("error %q does not name %q", err, l)
				}
			}
		})
	}
}

func TestReadRegistryNeverLeaksTokens(t *testing.T) {
	_, err := ReadRegistry(strings.NewReader("device pump P-1 secret\ndevice pump P-2 sécret-token"), "reg")
	if err == nil {
		t.Fatal("invalid tokens accepted")
	}
	if strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "sécret") {
		t.Errorf("error %q contains a token", err)
	}
}

func FuzzReadRegistry(f *testing.F) {
	f.Add("device pump P-17 pump-17-token\napikey a-o-k tok\n# c\n")
	f.Add("gateway gw g-1 token-123 # x")
	f.Add("device\x00 a b c\n\n\t")
	f.Add("apikey")
	f.Fuzz(func(t *testing.T, in string) {
		reg, err := ReadRegistry(strings.NewReader(in), "fuzz")
		if err != nil {
			return
		}
		for _, d := range reg.Devices {
			if err := d.validate(); err != nil {
				t.Errorf("accepted invalid device %+v: %v", d, err)
			}
		}
		for _, k := range reg.APIKeys {
			if err := k.validate(""); err != nil {
				t.Errorf("accepted invalid api key %q: %v", k.Key, err)
			}
		}
	})
}
