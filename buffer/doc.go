// Package buffer is the bridge's store-and-forward queue: a Badger-backed,
// per-device FIFO that holds every event from the moment it is produced until
// the broker has acknowledged it.
//
// Place in the pipeline: cmd/bridge hands each event built by mapping to
// the buffer (Store.Enqueue; Store.Append where the caller must know the
// event is stored) and runs one Store.Forward loop per queue, which hands the
// queue's events in order to the uplink (a Publisher) and removes an event
// only after the broker acknowledged it on the connection it was sent on.
// The buffer is the only queue between the stages (style.md C11).
//
// Imports: no other package of ours, no paho, no hcl.
//
// # Guarantees
//
//   - Sequence numbers: Append (and Enqueue) assigns seq, strictly
//     increasing per queue. A seq is consumed when its event is stored, and also when an event
//     built with it could not be kept (ErrDiskFull, a failed write: counted
//     in QueueStats.Failed), so that receivers see the gap. It is not
//     consumed when build fails, the payload is too large, drop_newest
//     refuses the event (counted in Dropped), the writer's channel is full
//     (Enqueue; counted in Dropped) or the Store is closed. Gaps
//     appear only where events were lost: by policy (drop_oldest, max_age:
//     Dropped), for lack of space (Failed), to damage (Corrupt), or after a
//     possible power loss or damaged storage (Skipped); each is logged.
//   - Durability: with Config.Sync = 0 every Append is fsynced before it
//     returns (the writer fsyncs each batch it commits). With Sync > 0
//     (group commit) an appended event survives a crash or kill -9 of the process at once (Badger's write-ahead log is a shared
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
//     Config.InFlight events outstanding (and all forwarders together
//     about DefaultReadAhead, each at least one: readahead.go,
//     TestReadAheadBoundsTheWindows), removes an event only after its
//     Publish result was nil, and on any failure waits for the window to
//     settle and resends from the first unacknowledged event (go-back-N;
//     duplicates are allowed, receivers de-duplicate on seq). The persisted
//     acknowledgement cursor is advanced before the window is refilled, so a
//     kill -9 re-sends at most one window.
//   - Acknowledgements: Forward settles acknowledged events in memory at
//     once (QueueStats.Len, Acked, MaxBytes accounting) and hands the
//     cursor to the writer, which commits the cursors of all queues that
//     have settled events in one transaction with its next batch of
//     events, within DefaultAckDelay (50 ms) when no batch comes, and at
//     once when a forwarder waits for its cursor to refill its window. A
//     forwarder with nothing more to send does not wait. Reclamation never
//     drops records above the persisted cursor. Forward's stop and Close
//     commit what was settled before them.
//   - Fresh records: whoever commits an event (the writer, Append) hands
//     the encoded record to its queue while a forwarder runs on it and at
//     most 2*Config.InFlight events wait (at most Config.InFlight kept, the
//     newest; none while the broker is down or a backlog drains); the
//     forwarder publishes those from memory and reads Badger only for the
//     rest (a backlog, after a restart, after gaps).
//   - Bounds: Config.MaxBytes caps the bytes of waiting events (our own
//     accounting: key plus encoded record; not Badger's lagging estimate) with
//     the OnFull policy: drop_oldest removes the oldest events of the largest
//     queue (so one dead uplink cannot starve the other devices), at least
//     min(MaxBytes/256, 1 MiB) at a time; drop_newest refuses the new event.
//     Concurrent appends to different queues may overshoot the cap by one
//     record each. Config.MaxAge removes events that waited too long (a
//     periodic sweep, and Forward skips expired events it reads).
//     Every event removed or refused by policy is counted (QueueStats) and
//     logged.
//   - Disk space: every Badger write passes a free-space guard (statfs,
//     trusted for at most 100 ms, re-run before every write near the floor)
//     with three floors: new events stop at Config.MinFree (ErrDiskFull),
//     acknowledgements and cursor writes at MinFree/2 (so a full buffer
//     still drains and gives space back), space reclamation at MinFree/4.
//     Badger writes its logs and tables through memory maps; a write into a
//     sparse mapped file on a full file system would kill the process with
//     SIGBUS, so the memory-mapped files are allocated in full when created
//     (third_party/ristretto): the log being written cannot fault however
//     full another process makes the disk.
//   - Memory under a backlog (resident.go): every page of a table that
//     Badger wrote, compacted or read stays mapped, in the process's RSS,
//     until the table is deleted. While more than a memtable's worth of
//     events waits (and once after), every DefaultPageOutEvery the Store
//     drops its tables' pages from the process's page tables
//     (z.DropResident in third_party/ristretto: MADV_DONTNEED on Badger's
//     own shared mappings, under the lock their unmapping takes); they
//     stay in the page cache and come back with a minor fault when read.
//     The fork also keeps at most one idle table builder's memory, not 8
//     grown ones. TestDropTablePages, TestPageOutLoopBoundsTables,
//     TestAllocatorPoolKeepsLittle.
//   - Faults: a record that does not decode is skipped, counted (Corrupt)
//     and logged; it never blocks start-up or delivery. Open never panics and
//     never refuses to start on damaged storage (see the list below); what it
//     recovers from is reported in Stats.Fault and logged at Error.
//   - The writer: Enqueue encodes the event, assigns its seq and hands it
//     over on a bounded channel (Config.writeQueue, DefaultWriteQueue
//     events); one goroutine per Store commits everything waiting, from all
//     queues, in one Badger transaction (at most 1024 events, and 256 KiB or
//     MaxBytes/4),
//     after the disk guard and, under drop_oldest, making room. The caller
//     does not wait for the disk: only when the channel is full does it
//     wait, at most DefaultHandoffWait, and then the event is refused
//     (ErrFull, seq not consumed, counted in Dropped, logged).
//     Append waits for its own commit; while events of its queue wait for
//     the writer (or space reclamation runs) it goes through the writer
//     too, so each queue is committed in seq order. Forward only sees
//     committed events.
//   - Space reclamation does not stop the writer (journal.go): while it
//     holds the gate (Badger's DropPrefix blocks every write for 30-300 ms
//     at 500 queues), the writer appends each batch, exactly the entries
//     it would commit (events, cursors; queue registrations too), as one
//     length- and CRC-32C-framed record to Dir/journal, fsynced per record
//     with Sync = 0 and by the group commit otherwise, and answers it as
//     stored; the forwarders take those events from memory. Reclamation
//     writes the journaled entries into Badger and empties the journal
//     before it releases the gate, so no reader of Badger (they all hold
//     the gate) misses them. Open replays a journal a crash left behind
//     before anything reads (idempotent). At most journalLimit (8 MiB) is
//     journaled per reclamation; past it the writer waits as before.
//   - Counters: QueueCounters and Counters read every counter from memory
//     (no database access; OldestAge is left 0); Lost reads a queue's
//     dropped and failed counts without even its mutex, which the writer
//     holds over its transaction (the per-reading call). Stats also gives
//     OldestAge, from memory for queues being forwarded (the forwarder's
//     reads leave the time of each queue's oldest waiting event there) and
//     with at most statsReadBudget database reads per call for the others;
//     TestStatsOldestAgeWithoutReadingEveryQueue.
//
// # What survives what
//
// "Stored" means committed to Badger: Append returned nil, or, for
// Enqueue, the writer committed the event (QueueStats.Appended counts it;
// Flush returns after every event handed over before it is committed or
// refused). An event Enqueue returned nil for is "accepted": until it is
// committed (normally within a millisecond, longer while Badger stalls) a
// kill -9 loses it; it cannot have been published, so its seq may be
// handed out again. Each statement names the tests that show it.
//
//   - kill -9 at any moment: every stored event is delivered afterwards
//     (or was already), no seq of a stored event is reused, at most one
//     window is re-sent: the acknowledged events whose cursor still waited
//     for the writer and the window in flight are together at most one
//     window, since the window is refilled only once the cursor is
//     committed. TestCrashKill9 (Append), TestCrashKill9Enqueue (Enqueue
//     then Flush), TestCrashKill9LazyAcks (cursors committed only with
//     event batches or when the forwarder waits),
//     TestContract/*/reopen_after_unclean_stop. While space reclamation
//     holds the gate and the writer journals: TestJournalCrashKill9 (the
//     journal is replayed at Open, nothing answered as stored is lost, no
//     seq reused); TestWriterJournalsDuringReclaim (Enqueue, Flush and
//     Append complete, events are published from memory, and are in
//     Badger once reclamation ends).
//   - Acknowledgements share commits: TestAcksShareCommits (100 queues,
//     one event each per round: the cursors ride with the next round's
//     events), TestAckDelayCommitsQuietCursors, TestAcksCommittedOnStopAndClose.
//     Fresh records skip Badger: TestFreshRecordsSkipBadgerReads,
//     TestFreshRecordsForwarderBehind; none kept behind: TestFreshNotKeptBehind.
//   - Close: the writer commits everything accepted before Close returns.
//     TestCloseCommitsEnqueued.
//   - The disk stalls (flush, compaction): Enqueue keeps returning; past
//     the channel's capacity events are refused and counted, never dropped
//     silently. TestEnqueueNeverWaitsForTheDisk. Reclamation holding the
//     gate no longer stalls the writer (the journal, above).
//   - Power loss: with sync = always nothing confirmed is lost; with group
//     commit at most about the last Sync interval, and numbering resumes
//     above the lease (Skipped). TestContract/*/reopen_after_power_loss.
//   - Close and reopen: everything waiting, in order, numbering continues.
//     TestContract/*/reopen_after_close, TestContract/*/seq_not_reused_after_reclaim.
//   - Broker or network outage of any length: events wait within
//     MaxBytes/MaxAge and are delivered in order when it ends.
//     TestContract/*/forward_uplink_down_then_up, TestContract/*/forward_fails_nth_publish.
//     Whole bridge: TestBrokerRestartsLoseNothing (cmd/bridge) restarts a
//     real Mosquitto (SIGKILL and SIGTERM) after short outages in device
//     and gateway mode, and checks through a proxy that every seq got a
//     PUBACK before it left the buffer, and that a durable subscriber got
//     them all after SIGTERM restarts; TestPlatformRestartsLoseNothing does
//     the same with the local platform (OUTAGE_SOAK=<n> for longer runs).
//   - Buffer full: drop_oldest/drop_newest/max_age drop what they must,
//     counted. TestContract/*/drop_newest, TestContract/*/drop_oldest,
//     TestContract/*/drop_oldest_takes_from_largest_queue, TestContract/*/max_age,
//     TestEnqueueDropNewest, TestEnqueueDropOldestLargeBatch.
//   - Disk full (our own writes or another process's): new events are
//     refused with ErrDiskFull, their seqs consumed and counted (Failed, kept
//     in state.json across restarts); delivery goes on while more than
//     MinFree/2 is free and pauses below it; nothing accepted is lost and all
//     resumes when space returns; the writer runs the guard before every
//     batch (TestEnqueueDiskFull), and a batch whose events are refused still
//     commits the cursors waiting for it (TestAcksPassWhenEventsRefused). No SIGBUS. TestDiskFullInjected,
//     TestDiskFullTmpfs, TestDiskFullOtherProcess (a real tmpfs filled by dd
//     while a child process holds a backlog and its broker returns).
//   - A damaged record value (checksum or seq mismatch): skipped and counted
//     at delivery. TestContract/*/corrupt_record_skipped,
//     TestContract/*/corrupt_record_after_reopen, FuzzDecodeRecord.
//   - A damaged table block (.sst data): Open verifies every block; the
//     readable records, cursors and queue names are copied into a new
//     database, the damaged one is moved aside (db.broken-<time>), and the
//     records of the bad block are counted in Corrupt. Without the free space
//     for the copy the database is moved aside whole instead.
//     TestCorruptFiles/sst_block, TestCorruptFiles/sst_block_no_space_to_salvage,
//     FuzzOpenCorrupt.
//   - A damaged table index or MANIFEST: Badger cannot open the database; it
//     is moved aside whole and a new one started, numbering continues above
//     the leases. Its records stay in db.broken-<time>, not delivered.
//     TestCorruptFiles/sst_index, TestCorruptFiles/manifest,
//     TestOpenRecovers/corrupt_manifest.
//   - A damaged value log: set aside (it never holds our records: they are
//     all inline); nothing is lost. TestCorruptFiles/vlog.
//   - A damaged journal (a crash while reclamation ran, then damage): the
//     records before the damage are replayed, the rest dropped, reported
//     in Stats.Fault, numbering resumes above the leases; a record cut
//     short at the end (a write that never finished) is dropped with a
//     warning, numbering also above the leases. A journal write that fails
//     refuses its batch (Failed) and is cut back; the Store then runs
//     without the journal. Disk below MinFree while journaling refuses
//     events as before, nothing journaled is lost. TestJournalReplayAtOpen,
//     TestJournalTornAndDamaged, FuzzJournal, TestJournalWriteFails,
//     TestJournalDiskFull.
//   - A damaged memtable log (the newest events, not yet in a table): the
//     events from the damage on are lost (uncounted: their number cannot be
//     read), reported in Stats.Fault, and numbering resumes above the
//     leases so no seq is reused. TestCorruptMemtableLog.
//   - A panic while loading the queues at Open (the last resort): the
//     database is moved aside. TestLoadPanicMovesAside.
//   - Close on a full disk: no crash; Badger retries flushing its memtable
//     until space returns, then Close completes and nothing is lost.
//     TestCloseOnFullDisk.
//   - state.json lost or unreadable: the events are kept; numbering restarts
//     from a time-based floor. TestOpenRecovers/state_file_lost.
//   - A buffer directory that cannot be used at all: Open falls back to
//     memory (reported). TestOpenRecovers/dir_is_a_file.
//
// Not covered: damage to a table index or MANIFEST loses the records of
// that database for the running bridge (they stay on disk, moved aside);
// a file system with no space at all at start-up makes Open fall back to
// memory (Badger cannot write its lock file), so the backlog on disk waits
// for the next start; a disk filled by another process in the microseconds
// between the guard's statfs and a memtable log rotation can still leave
// that log sparse (see third_party/ristretto/FIELDBRIDGE.md); a table block
// damaged while the bridge runs (after Open's check) ends the reads of its
// table early, so the records behind it can be skipped uncounted until the
// next start finds the damage.
//
// # On-disk layout
//
// Dir/state.json holds the seq leases and the clean-shutdown flag; Dir/db is
// the Badger database; Dir/journal is the side journal (empty except while
// space reclamation runs, or after a crash during one). Keys are fixed width and big-endian so that byte order
// is numeric order:
//
//	0x00 'f'                     format version (uint32)
//	0x01 <queue name>            queue id (uint32), assigned on first use
//	0x02 <qid:4>                 head cursor (uint64): every seq <= head is gone
//	0x10 <qid:4> <seq:8>         one event record (see record.go)
//
// Acknowledging or dropping events only advances the head cursor (one small
// write per batch, for acknowledgements shared by every queue in the
// writer's transaction; no per-record tombstones); readers seek straight to
// head+1 and never walk removed keys. Space is reclaimed deliberately: a
// background task (once a minute, sooner when an eighth of MaxBytes was
// removed, or just before Badger's memtable fills while it is mostly
// acknowledged, so that acknowledged events never reach a table; not while
// a backlog larger than a memtable drains, as each call would rewrite the
// whole backlog's tables: then once it is gone, or sooner when waiting and
// acknowledged events reach 2*MaxBytes or less than 2*MinFree is free) pauses
// Badger's writes (the writer journals meanwhile) and calls Badger's DropPrefix for the whole key
// range of every empty queue and, for queues with a backlog, for the aligned
// blocks of 256 seqs at or below the cursor (merged into blocks of 65 536 or
// more where possible). See docs/performance-buffer.md for why this beats
// batched per-record deletes.
//
// # Concurrency
//
// All methods of Store are safe for concurrent use. At most one Forward may
// run per queue at a time. Appends to different queues proceed in parallel;
// appends to one queue are serialised. Enqueue's commits are serialised in
// the one writer goroutine, which Close waits for.
package buffer
