package buffer

import (
	"time"
)

// maintain runs the max_age sweep and space reclamation until Close.
func (s *Store) maintain() {
	defer s.wg.Done()
	var sweep <-chan time.Time
	if s.cfg.MaxAge > 0 {
		t := time.NewTicker(min(max(s.cfg.MaxAge/20, time.Second), time.Minute))
		defer t.Stop()
		sweep = t.C
	}
	reclaim := time.NewTicker(s.cfg.reclaimEvery)
	defer reclaim.Stop()
	// While a reclamation is postponed (postponeReclaim), look again every
	// postponeRecheck: the drain's end and a filling disk are noticed
	// here, not on the acknowledgement path.
	recheck := time.NewTimer(postponeRecheck)
	recheck.Stop()
	defer recheck.Stop()
	armed := false
	for {
		select {
		case <-s.done:
			return
		case <-sweep:
			s.expireAll()
		case <-reclaim.C:
			s.reclaim()
			s.saveFailed()
		case <-s.reclaimNow:
			s.reclaim()
		case <-recheck.C:
			armed = false
			s.reclaim()
		}
		if !armed && s.removed.Load() > 0 && s.postponeReclaim() {
			recheck.Reset(postponeRecheck)
			armed = true
		}
	}
}

// postponeRecheck is how often a postponed reclamation looks again at the
// backlog and the free disk space.
const postponeRecheck = time.Second

// postponeReclaim reports whether a space reclamation waits because a
// backlog lies in Badger's tables (more than a memtable's worth waits):
// during a drain after an outage the forwarders' cursors move through
// those tables, and a DropPrefix then rewrites every table holding a
// dropped prefix (every table holds every queue's keys): the whole LSM,
// once per reclaimBytes acknowledged, mostly to drop what the next
// minutes of the drain would have dropped anyway. Those rewrites were the
// drain's memory peaks (their table builders and the table pages they
// touch; docs/performance.md, "Reclamation after the drain"). Once the
// backlog is gone one reclamation drops it all.
//
// It waits only while the disk allows: the bytes of events in the
// database, waiting and acknowledged but not reclaimed, stay below twice
// MaxBytes (a drain shrinks the first as much as it grows the second, so
// only the events arriving meanwhile add; a buffer full under drop_oldest
// reclaims after MaxBytes were dropped), and the file system keeps at least
// 2*MinFree free (events stop at MinFree; the reclamation that then runs
// has MinFree of room to rewrite tables before it reaches its own floor).
func (s *Store) postponeReclaim() bool {
	return s.backlogPostpones() && s.diskRoomFor(2*s.cfg.MinFree)
}

// backlogPostpones is postponeReclaim without the disk: atomics only, for
// the acknowledgement path (noteRemoved).
func (s *Store) backlogPostpones() bool {
	return s.cfg.reclaim == reclaimDropPrefix &&
		s.backlogInTables() && s.total.Load()+s.removed.Load() < 2*s.cfg.MaxBytes
}

// diskRoomFor reports whether the file system holding the buffer has at
// least n bytes free, by the disk guard's estimate (refreshed when older
// than diskRecheck). In memory, or without the guard, it always has.
func (s *Store) diskRoomFor(n int64) bool {
	if !s.persistent || s.cfg.noDiskGuard {
		return true
	}
	g := &s.disk
	g.mu.Lock()
	defer g.mu.Unlock()
	if now := time.Now(); now.Sub(g.checked) > diskRecheck {
		if err := s.statDiskLocked(now); err != nil {
			return false // cannot tell: do not postpone
		}
	}
	return !g.full && g.free >= n
}

// expireAll drops the records older than MaxAge from every queue.
func (s *Store) expireAll() {
	cutoff := s.cfg.now().Add(-s.cfg.MaxAge)
	for _, q := range s.snapshotQueues() {
		for {
			n, err := s.expire(q, cutoff)
			if err != nil {
				if err != ErrClosed {
					s.log.Warn("buffer max_age sweep failed", "queue", q.name, "err", err)
				}
				break
			}
			if n < maxRemove {
				break
			}
		}
	}
}

