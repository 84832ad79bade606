package buffer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// Append stores one event at the end of queue (one device's stream) and
// returns its seq.
//
// The buffer assigns seq: build is called once, with the queue's appends
// serialised, and returns the payload (which embeds seq). If build fails,
// the payload is above MaxPayload (ErrTooLarge), or the event is refused by
// policy (ErrFull under drop_newest, counted as dropped) or because the
// Store is closed (ErrClosed), Append returns the error and seq is not
// consumed: the next Append gets the same one. If the event could not be
// kept for lack of disk space (ErrDiskFull) or a storage error, Append
// returns the error, seq is consumed (receivers see the gap) and the event
// is counted in QueueStats.Failed. topic is stored with the event and
// handed to the Publisher as is.
//
// When Append returns nil the event survives a crash of the process; with
// Config.Sync = 0 also a power cut (see the package documentation). Under
// drop_oldest Append first removes the oldest events of the largest queue
// until the new one fits; they are counted as dropped.
func (s *Store) Append(queue, topic string, build func(seq uint64) ([]byte, error)) (uint64, error) {
	q, err := s.appendTarget(queue, topic)
	if err != nil {
		return 0, err
	}
	q.appendMu.Lock()
	defer q.appendMu.Unlock()
	if q.pending.Load() > 0 || s.reclaiming.Load() {
		// Events of this queue wait for the writer: go behind them, so
		// that the queue is committed in seq order. During a space
		// reclamation the writer journals (journal.go) where this
		// Append would wait for the gate.
		return s.handOver(q, topic, build, true)
	}

	seq := q.next // only appenders change next, and we hold appendMu
	payload, err := build(seq)
	if err != nil {
		return 0, err
	}
	if len(payload) > MaxPayload {
		return 0, fmt.Errorf("%w: %d bytes (limit %d)", ErrTooLarge, len(payload), MaxPayload)
	}
	val := appendRecord(make([]byte, 0, recordSize(topic, payload)), seq, s.cfg.now(), topic, payload)
	size := int64(keyLen + len(val))

	if err := s.checkDisk(writeEvent, size); err != nil {
		s.refuse(q, seq)
		return 0, err
	}
	if s.total.Load()+size > s.cfg.MaxBytes {
		if s.cfg.OnFull == DropNewest {
			q.mu.Lock()
			q.dropped.Add(1)
			s.logDrop(q, 1, "buffer full, refusing new events")
			q.mu.Unlock()
			return 0, ErrFull
		}
		if err := s.makeRoom(size); err != nil {
			if errors.Is(err, ErrClosed) {
				return 0, err
			}
			s.refuse(q, seq)
			return 0, err
		}
	}
	if s.persistent && seq >= q.lease {
		if err := s.renewLease(q, seq); err != nil {
			if errors.Is(err, ErrClosed) {
				return 0, err
			}
			s.refuse(q, seq)
			return 0, err
		}
	}

	s.gate.RLock()
	if s.closed {
		s.gate.RUnlock()
		return 0, ErrClosed
	}
	err = s.db.Update(func(txn *badger.Txn) error { return txn.Set(eventKey(q.qid, seq), val) })
	s.commits.Add(1)
	if err == nil {
		// Update the state before releasing the gate, so that reclamation
		// (which holds the gate exclusively) sees the record counted.
		q.mu.Lock()
		q.tail = seq + 1
		q.next = seq + 1
		q.count++
		q.bytes += size
		q.appended++
		s.keepFresh(q, seq, val)
		q.mu.Unlock()
		s.total.Add(size)
		s.markDirty()
	}
	s.gate.RUnlock()
	if err == nil {
		s.noteWritten(size, 1)
	}
	if err != nil {
		s.noteWriteError(err)
		s.refuse(q, seq)
		return 0, fmt.Errorf("buffer: append to %q: %v", queue, err)
	}
	s.noteWriteOK()
	q.wake()
	return seq, nil
}

