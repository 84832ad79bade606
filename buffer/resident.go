package buffer

import (
	"time"
)

// DefaultPageOutEvery is how often, while a backlog lies in Badger's
// tables, the Store asks the kernel to take the tables' pages out of the
// process (pageOutTables).
//
// Why: Badger maps every table (.sst) into memory (ristretto's
// z.OpenMmapFile, MAP_SHARED) and writes, compacts and reads it through
// that mapping. Every page so touched stays mapped, and counts in the
// process's RSS, until the table is deleted: through a 10-minute outage at
// 500 devices the tables of the backlog (~300 MB) were 122 MiB of a 190 MiB
// VmRSS, and a drain's DropPrefix rewrites touched the rest (peak 306 MiB;
// docs/performance.md, "Memory while the broker is down"). The kernel
// reclaims such pages only under memory pressure; a box's memory budget
// (and issue 12) counts them before that. Compaction writes tens of MiB a
// second in bursts, so the period bounds what can pile up in between.
const DefaultPageOutEvery = time.Second

// pageOutLoop pages the tables out every cfg.pageOutEvery while the bytes
// waiting exceed what the memtables hold (only then can a backlog lie in
// tables), and once more when they fall below, so that the pages a drain
// read are given back too. It runs until Close.
func (s *Store) pageOutLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.pageOutEvery)
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
		if !backlog && !was {
			continue
		}
		if _, err := s.pageOutTables(); err != nil {
			// Unsupported (a kernel before 5.4, or no /proc): the
			// pages stay, as they did before this existed.
			s.log.Warn("buffer cannot page out Badger's tables; their pages stay in the RSS", "err", err)
			return
		}
	}
}
