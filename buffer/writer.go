package buffer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"sync"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// The writer takes the disk off the callers' path: Enqueue encodes an event,
// assigns its seq and hands it over on a bounded channel; one goroutine per
// Store commits everything waiting in one Badger transaction (group
// commit), so a flush or compaction that stalls Badger stalls the writer,
// not the bus goroutines. An event becomes visible to Forward (and so can be
// published) only once committed: "on disk before published" holds as
// before.

const (
	// maxBatch and maxBatchBytes bound one commit; with the last event
	// (up to a whole record) on top they stay below Badger's transaction
	// limit, 15% of the memtable: 614 KiB at the default 4 MiB
	// (TestBatchLimitsFitTheMemTable).
	maxBatch      = 1024
	maxBatchBytes = 256 << 10
)

// pendingEvent is one event handed to the writer. A nil val with a non-nil
// fail is an event refused at hand-over after its seq was consumed (it
// goes through the writer so that tail advances in seq order). A nil q is
// a Flush marker.
type pendingEvent struct {
	q    *queue
	seq  uint64
	val  *[]byte // encoded record, from recordPool
	size int64
	fail error
	done chan error // Append and Flush wait on it; nil for Enqueue
	kept bool       // val went to the queue's forwarder (fresh.go), not back to recordPool
}

// recordPool recycles encoded records: Badger copies keys and values into
// its memtable and log before a commit returns.
var recordPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// Enqueue is Append without waiting for the disk: it assigns seq, calls
// build, encodes the event and hands it to the Store's writer, which
// commits it shortly after (batched with other queues' events). It returns
// the seq once the event is handed over; the payload build returned is
// copied, so the caller may reuse its buffer.
//
// Errors and seq consumption are as for Append, except that the checks
// that need the disk happen in the writer: an event refused there for lack
// of space (or a failed write) has its seq consumed and is counted in
// QueueStats.Failed, and one dropped there by drop_oldest making room is
// counted in Dropped, but Enqueue has already returned nil. When the
// hand-over channel is full (the disk is slower than the callers for longer
// than the channel covers) Enqueue waits at most DefaultHandoffWait for
// room, then refuses the event with ErrFull, its seq not consumed, counted
// in QueueStats.Dropped: Enqueue never waits longer for the disk.
//
// What survives: an event Enqueue returned nil for is "accepted", not yet
// "stored". It is stored (survives kill -9 as Append's events do) once
// committed: QueueStats.Appended counts it, and Flush returns only after
// every event accepted before it is committed or refused. A kill -9 loses
// accepted events not yet committed; none of them can have been published,
// so their seqs may be handed out again.
func (s *Store) Enqueue(queue, topic string, build func(seq uint64) ([]byte, error)) (uint64, error) {
	q, err := s.appendTarget(queue, topic)
	if err != nil {
		return 0, err
	}
	q.appendMu.Lock()
	defer q.appendMu.Unlock()
	return s.handOver(q, topic, build, false)
}

// handOver builds and encodes the next event of q and gives it to the
// writer; with wait it blocks until the event is committed or refused (the
// Append path). The caller holds q.appendMu.
func (s *Store) handOver(q *queue, topic string, build func(seq uint64) ([]byte, error), wait bool) (uint64, error) {
	seq := q.next
	payload, err := build(seq)
	if err != nil {
		return 0, err
	}
	if len(payload) > MaxPayload {
		return 0, fmt.Errorf("%w: %d bytes (limit %d)", ErrTooLarge, len(payload), MaxPayload)
	}
	buf := recordPool.Get().(*[]byte)
	*buf = appendRecord((*buf)[:0], seq, s.cfg.now(), topic, payload)
	ev := pendingEvent{q: q, seq: seq, val: buf, size: int64(keyLen + len(*buf))}
	if s.cfg.OnFull == DropNewest && s.total.Load()+s.pendingBytes.Load()+ev.size > s.cfg.MaxBytes {
		recordPool.Put(buf)
		s.countRefused(q, "buffer full, refusing new events")
		return 0, ErrFull
	}
	if s.persistent && seq >= q.lease {
		if err := s.renewLease(q, seq); err != nil {
			if errors.Is(err, ErrClosed) {
				recordPool.Put(buf)
				return 0, err
			}
			// The seq is consumed and counted as failed, in order.
			recordPool.Put(buf)
			ev.val, ev.fail = nil, err
		}
	}
	if wait {
		ev.done = make(chan error, 1)
	}
	q.pending.Add(1)
	s.pendingBytes.Add(ev.size)
	q.mu.Lock()
	q.next = seq + 1
	q.mu.Unlock()

	sent, closed := s.send(ev, wait)
	if !sent {
		q.pending.Add(-1)
		s.pendingBytes.Add(-ev.size)
		q.mu.Lock()
		q.next = seq
		q.mu.Unlock()
		if ev.val != nil {
			recordPool.Put(ev.val)
		}
		if closed {
			return 0, ErrClosed
		}
		s.countRefused(q, "buffer writer behind the disk, refusing new events")
		return 0, fmt.Errorf("%w: the writer is behind", ErrFull)
	}
	if ev.fail != nil && !wait {
		return 0, ev.fail
	}
	if wait {
		if err := <-ev.done; err != nil {
			return 0, err
		}
	}
	return seq, nil
}

