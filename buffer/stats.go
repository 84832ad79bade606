package buffer

import (
	"cmp"
	"slices"
	"strings"
	"time"
)

// QueueStats describes one queue. Counters count since Open, except
// Failed.
type QueueStats struct {
	Queue string
	// Len is the number of events waiting (not yet acknowledged or
	// dropped), including those in flight.
	Len int64
	// Bytes is what those events count against MaxBytes.
	Bytes int64
	// NextSeq is the seq the next Append will get.
	NextSeq uint64
	// OldestAge is how long the oldest waiting event has waited; 0 if none.
	// Stats may estimate it for a queue whose oldest event's time is not in
	// memory (see Stats): then it is the age of an event that waited in the
	// queue before, never below the true age; 0 if never known.
	OldestAge time.Duration

	Appended uint64 // events stored
	Acked    uint64 // events removed after a nil Publish result
	// Dropped counts events lost by policy: removed by drop_oldest or
	// max_age, or refused by drop_newest.
	Dropped uint64
	// DroppedAge is the part of Dropped due to max_age.
	DroppedAge uint64
	// Corrupt counts records skipped because they did not decode.
	Corrupt uint64
	// Failed counts events that could not be kept: Append refused them
	// for lack of disk space (ErrDiskFull) or a storage error, after their
	// seq was assigned, so each left a gap. Unlike the other counters it
	// counts since the buffer directory was created: it is kept in
	// state.json across restarts (at Close, at lease renewals and once a
	// minute when it moved).
	Failed uint64
	// Skipped is how many seq numbers Open skipped for this queue because
	// they may have been handed out before an unclean stop (power loss),
	// lost state or damaged storage (a database or memtable log moved
	// aside); receivers see them as a gap.
	Skipped uint64
}

// Stats describes the whole Store.
type Stats struct {
	Len      int64
	Bytes    int64
	MaxBytes int64
	Dropped  uint64
	Corrupt  uint64
	Failed   uint64
	// InMemory is true for an in-memory store, including the fallback when
	// the directory was unusable.
	InMemory bool
	// Closed is true once Close was called: nothing is appended or
	// forwarded any more.
	Closed bool
	// Fault is empty when healthy; otherwise the current storage problem
	// (disk full, a failing write, a database moved aside, running in
	// memory after the directory failed).
	Fault      string
	FaultSince time.Time
	// Queues holds every known queue, sorted by name.
	Queues []QueueStats
}

// QueueStats returns the statistics of one queue. An unknown queue has
// zero statistics.
func (s *Store) QueueStats(queue string) QueueStats {
	q, unknown := s.lookupQueue(queue)
	if q == nil {
		return unknown
	}
	return s.queueStats(q, s.cfg.now())
}

// QueueCounters is QueueStats without OldestAge (always 0): only the
// counters the Store keeps in memory, read under one mutex, with no access
// to the database.
func (s *Store) QueueCounters(queue string) QueueStats {
	q, unknown := s.lookupQueue(queue)
	if q == nil {
		return unknown
	}
	return q.counters()
}

// Lost is Dropped + Failed of the queue's counters: every event of the queue
// the Store could not keep (dropped by policy or age, or refused for lack
// of disk space). It is meant for the hot path (a drop count per reading):
// it takes no lock of the queue, whose mutex the writer holds over its
// Badger transaction while it commits the queue's cursor, so that a caller
// never waits for the disk. (Under that mutex, QueueCounters took 2 % of
// the bridge's CPU at 500 devices, most of it in the lock's slow path.)
func (s *Store) Lost(queue string) uint64 {
	q, _ := s.lookupQueue(queue)
	if q == nil {
		return 0
	}
	return q.dropped.Load() + q.failed.Load()
}

// lookupQueue returns the named queue, or, when it is not registered yet,
// nil and its statistics: nothing waiting, and NextSeq the seq its first
// Append will get. That seq is computed the way Store.queue computes it, and
// under the same mutex, so a lookup racing with the queue's registration
// (Prepare, a first Append) reads startSeq and seqFloor as consistently as
// the registration does.
func (s *Store) lookupQueue(name string) (*queue, QueueStats) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if q := s.queues[name]; q != nil {
		return q, QueueStats{}
	}
	return nil, QueueStats{Queue: name, NextSeq: max(s.startSeq[name], s.seqFloor, 1)}
}

