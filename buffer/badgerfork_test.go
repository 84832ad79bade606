package buffer

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestPatchedBadgerSuite runs the tests of the Badger fork the buffer is
// built on (third_party/badger, see its FIELDBRIDGE.md: the compactors'
// wake-ups, the DropPrefix prefix set and flush). The fork is a module of
// its own, which `go test ./...` does not reach; this keeps the README's
// one test command the whole suite. Its race detector follows this test's.
func TestPatchedBadgerSuite(t *testing.T) {
	dir, err := filepath.Abs(filepath.Join("..", "third_party", "badger"))
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"test", "-count=1", "-timeout", "10m"}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, ".")...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=") // the fork's tests, not this run's flags
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go %v in %s: %v\n%s", args, dir, err, out)
	}
	t.Logf("%s", out)
}
