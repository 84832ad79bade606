package main

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestImportCharters enforces the package charters of style.md §3.1: which
// packages of ours (and which heavy third-party modules) each package may
// import. cmd/bridge is the only place that wires them together.
func TestImportCharters(t *testing.T) {
	allowed := map[string][]string{ // our packages each may import
		"adapters":                 {},
		"adapters/modbus":          {"adapters", "adapters/serialport"},
		"adapters/serialline":      {"adapters", "adapters/serialport"},
		"adapters/serialport":      {},
		"mapping":                  {"adapters"},
		"buffer":                   {},
		"uplink":                   {},
		"dm":                       {"adapters"},
		"config":                   {"adapters", "mapping"},
		"simulator":                {"adapters"},
		"platform":                 {},
		"internal/mqtttest":        {},
		"internal/serialtest":      {},
		"internal/testwait":        {},
		"internal/testpki":         {},
		"internal/loadrig":         {"uplink"}, // a measuring tool: the bridge is a binary there
		"scripts/loadrig":          {"internal/loadrig"},
		"scripts/compare-telegraf": {"internal/loadrig"},
		"scripts/wakeups":          {}, // reads `go tool trace` output; imports none of ours
	}
	forbidden := map[string][]string{ // third-party modules kept inside one package
		"github.com/dgraph-io/badger":  {"buffer"},
		"github.com/eclipse/paho.mqtt": {"uplink"},
		"github.com/hashicorp/hcl":     {"config"},
		"github.com/mochi-mqtt/server": {"platform"},
		"github.com/goburrow/modbus":   {"adapters/modbus"},
		"go.bug.st/serial":             {"adapters/serialport", "simulator"},
	}
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, "fieldbridge/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg := strings.TrimPrefix(fields[0], "fieldbridge/")
		if pkg == "cmd/bridge" {
			continue
		}
		ours, known := allowed[pkg]
		if !known {
			t.Errorf("package %s has no charter in this test (and in style.md §3.1)", pkg)
			continue
		}
		for _, imp := range fields[1:] {
			if dep, ok := strings.CutPrefix(imp, "fieldbridge/"); ok && !slices.Contains(ours, dep) {
				t.Errorf("%s imports %s, which its charter does not allow", pkg, dep)
			}
			for module, owners := range forbidden {
				if strings.HasPrefix(imp, module) && !slices.Contains(owners, pkg) {
					t.Errorf("%s imports %s, which only %v may use", pkg, imp, owners)
				}
			}
		}
	}
}