// entryOverhead is what one Badger entry costs in the memtable beyond its
// key and value: the skiplist node (about 30 bytes), the key's version (8)
// and the value's header, rounded up.
const entryOverhead = 48

// noteWritten counts n bytes in entries Badger entries just written into the
// active memtable, and wakes reclamation when the memtable is nearly full
// and most of it is already acknowledged.
//
// Why: at paced load every event is acknowledged milliseconds after it is
// written, yet Badger would flush it into a level-0 table, compact it into
// level 1 (rewriting that level each time, as every table spans all
// queues) and only then drop it. DropPrefix flushes the memtable without
// the dropped keys that no table holds (the third patch of our Badger fork,
// third_party/badger/FIELDBRIDGE.md; upstream v4.9.6 flushed them into a
// level-0 table for the next compaction to drop), so reclaiming just before
// the memtable fills means acknowledged events never reach a table at all
// (docs/performance.md, "Badger's share of the CPU").
//
// Trigger: the estimate reaches 3/4 of the memtable (room for the writes
// that arrive before the maintenance goroutine runs) while the bytes waiting
// in all queues are at most a quarter of it, so that at least half of what
// the memtable holds is dead. With a backlog the condition is false, and
// postponeReclaim holds reclamation until the backlog is gone (or the disk
// needs it), because then each DropPrefix rewrites tables that hold live
// events.
func (s *Store) noteWritten(n, entries int64) {
	mt := s.cfg.memTableSizeMiB << 20
	if mt <= 0 || s.cfg.reclaim != reclaimDropPrefix {
		return
	}
	fill := s.memFill.Add(n + entries*entryOverhead)
	if fill >= mt {
		// Badger has flushed the memtable on its own: start over.
		s.memFill.Add(-mt)
		return
	}
	if fill >= mt/4*3 && s.total.Load() <= mt/4 {
		kick(s.reclaimNow)
	}
}

// noteCommitted is noteWritten for one of the writer's transactions: its
// events if they were in it, and its cursors if they were.
func (s *Store) noteCommitted(eventsIn bool, bytes int64, events int, cursorsIn bool, cursors []cursorWrite) {
	var n, entries int64
	if eventsIn {
		n, entries = bytes, int64(events)
	}
	if cursorsIn {
		n += cursorBytes(cursors)
		entries += int64(len(cursors))
	}
	s.noteWritten(n, entries)
}

// maxDropPrefixes bounds the prefixes handed to one DropPrefix call: Badger
// checks each key of the flushed memtable and the rewritten tables against
// them (a binary search in our fork, a linear scan upstream). It is above
// the 1 000 queues of 500 devices (readings and command results) on
// purpose: each call flushes the memtable and compacts level 0; with 256,
// the memtable trigger's call dropped a quarter of the queues, the flush
// wrote the others' acknowledged events into a table, and follow-up calls
// rewrote that table to drop them (docs/performance.md, "Badger's share of
// the CPU").
const maxDropPrefixes = 1024

