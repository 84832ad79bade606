package buffer

import (
	"context"
	"testing"
	"time"

	"fieldbridge/internal/testwait"
)

// TestReclaimWakesBeforeMemtableFills: the memtable trigger (noteWritten)
// wakes reclamation once the estimated memtable fill passes 3/4 of its size
// and what still waits is at most a quarter of it; not while a backlog
// waits (then each DropPrefix would rewrite tables of live events). A
// reclamation that ran resets the estimate.
func TestReclaimWakesBeforeMemtableFills(t *testing.T) {
	s := openTest(t, Config{Dir: t.TempDir(), Sync: time.Second, memTableSizeMiB: 1, noBackground: true})
	mt := int64(1 << 20)
	// A backlog: fill up to 3/4 of the memtable, nothing acknowledged.
	for s.memFill.Load() < mt/4*3 {
		mustAppend(t, s, "q", 1, 1000)
	}
	if fill := s.memFill.Load(); fill >= mt {
		t.Fatalf("memtable estimate %d, want below %d for this test", fill, mt)
	}
	if n := len(s.reclaimNow); n != 0 {
		t.Fatalf("reclamation woken with %d bytes waiting, want no wake-up while a backlog waits", s.total.Load())
	}
	// Acknowledge everything: the cursor writes see an empty backlog.
	drainAll(t, s, "q")
	if n := len(s.reclaimNow); n != 1 {
		t.Fatalf("reclamation not woken with the memtable %d/%d full and nothing waiting", s.memFill.Load(), mt)
	}
	<-s.reclaimNow
	s.reclaim()
	if fill := s.memFill.Load(); fill != 0 {
		t.Fatalf("memtable estimate %d after reclamation, want 0 (DropPrefix flushed it)", fill)
	}
	if q := s.QueueStats("q"); q.Len != 0 {
		t.Fatalf("queue length %d after reclamation, want 0", q.Len)
	}
}

// TestAckedEventsNeverReachATable: at paced load (every event acknowledged
// soon after it is written) with the periodic and MaxBytes/8 triggers out of
// the way, several memtables' worth of events leave almost nothing in
// Badger's tables: reclamation ran before each memtable filled, and
// DropPrefix's flush left the acknowledged events out. Without the
// memtable trigger, Badger flushes each full memtable into a table and the
// tables hold nearly everything written (nothing reclaims it).
func TestAckedEventsNeverReachATable(t *testing.T) {
	s := openTest(t, Config{Dir: t.TempDir(), Sync: time.Second, memTableSizeMiB: 1,
		reclaimEvery: time.Hour, reclaimBytes: 1 << 40})
	pub := &fakePublisher{}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Forward(ctx, "q", pub) }()
	defer func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Forward = %v, want nil after cancel", err)
		}
	}()

	const rounds, perRound, pad = 80, 50, 1000 // ~4 MiB: four memtables
	var written int64
	for range rounds {
		mustAppend(t, s, "q", perRound, pad)
		testwait.For(t, 20*time.Second, "round acknowledged", func() bool { return s.QueueStats("q").Len == 0 })
		// Paced load leaves the woken reclamation time to run before the
		// next round; on a starved machine (the suite beside CPU hogs) the
		// next rounds could otherwise fill the memtable first, and Badger
		// flush it into a table. Without the trigger nothing resets the
		// estimate, and this wait fails.
		testwait.For(t, 20*time.Second, "the memtable estimate below 3/4 (a woken reclamation ran)", func() bool {
			return s.memFill.Load() < int64(1<<20)/4*3
		})
		written += perRound * (pad + 100)
	}
	var onDisk int64
	for _, ti := range s.db.Tables() {
		onDisk += int64(ti.OnDiskSize)
	}
	t.Logf("%d bytes of events written and acknowledged, %d bytes in tables", written, onDisk)
	if onDisk > written/8 {
		t.Fatalf("tables hold %d bytes after %d bytes of acknowledged events, want at most %d: "+
			"acknowledged events were flushed into tables", onDisk, written, written/8)
	}
	if got := len(distinct(pub.seqs())); got != rounds*perRound {
		t.Fatalf("%d distinct events delivered, want %d", got, rounds*perRound)
	}
}