// send hands ev to the writer; with block it waits for room.
func (s *Store) send(ev pendingEvent, block bool) (sent, closed bool) {
	s.handoffMu.RLock()
	defer s.handoffMu.RUnlock()
	if s.handoffClosed {
		return false, true
	}
	if block {
		s.wch <- ev
		return true, false
	}
	select {
	case s.wch <- ev:
		return true, false
	default:
	}
	// Full: the writer is behind (the disk stalls, or callers outrun it).
	// Wait a little, so that a short burst is absorbed, but never longer.
	t := time.NewTimer(s.cfg.handoffWait)
	defer t.Stop()
	select {
	case s.wch <- ev:
		return true, false
	case <-t.C:
		return false, false
	}
}

// countRefused counts an event refused by policy before its seq was
// consumed.
func (s *Store) countRefused(q *queue, why string) {
	q.mu.Lock()
	q.dropped.Add(1)
	s.logDrop(q, 1, why)
	q.mu.Unlock()
}

// Flush waits until every event handed over before it (Enqueue) is
// committed or refused. It returns ErrClosed after Close.
func (s *Store) Flush() error {
	done := make(chan error, 1)
	if sent, _ := s.send(pendingEvent{done: done}, true); !sent {
		return ErrClosed
	}
	return <-done
}

// writeLoop is the writer: it commits what was handed over, in batches,
// with the acknowledgement cursors waiting (acks.go), until Close closes
// the channel; then it commits what is left and exits. Close waits for it.
func (s *Store) writeLoop() {
	defer s.wg.Done()
	w := &writer{
		batch: make([]pendingEvent, 0, 64),
		keys:  make([]byte, 0, 64*keyLen),
		// A batch must fit under MaxBytes with room to spare, or
		// drop_oldest could not make room for it.
		limit: min(maxBatchBytes, s.cfg.MaxBytes/4),
	}
	for {
		select {
		case ev, ok := <-s.wch:
			if !ok {
				s.commitLast(w)
				return
			}
			w.add(ev)
		case <-s.ackNow:
		case <-s.ackTimer.C:
		}
		s.writerWakes.Add(1)
		// Let the goroutines that are runnable now (the other buses of the
		// same poll slot, woken by their replies at the same moment) hand
		// their events over before this batch is gathered: the goroutine
		// that readied the writer makes it run next, ahead of them, and each
		// event would otherwise pay a Badger transaction (five wake-ups in
		// Badger's commit pipeline) of its own. With nothing else runnable
		// this returns at once.
		runtime.Gosched()
		if !w.gather(s.wch) {
			s.commitLast(w)
			return
		}
		s.commitBatch(w)
	}
}

// commitLast is the writer's last commit, at Close: what was handed over
// and every cursor settled before (no cursor is settled after wch closed),
// in as many transactions as maxCursors needs. A transaction that fails
// leaves its cursors unsaved (the events are sent again after the
// restart) rather than retrying without end.
func (s *Store) commitLast(w *writer) {
	for range s.queueCount()/maxCursors + 1 {
		if !s.commitBatch(w) {
			return
		}
	}
}

func (s *Store) queueCount() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.queues)
}

