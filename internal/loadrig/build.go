package loadrig

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// BuildBridge builds fieldbridge/cmd/bridge into a new temporary directory
// (run from inside the module) and returns the binary and a function that
// removes it.
func BuildBridge() (bin string, cleanup func(), err error) {
	dir, err := os.MkdirTemp("", "loadrig-bin-")
	if err != nil {
		return "", nil, err
	}
	bin = filepath.Join(dir, "bridge")
	if out, err := exec.Command("go", "build", "-o", bin, "fieldbridge/cmd/bridge").CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("go build ./cmd/bridge: %v\n%s", err, out)
	}
	return bin, func() { os.RemoveAll(dir) }, nil
}
