package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"testing"
)

// childEnv, when set to 1, makes the test binary run main() instead of the
// tests: process tests start the real command as a child process, so that
// exit codes, signals and broken pipes are those of the real program.
const childEnv = "FIELDBRIDGE_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// bridgeCommand returns the bridge command with args, as a child process.
func bridgeCommand(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	return cmd
}

// runBridgeCommand runs the bridge command to its end and returns its exit
// code and what it wrote to stdout and stderr together.
func runBridgeCommand(t *testing.T, args ...string) (int, string) {
	t.Helper()
	cmd := bridgeCommand(t, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, out.String()
	case errors.As(err, &exit):
		return exit.ExitCode(), out.String()
	}
	t.Fatalf("bridge %v: %v", args, err)
	return 0, ""
}