// writer is the writer goroutine's scratch space.
type writer struct {
	batch   []pendingEvent
	bytes   int64
	limit   int64
	keys    []byte
	acks    []*queue
	cursors []cursorWrite
}

func (w *writer) add(ev pendingEvent) {
	w.batch = append(w.batch, ev)
	w.bytes += ev.size
}

// gather adds what else waits on wch, within the batch limits. It returns
// false when wch is closed.
func (w *writer) gather(wch <-chan pendingEvent) bool {
	for len(w.batch) < maxBatch && w.bytes < w.limit {
		select {
		case ev, ok := <-wch:
			if !ok {
				return false
			}
			w.add(ev)
		default:
			return true
		}
	}
	return true
}

// commitBatch writes w's batch and the waiting cursors in one transaction
// after the disk guard (and, under drop_oldest, making room), then updates
// the queues in seq order and answers the waiters. Events stop at MinFree,
// cursors only at MinFree/2: a batch whose events are refused still commits
// its cursors, so that a full buffer drains. It reports whether cursors
// were left for the next transaction (more than maxCursors).
func (s *Store) commitBatch(w *writer) (more bool) {
	batch, bytes := w.batch, w.bytes
	defer func() {
		clear(w.batch) // let the records go
		w.batch, w.bytes = w.batch[:0], 0
	}()
	events := 0
	for _, ev := range batch {
		if ev.val != nil {
			events++
		}
	}
	var evErr error
	if events > 0 {
		evErr = s.checkDisk(writeEvent, bytes)
		if evErr == nil && s.cfg.OnFull == DropOldest && s.total.Load()+bytes > s.cfg.MaxBytes {
			if evErr = s.makeRoom(bytes); evErr != nil && !errors.Is(evErr, ErrClosed) {
				evErr = fmt.Errorf("buffer: make room: %w", evErr)
			}
		}
	} else {
		evErr = errNothing
	}
	// While reclamation holds the gate the batch goes to the side journal
	// (journal.go) instead of waiting; then jmu is held instead of the gate.
	journaled := s.enterWrite(bytes)
	w.acks = s.takeAcks(w.acks[:0])
	w.cursors, more = s.lockCursors(w.acks, w.cursors[:0])
	if more {
		kick(s.ackNow) // the rest in the next transaction, at once
	}
	clear(w.acks)
	curErr := errNothing
	if len(w.cursors) > 0 {
		curErr = s.checkDisk(writeCursor, cursorBytes(w.cursors))
	}
	var err error
	put := func(kv kvWriter) error {
		if evErr == nil {
			if err := s.writeEvents(kv, batch, w); err != nil {
				return err
			}
		}
		if curErr == nil {
			return writeCursors(kv, w.cursors)
		}
		return nil
	}
	switch {
	case !journaled && s.closed: // s.closed is under the gate
		evErr, curErr = ErrClosed, ErrClosed
	case evErr == nil || curErr == nil:
		if journaled {
			err = s.journalBatch(put)
		} else {
			err = s.db.Update(func(txn *badger.Txn) error { return put(txn) })
		}
		s.commits.Add(1)
		if err != nil {
			err = fmt.Errorf("buffer: append: %v", err)
			evErr, curErr = err, err
		} else {
			s.markDirty()
			s.noteCommitted(evErr == nil, bytes, events, curErr == nil, w.cursors)
		}
	}
	if len(w.cursors) > 0 {
		s.unlockCursors(w.cursors, curErr)
		clear(w.cursors)
	}
	if evErr == nil {
		// Count before releasing the gate, so that reclamation (which
		// holds it exclusively) sees the records. Journaled events are
		// counted too: they are stored, and their forwarders take them
		// from memory while reclamation holds the gate.
		for i := range batch {
			if batch[i].val != nil {
				batch[i].kept = s.stored(batch[i])
			}
		}
	}
	if journaled {
		s.jmu.Unlock()
	} else {
		s.gate.RUnlock()
	}
	switch {
	case err != nil:
		s.noteWriteError(err)
	case evErr == nil || curErr == nil:
		s.noteWriteOK()
	}
	if errors.Is(evErr, errNothing) {
		evErr = nil // only Flush markers and events refused at hand-over
	}
	s.answer(batch, evErr)
	return more
}

