// Package buffer is the bridge's store-and-forward queue: a Badger-backed,
// per-device FIFO that holds every event from the moment it is produced until
// the broker has acknowledged it.
//
// Place in the pipeline: cmd/bridge appends each event built by mapping
// (Store.Append) and runs one Store.Forward loop per queue, which hands the
// queue's events in order to the uplink (a Publisher) and removes an event
// only after the broker acknowledged it on the connection it was sent on.
// The buffer is the only queue between the stages (style.md C11).
//
// Imports: no other package of ours, no paho, no hcl.
//
// # Guarantees
//
//   - Sequence numbers: Append assigns seq, strictly increasing per queue and
//     never reused, across restarts, kill -9, reclamation and power loss. A
//     seq is consumed only when its event is stored; gaps appear only where
//     events were lost by policy (drop_oldest, max_age, a corrupt record) or
//     after a power loss with group commit (see below); each is counted in
//     QueueStats (Dropped, Corrupt, Skipped) and logged.
//   - Durability: with Config.Sync = 0 every Append is fsynced before it
//     returns. With Sync > 0 (group commit) an appended event survives a crash
//     or kill -9 of the process at once (Badger's write-ahead log is a shared
//     memory mapping), and a power cut loses about the last Sync interval
//     (Badger syncs only its active memtable log; a memtable that filled up
//     in between is durable once flushed to a table, normally within a
//     second). Forward publishes without waiting for the fsync, so live
//     events go out within milliseconds; an event lost locally by a power cut
//     may therefore already be at the platform. To keep seq from being reused
//     after such a loss, seq numbers are leased in blocks of 65 536 recorded
//     in a small fsynced state file (state.json); after a power loss (an
//     unclean-shutdown flag plus a changed kernel boot id) numbering resumes
//     above the lease, leaving a logged gap. After a plain kill -9 (same
//     boot) numbering continues without a gap.
//   - Delivery: at least once, in order per queue. Forward keeps at most
//     Config.InFlight events outstanding, removes an event only after its
//     Publish result was nil, and on any failure waits for the window to
//     settle and resends from the first unacknowledged event (go-back-N;
//     duplicates are allowed, receivers de-duplicate on seq). The persisted
//     acknowledgement cursor is advanced before the window is refilled, so a
//     kill -9 re-sends at most one window.
//   - Bounds: Config.MaxBytes caps the bytes of waiting events (our own
//     accounting: key plus encoded record; not Badger's lagging estimate) with
//     the OnFull policy: drop_oldest removes the oldest events of the largest
//     queue (so one dead uplink cannot starve the other devices), at least
//     min(MaxBytes/256, 1 MiB) at a time; drop_newest refuses the new event.
//     Concurrent appends to different queues may overshoot the cap by one
//     record each. Config.MaxAge removes events that waited too long (a
//     periodic sweep, and Forward skips expired events it reads).
//     Every event removed or refused by policy is counted (QueueStats) and
//     logged. A free-space guard (statfs) refuses appends with ErrDiskFull
//     before the file system fills up, because Badger writes through memory
//     maps and a full disk would kill the process with SIGBUS.
//   - Faults: a corrupt record is skipped, counted and logged; it never
//     blocks start-up or delivery. A Badger directory that cannot be opened is
//     moved aside (db.broken-<time>) and a fresh one created; a buffer
//     directory that cannot be used at all makes Open fall back to an
//     in-memory store. Both are reported in Stats.Fault and logged at Error.
//
// # On-disk layout
//
// Dir/state.json holds the seq leases and the clean-shutdown flag; Dir/db is
// the Badger database. Keys are fixed width and big-endian so that byte order
// is numeric order:
//
//	0x00 'f'                     format version (uint32)
//	0x01 <queue name>            queue id (uint32), assigned on first use
//	0x02 <qid:4>                 head cursor (uint64): every seq <= head is gone
//	0x10 <qid:4> <seq:8>         one event record (see record.go)
//
// Acknowledging or dropping events only advances the head cursor (one small
// write per batch, no per-record tombstones); readers seek straight to
// head+1 and never walk removed keys. Space is reclaimed deliberately: a
// background task (once a minute, or sooner when an eighth of MaxBytes was
// removed) pauses writes and calls Badger's DropPrefix for the whole key
// range of every empty queue and, for queues with a backlog, for the aligned
// blocks of 256 seqs at or below the cursor (merged into blocks of 65 536 or
// more where possible). See docs/performance-buffer.md for why this beats
// batched per-record deletes.
//
// # Concurrency
//
// All methods of Store are safe for concurrent use. At most one Forward may
// run per queue at a time. Appends to different queues proceed in parallel;
// appends to one queue are serialised.
package buffer
