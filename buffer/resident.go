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
// drain touched are given back too. While a reclamation's DropPrefix runs
// (it rewrites every table holding a dropped prefix, hundreds of MiB a
// second during a drain) it does so five times as often. It runs until
// Close.
func (s *Store) pageOutLoop() {
	defer s.wg.Done()
	t := time.NewTimer(pageOutIdle)
	defer t.Stop()
	backlog := false
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		was := backlog
		backlog = s.total.Load() > s.cfg.memTableSizeMiB<<20
		next := pageOutIdle
		if backlog {
			next = s.cfg.pageOutEvery
			if s.reclaiming.Load() {
				next /= 5
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
