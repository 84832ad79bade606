package buffer

import (
	"encoding/binary"
	"fmt"
	"time"
)

// Acknowledgement cursors go through the writer. Committing a queue's
// cursor after every PUBACK cost a Badger commit (three goroutine wake-ups,
// memtable and log work) per event on top of the event's own. Instead a
// forwarder settles its acknowledged events in memory (settle: head and the
// counters move at once) and the writer commits the cursors of every queue
// with settled events together, in the transaction of its next batch of
// events, so that at paced load many acks share one commit.
//
// The persisted cursor (queue.persisted) may lag head, by at most one
// window: a forwarder refills its window only once its cursor is committed
// (awaitCursor asks the writer to commit at once), so a kill -9 re-sends at
// most one window, as when it committed the cursor itself. A forwarder with
// nothing more to send does not wait; its cursor is committed with the next
// batch or after DefaultAckDelay, whichever comes first.

// DefaultAckDelay bounds how long an acknowledged event's cursor waits for
// the writer when no batch of events comes first. At paced load a batch
// comes every few milliseconds and takes the cursors along; the delay
// matters for quiet buffers, where it turns one commit per acknowledgement
// into at most 20 per second for all queues together. Delaying longer would
// save little more, and keeps acknowledged events on disk (reclamation
// stops at the persisted cursor) and due for re-sending after a crash for
// longer.
const DefaultAckDelay = 50 * time.Millisecond

// settle removes settled flights (in seq order) from q's accounting and
// leaves the cursor to the writer. It fails only after Close, which has
// committed what was settled before it.
func (s *Store) settle(q *queue, fl []flight) error {
	s.handoffMu.RLock()
	defer s.handoffMu.RUnlock()
	if s.handoffClosed {
		return ErrClosed
	}
	q.mu.Lock()
	last := fl[len(fl)-1].seq
	if last <= q.head {
		q.mu.Unlock()
		return nil // dropped by policy meanwhile
	}
	var n, bytes int64
	var acked, bad, old uint64
	for _, x := range fl {
		if x.seq <= q.head {
			continue
		}
		n++
		bytes += x.size
		switch x.why {
		case removedAcked:
			acked++
		case removedCorrupt:
			bad++
		case removedExpired:
			old++
		}
		if s.deletesRecords() {
			q.ackKeys = append(q.ackKeys, eventKey(q.qid, x.seq))
		}
	}
	q.head = last
	q.count -= n
	q.bytes -= bytes
	q.acked += acked
	q.corrupt += bad
	q.dropped.Add(old)
	q.droppedAge += old
	if old > 0 {
		s.logDrop(q, old, "buffer events older than max_age dropped")
	}
	q.mu.Unlock()
	s.total.Add(-bytes)
	s.noteRemoved(bytes)
	s.markCursor(q)
	return nil
}

// markCursor puts q in the set of queues whose cursor the writer commits.
// The first queue of an empty set arms the ackDelay timer here, on the
// settling goroutine: waking the writer only to arm it cost a wake-up per
// acknowledgement at paced load, where the next batch takes the cursor
// along long before the timer fires (and takeAcks stops it, so that it does
// not wake the writer for nothing either).
func (s *Store) markCursor(q *queue) {
	s.ackMu.Lock()
	defer s.ackMu.Unlock()
	if !q.inAckSet {
		q.inAckSet = true
		s.ackSet = append(s.ackSet, q)
	}
	if !s.ackArmed {
		s.ackArmed = true
		s.ackTimer.Reset(s.cfg.ackDelay)
		s.ackTimerSet.Add(1)
	}
}

// ackTimerArmed tells whether the ackDelay timer runs (for tests).
func (s *Store) ackTimerArmed() bool {
	s.ackMu.Lock()
	defer s.ackMu.Unlock()
	return s.ackArmed
}

// takeAcks empties the set of queues whose cursor waits, for the writer,
// and stops the ackDelay timer: nothing waits for it any more. (Since Go
// 1.23 a stopped timer delivers no stale tick.)
func (s *Store) takeAcks(into []*queue) []*queue {
	s.ackMu.Lock()
	defer s.ackMu.Unlock()
	if s.ackArmed {
		s.ackTimer.Stop()
		s.ackArmed = false
	}
	for _, q := range s.ackSet {
		q.inAckSet = false
	}
	into = append(into, s.ackSet...)
	clear(s.ackSet)
	s.ackSet = s.ackSet[:0]
	return into
}

