package buffer

// Fresh records are served from memory. A live event used to be read back
// from Badger by its forwarder (a read transaction, a lookup, a copy and a
// decode) a millisecond after the writer had it in memory. Now whoever
// commits an event (the writer, or Append) hands the encoded record to its
// queue while a forwarder runs on it, and the forwarder takes the records it
// wants next from there; it reads Badger only for what is not there: a
// backlog, the records of before a restart, and after gaps.
//
// The queue keeps at most a window (Config.InFlight) of them, the newest: a
// forwarder that is further behind reads Badger until it reaches them; and
// none while more than two windows wait (keepFresh). A
// record handed over is never written to again (it is not returned to
// recordPool): the Publisher may keep its payload until the result.

// freshStart is the room a queue's kept records start with, and go back to
// once the forwarder has taken them all: a live queue holds one or two at a
// time; a forwarder that falls behind grows it up to the window (InFlight).
// 1 000 queues (device mode, 500 devices) kept 2 KiB each at InFlight 64.
const freshStart = 4

// freshRecord is one committed record kept for the forwarder.
type freshRecord struct {
	seq uint64
	val []byte
}

// keepFresh hands a committed record to q's forwarder, if one runs and is
// at most two windows (2*InFlight: one in flight, one kept) behind the
// queue's tail. It reports whether the record was kept (then val belongs
// to the queue). The caller holds q.mu, with q.count counting this record.
//
// Why the distance: while the broker is down every forwarder waits, and
// each queue kept the newest window of records for it, taken only once
// the forwarder had read the whole backlog before them from Badger: 15-20
// MiB of the heap through an outage at 500 devices (heap profiles,
// docs/performance.md, "Reclamation after the drain"). Behind by more,
// the forwarder reads Badger anyway; it reaches the records kept again
// once it is back within two windows.
func (s *Store) keepFresh(q *queue, seq uint64, val []byte) bool {
	if !q.forwarding {
		return false
	}
	if q.count > 2*int64(s.cfg.InFlight) {
		q.fresh = nil
		return false
	}
	if q.fresh == nil {
		q.fresh = make([]freshRecord, 0, min(s.cfg.InFlight, freshStart))
	}
	if len(q.fresh) >= s.cfg.InFlight {
		// The forwarder is a window behind: it reads the oldest from
		// Badger.
		n := copy(q.fresh, q.fresh[1:])
		q.fresh[n] = freshRecord{}
		q.fresh = q.fresh[:n]
	}
	q.fresh = append(q.fresh, freshRecord{seq: seq, val: val})
	return true
}

// takeFresh appends to items q's kept records from seq from on,
// consecutive, below to and at most max, decoded, and drops every kept
// record below from. next is the seq after the last returned (from when
// none is). The forwarder passes its scratch slice, and each record's topic
// string is the queue's last one when the bytes are equal: at paced load
// a fill allocates nothing here (TestTakeFreshAllocatesNothing), where it
// allocated the slice and the topic per event.
func (s *Store) takeFresh(q *queue, from, to uint64, max int, items []readItem) (_ []readItem, next uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	skip := 0
	for skip < len(q.fresh) && q.fresh[skip].seq < from {
		skip++
	}
	next = from
	n := skip
	for ; n < len(q.fresh) && len(items) < max; n++ {
		r := q.fresh[n]
		if r.seq != next || r.seq >= to {
			break
		}
		it := decodeItemTopic(r.val, r.seq, q.topic)
		q.topic = it.rec.Topic
		items = append(items, it)
		next++
	}
	rest := copy(q.fresh, q.fresh[n:])
	clear(q.fresh[rest:])
	q.fresh = q.fresh[:rest]
	if rest == 0 && cap(q.fresh) > freshStart {
		q.fresh = nil // grown behind a slow forwarder: give it back
	}
	if len(items) > 0 {
		// As a read from Badger does: the oldest waiting event's time for
		// OldestAge (stats.go), and the window's end for the read-ahead
		// bound (readahead.go).
		q.stamps.noteRead(q.head, from, items, max, s.cfg.InFlight)
		if next > q.readTo {
			q.readTo = next
		}
	}
	return items, next
}

// dropFresh forgets q's kept records (its forwarder stopped).
func (q *queue) dropFresh() {
	q.fresh = nil
}
