package main

import (
	"bytes"
	"context"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// versionFields parses the "key value" lines of `bridge version`.
func versionFields(t testing.TB, out string) map[string]string {
	t.Helper()
	fields := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		k, v, ok := strings.Cut(line, " ")
		if !ok {
			t.Fatalf("version line %q has no value", line)
		}
		fields[k] = strings.TrimSpace(v)
	}
	return fields
}

func TestVersionCommand(t *testing.T) {
	var out, errs bytes.Buffer
	if code := run(context.Background(), func() {}, []string{"version"}, &out, &errs); code != exitOK {
		t.Fatalf("bridge version: exit %d: %s", code, errs.String())
	}
	got := versionFields(t, out.String())
	// go test stamps no VCS information and no version.
	want := map[string]string{"bridge": "dev", "commit": "unknown", "modified": "unknown", "go": runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("bridge version (-want +got):\n%s", diff)
	}
}

func TestFromBuildInfo(t *testing.T) {
	vcs := []debug.BuildSetting{{Key: "-trimpath", Value: "true"}, {Key: "vcs.revision", Value: "061df5de6f8edae71255578f3e155b8ac961125e"}, {Key: "vcs.modified", Value: "true"}}
	platform := runtime.GOOS + "/" + runtime.GOARCH
	tests := []struct {
		name    string
		stamped string
		bi      *debug.BuildInfo
		ok      bool
		want    buildInfo
	}{
		{"no build info", "dev", nil, false, buildInfo{"dev", "unknown", "unknown", runtime.Version(), platform}},
		{"release build", "v1.4.0-3-g061df5d-dirty", &debug.BuildInfo{GoVersion: "go1.26.1", Main: debug.Module{Version: "(devel)"}, Settings: vcs}, true,
			buildInfo{"v1.4.0-3-g061df5d-dirty", "061df5de6f8edae71255578f3e155b8ac961125e", "true", "go1.26.1", platform}},
		{"go install of a tagged module", "dev", &debug.BuildInfo{GoVersion: "go1.26.1", Main: debug.Module{Version: "v1.4.0"}}, true,
			buildInfo{"v1.4.0", "unknown", "unknown", "go1.26.1", platform}},
		{"stamp wins over module version", "v2.0.0-rc1", &debug.BuildInfo{GoVersion: "go1.26.1", Main: debug.Module{Version: "v1.4.0"}}, true,
			buildInfo{"v2.0.0-rc1", "unknown", "unknown", "go1.26.1", platform}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, fromBuildInfo(tt.stamped, tt.bi, tt.ok)); diff != "" {
				t.Errorf("fromBuildInfo (-want +got):\n%s", diff)
			}
		})
	}
}

// TestReleaseBuild runs scripts/release for this machine's architecture in a
// fresh clone of the committed tree (go build stamps VCS information only in
// a checkout whose .git is a directory, which a git worktree is not) and
// checks what the binary says about itself: the stamped version, the commit,
// whether the tree was modified, and that it is statically linked. .ci/run
// cross-compiles both release architectures.
func TestReleaseBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary twice; skipped with -short")
	}
	if runtime.GOOS != "linux" || (runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64") {
		t.Skipf("release builds are linux/amd64 and linux/arm64; this is %s/%s", runtime.GOOS, runtime.GOARCH)
	}
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	root := strings.TrimSpace(gitOut(t, ".", "rev-parse", "--show-toplevel"))
	clone := filepath.Join(t.TempDir(), "src")
	gitOut(t, ".", "clone", "-q", "--local", root, clone)
	out := t.TempDir()
	bin := filepath.Join(out, "bridge-linux-"+runtime.GOARCH)

	release(t, clone, out)
	head := strings.TrimSpace(gitOut(t, clone, "rev-parse", "HEAD"))
	describe := strings.TrimSpace(gitOut(t, clone, "describe", "--tags", "--always", "--dirty"))
	checkVersion(t, bin, map[string]string{"bridge": describe, "commit": head, "modified": "false"})
	if interp := elfInterpreter(t, bin); interp {
		t.Errorf("%s has a program interpreter: not statically linked", bin)
	}

	// A build from a tree with uncommitted changes says so twice.
	readme := filepath.Join(clone, "README.md")
	src, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(readme, append(src, "\nlocal change\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	release(t, clone, out)
	checkVersion(t, bin, map[string]string{"bridge": describe + "-dirty", "commit": head, "modified": "true"})
}

func gitOut(t testing.TB, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git %v in %s: %v", args, dir, err)
	}
	return string(out)
}

func release(t testing.TB, clone, out string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(clone, "scripts", "release"), out, runtime.GOARCH)
	cmd.Env = append(os.Environ(), "VERSION=") // the script's own git describe, not the caller's
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scripts/release: %v\n%s", err, b)
	}
}

func checkVersion(t testing.TB, bin string, want map[string]string) {
	t.Helper()
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatalf("%s version: %v", bin, err)
	}
	got := versionFields(t, string(out))
	want["go"] = runtime.Version() + " linux/" + runtime.GOARCH
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("%s version (-want +got):\n%s", bin, diff)
	}
}

// elfInterpreter reports whether bin asks for a dynamic loader.
func elfInterpreter(t testing.TB, bin string) bool {
	t.Helper()
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return true
		}
	}
	return false
}
