package badger

// fieldbridge's tests of its patches (FIELDBRIDGE.md). Run them with
// `go test -race -count=1 .` in this directory.

import (
	"encoding/binary"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4/options"
)

// fieldbridgeOptions are close to the options buffer.Store opens Badger with
// (buffer/store.go badgerOptions): small memtables and tables, two
// compactors, L0 compacted from 2 tables and writes stalled at 4.
func fieldbridgeOptions(dir string) Options {
	return DefaultOptions(dir).
		WithMemTableSize(1 << 20).WithNumMemtables(2).
		WithNumLevelZeroTables(2).WithNumLevelZeroTablesStall(4).
		WithBaseTableSize(2 << 20).WithBaseLevelSize(8 << 20).
		WithValueThreshold(1 << 10).WithValueLogFileSize(1 << 20).
		WithCompression(options.None).WithBlockCacheSize(0).
		WithIndexCacheSize(4 << 20).
		WithNumCompactors(2).WithNumGoroutines(1).
		WithDetectConflicts(false).WithMetricsEnabled(false).
		WithLogger(nil)
}

// writeOutage writes n events of ~200 bytes in batches of 50, as the
// bridge's writer does while the broker is down: every ~5 000 events fill a
// memtable, which becomes a level-0 table.
func writeOutage(db *DB, n int) error {
	for i := 0; i < n; i += 50 {
		wb := db.NewWriteBatch()
		for j := i; j < i+50 && j < n; j++ {
			key := binary.BigEndian.AppendUint64([]byte("q1/"), uint64(j))
			val := make([]byte, 200) // the batch keeps it
			binary.BigEndian.PutUint64(val, uint64(j))
			if err := wb.Set(key, val); err != nil {
				wb.Cancel()
				return err
			}
		}
		if err := wb.Flush(); err != nil {
			return err
		}
	}
	return nil
}

