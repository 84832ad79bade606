package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// buildInfo is what `bridge version` reports: enough to tell which source a
// box in the field runs and how it was built.
type buildInfo struct {
	Version   string // stamped by scripts/release, or the module version of `go install`
	Commit    string // vcs.revision, "unknown" when the build had no VCS information
	Modified  string // vcs.modified: "true" when built from a tree with uncommitted changes
	GoVersion string
	Platform  string // GOOS/GOARCH
}

// readBuildInfo reads the version variable and what the Go toolchain
// recorded in the binary. go build stamps vcs.* only when it builds a main
// package inside a checkout (not under go run or go test, and not in a git
// worktree, whose .git is a file), so those fields may be unknown.
func readBuildInfo() buildInfo {
	bi, ok := debug.ReadBuildInfo()
	return fromBuildInfo(version, bi, ok)
}

// fromBuildInfo combines the stamped version with the toolchain's record bi
// (valid when ok). An unstamped build of a tagged module (go install
// fieldbridge/cmd/bridge@v1.2.0) reports the module's version.
func fromBuildInfo(stamped string, bi *debug.BuildInfo, ok bool) buildInfo {
	b := buildInfo{Version: stamped, Commit: "unknown", Modified: "unknown", GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if !ok {
		return b
	}
	if bi.GoVersion != "" {
		b.GoVersion = bi.GoVersion
	}
	if b.Version == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		b.Version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Commit = s.Value
		case "vcs.modified":
			b.Modified = s.Value
		}
	}
	return b
}

// cmdVersion prints one "key value" line per fact, so scripts can grep it.
func cmdVersion(stdout io.Writer) {
	b := readBuildInfo()
	fmt.Fprintf(stdout, "bridge   %s\ncommit   %s\nmodified %s\ngo       %s %s\n", b.Version, b.Commit, b.Modified, b.GoVersion, b.Platform)
}