// refuse accounts for an event that was built with seq but could not be
// kept (no disk space, a failed write): the seq is consumed, so receivers
// see the gap, and the event is counted as failed. The caller holds
// q.appendMu, and no event of q waits for the writer.
func (s *Store) refuse(q *queue, seq uint64) {
	q.mu.Lock()
	q.tail = seq + 1
	q.next = seq + 1
	q.failed.Add(1)
	q.mu.Unlock()
	s.failedDirty.Store(true)
}

// wake tells the queue's forwarder that there is something new.
func (q *queue) wake() { kick(q.notify) }

// makeRoom drops the oldest events of the largest queue until need more
// bytes fit under MaxBytes. It removes at least dropChunk bytes at a time so
// that a full buffer does not pay a cursor write per append.
func (s *Store) makeRoom(need int64) error {
	s.capMu.Lock()
	defer s.capMu.Unlock()
	for s.total.Load()+need > s.cfg.MaxBytes {
		v := s.largestQueue()
		if v == nil {
			return ErrFull
		}
		excess := s.total.Load() + need - s.cfg.MaxBytes
		n, err := s.dropOldest(v, max(excess, s.dropChunk))
		if err != nil {
			return err
		}
		if n == 0 {
			return ErrFull
		}
	}
	return nil
}

func (s *Store) largestQueue() *queue {
	var best *queue
	var bestBytes int64
	for _, q := range s.snapshotQueues() {
		q.mu.Lock()
		b := q.bytes
		q.mu.Unlock()
		if b > bestBytes {
			best, bestBytes = q, b
		}
	}
	return best
}

// maxRemove bounds the records removed in one cursor transaction (Badger's
// transaction limit is ~6.5k entries with the default 4 MiB memtables, and
// the deletes strategy puts one delete per record in it;
// TestBatchLimitsFitTheMemTable).
const maxRemove = 4096

// dropOldest removes the oldest records of q, at least atLeast bytes (or all
// of them), as dropped by the full policy. It returns how many records went.
func (s *Store) dropOldest(q *queue, atLeast int64) (int64, error) {
	s.gate.RLock()
	defer s.gate.RUnlock()
	if s.closed {
		return 0, ErrClosed
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	var n, freed int64
	newHead := q.head
	var keys [][]byte
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: q.prefix})
		defer it.Close()
		for it.Seek(eventKey(q.qid, q.head+1)); it.Valid() && freed < atLeast && n < maxRemove; it.Next() {
			seq, ok := parseEventKey(it.Item().Key())
			if !ok || seq >= q.tail {
				break
			}
			n++
			freed += keyLen + it.Item().ValueSize()
			newHead = seq
			if s.deletesRecords() {
				keys = append(keys, it.Item().KeyCopy(nil))
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("buffer: drop oldest of %q: %v", q.name, err)
	}
	if n == 0 {
		if q.count == 0 && q.tail-1 > q.head {
			// Only gaps left: move the cursor over them.
			newHead = q.tail - 1
		} else {
			return 0, nil
		}
	}
	if err := s.commitHead(q, newHead, keys); err != nil {
		return 0, err
	}
	q.head = newHead
	q.count -= n
	q.bytes -= freed
	q.dropped.Add(uint64(n))
	s.total.Add(-freed)
	s.noteRemoved(freed)
	s.logDrop(q, uint64(n), "buffer full, dropping oldest events")
	return n, nil
}

