package serialtest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"sync"
	"testing"
	"time"
)

// startTimeout is how long Pair waits for socat to report both ends.
const startTimeout = 10 * time.Second

// ptyLine matches socat's notice naming one end, e.g.
// "2026/01/02 10:00:00 socat[123] N PTY is /dev/pts/4".
var ptyLine = regexp.MustCompile(`PTY is (\S+)`)

// Pair starts socat linking two fresh pseudo-terminals in raw mode without
// echo and returns their paths. socat is killed, and its log printed if the
// test failed, when the test ends.
//
// Either end may be opened, closed and opened again while the test runs:
// socat keeps both master sides open for the life of the pair.
func Pair(t testing.TB) (a, b string) {
	t.Helper()
	bin := findSocat(t)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "-d", "-d", "pty,raw,echo=0", "pty,raw,echo=0")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		cancel()
		t.Fatalf("serialtest: socat stderr: %v", err)
	}
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("serialtest: start socat: %v", err)
	}
	log := &lockedBuffer{}
	paths := make(chan string, 2)
	ready := make(chan struct{})
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		sc := bufio.NewScanner(stderr)
		signalled := false
		for sc.Scan() {
			line := sc.Text()
			log.WriteLine(line)
			if m := ptyLine.FindStringSubmatch(line); m != nil {
				paths <- m[1]
			}
			if !signalled && bytes.Contains(sc.Bytes(), []byte("starting data transfer loop")) {
				signalled = true
				close(ready)
			}
		}
	}()
	t.Cleanup(func() {
		cancel() // kills socat
		<-copied // stderr reaches EOF once socat is gone; read it all before Wait
		cmd.Wait()
		if t.Failed() {
			t.Logf("socat log:\n%s", log.String())
		}
	})

	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	select {
	case <-ready:
	case <-copied:
		t.Fatalf("serialtest: socat exited before linking the ptys:\n%s", log.String())
	case <-timer.C:
		t.Fatalf("serialtest: socat did not link two ptys within %v:\n%s", startTimeout, log.String())
	}
	if len(paths) != 2 {
		t.Fatalf("serialtest: socat reported %d pty paths, want 2:\n%s", len(paths), log.String())
	}
	return <-paths, <-paths
}

// findSocat returns the path of socat, or skips (fails under CI=true).
func findSocat(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("socat")
	if err == nil {
		return bin
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("serialtest: socat is required in CI but was not found: %v", err)
	}
	if errors.Is(err, exec.ErrNotFound) {
		t.Skip("serialtest: socat not installed; install it (apt-get install socat) to run the serial-line tests")
	}
	t.Skipf("serialtest: socat not usable: %v", err)
	return ""
}

// lockedBuffer collects socat's log lines from the reader goroutine.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) WriteLine(s string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.WriteString(s)
	b.buf.WriteByte('\n')
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
