package buffer

import (
	"sync"
	"time"
)

// DefaultReadAhead bounds how many records all the Store's forwarders
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
// total is never below the truth). The total is updated when a queue reads,
// so acknowledgements since a queue's last read still count until it reads
// again or a recount.
type readAhead struct {
	max int64 // DefaultReadAhead; tests lower it

	mu      sync.Mutex
	total   int64
	counted time.Time // last recount
}

// grant returns how many records (at most want, at least 1) q's forwarder
// may read now, from seq from. Every read gets at least one record, so each
// forwarder keeps moving (and a read never comes back empty because of this
// bound, which a forwarder with an empty window would take for a gap);
// under the bound a queue's window shrinks to the records it gets back
// between reads.
func (s *Store) grantReadAhead(q *queue, from uint64, want int) int {
	ra := &s.readAhead
	q.mu.Lock()
	q.readTo = max(from, q.head+1) // what was read before this read
	window := int64(q.readTo - (q.head + 1))
	q.mu.Unlock()

	ra.mu.Lock()
	defer ra.mu.Unlock()
	ra.total += window - q.readWindow
	q.readWindow = window
	free := ra.max - ra.total
	if free < int64(want) && time.Since(ra.counted) >= readAheadRecheck {
		ra.total = s.countReadAhead()
		ra.counted = time.Now()
		free = ra.max - ra.total
	}
	// Count the grant at once, so that forwarders reading at the same time
	// do not all get the same free records; readAheadDone corrects it to
	// what was read.
	n := min(int64(want), max(free, 1))
	ra.total += n
	q.readWindow += n
	q.readGranted = n
	return int(n)
}

// readAheadDone records the end of q's read (items empty when it failed):
// the window now reaches to the last record read.
func (s *Store) readAheadDone(q *queue, items []readItem) {
	ra := &s.readAhead
	q.mu.Lock()
	if len(items) > 0 {
		q.readTo = items[len(items)-1].seq + 1
	}
	window := int64(q.readTo - min(q.readTo, q.head+1))
	q.mu.Unlock()

	ra.mu.Lock()
	ra.total += window - q.readWindow
	q.readWindow = window
	q.readGranted = 0
	ra.mu.Unlock()
}

// countReadAhead recounts every queue's window with its current cursor,
// plus what was granted to reads still under way. Called with
// readAhead.mu held (lock order: readAhead.mu -> queue.mu).
func (s *Store) countReadAhead() int64 {
	var total int64
	for _, q := range s.snapshotQueues() {
		q.mu.Lock()
		q.readWindow = int64(q.readTo-min(q.readTo, q.head+1)) + q.readGranted
		q.mu.Unlock()
		total += q.readWindow
	}
	return total
}
