package buffer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// diskFullChildEnv names the buffer directory of TestDiskFullChild.
const diskFullChildEnv = "BUFFER_DISKFULL_CHILD_DIR"

// TestDiskFullChild is not a test: TestDiskFullOtherProcess runs the test
// binary again with it selected. It appends to queue "a" every millisecond
// and forwards it to a fake broker that is down until "up" arrives on
// stdin; "stop" stops appending, waits for the queue to drain and closes
// the Store. It reports on stdout, one line per write(2):
//
//	A <seq>                     Append returned nil for seq
//	F                           Append returned ErrDiskFull
//	D <seq>                     the fake broker acknowledged seq
//	Q <len> <failed> <fault>    every 50 ms
//	S <next_seq> <failed>       after Close
func TestDiskFullChild(t *testing.T) {
	dir := os.Getenv(diskFullChildEnv)
	if dir == "" {
		t.Skip("helper process of TestDiskFullOtherProcess")
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	s, err := Open(Config{Dir: dir, Sync: 20 * time.Millisecond, InFlight: 8, MinFree: 16 << 20,
		retryMax: 100 * time.Millisecond}, logger)
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(3)
	}
	var outMu sync.Mutex
	report := func(format string, a ...any) {
		line := fmt.Sprintf(format+"\n", a...)
		outMu.Lock()
		_, _ = os.Stdout.WriteString(line)
		outMu.Unlock()
	}
	var up atomic.Bool
	go func() {
		_ = s.Forward(context.Background(), "a", publisherFunc(func(_ context.Context, _ string, p []byte) <-chan error {
			ch := make(chan error, 1)
			if !up.Load() {
				ch <- errors.New("not connected")
				return ch
			}
			report("D %d", payloadSeq(p))
			ch <- nil
			return ch
		}))
	}()
	go func() {
		for range time.Tick(50 * time.Millisecond) {
			st := s.QueueStats("a")
			fault := strings.ReplaceAll(s.Stats().Fault, " ", "_")
			report("Q %d %d %s", st.Len, st.Failed, fault+"-")
		}
	}()
	stop := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			switch sc.Text() {
			case "up":
				up.Store(true)
			case "stop":
				close(stop)
				return
			}
		}
	}()
	tick := time.NewTicker(time.Millisecond)
	for appending := true; appending; {
		select {
		case <-stop:
			appending = false
		case <-tick.C:
			seq, err := s.Append("a", "iot-2/evt/x/fmt/json", seqPayload(200))
			switch {
			case err == nil:
				report("A %d", seq)
			case errors.Is(err, ErrDiskFull):
				report("F")
			default:
				fmt.Fprintln(os.Stderr, "append:", err)
				os.Exit(4)
			}
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for s.QueueStats("a").Len > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	st := s.QueueStats("a")
	if err := s.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "close:", err)
		os.Exit(5)
	}
	report("S %d %d", st.NextSeq, st.Failed)
	os.Exit(0)
}

// mountTmpfs mounts a tmpfs of size on a temporary directory and unmounts
// it at the end of the test. It skips the test where mounting is not
// permitted (not root, no CAP_SYS_ADMIN): even under CI=true, because that
// is the machine's policy, not a missing program.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("mounts a tmpfs")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v: %s); TestDiskFullInjected covers the guard", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	return mnt
}

