package buffer

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"fieldbridge/internal/testwait"

	"github.com/google/go-cmp/cmp"
)

// TestDiskFullInjected drives the free-space guard through its seam: below
// MinFree appends are refused (their seqs consumed and counted as failed)
// while acknowledgements go on; below MinFree/2 acknowledgements stop too;
// everything resumes when space returns.
func TestDiskFullInjected(t *testing.T) {
	var free atomic.Int64
	free.Store(30 << 20)
	cfg := Config{Dir: t.TempDir(), Sync: time.Millisecond, MinFree: 16 << 20, retryMax: 20 * time.Millisecond,
		diskFree: func(string) (int64, error) { return free.Load(), nil }}
	s := openTest(t, cfg)
	before := mustAppend(t, s, "d", 5, 10)

	free.Store(12 << 20) // below MinFree, above MinFree/2
	for range 3 {
		_, err := s.Append("d", "t", seqPayload(10))
		if !errors.Is(err, ErrDiskFull) {
			t.Fatalf("Append with 12 MiB free (min 16 MiB) = %v, want ErrDiskFull", err)
		}
	}
	st := s.Stats()
	if st.Failed != 3 || st.Fault != "disk full" {
		t.Errorf("Stats() = %+v, want Failed 3, Fault \"disk full\"", st)
	}
	if got := s.QueueStats("d").NextSeq; got != 9 {
		t.Errorf("NextSeq after 5 stored and 3 refused = %d, want 9 (refused events leave a gap)", got)
	}
	// Forwarding and acknowledgements go on while appends are refused.
	if diff := cmp.Diff(before, drainAll(t, s, "d")); diff != "" {
		t.Errorf("delivered while full (-want +got):\n%s", diff)
	}

	free.Store(30 << 20)
	queued := mustAppend(t, s, "d", 2, 10)
	if diff := cmp.Diff([]uint64{9, 10}, queued); diff != "" {
		t.Errorf("seqs after recovery (-want +got):\n%s", diff)
	}
	if st := s.Stats(); st.Fault != "" {
		t.Errorf("Fault after recovery = %q, want empty", st.Fault)
	}

	// The first drain's cursor is committed by the writer within the ack
	// delay: wait for it, or its commit could land after the drop below
	// (its free-space check passed before) and look like a forbidden write.
	testwait.For(t, 20*time.Second, "cursor of the first drain committed", func() bool { return diskCursor(t, s, "d") == before[len(before)-1] })

	// Below MinFree/2 even cursor writes stop: the acknowledged events stay
	// on disk (a restart would deliver them again) until space returns.
	free.Store(6 << 20)
	cursor := diskCursor(t, s, "d")
	pub := &fakePublisher{}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Forward(ctx, "d", pub) }()
	testwait.For(t, 20*time.Second, "both events acknowledged", func() bool { return s.QueueStats("d").Len == 0 })
	if err := s.Flush(); err != nil { // a writer transaction after the acks
		t.Fatal(err)
	}
	if got := diskCursor(t, s, "d"); got != cursor {
		t.Errorf("cursor on disk with 6 MiB free (cursors need 8 MiB) = %d, want %d: it must not be written", got, cursor)
	}
	free.Store(30 << 20)
	testwait.For(t, 20*time.Second, "cursor of d committed after space returned", func() bool { return diskCursor(t, s, "d") == 10 })
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("Forward = %v", err)
	}
	if diff := cmp.Diff(queued, distinct(pub.seqs())); diff != "" {
		t.Errorf("delivered after recovery (-want +got):\n%s", diff)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Failed survives the restart.
	s = openTest(t, cfg)
	if got := s.QueueStats("d"); got.Failed != 3 || got.NextSeq != 11 {
		t.Errorf("after reopen QueueStats = %+v, want Failed 3, NextSeq 11", got)
	}
}

// TestDiskFullTmpfs fills a real, small tmpfs with the buffer's own
// events. It needs root (mount); it skips where mounting is not allowed.
func TestDiskFullTmpfs(t *testing.T) {
	mnt := mountTmpfs(t, "64m")
	dir := filepath.Join(mnt, "buffer")
	s, err := Open(Config{Dir: dir, Sync: time.Millisecond, MinFree: 16 << 20}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	// Leave about 24 MiB free (MinFree is 16 MiB).
	free, err := statfsFree(mnt)
	if err != nil {
		t.Fatal(err)
	}
	filler := filepath.Join(mnt, "filler")
	if err := os.WriteFile(filler, make([]byte, free-(24<<20)), 0o600); err != nil {
		t.Fatal(err)
	}
	var stored []uint64
	var full bool
	for range 20000 {
		seq, err := s.Append("d", "t", seqPayload(1000))
		if errors.Is(err, ErrDiskFull) {
			full = true
			break
		}
		if err != nil {
			t.Fatalf("Append = %v, want nil or ErrDiskFull", err)
		}
		stored = append(stored, seq)
	}
	if !full {
		t.Fatalf("no ErrDiskFull after %d appends of 1 KB with 24 MiB free", len(stored))
	}
	t.Logf("refused after %d events", len(stored))

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	more := mustAppend(t, s, "d", 100, 1000)
	if want := stored[len(stored)-1] + 2; more[0] != want {
		t.Errorf("first seq after recovery = %d, want %d (the refused event's seq is a gap)", more[0], want)
	}
	got := drainAll(t, s, "d")
	if diff := cmp.Diff(append(stored, more...), got); diff != "" {
		t.Errorf("delivered (-want +got):\n%s", diff)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
}

// TestCloseOnFullDisk: Close on a file system another process filled must
// not crash (Badger flushes its memtable into a new memory-mapped table on
// Close). Badger retries the flush until space returns; then Close
// completes and nothing is lost.
func TestCloseOnFullDisk(t *testing.T) {
	mnt := mountTmpfs(t, "64m")
	dir := filepath.Join(mnt, "buffer")
	var logs captureLogger
	cfg := Config{Dir: dir, Sync: time.Millisecond, MinFree: 16 << 20}
	s, err := Open(cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	want := mustAppend(t, s, "d", 1000, 100)
	filler := filepath.Join(mnt, "filler")
	if out, err := exec.Command("dd", "if=/dev/zero", "of="+filler, "bs=64k").CombinedOutput(); err == nil {
		t.Fatalf("dd did not fill the tmpfs: %s", out)
	}
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	testwait.For(t, 20*time.Second, "Badger failing to flush on the full disk", func() bool {
		return strings.Contains(logs.String(), "error flushing memtable")
	})
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := <-closed; err != nil {
		t.Fatalf("Close after space returned = %v", err)
	}
	s = openTest(t, cfg)
	if diff := cmp.Diff(want, drainAll(t, s, "d")); diff != "" {
		t.Errorf("delivered after reopen (-want +got):\n%s", diff)
	}
}
