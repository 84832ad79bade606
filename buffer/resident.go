package buffer

import (
	"path/filepath"
	"strings"
	"time"

	"github.com/dgraph-io/ristretto/v2/z"
)

// DefaultPageOutEvery is how often, while a backlog lies in Badger's
// tables, the Store takes the tables' pages out of the process's page
// tables (dropTablePages).
//
// Why: Badger maps every table (.sst) into memory (ristretto's
// z.OpenMmapFile, MAP_SHARED) and writes, compacts and reads it through
// that mapping. Every page so touched stays mapped, and counts in the
// process's RSS, until the table is deleted: through a 10-minute outage at
// 500 devices the tables of the backlog (~300 MB) were 122 MiB of a 190 MiB
// VmRSS, and a drain's DropPrefix rewrites touched more (peak 306 MiB;
// docs/performance.md, "Memory while the broker is down"). The kernel
// takes such pages back only under memory pressure; a box's memory budget
// (and issue 12) counts them before that. Compactions touch tens of MiB a
// second in bursts, so the period bounds what piles up in between; each
// pass costs a page-table walk of the mappings, and a page used again
// comes back with a minor fault (it stays in the page cache).
const DefaultPageOutEvery = 250 * time.Millisecond

// pageOutIdle is how often pageOutLoop looks at the backlog while none
// lies in tables: one wake-up a second at idle.
const pageOutIdle = time.Second

// pageOutLoop drops the tables' pages every cfg.pageOutEvery while the
// bytes waiting exceed what one memtable holds (only then does a backlog
// lie in tables), and once more when they fall below, so that the pages a
// drain touched are given back too. While the backlog drains (events were
// acknowledged since the last pass) it does so five times as often: the
// forwarders' reads touch a little of many tables, and the kernel maps
// more than was touched on each fault (fault-around, 64 KiB; on kernels
// with large page-cache folios up to the whole 2 MiB table: on the
// measuring machine's 6.18 one byte mapped 2 MiB), so ~1 000 queues reading
// kept 20-40 MiB of tables mapped between 250 ms passes (docs/performance.md,
// "Reclamation after the drain"). A reclamation's DropPrefix, which
// rewrites every table holding a dropped prefix (hundreds of MiB a second
// after a drain), has its own, faster passes (pageOutDuring). It runs
// until Close.
func (s *Store) pageOutLoop() {
	defer s.wg.Done()
	t := time.NewTimer(pageOutIdle)
	defer t.Stop()
	backlog := false
	removed := s.removed.Load()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		was := backlog
		backlog = s.backlogInTables()
		next := pageOutIdle
		if backlog {
			next = s.cfg.pageOutEvery
			// removed moves as events are acknowledged (or dropped);
			// a reclamation resets it, which counts as moving too.
			if r := s.removed.Load(); r != removed {
				next /= 5
				removed = r
			}
		}
		t.Reset(next)
		if !backlog && !was {
			continue
		}
		if _, err := s.dropTablePages(); err != nil {
			// Unsupported platform: the pages stay, as they did
			// before this existed.
			s.log.Warn("buffer cannot drop Badger's table pages; they stay in the RSS", "err", err)
			return
		}
	}
}

// backlogInTables reports whether more events wait than one memtable
// holds: only then does a backlog lie in Badger's tables.
func (s *Store) backlogInTables() bool {
	return s.total.Load() > s.cfg.memTableSizeMiB<<20
}

// dropTablePages takes the pages of this Store's tables (.sst) out of the
// process's page tables with z.DropResident (our ristretto fork,
// third_party/ristretto/FIELDBRIDGE.md): MADV_DONTNEED on Badger's own
// shared file mappings, under the lock that their unmapping takes, so the
// advice never reaches an address that was unmapped and reused. The data
// stays in the page cache; the next read maps it again. It returns the bytes
// of mappings advised.
func (s *Store) dropTablePages() (int64, error) {
	if s.dir == "" {
		return 0, nil
	}
	// Badger names its files filepath.Join(its Dir, name), and its Dir is
	// this string (openDisk).
	dbDir := filepath.Join(s.dir, "db") + string(filepath.Separator)
	return z.DropResident(func(name string) bool {
		return strings.HasPrefix(name, dbDir) && strings.HasSuffix(name, ".sst") &&
			!strings.ContainsRune(name[len(dbDir):], filepath.Separator)
	})
}

// pageOutDuring starts dropping the tables' pages every cfg.pageOutEvery/5
// until the returned stop is called, if the tables hold more than a
// memtable's worth; reclaim runs it around DropPrefix.
//
// Why: the reclamation after a drain (postponeReclaim) rewrites every table
// of the former backlog, reading it through the mappings at hundreds of
// MiB a second, and the backlog that would keep pageOutLoop going is gone
// by then; without these passes those pages stay in the RSS until Badger
// deletes the old tables at the end of the rewrite. Small LSMs (the
// memtable trigger's reclamations at steady state) are left alone: a
// pass costs a wake-up and a page-table walk for little.
func (s *Store) pageOutDuring() (stop func()) {
	if !s.persistent || s.cfg.pageOutEvery <= 0 || tablesOnDisk(s) <= s.cfg.memTableSizeMiB<<20 {
		return func() {}
	}
	done := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		t := time.NewTicker(max(s.cfg.pageOutEvery/5, time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if _, err := s.dropTablePages(); err != nil {
					return // unsupported platform; pageOutLoop logs it
				}
			}
		}
	}()
	return func() {
		close(done)
		<-exited
		// What the last stretch touched, before the old tables are gone
		// (Badger may keep a rewritten level's old tables a moment).
		s.dropTablePages()
	}
}

// tablesOnDisk is the size of Badger's tables.
func tablesOnDisk(s *Store) int64 {
	var n int64
	for _, ti := range s.db.Tables() {
		n += int64(ti.OnDiskSize)
	}
	return n
}
