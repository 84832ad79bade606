package loadrig

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// needPrograms skips (or, under CI=true, fails) when an outside program the
// rig starts is missing.
func needPrograms(t *testing.T, names ...string) {
	t.Helper()
	for _, name := range names {
		if _, err := exec.LookPath(name); err == nil {
			continue
		}
		if _, err := os.Stat("/usr/sbin/" + name); err == nil {
			continue
		}
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not installed (CI installs it)", name)
		}
		t.Skipf("%s is not installed", name)
	}
}

// buildBridge builds ./cmd/bridge for one test.
func buildBridge(t *testing.T) string {
	t.Helper()
	bin, cleanup, err := BuildBridge()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)
	return bin
}

// TestRigAgainstBridge runs the whole rig for a few seconds against the
// bridge in both modes, with a small plant, so that the rig does not rot:
// points arrive, nothing is lost or duplicated, CPU and memory were read
// from /proc, and the backlog from the metrics endpoint. It asserts no
// timing: only that the figures exist and are consistent.
func TestRigAgainstBridge(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes for several seconds")
	}
	needPrograms(t, "mosquitto")
	bin := buildBridge(t)
	for _, mode := range []string{ModeGateway, ModeDevice} {
		t.Run(mode, func(t *testing.T) {
			var timeline bytes.Buffer
			s, err := Run(context.Background(), Options{
				BridgeBin: bin, Devices: 6, Points: 5, Buses: 2, Poll: 200 * time.Millisecond, Mode: mode,
				Warmup: 2 * time.Second, Duration: 3 * time.Second, ScrapeEvery: time.Second,
				Dir: t.TempDir(), Timeline: &timeline,
			})
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			s.Print(&out)
			t.Logf("timeline:\n%s\nsummary:\n%s", timeline.String(), out.String())
			checkBridgeSummary(t, s)
			if !strings.Contains(timeline.String(), "measure") {
				t.Errorf("timeline has no measure phase:\n%s", timeline.String())
			}
		})
	}
}

func checkBridgeSummary(t *testing.T, s *Summary) {
	t.Helper()
	if s.Points <= 0 || s.Points%int64(s.Options.Points) != 0 {
		t.Errorf("points delivered in the window = %d, want a positive multiple of %d", s.Points, s.Options.Points)
	}
	if s.CPU <= 0 {
		t.Errorf("CPU of the bridge in the window = %v, want > 0 (read from /proc)", s.CPU)
	}
	if s.RSSSteadyMiB <= 0 || s.RSSPeakMiB < s.RSSSteadyMiB {
		t.Errorf("RSS steady %.1f MiB, peak %.1f MiB: want steady > 0 and peak ≥ steady", s.RSSSteadyMiB, s.RSSPeakMiB)
	}
	if s.BacklogStart < 0 || s.BacklogEnd < 0 {
		t.Errorf("backlog start %d, end %d: the metrics endpoint was not read", s.BacklogStart, s.BacklogEnd)
	}
	if s.Seqs == nil || s.Seqs.Distinct == 0 || s.Seqs.Lost != 0 || s.Seqs.Duplicates != 0 || s.Seqs.Gaps != 0 {
		t.Errorf("seqs: %v, want events, none lost, duplicated or missing", s.Seqs)
	}
	if s.Latency.N == 0 || s.Latency.P50 > s.Latency.P99 || s.Latency.P99 > s.Latency.Max {
		t.Errorf("latency %+v: want events and ordered quantiles", s.Latency)
	}
	if s.BadFormat != 0 || s.SUTExitStatus != "exit 0" {
		t.Errorf("bad messages %d, bridge stop %q", s.BadFormat, s.SUTExitStatus)
	}
}

// TestRigBrokerDown stops Mosquitto for a few seconds after the warm-up:
// the backlog grows while it is down, drains after the restart, and every
// event the broker acknowledged reaches the subscriber exactly once.
func TestRigBrokerDown(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes for several seconds")
	}
	needPrograms(t, "mosquitto")
	var timeline bytes.Buffer
	s, err := Run(context.Background(), Options{
		BridgeBin: buildBridge(t), Devices: 4, Points: 3, Buses: 1, Poll: 100 * time.Millisecond, Mode: ModeGateway,
		Warmup: 2 * time.Second, Duration: 2 * time.Second, BrokerDown: 3 * time.Second, DrainTimeout: time.Minute,
		Dir: t.TempDir(), Timeline: &timeline,
	})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	s.Print(&out)
	t.Logf("timeline:\n%s\nsummary:\n%s", timeline.String(), out.String())
	checkBridgeSummary(t, s)
	if s.BacklogMax <= 0 {
		t.Errorf("backlog max %d while the broker was down, want > 0", s.BacklogMax)
	}
	for _, phase := range []string{"broker-down", "drain"} {
		if !strings.Contains(timeline.String(), phase) {
			t.Errorf("timeline has no %s phase", phase)
		}
	}
}

// TestRigAgainstTelegraf runs the rig against Telegraf. It needs a Telegraf
// binary with inputs.modbus, outputs.mqtt and serializers.json (see
// docs/performance.md for the build line), given in LOADRIG_TELEGRAF; it is
// skipped without one, also in CI, which has no Telegraf.
func TestRigAgainstTelegraf(t *testing.T) {
	bin := os.Getenv("LOADRIG_TELEGRAF")
	if bin == "" {
		t.Skip("set LOADRIG_TELEGRAF to a Telegraf binary to run the Telegraf side of the rig")
	}
	needPrograms(t, "mosquitto")
	s, err := Run(context.Background(), Options{
		BridgeBin: buildBridge(t), TelegrafBin: bin, Devices: 6, Points: 5, Buses: 2, Poll: time.Second,
		Warmup: 4 * time.Second, Duration: 4 * time.Second, Dir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	s.Print(&out)
	t.Logf("summary:\n%s", out.String())
	if s.Points <= 0 || s.Points%5 != 0 || s.CPU <= 0 || s.RSSSteadyMiB <= 0 || s.BadFormat != 0 {
		t.Errorf("points %d (want a positive multiple of 5), CPU %v, RSS %.1f MiB, bad messages %d", s.Points, s.CPU, s.RSSSteadyMiB, s.BadFormat)
	}
}
