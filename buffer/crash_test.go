package buffer

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// crashChildEnv names the buffer directory of TestCrashChild.
const crashChildEnv = "BUFFER_CRASH_CHILD_DIR"

// crashEnqueueEnv, set to 1, makes TestCrashChild hand its events to the
// writer (Enqueue, five per queue at a time) and report them as appended
// only after Flush returned: "stored" for the writer path.
const crashEnqueueEnv = "BUFFER_CRASH_ENQUEUE"

// crashLazyAcksEnv, set to 1, gives TestCrashChild an hour's ack delay:
// cursors are committed only with event batches or when the forwarder
// waits to refill its window.
const crashLazyAcksEnv = "BUFFER_CRASH_LAZY_ACKS"

// TestCrashChild is not a test: TestCrashKill9 runs the test binary again
// with it selected, and kills it. It appends to queue "a" (forwarded) and
// "b" (never forwarded) at a steady rate and reports on stdout, one line per
// write(2):
//
//	A <queue> <seq>   Append returned nil for seq
//	D <queue> <seq>   the fake broker got seq (printed before the ack)
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashChildEnv)
	if dir == "" {
		t.Skip("helper process of TestCrashKill9")
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg := Config{Dir: dir, Sync: 20 * time.Millisecond, InFlight: 8, leaseBlock: 64}
	if os.Getenv(crashLazyAcksEnv) == "1" {
		cfg.ackDelay = time.Hour
	}
	s, err := Open(cfg, logger)
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(3)
	}
	report := childReporter()
	go func() {
		_ = s.Forward(context.Background(), "a", publisherFunc(func(_ context.Context, _ string, p []byte) <-chan error {
			ch := make(chan error, 1)
			seq := payloadSeq(p)
			go func() {
				time.Sleep(time.Duration(seq%5) * 100 * time.Microsecond) // a little latency
				report("D", "a", seq)
				ch <- nil
			}()
			return ch
		}))
	}()
	tick := time.NewTicker(200 * time.Microsecond)
	if os.Getenv(crashEnqueueEnv) == "1" {
		for range tick.C {
			enqueueRound(s, "iot-2/evt/x/fmt/json", report)
		}
	}
	for range tick.C {
		for _, q := range []string{"a", "b"} {
			seq, err := s.Append(q, "iot-2/evt/x/fmt/json", seqPayload(40))
			if err != nil {
				fmt.Fprintln(os.Stderr, "append:", err)
				os.Exit(4)
			}
			report("A", q, seq)
		}
	}
}

// enqueueRound is one round of a crash child: five events into each of
// queues a and b through the writer, a Flush, and only then a report of
// each as appended ("A queue seq"); any refusal ends the child.
func enqueueRound(s *Store, topic string, report func(kind, queue string, seq uint64)) {
	var seqs []uint64
	for range 5 {
		for _, q := range []string{"a", "b"} {
			seq, err := s.Enqueue(q, topic, seqPayload(40))
			if err != nil {
				fmt.Fprintln(os.Stderr, "enqueue:", err)
				os.Exit(4)
			}
			seqs = append(seqs, seq)
		}
	}
	if err := s.Flush(); err != nil {
		fmt.Fprintln(os.Stderr, "flush:", err)
		os.Exit(4)
	}
	if st := s.Counters(); st.Failed > 0 {
		fmt.Fprintln(os.Stderr, "writer refused events:", st.Failed)
		os.Exit(4)
	}
	for i, seq := range seqs {
		report("A", []string{"a", "b"}[i%2], seq)
	}
}

type publisherFunc func(ctx context.Context, topic string, payload []byte) <-chan error

func (f publisherFunc) Publish(ctx context.Context, topic string, payload []byte) <-chan error {
	return f(ctx, topic, payload)
}

// TestCrashKill9 kills a writing child process with SIGKILL at random
// moments, several times over one directory, and checks after every kill
// that each event the child saw appended is still stored or was delivered,
// and that seq numbers were never reused. At the end everything left is
// delivered.
func TestCrashKill9(t *testing.T) { crashKill9(t, false, false) }

// TestCrashKill9Enqueue is TestCrashKill9 for the writer path: every event
// Enqueue accepted before a Flush that returned nil survives kill -9.
func TestCrashKill9Enqueue(t *testing.T) { crashKill9(t, true, false) }

// TestCrashKill9LazyAcks is TestCrashKill9Enqueue with cursors committed
// only with the writer's batches or when the forwarder waits to refill its
// window (no ack timer): still at most one window is re-sent.
func TestCrashKill9LazyAcks(t *testing.T) { crashKill9(t, true, true) }