// errNothing marks a part of a writer transaction that has nothing to
// write.
var errNothing = errors.New("nothing to write")

// writeEvents puts the batch's records into txn.
func (s *Store) writeEvents(txn kvWriter, batch []pendingEvent, w *writer) error {
	keys := w.keys[:0]
	defer func() { w.keys = keys }()
	for _, ev := range batch {
		if ev.val == nil {
			continue
		}
		off := len(keys)
		keys = binary.BigEndian.AppendUint32(append(keys, pfxEvent), ev.q.qid)
		keys = binary.BigEndian.AppendUint64(keys, ev.seq)
		if err := txn.Set(keys[off:len(keys):len(keys)], *ev.val); err != nil {
			return err
		}
	}
	return nil
}

// answer settles the batch's events after the commit (err: the events'
// outcome) and answers Append and Flush.
func (s *Store) answer(batch []pendingEvent, err error) {
	for _, ev := range batch {
		if ev.q == nil { // a Flush marker
			ev.done <- nil
			continue
		}
		res := ev.fail
		if ev.val != nil && err != nil {
			res = err
		}
		if res != nil {
			s.refuseCommitted(ev.q, ev.seq)
		}
		ev.q.pending.Add(-1)
		s.pendingBytes.Add(-ev.size)
		if ev.val != nil && !ev.kept {
			recordPool.Put(ev.val)
		}
		if ev.done != nil {
			ev.done <- res
		}
		if res == nil {
			ev.q.wake()
		}
	}
}

// stored accounts for a committed event and hands its record to the
// queue's forwarder; it reports whether the record was kept for it. The
// caller holds the gate.
func (s *Store) stored(ev pendingEvent) (kept bool) {
	q := ev.q
	q.mu.Lock()
	q.tail = max(q.tail, ev.seq+1)
	q.count++
	q.bytes += ev.size
	q.appended++
	kept = s.keepFresh(q, ev.seq, *ev.val)
	q.mu.Unlock()
	s.total.Add(ev.size)
	return kept
}

// refuseCommitted is refuse for an event that went through the writer:
// its seq stays consumed and tail moves past it in order.
func (s *Store) refuseCommitted(q *queue, seq uint64) {
	q.mu.Lock()
	q.tail = max(q.tail, seq+1)
	q.failed.Add(1)
	q.mu.Unlock()
	s.failedDirty.Store(true)
}

// Prepare registers the named queues and leases a block of seqs for each in
// one write of state.json, so that their first events do not each rewrite
// (and fsync) the state file on the caller's path: with 500 devices that
// was 500 rewrites of a 500-entry file while the first poll ran. Calling it
// is optional; an unknown queue is still registered on first use.
func (s *Store) Prepare(queues ...string) error {
	names := slices.Clone(queues)
	slices.Sort(names) // a fixed order of appendMu locks
	names = slices.Compact(names)
	qs := make([]*queue, 0, len(names))
	for _, name := range names {
		if name == "" {
			return errors.New("buffer: empty queue name")
		}
		q, err := s.queue(name)
		if err != nil {
			return err
		}
		qs = append(qs, q)
	}
	if !s.persistent {
		return nil
	}
	for _, q := range qs {
		q.appendMu.Lock()
		defer q.appendMu.Unlock()
	}
	all := s.snapshotQueues() // before leaseMu: lock order is mu -> leaseMu
	s.leaseMu.Lock()
	defer s.leaseMu.Unlock()
	if s.stateClosed {
		return ErrClosed
	}
	st := withFailed(s.state, all)
	st.Leases = maps.Clone(s.state.Leases)
	if st.Leases == nil {
		st.Leases = map[string]uint64{}
	}
	bounds := make([]uint64, len(qs))
	for i, q := range qs {
		bounds[i] = q.lease
		if q.next+s.cfg.leaseBlock/2 > q.lease {
			bounds[i] = q.next + s.cfg.leaseBlock
			st.Leases[q.name] = bounds[i]
		}
	}
	if err := writeState(s.dir, st); err != nil {
		return fmt.Errorf("buffer: record seq leases: %v", err)
	}
	s.state = st
	for i, q := range qs {
		q.lease = bounds[i]
	}
	return nil
}