// reclaim gives the disk space of removed records back.
//
// With the default strategy (reclaimDropPrefix) records are never deleted
// one by one; the cursor alone hides them. Here, with Badger's writes
// paused (the writer journals meanwhile, journal.go), the
// whole key range of every empty queue, and every aligned block of 256 seqs
// that lies entirely at or below a queue's cursor (as few prefixes as
// possible, see rangePrefixes), is dropped with DropPrefix, which rewrites or
// discards only the tables that hold those keys. The cost is one memtable
// flush per call, so it runs once a minute, when reclaimBytes were
// removed, or just before the memtable fills while it is mostly
// acknowledged (noteWritten), whichever comes first; but not while a
// backlog lies in the tables (postponeReclaim), unless the disk needs it.
func (s *Store) reclaim() {
	switch s.cfg.reclaim {
	case reclaimNone, reclaimDeletes:
		s.removed.Store(0)
		return
	case reclaimDeletesFlatten:
		s.flattenWhenEmpty()
		return
	}
	if s.removed.Load() == 0 || s.postponeReclaim() {
		return
	}
	qs := s.snapshotQueues() // before the gate: lock order is mu -> gate
	start := time.Now()
	// The writer journals its batches while the gate is held (journal.go);
	// their entries go into Badger before the gate is released.
	// One reclamation at a time (tests call reclaim beside the maintenance
	// goroutine): the journaling of one must span its whole hold of the
	// gate, not end with another's.
	s.reclaimMu.Lock()
	defer s.reclaimMu.Unlock()
	s.startJournal()
	s.gate.Lock()
	defer s.gate.Unlock()
	defer s.finishJournal()
	if s.closed {
		return
	}
	type plan struct {
		q  *queue
		to uint64
	}
	var prefixes [][]byte
	var plans []plan
	for _, q := range qs {
		if len(prefixes) >= maxDropPrefixes {
			break
		}
		q.mu.Lock()
		switch {
		case q.count == 0 && q.persisted >= q.tail-1 && q.tail-1 > q.reclaimedTo:
			// Nothing waits and the cursor says so on disk (a record
			// above the persisted cursor keeps the queue's numbering
			// after a kill -9): with Badger's writes paused (a journaled
			// event of this queue reaches Badger after the drop), the
			// whole range can go.
			prefixes = append(prefixes, q.prefix)
			plans = append(plans, plan{q, q.tail - 1})
		default:
			// Every complete block at or below the persisted cursor:
			// acknowledged events whose cursor waits for the writer
			// stay until it is committed.
			from := (q.reclaimedTo + 1) &^ (blockSize - 1)
			to := (q.persisted + 1) &^ (blockSize - 1)
			if to > q.reclaimedTo+1 {
				ps, end := rangePrefixes(q.qid, from, to, maxDropPrefixes-len(prefixes))
				prefixes = append(prefixes, ps...)
				plans = append(plans, plan{q, end - 1})
			}
		}
		q.mu.Unlock()
	}
	if len(prefixes) == 0 {
		s.removed.Store(0)
		return
	}
	if err := s.checkDisk(writeReclaim, 0); err != nil {
		s.log.Debug("buffer space reclamation postponed", "err", err)
		return
	}
	stopPageOut := s.pageOutDuring() // resident.go
	err := s.db.DropPrefix(prefixes...)
	stopPageOut()
	if s.cfg.duringReclaim != nil {
		s.cfg.duringReclaim()
	}
	if err != nil {
		s.log.Warn("buffer space reclamation failed", "err", err)
		return
	}
	// DropPrefix flushed the memtable. What the writer journaled meanwhile
	// was counted when journaled; it reaches the new memtable only in
	// finishJournal, so the estimate is low by at most that much.
	s.memFill.Store(0)
	for _, p := range plans {
		p.q.mu.Lock()
		p.q.reclaimedTo = max(p.q.reclaimedTo, p.to)
		p.q.mu.Unlock()
	}
	s.removed.Store(0)
	if len(prefixes) >= maxDropPrefixes {
		s.removed.Store(1) // more to do: go again
		kick(s.reclaimNow)
	}
	s.log.Debug("buffer space reclaimed", "prefixes", len(prefixes),
		"duration_seconds", time.Since(start).Seconds())
}

// flattenWhenEmpty is the reclaimDeletesFlatten strategy: when every queue
// is empty, compact the LSM into one level so that tombstones meet the
// values they delete.
func (s *Store) flattenWhenEmpty() {
	if s.total.Load() != 0 || s.removed.Load() == 0 {
		return
	}
	s.gate.Lock()
	defer s.gate.Unlock()
	if s.closed || s.checkDisk(writeReclaim, 0) != nil {
		return
	}
	if err := s.db.Flatten(2); err != nil {
		s.log.Warn("buffer flatten failed", "err", err)
		return
	}
	s.removed.Store(0)
}