func crashKill9(t *testing.T, enqueue, lazyAcks bool) {
	if testing.Short() {
		t.Skip("crash test re-executes the test binary")
	}
	dir := t.TempDir()
	const rounds = 10
	appended := map[string][]uint64{}
	delivered := map[string]map[uint64]bool{"a": {}, "b": {}}
	for round := 1; round <= rounds; round++ {
		lines, stderr := runAndKill(t, dir, round, enqueue, lazyAcks)
		for q, seqs := range lines.appended {
			if prev := appended[q]; len(prev) > 0 && len(seqs) > 0 && seqs[0] <= prev[len(prev)-1] {
				t.Fatalf("round %d: queue %s reused seq: first %d after %d", round, q, seqs[0], prev[len(prev)-1])
			}
			appended[q] = append(appended[q], seqs...)
		}
		for q, seqs := range lines.delivered {
			again := 0
			for _, seq := range seqs {
				if delivered[q][seq] {
					again++
				}
				delivered[q][seq] = true
			}
			// The cursor is saved before the window is refilled: a kill
			// re-sends at most one window (InFlight 8 in the child).
			if again > 8 {
				t.Errorf("round %d: queue %s re-sent %d events already delivered, want at most the window of 8", round, q, again)
			}
		}
		// Check the store as the child left it.
		s, err := Open(Config{Dir: dir, Sync: 20 * time.Millisecond, noBackground: true}, testLogger(t))
		if err != nil {
			t.Fatalf("round %d: Open after kill: %v\nchild stderr:\n%s", round, err, stderr)
		}
		for q, seqs := range appended {
			stored := storedSeqs(t, s, q)
			var missing []uint64
			for _, seq := range seqs {
				if !stored[seq] && !delivered[q][seq] {
					missing = append(missing, seq)
				}
			}
			if len(missing) > 0 {
				abandon(t, s) // no Badger goroutine outlives the test
				t.Fatalf("round %d: queue %s lost %d appended events, first %v\nchild stderr:\n%s",
					round, q, len(missing), missing[:min(5, len(missing))], stderr)
			}
		}
		t.Logf("round %d: child appended a:%d b:%d, delivered a:%d; store holds a:%d b:%d",
			round, len(lines.appended["a"]), len(lines.appended["b"]), len(lines.delivered["a"]),
			s.QueueStats("a").Len, s.QueueStats("b").Len)
		abandon(t, s) // leave it as unclean as the child did
	}

	s := openTest(t, Config{Dir: dir, Sync: 20 * time.Millisecond})
	for _, q := range []string{"a", "b"} {
		got := drainAll(t, s, q)
		for i := 1; i < len(got); i++ {
			if got[i] <= got[i-1] {
				t.Fatalf("queue %s: final drain out of order at %d: %d after %d", q, i, got[i], got[i-1])
			}
		}
		for _, seq := range got {
			delivered[q][seq] = true
		}
		for _, seq := range appended[q] {
			if !delivered[q][seq] {
				t.Fatalf("queue %s: seq %d was appended but never delivered", q, seq)
			}
		}
		t.Logf("queue %s: %d appended over %d kills, all delivered", q, len(appended[q]), rounds)
	}
}

// childReporter returns the crash children's report: one line "kind
// queue seq" on stdout per call, each in one write(2), so that a line the
// parent reads was complete before the kill.
func childReporter() func(kind, queue string, seq uint64) {
	var mu sync.Mutex
	return func(kind, queue string, seq uint64) {
		line := fmt.Sprintf("%s %s %d\n", kind, queue, seq)
		mu.Lock()
		defer mu.Unlock()
		_, _ = os.Stdout.WriteString(line)
	}
}

// startChild runs the test binary again with only test selected and env
// added, and returns its stdout and what it writes to stderr.
func startChild(t *testing.T, test string, env ...string) (*exec.Cmd, io.Reader, *strings.Builder) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), env...)
	stderr := &strings.Builder{}
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, out, stderr
}

type childLines struct {
	appended, delivered map[string][]uint64
}

// runAndKill runs TestCrashChild on dir and SIGKILLs it at a random moment
// after it has appended a little.
func runAndKill(t *testing.T, dir string, round int, enqueue, lazyAcks bool) (childLines, string) {
	t.Helper()
	env := []string{crashChildEnv + "=" + dir}
	if enqueue {
		env = append(env, crashEnqueueEnv+"=1")
	}
	if lazyAcks {
		env = append(env, crashLazyAcksEnv+"=1")
	}
	cmd, out, stderr := startChild(t, "TestCrashChild", env...)
	lines := childLines{appended: map[string][]uint64{}, delivered: map[string][]uint64{}}
	started := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		readChild(out, &lines, started)
	}()
	select {
	case <-started:
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("round %d: child did not start appending; stderr:\n%s", round, stderr.String())
	}
	kill := time.Duration(rand.IntN(400)) * time.Millisecond
	timer := time.NewTimer(kill)
	<-timer.C
	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	<-done
	_ = cmd.Wait()
	return lines, stderr.String()
}

func readChild(r io.Reader, lines *childLines, started chan<- struct{}) {
	sc := bufio.NewScanner(r)
	n := 0
	for sc.Scan() {
		var kind, q string
		var seq uint64
		if _, err := fmt.Sscanf(sc.Text(), "%s %s %d", &kind, &q, &seq); err != nil {
			continue // a line torn by the kill
		}
		switch kind {
		case "A":
			lines.appended[q] = append(lines.appended[q], seq)
			if n++; n == 100 {
				close(started)
			}
		case "D":
			lines.delivered[q] = append(lines.delivered[q], seq)
		}
	}
	if n < 100 {
		close(started)
	}
}

// storedSeqs returns the seqs of queue's readable records above its cursor.
func storedSeqs(t testing.TB, s *Store, queue string) map[uint64]bool {
	t.Helper()
	q, err := s.queue(queue)
	if err != nil {
		t.Fatal(err)
	}
	q.mu.Lock()
	head, tail := q.head, q.tail
	q.mu.Unlock()
	// s.read, not readRange: the read-ahead budget (Config.ReadAhead)
	// would cap this census of everything stored and report the rest lost.
	items, _, err := s.read(q, head+1, tail, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	out := map[uint64]bool{}
	for _, it := range items {
		if it.err != nil {
			t.Errorf("queue %s: seq %d corrupt after kill: %v", queue, it.seq, it.err)
			continue
		}
		out[it.seq] = true
	}
	return out
}
