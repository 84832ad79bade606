package dm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// hookOutputLimit bounds how much of a hook's output is kept for the
// error message.
const hookOutputLimit = 512

// hookWaitDelay is how long a hook whose context ended may take to exit
// (and its pipes to close) before it is killed.
const hookWaitDelay = 2 * time.Second

// runHook runs argv without a shell, {name} placeholders in each argument
// replaced from vars, until it exits or ctx ends (then it is killed). A
// non-zero exit is an error carrying the end of its output.
func runHook(ctx context.Context, argv []string, vars map[string]string) error {
	args := make([]string, len(argv))
	for i, arg := range argv {
		args[i] = expand(arg, vars)
	}
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.WaitDelay = hookWaitDelay
	var out tailBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("hook %s: stopped after its timeout: %w", args[0], ctx.Err())
	}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return fmt.Errorf("hook %s: %v: %s", args[0], exit, strings.TrimSpace(out.String()))
	}
	return fmt.Errorf("hook %s: %v", args[0], err)
}

// expand replaces {name} by vars[name] for every name in vars.
func expand(s string, vars map[string]string) string {
	if !strings.Contains(s, "{") {
		return s
	}
	pairs := make([]string, 0, 2*len(vars))
	for k, v := range vars {
		pairs = append(pairs, "{"+k+"}", v)
	}
	return strings.NewReplacer(pairs...).Replace(s)
}

// tailBuffer keeps the last hookOutputLimit bytes written to it.
type tailBuffer struct{ b []byte }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > hookOutputLimit {
		t.b = bytes.Clone(t.b[len(t.b)-hookOutputLimit:])
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return string(t.b) }