// expire removes the records of q appended before cutoff (and corrupt ones
// met on the way). It returns how many records went.
func (s *Store) expire(q *queue, cutoff time.Time) (int64, error) {
	s.gate.RLock()
	defer s.gate.RUnlock()
	if s.closed {
		return 0, ErrClosed
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	var n, freed, old, bad int64
	newHead := q.head
	var keys [][]byte
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: q.prefix})
		defer it.Close()
		for it.Seek(eventKey(q.qid, q.head+1)); it.Valid() && n < maxRemove; it.Next() {
			item := it.Item()
			seq, ok := parseEventKey(item.Key())
			if !ok || seq >= q.tail {
				break
			}
			val, err := item.ValueCopy(nil)
			rec, derr := decodeRecord(val)
			switch {
			case err != nil || derr != nil || rec.Seq != seq:
				bad++
				s.log.Warn("buffer corrupt record skipped", "queue", q.name, "seq", seq)
			case rec.Appended.Before(cutoff):
				old++
			default:
				return nil
			}
			n++
			freed += keyLen + item.ValueSize()
			newHead = seq
			if s.deletesRecords() {
				keys = append(keys, item.KeyCopy(nil))
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("buffer: expire %q: %v", q.name, err)
	}
	if n == 0 {
		return 0, nil
	}
	if err := s.commitHead(q, newHead, keys); err != nil {
		return 0, err
	}
	q.head = newHead
	q.count -= n
	q.bytes -= freed
	q.dropped.Add(uint64(old))
	q.droppedAge += uint64(old)
	q.corrupt += uint64(bad)
	s.total.Add(-freed)
	s.noteRemoved(freed)
	if old > 0 {
		s.logDrop(q, uint64(old), "buffer events older than max_age dropped")
	}
	return n, nil
}

// commitHead persists q's cursor (and, for the deletes strategies, deletes
// keys) in one transaction. The caller holds the gate (shared) and q.mu.
func (s *Store) commitHead(q *queue, head uint64, keys [][]byte) error {
	if err := s.checkDisk(writeCursor, int64(64+len(keys)*keyLen)); err != nil {
		return fmt.Errorf("buffer: advance cursor of %q: %w", q.name, err)
	}
	err := s.db.Update(func(txn *badger.Txn) error {
		for _, k := range keys {
			if err := txn.Delete(k); err != nil {
				return err
			}
		}
		return txn.Set(headKey(q.qid), binary.BigEndian.AppendUint64(nil, head))
	})
	s.commits.Add(1)
	if err != nil {
		s.noteWriteError(err)
		return fmt.Errorf("buffer: advance cursor of %q: %v", q.name, err)
	}
	q.persisted = max(q.persisted, head)
	s.markDirty()
	s.noteWritten(int64(1+4+8+len(keys)*keyLen), int64(1+len(keys))) // head key and value, deletes
	return nil
}

func (s *Store) deletesRecords() bool {
	return s.cfg.reclaim == reclaimDeletes || s.cfg.reclaim == reclaimDeletesFlatten
}

// noteRemoved counts bytes that left the queues and wakes reclamation when
// enough accumulated. While a backlog postpones reclamation (maint.go) it
// wakes it only as the count crosses reclaimBytes: the maintenance
// goroutine then looks again every second by itself (the drain's end, the
// free disk space), rather than on every acknowledgement.
func (s *Store) noteRemoved(n int64) {
	r := s.removed.Add(n)
	if r >= s.cfg.reclaimBytes && (r-n < s.cfg.reclaimBytes || !s.backlogPostpones()) {
		kick(s.reclaimNow)
	}
}

// logDrop logs dropped events at Warn, at most once per 10 s per queue with
// the count in between. The caller holds q.mu.
func (s *Store) logDrop(q *queue, n uint64, msg string) {
	q.dropLog.pending += n
	now := time.Now()
	if now.Sub(q.dropLog.last) < 10*time.Second {
		return
	}
	s.log.Warn(msg, "queue", q.name, "dropped", q.dropLog.pending, "dropped_total", q.dropped.Load(),
		"policy", s.cfg.OnFull.String(), "queue_events", q.count)
	q.dropLog.last, q.dropLog.pending = now, 0
}

// diskRecheck bounds how long checkDisk trusts its estimate of free space
// while there is plenty: another process may fill the disk meanwhile.
const diskRecheck = 100 * time.Millisecond

// writeKind says what a Badger write is for; each kind keeps its own part
// of MinFree free (see floor).
type writeKind int

const (
	writeEvent   writeKind = iota // Append: a new event
	writeCursor                   // acknowledgement, drop, queue registration, format key
	writeReclaim                  // DropPrefix: rewrites tables to give space back
)

