//go:build unix

package buffer

import (
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"

	"fieldbridge/internal/testwait"
)

// BenchmarkIdleFloor measures what an open buffer costs with nothing to do
// (the fixed per-second cost under the bridge at small scale, issue #12):
// process CPU per second of wall time while the Store, or Badger alone with
// the Store's options, sits idle. badger-no-compactors shows the share of
// Badger's compactors, which tick every 50 ms each (hard-coded; the Store
// cannot run without them); nothing-open is the test process alone. Each
// iteration idles 100 ms.
//
//	go test ./buffer -run '^$' -bench BenchmarkIdleFloor -benchtime 50x -count 2
func BenchmarkIdleFloor(b *testing.B) {
	b.Run("nothing-open", func(b *testing.B) { measureIdle(b, nil) }) // the test process itself
	b.Run("store", func(b *testing.B) {
		s := openTest(b, Config{Dir: b.TempDir(), Sync: time.Second})
		if err := s.Prepare(queueNames(100)...); err != nil {
			b.Fatal(err)
		}
		mustAppend(b, s, "q000", 10, 100) // a Store that was used, then went quiet
		testwait.For(b, 20*time.Second, "the appends synced", func() bool { return !s.dirty.Load() })
		measureIdle(b, func() uint64 { return s.writerWakes.Load() + s.syncWakes.Load() })
	})
	for _, c := range []struct {
		name       string
		compactors int
	}{{"badger", 2}, {"badger-no-compactors", 0}} {
		b.Run(c.name, func(b *testing.B) {
			s := &Store{cfg: Config{Sync: time.Second, memTableSizeMiB: defaultMemTableMiB}, log: testLogger(b)}
			db, err := badger.Open(s.badgerOptions(b.TempDir()).WithNumCompactors(c.compactors))
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			measureIdle(b, nil)
		})
	}
}

// measureIdle idles b.N × 100 ms and reports process CPU per second of
// wall time, and wake-ups of the Store's own goroutines per second when
// wakes is given.
func measureIdle(b *testing.B, wakes func() uint64) {
	time.Sleep(200 * time.Millisecond) // let start-up work settle
	var w0 uint64
	if wakes != nil {
		w0 = wakes()
	}
	cpu0, start := processCPU(), time.Now()
	b.ResetTimer()
	for range b.N {
		time.Sleep(100 * time.Millisecond)
	}
	b.StopTimer()
	wall := time.Since(start).Seconds()
	b.ReportMetric(float64(processCPU()-cpu0)/float64(time.Microsecond)/wall, "cpu-µs/s")
	if wakes != nil {
		b.ReportMetric(float64(wakes()-w0)/wall, "store-wakeups/s")
	}
	b.ReportMetric(0, "ns/op")
}
