package buffer

import (
	"sync/atomic"
	"time"
)

// DefaultReadAhead is Config.ReadAhead's default: it bounds how many records all the Store's forwarders
// together hold read and not yet acknowledged (their windows). Each
// forwarder may have Config.InFlight outstanding, and with 1 000 queues
// draining a backlog that was 64 000 records, each a copy of its value plus
// the uplink's request, about 50 MiB of a drain's heap (issue 12): far more
// than the connections take at once (a gateway connection 1 000 on the
// wire, 500 device connections 10 each), so the rest only waited in the
// uplink's queue. 8 192 keeps every connection's window full in both modes.
const DefaultReadAhead = 8192

// readAheadRecheck is how often, at most, a forwarder short of read-ahead
// recounts every queue's window (the running total only learns of
// acknowledgements when a queue reads again).
const readAheadRecheck = 100 * time.Millisecond

// readAhead keeps the running total of the records read ahead of the
// cursor by every queue's forwarder: for each queue the seqs from its
// oldest waiting one up to the end of its last read (gaps included, so the
// total is never below the truth), plus what a read under way was granted.
// The total is updated when a queue reads, so acknowledgements since a
// queue's last read still count until it reads again or a recount. It is
// kept without a lock that every forwarder would queue on: each queue's
// share is swapped atomically and the difference added to the total.
type readAhead struct {
	max     int64 // Config.ReadAhead
	total   atomic.Int64
	counted atomic.Int64 // Unix nanoseconds of the last recount
}

// setReadWindow makes w q's share of the read-ahead total.
func (s *Store) setReadWindow(q *queue, w int64) {
	s.readAhead.total.Add(w - q.readWindow.Swap(w))
}

// grantReadAhead returns how many records (at most want, at least 1) q's
// forwarder may read now, from seq from. Every read gets at least one
// record, so each forwarder keeps moving (and a read never comes back empty
// because of this bound, which a forwarder with an empty window would take
// for a gap); under the bound a queue's window shrinks to the records it
// gets back between reads. The grant counts at once, so that forwarders
// reading at the same time do not all get the same free records;
// readAheadDone corrects it to what was read.
func (s *Store) grantReadAhead(q *queue, from uint64, want int) int {
	ra := &s.readAhead
	q.mu.Lock()
	q.readTo = max(from, q.head+1) // what was read before this read
	window := int64(q.readTo - (q.head + 1))
	q.mu.Unlock()
	s.setReadWindow(q, window)

	free := ra.max - ra.total.Load()
	if free < int64(want) {
		last, now := ra.counted.Load(), time.Now().UnixNano()
		if now-last >= int64(readAheadRecheck) && ra.counted.CompareAndSwap(last, now) {
			s.countReadAhead() // one forwarder recounts; the others go on
			free = ra.max - ra.total.Load()
		}
	}
	n := min(int64(want), max(free, 1))
	q.readGranted.Store(n)
	s.setReadWindow(q, window+n)
	return int(n)
}

// readAheadDone records the end of q's read (items empty when it failed):
// the window now reaches to the last record read.
func (s *Store) readAheadDone(q *queue, items []readItem) {
	q.mu.Lock()
	if len(items) > 0 {
		q.readTo = items[len(items)-1].seq + 1
	}
	window := int64(q.readTo - min(q.readTo, q.head+1))
	q.mu.Unlock()
	q.readGranted.Store(0)
	s.setReadWindow(q, window)
}

// countReadAhead recounts every queue's share with its current cursor, plus
// what was granted to a read under way.
func (s *Store) countReadAhead() {
	for _, q := range s.snapshotQueues() {
		q.mu.Lock()
		w := int64(q.readTo - min(q.readTo, q.head+1))
		q.mu.Unlock()
		s.setReadWindow(q, w+q.readGranted.Load())
	}
}