// TestDiskFullOtherProcess is issue 9 defect 1 from outside: a child
// process holds a backlog in a buffer on a small tmpfs while its broker is
// down; another process (dd) fills the file system to the last byte; then
// the broker comes back, so the child acknowledges and writes its cursor
// on a full disk. Before the fix Badger wrote into a sparse memory-mapped
// log and the child died of SIGBUS. Now: no crash, the child keeps
// appending (refused, counted) and publishing, and once the filler is
// removed everything it accepted is delivered.
func TestDiskFullOtherProcess(t *testing.T) {
	mnt := mountTmpfs(t, "64m")
	dir := filepath.Join(mnt, "buffer")

	cmd := exec.Command(os.Args[0], "-test.run=^TestDiskFullChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), diskFullChildEnv+"="+dir)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill() }()
	child := newChildState()
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		child.read(stdout)
	}()
	wait := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !cond() {
			select {
			case <-readDone:
				t.Fatalf("child exited while waiting for %s; stderr:\n%s", what, stderr.String())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; stderr:\n%s", what, stderr.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	wait("a backlog of 1500 events", func() bool { return child.lastQ().len >= 1500 })
	// Another process fills the file system to the last block.
	out, err := exec.Command("dd", "if=/dev/zero", "of="+filepath.Join(mnt, "filler"), "bs=64k").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "No space left") {
		t.Fatalf("dd did not fill the tmpfs: %v: %s", err, out)
	}
	if free, err := statfsFree(mnt); err != nil || free != 0 {
		t.Fatalf("free space after dd = %d (%v), want 0", free, err)
	}
	fmt.Fprintln(stdin, "up") // the broker comes back
	wait("the full disk reported and appends refused", func() bool {
		q := child.lastQ()
		return strings.HasPrefix(q.fault, "disk_full") && q.failed > 0 && child.refused() > 0
	})
	wait("some events published on the full disk", func() bool { return child.deliveredCount() > 0 })
	// Let the child run on the full disk for a while: 40 more reports.
	n := child.reports()
	wait("40 reports on the full disk", func() bool { return child.reports() >= n+40 })

	if err := os.Remove(filepath.Join(mnt, "filler")); err != nil {
		t.Fatal(err)
	}
	wait("the disk fault cleared", func() bool { return child.lastQ().fault == "-" })
	fmt.Fprintln(stdin, "stop")
	<-readDone
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v (want exit 0, no crash); stderr:\n%s", err, stderr.String())
	}

	child.mu.Lock()
	defer child.mu.Unlock()
	var lost []uint64
	for _, seq := range child.appended {
		if !child.delivered[seq] {
			lost = append(lost, seq)
		}
	}
	if len(lost) > 0 {
		t.Errorf("%d accepted events never delivered, first %v", len(lost), lost[:min(5, len(lost))])
	}
	if child.final == nil {
		t.Fatalf("child printed no final stats; stderr:\n%s", stderr.String())
	}
	// Every seq went to an event that was either stored or refused.
	if got, want := child.final.nextSeq-1, uint64(len(child.appended))+child.final.failed; got != want {
		t.Errorf("seqs issued = %d, want %d stored + %d refused", got, len(child.appended), child.final.failed)
	}
	if child.final.failed != uint64(child.refusedN) {
		t.Errorf("Failed = %d, want the %d refusals the child saw", child.final.failed, child.refusedN)
	}
	t.Logf("child stored %d events, %d refused on the full disk, all stored ones delivered",
		len(child.appended), child.refusedN)
}

type qLine struct {
	len, failed uint64
	fault       string
}

type childState struct {
	mu        sync.Mutex
	appended  []uint64
	delivered map[uint64]bool
	refusedN  int
	q         qLine
	nq        int
	final     *struct{ nextSeq, failed uint64 }
}

func newChildState() *childState { return &childState{delivered: map[uint64]bool{}} }

func (c *childState) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		c.mu.Lock()
		switch {
		case f[0] == "A" && len(f) == 2:
			var seq uint64
			fmt.Sscan(f[1], &seq)
			c.appended = append(c.appended, seq)
		case f[0] == "D" && len(f) == 2:
			var seq uint64
			fmt.Sscan(f[1], &seq)
			c.delivered[seq] = true
		case f[0] == "F":
			c.refusedN++
		case f[0] == "Q" && len(f) == 4:
			fmt.Sscan(f[1], &c.q.len)
			fmt.Sscan(f[2], &c.q.failed)
			c.q.fault = f[3]
			c.nq++
		case f[0] == "S" && len(f) == 3:
			c.final = &struct{ nextSeq, failed uint64 }{}
			fmt.Sscan(f[1], &c.final.nextSeq)
			fmt.Sscan(f[2], &c.final.failed)
		}
		c.mu.Unlock()
	}
}

func (c *childState) lastQ() qLine {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.q
}

func (c *childState) refused() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.refusedN
}

func (c *childState) reports() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nq
}

func (c *childState) deliveredCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.delivered)
}