func (q *queue) counters() QueueStats {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.countersLocked()
}

func (q *queue) countersLocked() QueueStats {
	return QueueStats{
		Queue:      q.name,
		Len:        q.count,
		Bytes:      q.bytes,
		NextSeq:    q.next,
		Appended:   q.appended,
		Acked:      q.acked,
		Dropped:    q.dropped.Load(),
		DroppedAge: q.droppedAge,
		Corrupt:    q.corrupt,
		Failed:     q.failed.Load(),
		Skipped:    q.skipped,
	}
}

// queueSnapshot is what Stats needs of one queue, taken under one lock of
// its mutex: during a drain the forwarders hold their queues' mutexes while
// Badger writes their cursors, so every further lock is another wait.
type queueSnapshot struct {
	q          *queue
	st         QueueStats
	head, tail uint64
	at         int64 // when the oldest waiting record was appended, or the estimate (stamps.oldest)
	exact      bool
}

func (q *queue) snapshot() queueSnapshot {
	q.mu.Lock()
	defer q.mu.Unlock()
	at, exact := q.stamps.oldest(q.head)
	return queueSnapshot{q: q, st: q.countersLocked(), head: q.head, tail: q.tail, at: at, exact: exact}
}

// statsReadBudget is how many queues one Stats call reads from the database
// for OldestAge, at most. A queue that is being forwarded never needs a read
// (its forwarder's reads leave the time of its oldest record in memory, see
// stamps); one that is not needs one the first time and after events left
// it. During a drain of a large backlog every database read competes with
// the forwarders and waits behind space reclamation, and 1 000 of them made
// a /metrics scrape take over 5 s; the queues left over are estimated.
const statsReadBudget = 32

// queueStats is one queue's statistics with OldestAge exact: it reads the
// database when needed, waiting for space reclamation if it must.
func (s *Store) queueStats(q *queue, now time.Time) QueueStats {
	snap := q.snapshot()
	if snap.st.Len > 0 && !snap.exact {
		if t, ok := s.readOldest(q, snap.head, snap.tail, true); ok {
			snap.at = t
		}
	}
	return snap.withAge(now)
}

// withAge is the snapshot's statistics with OldestAge from at: the exact
// time of the oldest record, or the estimate, the time of the last oldest
// record known, which left the queue since: the age of an older event,
// never below the true age (the clock going back aside); 0 if never known.
func (snap queueSnapshot) withAge(now time.Time) QueueStats {
	st := snap.st
	if st.Len > 0 && snap.at != 0 {
		st.OldestAge = max(0, now.Sub(time.Unix(0, snap.at)))
	}
	return st
}

// readOldest reads when q's oldest waiting record was appended. Unless
// wait, it gives up when space reclamation holds or waits for the gate: a
// scrape does not wait for a DropPrefix (seconds during a drain), it
// estimates.
func (s *Store) readOldest(q *queue, head, tail uint64, wait bool) (at int64, ok bool) {
	if wait {
		s.gate.RLock()
	} else if !s.gate.TryRLock() {
		return 0, false
	}
	defer s.gate.RUnlock()
	s.statsReads.Add(1)
	// The read notes the record it finds as the oldest (noteRead).
	items, _, err := s.readGated(q, head+1, tail, 1)
	if err != nil || len(items) != 1 || items[0].err != nil {
		return 0, false
	}
	return items[0].rec.Appended.UnixNano(), true
}

// stamp is when the record with seq was appended (Unix nanoseconds).
type stamp struct {
	seq uint64
	at  int64
}

// stamps keeps, per queue and under its mutex, when the records the queue's
// reads returned were appended, so that OldestAge needs no database read.
// The oldest waiting record is the first one of the forward window, read
// when the window was filled: either by a read starting at the oldest
// record (known), or, during a drain, when the window had moved on, by a
// read ahead of it (ring, one slot per seq of the window). Records never
// change and seqs are never reused, so a stamp is true for as long as its
// seq waits.
type stamps struct {
	known stamp   // the oldest waiting record when it was read
	ring  []stamp // by seq modulo its length, the window's size; nil until a read ahead
}

