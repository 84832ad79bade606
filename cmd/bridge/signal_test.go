package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"fieldbridge/buffer"
	"fieldbridge/platform"
)

// child is `bridge run` as a child process against the test's simulators
// and local platform, with its buffer in a temporary directory.
type child struct {
	cmd       *exec.Cmd
	stderr    *os.File // read end of the child's stderr pipe
	lines     chan string
	bufferDir string
	config    string // the configuration file's path
	events    *platform.Subscription
	exited    chan struct{}
	err       error // cmd.Wait's result, once exited is closed
}

// startChildBridge writes a configuration for the test rig and starts
// `bridge run` on it, with its stderr on a pipe the test reads line by line.
func startChildBridge(t *testing.T, args ...string) *child {
	t.Helper()
	return startChildBridgeWith(t, func(src string) string { return src }, args...)
}

// startChildBridgeWith is startChildBridge with the configuration's text
// passed through edit first.
func startChildBridgeWith(t *testing.T, edit func(src string) string, args ...string) *child {
	t.Helper()
	r := startSimulation(t)
	sub := r.startPlatform(t)
	host, port, ok := strings.Cut(r.plat.Addr(), ":")
	if !ok {
		t.Fatalf("platform address %q", r.plat.Addr())
	}
	src := strings.Replace(testConfig, "tls = false", fmt.Sprintf("tls = false\n  host = %q\n  port = %s", host, port), 1)
	for _, b := range r.cfg.Buses {
		src = strings.Replace(src, `address = "127.0.0.1:0"`, fmt.Sprintf("address = %q", b.Address), 1)
	}
	dir := t.TempDir()
	c := &child{bufferDir: filepath.Join(dir, "buffer"), config: filepath.Join(dir, "bridge.hcl"), events: sub}
	src += fmt.Sprintf("buffer {\n  dir = %q\n}\n", c.bufferDir)
	if err := os.WriteFile(c.config, []byte(edit(src)), 0o600); err != nil {
		t.Fatal(err)
	}

	c.start(t, args...)
	return c
}

// start runs `bridge run` on c's configuration in a new process, with its
// stderr on a pipe the test reads line by line. A child that was killed
// can be started again on the same buffer.
func (c *child) start(t *testing.T, args ...string) {
	t.Helper()
	c.lines, c.exited, c.err = make(chan string, 1024), make(chan struct{}), nil
	c.cmd = bridgeCommand(t, append([]string{"run", "-config", c.config, "-log-format", "json", "-drain", "5s"}, args...)...)
	rd, wr, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	c.cmd.Stderr, c.stderr = wr, rd
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	wr.Close()
	cmd, lines, exited := c.cmd, c.lines, c.exited
	go func() {
		c.err = cmd.Wait()
		close(exited)
	}()
	go func() {
		sc := bufio.NewScanner(rd)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default: // the test reads only what it waits for
			}
		}
		close(lines)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		rd.Close()
	})
}

// waitLog waits for a log line containing s and returns it.
func (c *child) waitLog(t *testing.T, s string) string {
	t.Helper()
	timeout := time.After(15 * time.Second)
	var skipped []string // shown on failure: what the bridge said instead
	for {
		select {
		case line, ok := <-c.lines:
			if !ok {
				t.Fatalf("stderr closed before a line with %q; lines since the last one waited for:\n%s", s, lastLines(skipped))
			}
			if strings.Contains(line, s) {
				return line
			}
			skipped = append(skipped, line)
		case <-c.exited:
			t.Fatalf("bridge exited (%v) before logging %q; lines since the last one waited for:\n%s", c.err, s, lastLines(skipped))
		case <-timeout:
			t.Fatalf("no log line with %q in 15s; lines since the last one waited for:\n%s", s, lastLines(skipped))
		}
	}
}

