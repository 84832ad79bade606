package buffer

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"
)

// journalCrashEnv names the buffer directory of TestJournalCrashChild.
const journalCrashEnv = "BUFFER_JOURNAL_CRASH_DIR"

// TestJournalCrashChild is not a test: TestJournalCrashKill9 runs the test
// binary again with it selected, and kills it. It starts a space
// reclamation that never ends (its test hook blocks, the gate held, after
// DropPrefix), says so ("R"), and then hands events to the writer for
// queues "a" (forwarded) and "b" (never forwarded), reporting them as in
// TestCrashChild, "A" only after Flush returned.
func TestJournalCrashChild(t *testing.T) {
	dir := os.Getenv(journalCrashEnv)
	if dir == "" {
		t.Skip("helper process of TestJournalCrashKill9")
	}
	report := childReporter()
	held := make(chan struct{})
	var once sync.Once
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s, err := Open(Config{Dir: dir, Sync: 20 * time.Millisecond, InFlight: 8, duringReclaim: func() {
		once.Do(func() {
			close(held)
			select {} // the reclamation never ends: the writer journals until the kill
		})
	}}, logger)
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(3)
	}
	go func() {
		_ = s.Forward(context.Background(), "a", publisherFunc(func(_ context.Context, _ string, p []byte) <-chan error {
			ch := make(chan error, 1)
			report("D", "a", payloadSeq(p))
			ch <- nil
			return ch
		}))
	}()
	// Acknowledged events give reclamation something to drop; kick it
	// until it holds the gate.
	for wait := true; wait; {
		if _, err := s.Enqueue("a", "t", seqPayload(40)); err != nil {
			fmt.Fprintln(os.Stderr, "enqueue:", err)
			os.Exit(4)
		}
		select {
		case <-held:
			wait = false
		case <-time.After(100 * time.Millisecond):
			kick(s.reclaimNow)
		}
	}
	report("R", "-", 0)
	for {
		enqueueRound(s, "t", report)
	}
}

// TestJournalCrashKill9: a process killed with SIGKILL while reclamation
// holds the gate and its writer journals loses nothing it answered as
// stored: the journal is replayed at Open, every event of "b" and every
// undelivered event of "a" is there, and no seq is reused. Three rounds on
// one directory, killed after 100, 400 and 1 000 events.
func TestJournalCrashKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test re-executes the test binary")
	}
	dir := t.TempDir()
	last := map[string]uint64{}
	for round, after := range []int{100, 400, 1000} {
		appended, delivered, stderr := runJournalChild(t, dir, after)
		if n := journalSize(t, dir); n == 0 {
			t.Fatalf("round %d: journal empty at the kill: the events were not journaled\nchild stderr:\n%s", round, stderr)
		}
		s, err := Open(Config{Dir: dir, Sync: 20 * time.Millisecond, noBackground: true}, testLogger(t))
		if err != nil {
			t.Fatalf("round %d: Open after kill: %v\nchild stderr:\n%s", round, err, stderr)
		}
		if n := journalSize(t, dir); n != 0 {
			t.Errorf("round %d: journal holds %d bytes after Open, want 0 (replayed)", round, n)
		}
		if st := s.Stats(); st.Fault != "" {
			t.Errorf("round %d: Fault %q after the replay", round, st.Fault)
		}
		for _, q := range []string{"a", "b"} {
			stored := storedSeqs(t, s, q)
			var missing []uint64
			for _, seq := range appended[q] {
				if !stored[seq] && !delivered[q][seq] {
					missing = append(missing, seq)
				}
			}
			if len(missing) > 0 {
				t.Fatalf("round %d: queue %s lost %d of %d events answered as stored, first %v\nchild stderr:\n%s",
					round, q, len(missing), len(appended[q]), missing[:min(5, len(missing))], stderr)
			}
			if seqs := appended[q]; len(seqs) > 0 {
				if seqs[0] <= last[q] {
					t.Fatalf("round %d: queue %s reused seq %d (last of the previous round %d)", round, q, seqs[0], last[q])
				}
				last[q] = seqs[len(seqs)-1]
			}
		}
		t.Logf("round %d: %d + %d events answered as stored while journaling, none lost",
			round, len(appended["a"]), len(appended["b"]))
		abandon(t, s)
	}
}

// runJournalChild runs TestJournalCrashChild on dir and SIGKILLs it once it
// reported after events as stored while its reclamation holds the gate.
func runJournalChild(t *testing.T, dir string, after int) (appended map[string][]uint64, delivered map[string]map[uint64]bool, stderr string) {
	t.Helper()
	cmd, out, errOut := startChild(t, "TestJournalCrashChild", journalCrashEnv+"="+dir)
	appended = map[string][]uint64{}
	delivered = map[string]map[uint64]bool{"a": {}, "b": {}}
	reached := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(out)
		held, n := false, 0
		for sc.Scan() {
			var kind, q string
			var seq uint64
			if _, err := fmt.Sscanf(sc.Text(), "%s %s %d", &kind, &q, &seq); err != nil {
				continue
			}
			switch kind {
			case "R":
				held = true
			case "A":
				appended[q] = append(appended[q], seq)
				if n++; held && n == after {
					close(reached)
				}
			case "D":
				delivered[q][seq] = true
			}
		}
	}()
	select {
	case <-reached:
	case <-done:
		_ = cmd.Wait()
		t.Fatalf("child ended before %d events; stderr:\n%s", after, errOut.String())
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("child did not report %d events while reclamation held the gate; stderr:\n%s", after, errOut.String())
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	<-done
	_ = cmd.Wait()
	return appended, delivered, errOut.String()
}
