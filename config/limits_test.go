package config

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// erroneousDevices returns a configuration of n devices that each name an
// unknown type and an unknown bus.
func erroneousDevices(n int) []byte {
	var b bytes.Buffer
	b.WriteString("platform {\n  org = \"test01\"\n}\n")
	for i := range n {
		fmt.Fprintf(&b, "device \"d%d\" {\n  type = \"nosuchtype\"\n  bus  = \"nosuchbus%d\"\n  unit = 1\n}\n", i, i)
	}
	return b.Bytes()
}

// diagnosticHeader matches the first line of one rendered diagnostic.
var diagnosticHeader = regexp.MustCompile(`(?m)^(\S+:\d+:\d+: )?(error|warning): `)

// TestRenderCapsDiagnostics checks that thousands of problems print as the
// first MaxDiagnostics and a count of the rest.
func TestRenderCapsDiagnostics(t *testing.T) {
	src := erroneousDevices(10000)
	if len(src) > MaxFileSize {
		t.Fatalf("test input is %d bytes, over MaxFileSize", len(src))
	}
	cfg, diags := Parse("many.hcl", src, testEnv)
	if len(diags) <= MaxDiagnostics {
		t.Fatalf("Parse found %d problems, want more than %d for this test", len(diags), MaxDiagnostics)
	}
	var out bytes.Buffer
	Render(&out, cfg.Files, diags)
	if got := len(diagnosticHeader.FindAllString(out.String(), -1)); got != MaxDiagnostics {
		t.Errorf("Render printed %d diagnostics, want %d", got, MaxDiagnostics)
	}
	want := fmt.Sprintf("and %d more", len(diags)-MaxDiagnostics)
	if !strings.Contains(out.String(), want) {
		t.Errorf("Render output lacks %q; its end:\n%s", want, tail(out.String(), 400))
	}
	// The 50 shown are the first ones of the file.
	if !strings.Contains(out.String(), "many.hcl:5:") {
		t.Errorf("Render did not start with the first problem:\n%s", out.String()[:min(400, out.Len())])
	}
}

// TestLoadRefusesHugeFile checks that a file over MaxFileSize is refused
// with an error naming the limit, before anything is parsed.
func TestLoadRefusesHugeFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "huge.hcl")
	junk := make([]byte, 10<<20)
	r := rand.NewChaCha8([32]byte{9})
	r.Read(junk)
	if err := os.WriteFile(path, junk, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, diags := Load(path)
	if cfg == nil {
		t.Fatal("Load returned a nil Config")
	}
	if len(diags) != 1 || !diags.HasErrors() {
		t.Fatalf("Load(10 MiB of junk) = %v, want one error", diags)
	}
	var out bytes.Buffer
	Render(&out, cfg.Files, diags)
	for _, want := range []string{path, "10485760 bytes", "limit is 1048576 bytes"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("error lacks %q:\n%s", want, out.String())
		}
	}
	if _, diags := Parse("huge.hcl", junk, testEnv); len(diags) != 1 || !strings.Contains(diags[0].Detail, "limit") {
		t.Errorf("Parse(10 MiB) = %v, want the size error alone", diags)
	}
}

// TestJunkUnderTheLimit checks that a file of binary junk just under the
// limit gives a capped list of errors, and snippets that stay short and
// printable even on a line of hundreds of kilobytes.
func TestJunkUnderTheLimit(t *testing.T) {
	junk := make([]byte, MaxFileSize)
	r := rand.NewChaCha8([32]byte{7})
	r.Read(junk)
	cfg, diags := Parse("junk.hcl", junk, testEnv)
	if !diags.HasErrors() {
		t.Fatal("Parse(junk) found no error")
	}
	var out bytes.Buffer
	Render(&out, cfg.Files, diags)
	if got := len(diagnosticHeader.FindAllString(out.String(), -1)); got > MaxDiagnostics {
		t.Errorf("Render printed %d diagnostics, want at most %d", got, MaxDiagnostics)
	}
	for _, line := range strings.Split(out.String(), "\n") {
		if len(line) > 2*maxSnippetWidth {
			t.Errorf("a rendered line is %d bytes long, want at most %d: %.80q...", len(line), 2*maxSnippetWidth, line)
			break
		}
	}
}

func tail(s string, n int) string { return s[max(0, len(s)-n):] }
