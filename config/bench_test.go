package config

import (
	"io"
	"testing"
)

// BenchmarkValidateErroneous parses, checks and renders a configuration
// just under MaxFileSize whose every device block is wrong (about 26 000
// diagnostics): what `bridge validate` does with such a file.
func BenchmarkValidateErroneous(b *testing.B) {
	src := erroneousDevices(10000)
	b.SetBytes(int64(len(src)))
	var diags int
	for b.Loop() {
		cfg, d := Parse("many.hcl", src, testEnv)
		Render(io.Discard, cfg.Files, d)
		diags = len(d)
	}
	b.ReportMetric(float64(diags), "diagnostics")
}
