package buffer

import (
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"fieldbridge/internal/testwait"
)

// drainStore opens a Store whose reclamation would run all the time if
// nothing postponed it: every 20 ms and after every 64 KiB acknowledged,
// with 1 MiB memtables (a backlog above 1 MiB lies in tables). It returns
// the store and the count of reclamations that called DropPrefix.
func drainStore(t *testing.T, cfg Config) (*Store, *atomic.Int64) {
	t.Helper()
	var runs atomic.Int64
	cfg.Dir = t.TempDir()
	cfg.Sync = time.Second
	cfg.memTableSizeMiB = 1
	cfg.reclaimEvery = 20 * time.Millisecond
	cfg.reclaimBytes = 64 << 10
	cfg.duringReclaim = func() { runs.Add(1) }
	return openTest(t, cfg), &runs
}

// TestReclaimWaitsForTheDrain: while a backlog lies in Badger's tables and
// the forwarders' cursors move through it (a drain after an outage), no
// reclamation runs, though the periodic and the reclaimBytes triggers fire
// many times meanwhile (each would rewrite every table of the backlog); one
// runs within seconds of the backlog falling below a memtable's worth, and
// it gives the space back: the tables shrink to a fraction. Every event
// arrives once, in order. Without the postponement the reclamations run
// during the drain and the first check fails.
func TestReclaimWaitsForTheDrain(t *testing.T) {
	s, runs := drainStore(t, Config{})
	const pad = 1000
	seqs := mustAppend(t, s, "q", 6000, pad) // ~6 MiB: six memtables
	testwait.For(t, 30*time.Second, "backlog flushed into tables", func() bool {
		return tablesOnDisk(s) >= 3<<20
	})

	// The drain's first part: down to ~2 MiB waiting (above the memtable).
	pub := &fakePublisher{}
	forwardUntil(t, s, "q", pub, "the backlog down to ~2 MiB", func() bool {
		return s.QueueStats("q").Len <= 2000
	})
	// Give the triggers time to fire (the ticker every 20 ms; the
	// recheck every postponeRecheck).
	time.Sleep(postponeRecheck + 200*time.Millisecond)
	if n := runs.Load(); n != 0 {
		t.Fatalf("%d reclamations ran while %d bytes waited in tables (%d acknowledged), want none during the drain",
			n, s.total.Load(), s.removed.Load())
	}
	if r := s.removed.Load(); r < 3<<20 {
		t.Fatalf("%d bytes acknowledged and not reclaimed, want the ~4 MiB forwarded (the test shows nothing otherwise)", r)
	}

	// The rest of the drain: the backlog falls below the memtable, and a
	// reclamation follows on its own.
	before := tablesOnDisk(s)
	forwardUntil(t, s, "q", pub, "queue empty", func() bool { return s.QueueStats("q").Len == 0 })
	testwait.For(t, 10*time.Second, "a reclamation after the drain", func() bool { return runs.Load() > 0 })
	after := tablesOnDisk(s)
	t.Logf("tables %d bytes before the reclamation, %d after; %d reclamations", before, after, runs.Load())
	if after > before/4 {
		t.Fatalf("tables hold %d bytes after the reclamation (before %d), want at most a quarter", after, before)
	}
	if got := distinct(pub.seqs()); !slices.Equal(got, seqs) {
		t.Fatalf("%d distinct events forwarded, want the %d appended, in order", len(got), len(seqs))
	}
}

// TestReclaimDuringDrainWhenDiskIsShort: the postponement yields to the
// disk. With less than 2*MinFree free (events still accepted above
// MinFree) a reclamation runs during the drain, as before. Without the
// disk condition none would run until the backlog is gone.
func TestReclaimDuringDrainWhenDiskIsShort(t *testing.T) {
	var free atomic.Int64
	free.Store(1 << 40)
	s, runs := drainStore(t, Config{MinFree: MinFreeFloor,
		diskFree: func(string) (int64, error) { return free.Load(), nil }})
	mustAppend(t, s, "q", 6000, 1000)
	testwait.For(t, 30*time.Second, "backlog flushed into tables", func() bool {
		return tablesOnDisk(s) >= 3<<20
	})
	pub := &fakePublisher{}
	forwardUntil(t, s, "q", pub, "the backlog down to ~4 MiB", func() bool {
		return s.QueueStats("q").Len <= 4000
	})
	if n := runs.Load(); n != 0 {
		t.Fatalf("%d reclamations ran during the drain with the disk nearly empty, want none", n)
	}
	// Above MinFree (events go on), below 2*MinFree.
	free.Store(MinFreeFloor * 3 / 2)
	testwait.For(t, 10*time.Second, "a reclamation with the backlog still waiting, the disk short", func() bool {
		return runs.Load() > 0
	})
}

// TestReclaimBoundsDeadBytesUnderABacklog: a backlog that never drains
// (the buffer full under drop_oldest through a long outage) still gets its
// dropped events reclaimed once waiting and dropped bytes reach twice
// MaxBytes, so the database holds at most about that. Without the bound
// nothing would reclaim them while the outage lasts.
func TestReclaimBoundsDeadBytesUnderABacklog(t *testing.T) {
	s, runs := drainStore(t, Config{MaxBytes: 2 << 20, OnFull: DropOldest})
	// 2 MiB fill the buffer; 3 MiB more drop as much of the oldest.
	mustAppend(t, s, "q", 5000, 1000)
	if n := s.QueueStats("q").Dropped; n < 2000 {
		t.Fatalf("%d events dropped, want about 3 000 (the buffer full)", n)
	}
	testwait.For(t, 10*time.Second, "the dropped events reclaimed, waiting and dropped below 2*MaxBytes", func() bool {
		return runs.Load() > 0 && s.total.Load()+s.removed.Load() < 2*s.cfg.MaxBytes
	})
}