// oldest returns the time of the oldest waiting record given the head
// cursor: exact if known, else the last oldest record known (0 if none).
func (st *stamps) oldest(head uint64) (at int64, exact bool) {
	if st.known.seq == head+1 {
		return st.known.at, true
	}
	if n := uint64(len(st.ring)); n > 0 {
		if r := st.ring[(head+1)%n]; r.seq == head+1 {
			return r.at, true
		}
	}
	return st.known.at, false
}

// noteRead remembers when the records of a read of q from seq from were
// appended. A read that starts at the oldest waiting record (head+1) sets
// known. Every record of a read of more than one record, or of a read ahead
// of the oldest (the window holds older records), goes to the ring, which
// is allocated then with room for window records: the window is at most
// that many consecutive seqs from the oldest on, so the oldest's slot is
// not overwritten while it waits. A live queue read one record at a time
// needs no ring; it is dropped again once a read from the oldest record
// finds at most one record where it asked for more: the queue has no
// backlog and the window is empty, so nothing in the ring can be the oldest
// before it is overwritten.
func (st *stamps) noteRead(head, from uint64, items []readItem, max, window int) {
	fromOldest := from == head+1
	if fromOldest {
		if len(items) > 0 && items[0].err == nil {
			st.known = stamp{from, items[0].rec.Appended.UnixNano()}
		}
		if len(items) <= 1 && len(items) < max {
			st.ring = nil
		}
	}
	if st.ring == nil && (!fromOldest || len(items) > 1) {
		st.ring = make([]stamp, window)
	}
	if st.ring == nil {
		return
	}
	n := uint64(len(st.ring))
	for _, it := range items {
		if it.err == nil {
			st.ring[it.seq%n] = stamp{it.seq, it.rec.Appended.UnixNano()}
		}
	}
}

// Stats returns the statistics of the Store and of every queue. OldestAge
// is exact for every queue whose oldest event's time is in memory (a queue
// being forwarded, or one read before and unchanged since); of the others
// at most statsReadBudget are read from the database per call and the rest
// estimated from their last known oldest event (see withAge). It locks each
// queue once.
func (s *Store) Stats() Stats {
	return s.stats(true)
}

// Counters is Stats without OldestAge (always 0): only what the Store keeps
// in memory, with no database access, for callers that need the counts
// often (drain progress).
func (s *Store) Counters() Stats {
	return s.stats(false)
}

func (s *Store) stats(withAge bool) Stats {
	now := s.cfg.now()
	st := Stats{MaxBytes: s.cfg.MaxBytes, InMemory: !s.persistent, Closed: s.isClosed()}
	queues := s.snapshotQueues()
	snaps := make([]queueSnapshot, len(queues))
	for i, q := range queues {
		snaps[i] = q.snapshot()
	}
	if withAge {
		s.readOldestWithin(snaps, statsReadBudget)
	}
	for _, snap := range snaps {
		qs := snap.st
		if withAge {
			qs = snap.withAge(now)
		}
		st.Len += qs.Len
		st.Bytes += qs.Bytes
		st.Dropped += qs.Dropped
		st.Corrupt += qs.Corrupt
		st.Failed += qs.Failed
		st.Queues = append(st.Queues, qs)
	}
	slices.SortFunc(st.Queues, func(a, b QueueStats) int { return strings.Compare(a.Queue, b.Queue) })
	s.faultMu.Lock()
	st.Fault, st.FaultSince = s.fault, s.faultSince
	s.faultMu.Unlock()
	return st
}

// readOldestWithin reads, for at most budget of the waiting queues whose
// oldest record's time is not in memory, that time from the database; not
// while space reclamation holds it. The queues never known come first, then
// the ones known longest ago: the reads go where the estimate is worst.
func (s *Store) readOldestWithin(snaps []queueSnapshot, budget int) {
	var inexact []*queueSnapshot
	for i := range snaps {
		if snaps[i].st.Len > 0 && !snaps[i].exact {
			inexact = append(inexact, &snaps[i])
		}
	}
	slices.SortFunc(inexact, func(a, b *queueSnapshot) int { return cmp.Compare(a.at, b.at) })
	for _, snap := range inexact[:min(budget, len(inexact))] {
		if t, ok := s.readOldest(snap.q, snap.head, snap.tail, false); ok {
			snap.at, snap.exact = t, true
		}
	}
}