// stoppedTimer is a timer that runs only once Reset.
func stoppedTimer() *time.Timer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}

// kick signals ch without waiting: ch holds one pending signal, which
// covers any further one until it is taken.
func kick(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// cursorWait returns nil when q's committed cursor covers everything
// settled; otherwise it asks the writer to commit it now and returns a
// channel closed after the writer's attempt.
func (s *Store) cursorWait(q *queue) <-chan struct{} {
	q.mu.Lock()
	if q.persisted >= q.head && len(q.ackKeys) == 0 {
		q.mu.Unlock()
		return nil
	}
	if q.ackWait == nil {
		q.ackWait = make(chan struct{})
	}
	wait := q.ackWait
	q.mu.Unlock()
	s.markCursor(q) // normally there already; after a failed attempt too
	kick(s.ackNow)
	return wait
}

// cursorErr is the error of the writer's last attempt to commit q's cursor
// when it is still not committed.
func (s *Store) cursorErr(q *queue) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.persisted >= q.head {
		return nil
	}
	return q.ackErr
}

// cursorWrite is one queue's cursor in a writer transaction.
type cursorWrite struct {
	q    *queue
	head uint64
}

// maxCursors bounds the cursor entries (and, for the deletes strategies,
// record deletes) of one writer transaction: with a full batch of events
// on top they stay below Badger's transaction limit
// (TestBatchLimitsFitTheMemTable). The queues beyond it wait for the next
// transaction.
const maxCursors = 1024

// lockCursors locks the queues of acks (the writer holds their q.mu over
// its transaction, so that no other cursor write of theirs comes in
// between) and returns what each needs written, within maxCursors entries
// (the rest go back into the set). Only the writer holds more than one
// q.mu at a time.
func (s *Store) lockCursors(acks []*queue, into []cursorWrite) (_ []cursorWrite, more bool) {
	entries := 0
	for i, q := range acks {
		q.mu.Lock()
		if i > 0 && entries+1+len(q.ackKeys) > maxCursors {
			q.mu.Unlock()
			for _, rest := range acks[i:] {
				s.markCursor(rest)
			}
			return into, true
		}
		entries += 1 + len(q.ackKeys)
		into = append(into, cursorWrite{q: q, head: q.head})
	}
	return into, false
}

// cursorBytes is what cursors add to a transaction, for the disk guard.
func cursorBytes(cursors []cursorWrite) int64 {
	var n int64
	for _, c := range cursors {
		n += 64 + int64(len(c.q.ackKeys))*keyLen
	}
	return n
}

// writeCursors puts the cursors into txn.
func writeCursors(txn kvWriter, cursors []cursorWrite) error {
	for _, c := range cursors {
		for _, k := range c.q.ackKeys {
			if err := txn.Delete(k); err != nil {
				return err
			}
		}
		if c.head > c.q.persisted || len(c.q.ackKeys) > 0 {
			if err := txn.Set(headKey(c.q.qid), binary.BigEndian.AppendUint64(nil, c.head)); err != nil {
				return err
			}
		}
	}
	return nil
}

// unlockCursors records the outcome of the writer's attempt (err nil: the
// cursors are committed), wakes the forwarders waiting for it and unlocks
// the queues. A queue whose cursor failed goes back into the set.
func (s *Store) unlockCursors(cursors []cursorWrite, err error) {
	if err != nil {
		err = fmt.Errorf("buffer: advance cursor: %w", err)
	}
	for _, c := range cursors {
		q := c.q
		if err == nil {
			q.persisted = max(q.persisted, c.head)
			clear(q.ackKeys)
			q.ackKeys = q.ackKeys[:0]
		}
		q.ackErr = err
		if q.ackWait != nil {
			close(q.ackWait)
			q.ackWait = nil
		}
		q.mu.Unlock()
	}
	if err != nil {
		for _, c := range cursors {
			s.markCursor(c.q)
		}
	}
}
