package buffer

import (
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestSmallerMemTableReplaysLargerLog: a buffer left by a kill (here: a copy
// of its files taken while it was open, as a power cut leaves them) whose
// memtable log holds more than the memtable size the next Open is given
// (a smaller default, or a leftover of an older version) opens with a
// memtable large enough to replay the log: nothing is lost, no fault. Once
// closed cleanly, the log is flushed and the smaller size takes effect.
func TestSmallerMemTableReplaysLargerLog(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Config{Dir: dir, Sync: time.Second, memTableSizeMiB: 4}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// ~3 MiB of events: more than a 1 MiB memtable holds, less than the
	// 4 MiB one fills (so it stays in the log, not flushed to a table).
	const events = 3000
	for range events {
		if _, err := s.Enqueue("q", "t", seqPayload(1000)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	crashed := t.TempDir()
	copyTree(t, dir, crashed)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := memTableMiBFor(filepath.Join(crashed, "db"), 1); got != 4 {
		t.Fatalf("memtable size for the crashed copy: %d MiB, want 4 (its log was written with 4)", got)
	}

	r, err := Open(Config{Dir: crashed, Sync: time.Second, memTableSizeMiB: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if f := r.Stats().Fault; f != "" {
		t.Fatalf("fault after reopening with a smaller memtable: %s", f)
	}
	if got := len(storedSeqs(t, r, "q")); got != events {
		t.Fatalf("%d events stored after reopening, want %d", got, events)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if got := memTableMiBFor(filepath.Join(crashed, "db"), 1); got != 1 {
		t.Fatalf("memtable size after a clean close: %d MiB, want the configured 1", got)
	}
}

// copyTree copies the regular files under src to dst, as they are now.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o750)
		}
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.Create(target)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestBatchLimitsFitTheMemTable: the writer's largest commit (maxBatchBytes
// plus one whole record, maxBatch entries) and the largest removal
// (maxRemove deletes) stay within Badger's transaction limits for the
// default memtable size: 15% of it in bytes (entry: key + value + 2 meta +
// 10 version bytes) and that divided by a skiplist node (96 bytes) in
// entries. Badger refuses a larger transaction with ErrTxnTooBig.
func TestBatchLimitsFitTheMemTable(t *testing.T) {
	const nodeSize = 96 // skl.MaxNodeSize on 64-bit
	limitBytes := int64(defaultMemTableMiB<<20) * 15 / 100
	limitCount := limitBytes / nodeSize
	perEntry := int64(keyLen + 2 + 10)
	// A writer transaction: a batch of events and the cursors (or, for the
	// deletes strategies, record deletes) that ride with it.
	commit := int64(maxBatchBytes) + int64(MaxPayload+maxRecordOverhead) + (maxBatch+maxCursors)*perEntry
	if commit >= limitBytes {
		t.Errorf("largest commit %d bytes, Badger's limit %d", commit, limitBytes)
	}
	if maxBatch+maxCursors >= limitCount || maxRemove >= limitCount {
		t.Errorf("maxBatch %d + maxCursors %d, maxRemove %d entries; Badger's limit %d", maxBatch, maxCursors, maxRemove, limitCount)
	}
}
