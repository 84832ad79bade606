package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigFileMissingOrDirectory runs validate and run as the real command
// on a path that does not exist, on a directory and on 10 MiB of junk: each
// must say what is wrong and exit with the configuration exit code, never
// panic.
func TestConfigFileMissingOrDirectory(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "nonexistent.hcl")
	huge := filepath.Join(t.TempDir(), "huge.hcl")
	if err := os.WriteFile(huge, bytes.Repeat([]byte("\x00junk\xff"), 10<<20/6), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path, want string
	}{
		{"missing", missing, "does not exist"},
		{"directory", dir, "is a directory"},
		{"too large", huge, "the limit is 1048576 bytes"},
	} {
		for _, sub := range []string{"validate", "run"} {
			t.Run(tc.name+"/"+sub, func(t *testing.T) {
				code, out := runBridgeCommand(t, sub, "-config", tc.path)
				if code != exitConfig {
					t.Errorf("bridge %s -config %s: exit %d, want %d\n%s", sub, tc.path, code, exitConfig, out)
				}
				if !strings.Contains(out, tc.path) || !strings.Contains(out, tc.want) {
					t.Errorf("bridge %s -config %s: output does not say %q about the path:\n%s", sub, tc.path, tc.want, out)
				}
				if strings.Contains(out, "panic") || strings.Contains(out, "goroutine ") {
					t.Errorf("bridge %s -config %s panicked:\n%s", sub, tc.path, out)
				}
			})
		}
	}
}
