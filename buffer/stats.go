package buffer

import (
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
// to the database. It is meant for the hot path (a drop count per reading).
func (s *Store) QueueCounters(queue string) QueueStats {
	q, unknown := s.lookupQueue(queue)
	if q == nil {
		return unknown
	}
	return q.counters()
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
	return QueueStats{
		Queue:      q.name,
		Len:        q.count,
		Bytes:      q.bytes,
		NextSeq:    q.next,
		Appended:   q.appended,
		Acked:      q.acked,
		Dropped:    q.dropped,
		DroppedAge: q.droppedAge,
		Corrupt:    q.corrupt,
		Failed:     q.failed,
		Skipped:    q.skipped,
	}
}

func (s *Store) queueStats(q *queue, now time.Time) QueueStats {
	st := q.counters()
	q.mu.Lock()
	head, tail := q.head, q.tail
	q.mu.Unlock()
	if st.Len > 0 {
		items, _, err := s.readRange(q, head+1, tail, 1)
		if err == nil && len(items) == 1 && items[0].err == nil {
			st.OldestAge = max(0, now.Sub(items[0].rec.Appended))
		}
	}
	return st
}

// Stats returns the statistics of the Store and of every queue.
func (s *Store) Stats() Stats {
	now := s.cfg.now()
	st := Stats{MaxBytes: s.cfg.MaxBytes, InMemory: !s.persistent, Closed: s.isClosed()}
	for _, q := range s.snapshotQueues() {
		qs := s.queueStats(q, now)
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