// floor is the free space a write of kind k must leave. Events stop first,
// at MinFree, so that acknowledgements (which give space back) still go
// through down to MinFree/2, and reclamation down to MinFree/4. Below that
// nothing is written: Badger needs the rest to flush and compact.
func (s *Store) floor(k writeKind) int64 {
	switch k {
	case writeCursor:
		return s.cfg.MinFree / 2
	case writeReclaim:
		return s.cfg.MinFree / 4
	}
	return s.cfg.MinFree
}

// checkDisk refuses a write of n bytes of kind k when the file system would
// keep less than floor(k) free. Every Badger write goes through it: a write
// into a file system that another process filled up must become an error,
// never a fault in a memory-mapped file (see third_party/ristretto).
// statfs (about a microsecond) runs at most every diskRecheck while there
// is room, and on every check near the floor or after a refusal.
func (s *Store) checkDisk(k writeKind, n int64) error {
	if !s.persistent || s.cfg.noDiskGuard {
		return nil
	}
	g := &s.disk
	g.mu.Lock()
	defer g.mu.Unlock()
	// Badger writes each byte about three times (log, flush, compaction).
	need := 3 * n
	floor := s.floor(k)
	now := time.Now()
	if g.full || now.Sub(g.checked) > diskRecheck || g.free-need < s.cfg.MinFree+(16<<20) {
		if err := s.statDiskLocked(now); err != nil {
			// Cannot tell: do not block on the guard itself.
			g.free, g.checked = s.cfg.MinFree+(1<<30), now
		}
	}
	if g.full && g.free >= s.cfg.MinFree {
		g.full = false
		s.log.Info("buffer disk space recovered", "dir", s.dir, "free_bytes", g.free)
		s.clearFault("disk full")
	}
	if g.free-need < floor {
		if !g.full {
			g.full = true
			s.log.Error("buffer disk almost full, refusing new events; acknowledgements continue while space lasts",
				"dir", s.dir, "free_bytes", g.free, "min_free_bytes", s.cfg.MinFree)
			s.setFault("disk full")
			// Give back what acknowledged events still hold.
			kick(s.reclaimNow)
		}
		return fmt.Errorf("%w: %d bytes free, %d required", ErrDiskFull, g.free, floor)
	}
	g.free -= need
	return nil
}

// statDiskLocked sets the guard's estimate to the free space statfs
// reports now; on an error it leaves the estimate as it was. The caller
// holds s.disk.mu.
func (s *Store) statDiskLocked(now time.Time) error {
	free, err := s.cfg.diskFree(s.dir)
	if err != nil {
		return err
	}
	s.disk.free, s.disk.checked = free, now
	return nil
}

// recheckDisk makes the next checkDisk call statfs again (after a failed
// write, which may mean the file system filled up under the estimate).
func (s *Store) recheckDisk() {
	s.disk.mu.Lock()
	s.disk.checked = time.Time{}
	s.disk.mu.Unlock()
}

// noteWriteError records a failed Badger write as the current fault.
func (s *Store) noteWriteError(err error) {
	s.recheckDisk()
	s.faultMu.Lock()
	first := s.fault == ""
	s.faultMu.Unlock()
	if first {
		s.log.Error("buffer write failed", "err", err)
	}
	s.setFault("write failed: " + err.Error())
}

// noteWriteOK clears a write fault after a successful write.
func (s *Store) noteWriteOK() {
	s.faultMu.Lock()
	had := strings.HasPrefix(s.fault, "write failed")
	s.faultMu.Unlock()
	if had {
		s.log.Info("buffer writes recovered")
		s.clearFault("write failed")
	}
}

// appendTarget checks an event's queue and topic and returns its queue,
// registering a new one: what Append and Enqueue both start with.
func (s *Store) appendTarget(queue, topic string) (*queue, error) {
	if queue == "" {
		return nil, errors.New("buffer: empty queue name")
	}
	if topic == "" || len(topic) > maxTopic {
		return nil, fmt.Errorf("buffer: topic length %d out of range 1..%d", len(topic), maxTopic)
	}
	if s.isClosed() {
		return nil, ErrClosed
	}
	return s.queue(queue)
}
