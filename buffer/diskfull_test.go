package buffer

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestDiskFullInjected drives the free-space guard through its seam.
func TestDiskFullInjected(t *testing.T) {
	var free atomic.Int64
	free.Store(20 << 20)
	cfg := Config{Dir: t.TempDir(), Sync: time.Millisecond, MinFree: 10 << 20,
		diskFree: func(string) (int64, error) { return free.Load(), nil }}
	s := openTest(t, cfg)
	before := mustAppend(t, s, "d", 5, 10)

	free.Store(5 << 20)
	for range 3 {
		_, err := s.Append("d", "t", seqPayload(10))
		if !errors.Is(err, ErrDiskFull) {
			t.Fatalf("Append with 5 MiB free (min 10 MiB) = %v, want ErrDiskFull", err)
		}
	}
	st := s.Stats()
	if st.Failed != 3 || st.Fault != "disk full" {
		t.Errorf("Stats() = %+v, want Failed 3, Fault \"disk full\"", st)
	}
	// Forwarding goes on while the disk is full.
	if diff := cmp.Diff(before, drainAll(t, s, "d")); diff != "" {
		t.Errorf("delivered while full (-want +got):\n%s", diff)
	}

	free.Store(30 << 20)
	after := mustAppend(t, s, "d", 2, 10)
	if diff := cmp.Diff([]uint64{6, 7}, after); diff != "" {
		t.Errorf("seqs after recovery (-want +got):\n%s", diff)
	}
	if st := s.Stats(); st.Fault != "" {
		t.Errorf("Fault after recovery = %q, want empty", st.Fault)
	}
}

// TestDiskFullTmpfs fills a real, small tmpfs. It needs root (mount); it
// skips where mounting is not allowed.
func TestDiskFullTmpfs(t *testing.T) {
	if testing.Short() {
		t.Skip("mounts a tmpfs")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v: %s); TestDiskFullInjected covers the guard", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	dir := filepath.Join(mnt, "buffer")
	s, err := Open(Config{Dir: dir, Sync: time.Millisecond, MinFree: 8 << 20}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	// Leave about 12 MiB free.
	free, err := statfsFree(mnt)
	if err != nil {
		t.Fatal(err)
	}
	filler := filepath.Join(mnt, "filler")
	if err := os.WriteFile(filler, make([]byte, free-(12<<20)), 0o600); err != nil {
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
		t.Fatalf("no ErrDiskFull after %d appends of 1 KB with 12 MiB free", len(stored))
	}
	t.Logf("refused after %d events", len(stored))

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	more := mustAppend(t, s, "d", 100, 1000)
	if more[0] != stored[len(stored)-1]+1 {
		t.Errorf("first seq after recovery = %d, want %d", more[0], stored[len(stored)-1]+1)
	}
	got := drainAll(t, s, "d")
	if diff := cmp.Diff(append(stored, more...), got); diff != "" {
		t.Errorf("delivered (-want +got):\n%s", diff)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
}
