package main

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"fieldbridge/config"
)

const unitPath = "../../deploy/bridge.service"

// unitFile is a parsed systemd unit: section -> key -> every value given,
// in order (keys like SystemCallFilter may repeat).
type unitFile map[string]map[string][]string

// parseUnit reads the subset of systemd's unit syntax the project uses:
// [Section] headers, Key=Value lines, comments starting with # or ;, and
// lines continued with a trailing backslash.
func parseUnit(t testing.TB, path string) unitFile {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unitFile{}
	section := ""
	sc := bufio.NewScanner(f)
	pending := ""
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if cont, ok := strings.CutSuffix(line, "\\"); ok {
			pending += cont + " "
			continue
		}
		line, pending = pending+line, ""
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[' && line[len(line)-1] == ']':
			section = line[1 : len(line)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not a Key=Value line in a section: %q", path, n, line)
			}
			k = strings.TrimSpace(k)
			u[section][k] = append(u[section][k], strings.TrimSpace(v))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return u
}

// one returns the single value of key in [Service], failing when it is
// missing or given twice.
func (u unitFile) one(t testing.TB, key string) string {
	t.Helper()
	v := u["Service"][key]
	if len(v) != 1 {
		t.Errorf("[Service] %s: got %q, want exactly one value", key, v)
		return ""
	}
	return v[0]
}

func TestSystemdUnitKeys(t *testing.T) {
	u := parseUnit(t, unitPath)
	want := map[string]string{
		"ExecReload":               "/bin/kill -HUP $MAINPID",
		"RestartPreventExitStatus": strconv.Itoa(exitConfig),
		"Restart":                  "on-failure",
		"NoNewPrivileges":          "true",
		"ProtectSystem":            "strict",
		"ProtectHome":              "true",
		"PrivateTmp":               "true",
		"StateDirectory":           "bridge",
		"ReadWritePaths":           "/var/lib/bridge",
	}
	for key, value := range want {
		if got := u.one(t, key); got != value {
			t.Errorf("[Service] %s = %q, want %q", key, got, value)
		}
	}
	if got := u["Install"]["WantedBy"]; len(got) != 1 || got[0] != "multi-user.target" {
		t.Errorf("[Install] WantedBy = %q, want multi-user.target", got)
	}

	// A dedicated user: a named one other than root, or a dynamic one.
	if user := u["Service"]["User"]; u["Service"]["DynamicUser"] == nil && (len(user) != 1 || user[0] == "" || user[0] == "root") {
		t.Errorf("[Service] User = %q and no DynamicUser: the bridge must not run as root", user)
	}
	// The default buffer directory is inside the state directory, so the
	// buffer is writable under ProtectSystem=strict and survives restarts.
	state := "/var/lib/" + u.one(t, "StateDirectory")
	if rel, err := filepath.Rel(state, config.DefaultBufferDir); err != nil || strings.HasPrefix(rel, "..") {
		t.Errorf("default buffer dir %s is outside StateDirectory %s", config.DefaultBufferDir, state)
	}

	// Memory: the Go heap's soft limit below MemoryHigh below MemoryMax.
	// Without GOMEMLIMIT the bridge sets its own (memlimit.go); the unit is
	// sized for 500 devices in device mode, the largest such limit.
	high, max := unitBytes(t, u.one(t, "MemoryHigh")), unitBytes(t, u.one(t, "MemoryMax"))
	goLimit := memoryLimitFor(memlimitConfig(config.ModeDevice, 500))
	for _, env := range u["Service"]["Environment"] {
		if v, ok := strings.CutPrefix(env, "GOMEMLIMIT="); ok {
			goLimit = unitBytes(t, strings.TrimSuffix(v, "iB"))
		}
	}
	if !(0 < goLimit && goLimit < high && high < max) {
		t.Errorf("memory: GOMEMLIMIT %d, MemoryHigh %d, MemoryMax %d; want 0 < GOMEMLIMIT < MemoryHigh < MemoryMax", goLimit, high, max)
	}
}

// unitBytes parses systemd's sizes with K, M, G suffixes (base 1024).
func unitBytes(t testing.TB, s string) int64 {
	t.Helper()
	mult := int64(1)
	for suffix, m := range map[string]int64{"K": 1 << 10, "M": 1 << 20, "G": 1 << 30} {
		if v, ok := strings.CutSuffix(s, suffix); ok {
			s, mult = v, m
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Errorf("size %q: %v", s, err)
	}
	return n * mult
}

// TestSystemdUnitCommands runs the unit's ExecStartPre through the bridge's
// own command line, with the configuration path pointed at a good and a bad
// file: a good file passes, a bad one exits with the status that
// RestartPreventExitStatus names, so systemd does not restart-loop on it.
func TestSystemdUnitCommands(t *testing.T) {
	u := parseUnit(t, unitPath)
	pre := strings.Fields(u.one(t, "ExecStartPre"))
	start := strings.Fields(u.one(t, "ExecStart"))
	if len(pre) < 2 || len(start) < 2 || pre[0] != start[0] {
		t.Fatalf("ExecStartPre %q and ExecStart %q: want the same binary", pre, start)
	}
	if start[1] != "run" || pre[1] != "validate" {
		t.Fatalf("ExecStartPre %q, ExecStart %q: want bridge validate and bridge run", pre, start)
	}
	if flagValue(pre, "-config") == "" || flagValue(pre, "-config") != flagValue(start, "-config") {
		t.Fatalf("ExecStartPre validates %q, ExecStart runs %q: want the same -config", flagValue(pre, "-config"), flagValue(start, "-config"))
	}
	for _, tt := range []struct {
		config string
		want   int
	}{
		{"../../config.example.hcl", exitOK},
		{"../../config/testdata/invalid/unknown_bus_and_type.hcl", exitConfig},
	} {
		args := append([]string(nil), pre[1:]...)
		args[indexOf(args, "-config")+1] = tt.config
		var out, errs bytes.Buffer
		if code := run(context.Background(), func() {}, args, &out, &errs); code != tt.want {
			t.Errorf("bridge %v: exit %d, want %d\n%s%s", args, code, tt.want, out.String(), errs.String())
		}
	}
	if got := u.one(t, "RestartPreventExitStatus"); got != strconv.Itoa(exitConfig) {
		t.Errorf("RestartPreventExitStatus = %s, want the configuration error's exit code %d", got, exitConfig)
	}
}

func indexOf(args []string, s string) int {
	for i, a := range args {
		if a == s {
			return i
		}
	}
	return -1
}

func flagValue(args []string, name string) string {
	if i := indexOf(args, name); i >= 0 && i+1 < len(args) {
		return args[i+1]
	}
	return ""
}

// TestSystemdAnalyzeVerify lets systemd itself check the unit: unknown keys,
// bad values, a missing binary. The unit's binary path is pointed at this
// test's own executable, which exists.
func TestSystemdAnalyzeVerify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("systemd-analyze is required in CI (Debian package systemd): %v", err)
		}
		t.Skipf("systemd-analyze not found (Debian package systemd); the unit's keys are still checked by TestSystemdUnitKeys: %v", err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	unit := filepath.Join(t.TempDir(), "bridge.service")
	if err := os.WriteFile(unit, bytes.ReplaceAll(src, []byte("/usr/local/bin/bridge"), []byte(self)), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, analyze, "verify", unit).CombinedOutput()
	// verify exits 0 on unknown keys and unparsable values and only prints
	// them, prefixed with the file name: any such line is a failure.
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "bridge.service") {
			t.Errorf("systemd-analyze verify: %s", line)
		}
	}
	if err != nil {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