// waitLogs waits for a line containing each of subs, in any order, and
// returns them in the order of subs.
func (c *child) waitLogs(t *testing.T, subs ...string) []string {
	t.Helper()
	found := make([]string, len(subs))
	timeout := time.After(15 * time.Second)
	var skipped []string
	for missing := len(subs); missing > 0; {
		select {
		case line, ok := <-c.lines:
			if !ok {
				t.Fatalf("stderr closed before lines with %q; lines since the last one waited for:\n%s", subs, lastLines(skipped))
			}
			matched := false
			for i, sub := range subs {
				if found[i] == "" && strings.Contains(line, sub) {
					found[i], matched = line, true
					missing--
					break
				}
			}
			if !matched {
				skipped = append(skipped, line)
			}
		case <-c.exited:
			t.Fatalf("bridge exited (%v) before logging %q; lines since the last one waited for:\n%s", c.err, subs, lastLines(skipped))
		case <-timeout:
			t.Fatalf("no log lines with all of %q in 15s (found %q); lines since the last one waited for:\n%s", subs, found, lastLines(skipped))
		}
	}
	return found
}

// lastLines joins the last 30 of lines.
func lastLines(lines []string) string {
	return strings.Join(lines[max(0, len(lines)-30):], "\n")
}

// waitEvents waits until the platform received n more events.
func (c *child) waitEvents(t *testing.T, n int) {
	t.Helper()
	timeout := time.After(15 * time.Second)
	for range n {
		select {
		case <-c.events.C:
		case <-c.exited:
			t.Fatalf("bridge exited (%v) while the test waited for events", c.err)
		case <-timeout:
			t.Fatalf("fewer than %d events in 15s", n)
		}
	}
}

// stop sends SIGTERM and checks the bridge exits 0 and its buffer is empty.
func (c *child) stop(t *testing.T) {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	select {
	case <-c.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("bridge did not stop within 30s of SIGTERM")
	}
	var exit *exec.ExitError
	if errors.As(c.err, &exit) {
		t.Fatalf("bridge after SIGTERM: %v (exit code %d), want exit 0", c.err, exit.ExitCode())
	} else if c.err != nil {
		t.Fatal(c.err)
	}
	s, err := buffer.Open(buffer.Config{Dir: c.bufferDir}, quietLogger())
	if err != nil {
		t.Fatalf("reopen the buffer: %v", err)
	}
	defer s.Close()
	if st := s.Stats(); st.Len != 0 {
		t.Errorf("buffer after a clean stop holds %d events, want 0 (drained)", st.Len)
	}
}

// TestSIGHUPDoesNotKill sends SIGHUP to a running bridge whose file did
// not change: it reloads, changes nothing, keeps publishing, and still
// drains and exits 0 on SIGTERM.
func TestSIGHUPDoesNotKill(t *testing.T) {
	c := startChildBridge(t)
	c.waitLog(t, "bridge started")
	c.waitEvents(t, 3)
	for range 2 {
		if err := c.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		c.waitLog(t, `"msg":"reloaded"`)
	}
	c.waitEvents(t, 10)
	c.stop(t)
}

// TestClosedStderrDoesNotKill closes the read end of the bridge's stderr
// while it logs every event (debug level): the writes fail with a broken
// pipe, and the bridge keeps publishing and exits 0 on SIGTERM.
func TestClosedStderrDoesNotKill(t *testing.T) {
	c := startChildBridge(t, "-log-level", "debug")
	c.waitLog(t, "event buffered")
	c.stderr.Close()
	for range c.lines { // the reader ends with the pipe
	}
	c.waitEvents(t, 30) // 30 more debug lines written to the broken pipe
	if err := c.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	c.waitEvents(t, 10)
	c.stop(t)
}

// removeDeviceFromConfig deletes the block of device name from the child's
// configuration file (what an operator does before a reload).
func (c *child) removeDeviceFromConfig(t *testing.T, name string) {
	t.Helper()
	src, err := os.ReadFile(c.config)
	if err != nil {
		t.Fatal(err)
	}
	block := regexp.MustCompile(`(?s)device "` + regexp.QuoteMeta(name) + `" \{.*?\n\}\n`)
	if !block.Match(src) {
		t.Fatalf("no device %s in the child's configuration", name)
	}
	writeFile(t, c.config, block.ReplaceAll(src, nil))
}
