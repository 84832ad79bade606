package config

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/hcl/v2"
)

// FuzzParse feeds arbitrary bytes to the loader and the renderer. Whatever
// the input, Parse returns a Config and diagnostics without panicking, a
// Config without errors has every device resolved, and Render prints at
// most MaxDiagnostics problems. Seeds: the example configuration, every
// file under testdata/invalid and testdata/maps, and testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/invalid/*.hcl")
	maps, _ := filepath.Glob("testdata/maps/*/*.hcl")
	for _, path := range append(append(seeds, maps...), "../config.example.hcl") {
		src, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(src)
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		if len(src) > 1<<16 {
			return // big inputs only slow the fuzzer; TestJunkUnderTheLimit covers them
		}
		cfg, diags := Parse("fuzz.hcl", src, testEnv)
		if cfg == nil {
			t.Fatal("Parse returned a nil Config")
		}
		if !diags.HasErrors() {
			for _, d := range cfg.Devices {
				if d.Type == nil || d.Bus == nil {
					t.Fatalf("device %q has no type or bus but Parse reported no error", d.Name)
				}
			}
		}
		var out bytes.Buffer
		Render(&out, cfg.Files, diags)
		shown := min(len(diags), MaxDiagnostics)
		if got := bytes.Count(out.Bytes(), []byte("error: ")) + bytes.Count(out.Bytes(), []byte("warning: ")); got < shown {
			t.Fatalf("Render printed %d diagnostics, want %d", got, shown)
		}
		for _, d := range diags {
			if d.Severity != hcl.DiagError && d.Severity != hcl.DiagWarning {
				t.Fatalf("diagnostic of severity %v: %v", d.Severity, d)
			}
		}
	})
}
