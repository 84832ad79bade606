package config

import "testing"

// TestMetricsListen checks that the metrics listener is off without a
// metrics block and takes the address as written when one is given.
func TestMetricsListen(t *testing.T) {
	for src, want := range map[string]string{
		``:                                      "",
		`metrics { listen = "127.0.0.1:9273" }`: "127.0.0.1:9273",
		`metrics { listen = ":9273" }`:          ":9273",
		`metrics { listen = "[::1]:0" }`:        "[::1]:0",
		`metrics { listen = "localhost:9273" }`: "localhost:9273",
	} {
		cfg, diags := Parse("m.hcl", []byte(`platform { org = "quickstart" }`+"\n"+src), testEnv)
		if diags.HasErrors() {
			t.Fatalf("%q: diagnostics: %v", src, diags)
		}
		if cfg.Metrics.Listen != want {
			t.Errorf("%q: Metrics.Listen = %q, want %q", src, cfg.Metrics.Listen, want)
		}
	}
}