// checkOutage reads every event of writeOutage back, in order.
func checkOutage(t testing.TB, db *DB, n int) {
	t.Helper()
	err := db.View(func(txn *Txn) error {
		it := txn.NewIterator(IteratorOptions{Prefix: []byte("q1/")})
		defer it.Close()
		want := 0
		for it.Rewind(); it.Valid(); it.Next() {
			got := binary.BigEndian.Uint64(it.Item().Key()[3:])
			if got != uint64(want) {
				return fmt.Errorf("key %d where %d was expected", got, want)
			}
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			if binary.BigEndian.Uint64(v) != got {
				return fmt.Errorf("key %d holds value %d", got, binary.BigEndian.Uint64(v))
			}
			want++
		}
		if want != n {
			return fmt.Errorf("read %d events, wrote %d", want, n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// waitL0Below waits until level 0 holds fewer than n tables; a compactor
// that does not run makes it fail after a minute.
func waitL0Below(t testing.TB, db *DB, n int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for db.Levels()[0].NumTables >= n {
		if time.Now().After(deadline) {
			t.Fatalf("level 0 still holds %d tables a minute after the writes:\n%s",
				db.Levels()[0].NumTables, db.LevelsToString())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// l0Stalled is how long flushes waited on a full level 0 (l0stallsMs holds
// a time.Duration despite its name: addLevel0Table adds dur.Round(ms)).
func l0Stalled(db *DB) time.Duration {
	return time.Duration(db.lc.l0stallsMs.Load())
}

// TestCompactorsSleepWhileIdle: upstream's two compactors each tick every
// 50 ms, ~40 wake-ups per second however idle the DB. After a load that kept
// them busy, the patched ones wake only on their idle tick (4 s).
func TestCompactorsSleepWhileIdle(t *testing.T) {
	db, err := Open(fieldbridgeOptions(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := db.Close(); err != nil {
			t.Error(err)
		}
	}()
	const n = 30000
	if err := writeOutage(db, n); err != nil {
		t.Fatal(err)
	}
	waitL0Below(t, db, db.opt.NumLevelZeroTables)
	// Let the last compactions finish (a busy compactor looks again 50 ms
	// after its last round) and the random start delay (< 1 s) pass.
	time.Sleep(1500 * time.Millisecond)

	const window = 3 * time.Second
	before := db.lc.compactorWakeups.Load()
	time.Sleep(window)
	woke := db.lc.compactorWakeups.Load() - before
	// Each compactor's idle tick fires at most once in 3 s; allow one round
	// more each. Upstream: 2 × 20/s × 3 s = 120.
	if woke > 4 {
		t.Errorf("compactors woke %d times in %v of an idle DB, want <= 4\n%s", woke, window, db.LevelsToString())
	}
	t.Logf("compactors woke %d times in %v idle; L0 stalls %v", woke, window, l0Stalled(db))
	checkOutage(t, db, n)
}

// TestCompactorsRunOnKicksAlone: with the idle tick out of reach, only the
// kicks (a table added to L0, a compaction finished, a flush stalled on L0)
// wake the compactors. An outage-like load that pushes table after table
// into level 0 must still complete (it stalls for good if L0 is not
// compacted), L0 must end below its compaction trigger, and every event
// must read back in order, also after a reopen.
func TestCompactorsRunOnKicksAlone(t *testing.T) {
	old := compactorIdleTick
	compactorIdleTick = time.Hour
	defer func() { compactorIdleTick = old }()

	dir := t.TempDir()
	db, err := Open(fieldbridgeOptions(dir))
	if err != nil {
		t.Fatal(err)
	}
	// Both compactors must have made their first round (after a random
	// delay < 1 s) and found nothing due; from now on only kicks wake them.
	for deadline := time.Now().Add(5 * time.Second); db.lc.compactorWakeups.Load() < 2; {
		if time.Now().After(deadline) {
			t.Fatal("the compactors made no first round")
		}
		time.Sleep(10 * time.Millisecond)
	}
	const n = 100000 // ~20 memtables, 5 times the stall
	done := make(chan struct{})
	var maxL0 int
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
			}
			maxL0 = max(maxL0, db.Levels()[0].NumTables)
		}
	}()
	wrote := make(chan error)
	go func() { wrote <- writeOutage(db, n) }()
	select {
	case err := <-wrote:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatalf("writes still blocked after 2 minutes:\n%s", db.LevelsToString())
	}
	close(done)
	wg.Wait()
	waitL0Below(t, db, db.opt.NumLevelZeroTables)
	below := 0
	for _, l := range db.Levels()[1:] {
		below += l.NumTables
	}
	if below == 0 {
		t.Fatalf("nothing was compacted out of level 0:\n%s", db.LevelsToString())
	}
	if maxL0 > db.opt.NumLevelZeroTablesStall {
		t.Errorf("level 0 held %d tables, stall at %d", maxL0, db.opt.NumLevelZeroTablesStall)
	}
	t.Logf("L0 max %d tables, stalled %v in all; %d compactor wake-ups\n%s",
		maxL0, l0Stalled(db), db.lc.compactorWakeups.Load(), db.LevelsToString())
	checkOutage(t, db, n)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = Open(fieldbridgeOptions(dir))
	if err != nil {
		t.Fatal(err)
	}
	checkOutage(t, db, n)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkOutageStall writes 100 000 events (~20 memtables) as fast as
// possible and reports how long the flushes waited on a full level 0 and
// how often the compactors woke. For the A/B against upstream's levels.go
// (this benchmark uses nothing the patches added except the wake-up count).
func BenchmarkOutageStall(b *testing.B) {
	var stallMs, wakeups int64
	for i := 0; i < b.N; i++ {
		db, err := Open(fieldbridgeOptions(b.TempDir()))
		if err != nil {
			b.Fatal(err)
		}
		if err := writeOutage(db, 100000); err != nil {
			b.Fatal(err)
		}
		waitL0Below(b, db, db.opt.NumLevelZeroTables)
		stallMs += l0Stalled(db).Milliseconds()
		wakeups += db.lc.compactorWakeups.Load()
		if err := db.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(stallMs)/float64(b.N), "stall-ms/op")
	b.ReportMetric(float64(wakeups)/float64(b.N), "wakeups/op")
}
