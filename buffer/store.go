package buffer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
)

// Store is the store-and-forward buffer: one FIFO queue per device stream in
// a single Badger database. Create it with Open; it is safe for concurrent
// use.
type Store struct {
	cfg        Config
	log        *slog.Logger
	db         *badger.DB
	dir        string // the state directory (Config.Dir); "" in memory
	persistent bool   // false in memory, including the fallback

	// gate orders every Badger write and every forward read against
	// DropPrefix, Flatten and Close, which take it exclusively (Badger
	// refuses writes while it drops a prefix). Lock order:
	// queue.appendMu -> capMu -> gate -> queue.mu.
	gate   sync.RWMutex
	closed bool // under gate

	// The side journal (journal.go): while reclamation holds the gate the
	// writer journals its batches instead of waiting. Reclamation sets
	// journaling under jmu before it takes the gate and clears it after
	// writing the journaled entries into Badger, before it releases the
	// gate. The writer holds jmu from its check of journaling until it
	// holds the gate (or has journaled), so it never waits for a
	// journaling reclamation's gate. Lock order: gate -> jmu for
	// reclamation; the writer takes jmu -> gate only while journaling is
	// false, and whoever then holds the gate exclusively never takes jmu
	// (Close takes the gate after the writer exited, flattenWhenEmpty and
	// a reclamation without a usable journal do not touch jmu). Queue
	// registration (Store.queue) journals its name entry the same way,
	// under s.mu: s.mu -> jmu -> gate.
	jmu        sync.Mutex
	reclaimMu  sync.Mutex  // serialises reclaim (maint.go)
	journaling bool        // under jmu
	reclaiming atomic.Bool // journaling, readable without jmu (Append)
	jrn        *journal    // under jmu
	jrnBody    []byte      // the writer's scratch for a journal record

	mu      sync.RWMutex // guards queues and nextQID
	queues  map[string]*queue
	nextQID uint32

	capMu sync.Mutex   // serialises making room under MaxBytes
	total atomic.Int64 // bytes of waiting events, all queues
	// statsReads counts the database reads Stats and QueueStats made for
	// OldestAge (tests check that a scrape does not read every queue).
	statsReads atomic.Int64
	readAhead  readAhead // bounds the forwarders' windows together (readahead.go)

	leaseMu     sync.Mutex // guards state and stateClosed; serialises state.json writes
	state       stateFile
	stateClosed bool
	startSeq    map[string]uint64 // minimal next seq per queue decided at Open
	seqFloor    uint64            // minimal next seq for every queue (lost state)
	salvaged    map[string]uint64 // records lost to damage found at Open, per queue

	dirty       atomic.Bool  // written since the last group-commit sync
	syncTimer   *time.Timer  // armed by markDirty; syncLoop receives (sync.go)
	failedDirty atomic.Bool  // a Failed counter moved since state.json was written
	removed     atomic.Int64 // bytes acknowledged or dropped since the last reclamation
	memFill     atomic.Int64 // estimate of Badger's active memtable fill (maint.go, noteWritten)
	reclaimNow  chan struct{}
	dropChunk   int64 // drop_oldest removes at least this many bytes at a time

	disk diskGuard

	// The writer (writer.go): Enqueue hands events over on wch; one
	// goroutine commits them in batches. handoffMu orders hand-overs against
	// Close, which closes wch under it exclusively.
	wch           chan pendingEvent
	handoffMu     sync.RWMutex
	handoffClosed bool         // under handoffMu
	pendingBytes  atomic.Int64 // bytes handed over, not yet committed or refused

	// Acknowledgement cursors waiting for the writer (writer.go): a
	// forwarder settles its acknowledged events in memory at once and
	// leaves the cursor write to the writer, which commits the cursors of
	// every queue in ackSet together, with its next batch of events or
	// after ackDelay (ackTimer), or at once when a forwarder waits (ackNow).
	ackMu       sync.Mutex
	ackSet      []*queue      // under ackMu; queue.inAckSet marks membership
	ackNow      chan struct{} // capacity 1: a forwarder waits for its cursor
	ackTimer    *time.Timer   // Reset and Stop under ackMu; the writer receives from C
	ackArmed    bool          // under ackMu: ackTimer runs for the cursors in ackSet
	ackTimerSet atomic.Uint64 // for tests: how often ackTimer was armed

	// For tests: Badger write transactions of events and cursors, and
	// forward reads from Badger.
	commits atomic.Uint64
	reads   atomic.Uint64
	// For tests: how often the writer woke up (writeLoop).
	writerWakes atomic.Uint64
	syncWakes   atomic.Uint64 // syncLoop

	faultMu    sync.Mutex
	fault      string
	faultSince time.Time

	done      chan struct{} // closed by Close
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// queue is the in-memory state of one queue. Records live at seqs in
// (head, tail); some of those seqs may have no record (a gap left by a power
// loss or a corrupt key), which count and bytes reflect.
type queue struct {
	name   string
	qid    uint32
	prefix []byte
	notify chan struct{} // capacity 1: "something was appended"

	appendMu sync.Mutex // serialises appends; guards lease
	lease    uint64     // seqs below are covered by state.json

	// pending counts events handed to the writer and not yet committed or
	// refused; while it is above zero Append goes through the writer too,
	// so that a queue's events are committed in seq order.
	pending atomic.Int64

	mu   sync.Mutex // guards everything below
	head uint64     // every seq <= head is removed (acknowledged or dropped)
	// persisted is the cursor committed to Badger (<= head). Between the
	// two are acknowledged events whose cursor waits for the writer: they
	// are counted as removed already but stay on disk (reclamation stops
	// at persisted), and a kill -9 sends them again.
	persisted uint64
	ackErr    error         // the writer's last attempt to commit the cursor failed
	ackWait   chan struct{} // closed after the writer's next attempt to commit the cursor
	ackKeys   [][]byte      // deletes strategies: keys of acknowledged records, deleted with the cursor
	inAckSet  bool          // in Store.ackSet; under Store.ackMu, not mu
	// tail is one past the last seq committed (or refused): readers see
	// records below it only. next is the seq the next Append or Enqueue
	// gets (changed under appendMu too); next > tail while events wait for
	// the writer.
	tail        uint64
	next        uint64
	count       int64
	bytes       int64
	reclaimedTo uint64 // keys <= reclaimedTo are physically gone (best effort)
	forwarding  bool
	fresh       []freshRecord // committed records for the forwarder, in seq order (fresh.go)
	topic       string        // topic of the last record takeFresh decoded, reused while equal
	// stamps knows when recent records were appended, for OldestAge
	// without a database read (stats.go).
	stamps stamps
	// readTo is one past the last record the forwarder read; readWindow
	// and readGranted are what this queue counts in the read-ahead total
	// and what its read under way was granted (readahead.go).
	readTo      uint64
	readWindow  atomic.Int64
	readGranted atomic.Int64

	appended, acked, droppedAge, corrupt uint64
	skipped                              uint64 // seqs skipped at Open
	dropLog                              rateLog
	// dropped and failed change under mu like the counters above, but are
	// atomic so that Lost reads them without mu, which the writer holds
	// over its Badger transaction (lockCursors).
	dropped, failed atomic.Uint64
}

type diskGuard struct {
	mu      sync.Mutex
	free    int64 // estimate: last statfs minus what we wrote since
	checked time.Time
	full    bool
}

// rateLog throttles a repeated warning to one line per interval with the
// count in between.
type rateLog struct {
	last    time.Time
	pending uint64
}

// Open opens or creates the buffer in cfg.Dir (or in memory). It does not
// block start-up on damaged storage: a Badger directory that cannot be
// opened is moved aside and recreated, and a directory that cannot be used
// at all makes the Store fall back to memory; both are logged at Error and
// reported in Stats().Fault. Open returns an error only for an invalid
// Config, a database in use by another process, or a database written by a
// newer format.
func Open(cfg Config, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	s := &Store{
		cfg:        cfg,
		log:        logger,
		queues:     map[string]*queue{},
		nextQID:    1,
		reclaimNow: make(chan struct{}, 1),
		dropChunk:  min(cfg.MaxBytes/256, 1<<20),
		done:       make(chan struct{}),
		wch:        make(chan pendingEvent, cfg.writeQueue),
		ackNow:     make(chan struct{}, 1),
		ackTimer:   stoppedTimer(),
		syncTimer:  stoppedTimer(),
		readAhead:  readAhead{max: int64(cfg.ReadAhead)},
	}
	if cfg.InMemory {
		db, err := s.openBadger("")
		if err != nil {
			return nil, fmt.Errorf("buffer: open in-memory store: %v", err)
		}
		s.db = db
	} else if err := s.openDisk(); err != nil {
		_ = s.jrn.close()
		return nil, err
	}
	if !s.persistent {
		s.jrn = &journal{} // in memory: the journal's copy in memory is all
	}
	if err := s.loadOrRecover(); err != nil {
		_ = closeQuietly(s.db)
		_ = s.jrn.close()
		return nil, err
	}
	if s.persistent {
		s.leaseMu.Lock()
		s.state.Clean = false
		s.state.BootID = bootID()
		s.state.SyncAlways = cfg.Sync == 0
		// Lease a block for every known queue now, in this one write,
		// rather than one fsynced write per queue on its first Append.
		for _, q := range s.queues {
			q.lease = q.tail + cfg.leaseBlock
			s.state.Leases[q.name] = q.lease
		}
		qs := make([]*queue, 0, len(s.queues))
		for _, q := range s.queues {
			qs = append(qs, q)
		}
		s.state = withFailed(s.state, qs)
		err := writeState(s.dir, s.state)
		if err != nil {
			for _, q := range s.queues {
				q.lease = 0 // not recorded: renew on the next Append
			}
		}
		s.leaseMu.Unlock()
		if err != nil {
			// Appends will retry through the lease; report and go on.
			s.setFault(fmt.Sprintf("cannot write %s: %v", stateName, err))
			s.log.Error("buffer state file not writable", "path", filepath.Join(s.dir, stateName), "err", err)
		}
	}
	s.wg.Add(1)
	go s.writeLoop()
	if !cfg.noBackground {
		s.wg.Add(1)
		go s.maintain()
		if s.persistent && cfg.Sync > 0 {
			s.wg.Add(1)
			go s.syncLoop()
		}
		if s.persistent && cfg.pageOutEvery > 0 {
			s.wg.Add(1)
			go s.pageOutLoop() // resident.go
		}
	}
	return s, nil
}

// openDisk opens Dir/db, recovering from what can be recovered.
func (s *Store) openDisk() error {
	dir := s.cfg.Dir
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return s.fallBackToMemory(fmt.Sprintf("buffer directory unusable: %v", err))
	}
	// Leftovers of a crash in the middle of writeState or writeProbe.
	for _, pattern := range []string{stateName + ".tmp*", ".probe*"} {
		leftovers, _ := filepath.Glob(filepath.Join(dir, pattern))
		for _, f := range leftovers {
			_ = os.Remove(f)
		}
	}
	st, stErr := readState(dir)
	dbDir := filepath.Join(dir, "db")
	_, statErr := os.Stat(dbDir)
	dbExisted := statErr == nil
	// Probe that we can write in dir at all (read-only or unwritable mounts).
	if err := writeProbe(dir); err != nil {
		return s.fallBackToMemory(fmt.Sprintf("buffer directory not writable: %v", err))
	}

	// quarantined: records may have been lost, number above the leases.
	// replaced: the database was moved aside and a new one started.
	quarantined, replaced := false, false
	damaged := damagedLogs(dbDir) // before Badger replays (and truncates) them
	s.cfg.memTableSizeMiB = memTableMiBFor(dbDir, s.cfg.memTableSizeMiB)
	db, err := s.openBadger(dbDir)
	if err != nil && isLockErr(err) {
		return fmt.Errorf("buffer: %s is in use by another process", dbDir)
	}
	for name, end := range damaged {
		quarantined = true
		s.log.Error("buffer memtable log damaged; the events written after the damage are lost, numbering resumes above the last lease",
			"file", name, "offset", end)
		s.setFault(fmt.Sprintf("memtable log %s damaged at offset %d, newer events lost", name, end))
	}
	if err != nil {
		var setAside bool
		if db, setAside, err = s.setAsideLogs(dbDir, err); setAside {
			quarantined = true
		}
	}
	if err != nil {
		if db, err = s.replaceBroken(dbDir, err); err != nil {
			return s.fallBackToMemory(err.Error())
		}
		quarantined, replaced = true, true
	}
	if !replaced {
		if damage := checkDB(db); damage != nil {
			// salvage counts what it lost at the end of a queue from
			// the leases (set again below).
			s.state = st
			if db, err = s.salvage(dbDir, db, damage); err != nil {
				s.log.Error("buffer salvage failed", "err", err)
				if db, err = s.replaceBroken(dbDir, damage); err != nil {
					return s.fallBackToMemory(err.Error())
				}
			}
			quarantined = true
		}
	}
	if s.loadJournal(db, replaced) {
		quarantined = true
	}
	s.db = db
	s.dir = dir
	s.persistent = true

	switch {
	case stErr == nil:
		s.state = st
		lost := !st.Clean && !st.SyncAlways && (st.BootID == "" || st.BootID != bootID())
		if st.Clean || lost || quarantined {
			s.startSeq = make(map[string]uint64, len(st.Leases))
			for name, l := range st.Leases {
				s.startSeq[name] = l
			}
		}
		if lost {
			s.log.Warn("buffer was not closed cleanly after a possible power loss; seq numbering resumes above the last lease",
				"boot_id_before", st.BootID)
		}
	case errors.Is(stErr, fs.ErrNotExist) && !dbExisted:
		// A fresh buffer.
		s.state = stateFile{Leases: map[string]uint64{}}
	default:
		// The database exists (or existed) but the leases are unknown:
		// number above anything a counter could have reached.
		s.state = stateFile{Leases: map[string]uint64{}}
		s.seqFloor = timeFloor()
		s.log.Error("buffer state file missing or unreadable; seq numbering restarts from a time-based floor",
			"path", filepath.Join(dir, stateName), "err", stErr, "seq_floor", s.seqFloor)
		s.setFault(fmt.Sprintf("%s unreadable: %v", stateName, stErr))
	}
	return nil
}

// replaceBroken handles a database that Badger refuses to open (openErr).
// It first opens a fresh database with the same options next to it: only if
// that works is the fault in the data, and the old directory is moved aside
// (never deleted) and the fresh one takes its place.
func (s *Store) replaceBroken(dbDir string, openErr error) (*badger.DB, error) {
	fresh := dbDir + ".new"
	if err := os.RemoveAll(fresh); err != nil {
		return nil, fmt.Errorf("cannot open database (%v) nor prepare a new one: %v", openErr, err)
	}
	fdb, err := s.openBadger(fresh)
	if err != nil {
		_ = os.RemoveAll(fresh)
		return nil, fmt.Errorf("cannot open database (%v) nor create a new one: %v", openErr, err)
	}
	if err := fdb.Close(); err != nil {
		return nil, fmt.Errorf("cannot open database (%v) nor create a new one: %v", openErr, err)
	}
	broken := dbDir + ".broken-" + time.Now().UTC().Format("20060102T150405Z")
	if err := os.Rename(dbDir, broken); err != nil {
		return nil, fmt.Errorf("cannot open database (%v) nor move it aside: %v", openErr, err)
	}
	if err := os.Rename(fresh, dbDir); err != nil {
		return nil, fmt.Errorf("cannot put a new database in place: %v", err)
	}
	s.log.Error("buffer database unreadable, moved it aside and started empty",
		"path", dbDir, "moved_to", broken, "err", openErr)
	s.setFault(fmt.Sprintf("database unreadable (%v), moved to %s", openErr, broken))
	db, err := s.openBadger(dbDir)
	if err != nil {
		return nil, fmt.Errorf("cannot open the new database: %v", err)
	}
	return db, nil
}

// fallBackToMemory makes the Store an in-memory one after the directory
// proved unusable, so that polling goes on. Nothing is persisted; seq starts
// from a time-based floor so that it cannot collide with seqs issued before.
func (s *Store) fallBackToMemory(why string) error {
	s.log.Error("buffer falls back to memory; events will not survive a restart", "dir", s.cfg.Dir, "reason", why)
	s.setFault(why + "; running in memory")
	db, err := s.openBadger("")
	if err != nil {
		return fmt.Errorf("buffer: open in-memory fallback: %v", err)
	}
	s.db = db
	s.persistent = false
	s.seqFloor = timeFloor()
	return nil
}

// timeFloor is a seq floor for when the leases are lost: the current time in
// microseconds, far above any counter that started at 1.
func timeFloor() uint64 { return uint64(time.Now().UnixMicro()) }

func writeProbe(dir string) error {
	f, err := os.CreateTemp(dir, ".probe*")
	if err != nil {
		return err
	}
	name := f.Name()
	cerr := f.Close()
	rerr := os.Remove(name)
	return firstErr(cerr, rerr)
}

func isLockErr(err error) bool {
	return errors.Is(err, syscall.EWOULDBLOCK) || strings.Contains(err.Error(), "Cannot acquire directory lock")
}

// memTableMiBFor is the memtable size to open dbDir with: at least want,
// and large enough to replay every memtable log left in it. Badger replays
// a leftover log (after a kill or power cut) into one memtable arena, which
// panics if the log holds more than the memtable it was written with; so a
// smaller size (a new default, or a leftover of an older version) takes
// effect only once the logs were flushed. A log Badger has not replayed yet
// is allocated at twice the memtable size (untouched since it was created:
// a whole number of MiB); a replayed one is truncated to its data, which is
// at most about the memtable size, so its whole size is taken then.
func memTableMiBFor(dbDir string, want int64) int64 {
	logs, _ := filepath.Glob(filepath.Join(dbDir, "*.mem"))
	for _, name := range logs {
		fi, err := os.Stat(name)
		if err != nil {
			continue
		}
		size := fi.Size()
		need := size // truncated by a replay: the data is the whole file
		if size%(1<<20) == 0 {
			need = size / 2 // as created: twice the memtable size
		}
		want = max(want, (need+1<<20-1)>>20)
	}
	return want
}

// badgerOptions is the small-box profile (anchors-reliability.md §2.2).
func (s *Store) badgerOptions(dir string) badger.Options {
	mt := s.cfg.memTableSizeMiB << 20
	var o badger.Options
	if dir == "" {
		o = badger.DefaultOptions("").WithInMemory(true)
	} else {
		o = badger.DefaultOptions(dir).WithSyncWrites(s.cfg.Sync == 0)
	}
	// Every level's tables BaseTableSize (2 MiB), not 2x more per level: a
	// table builder holds 2x its table and more in the Go heap, and a
	// compaction runs several at once; with the 8 MiB tables of the deeper
	// levels under a growing backlog those were the RSS's peaks
	// (docs/performance.md, "Memory while the broker is down").
	o.TableSizeMultiplier = 1
	return o.
		// Memtables dominate RAM (~1.3x each); MemTableSize must not shrink
		// between runs on a directory with a leftover .mem log.
		WithMemTableSize(mt).WithNumMemtables(2).
		WithNumLevelZeroTables(2).WithNumLevelZeroTablesStall(4).
		// Every record (< 200 KiB) stays inline in the LSM: no value log
		// GC, none of the vlog-only bugs. Badger caps the threshold at 1 MiB
		// and at 15% of the memtable (its largest batch).
		WithValueThreshold(min(1<<20, mt*15/100-1024)).
		// The smallest value log Badger allows: it is never written (see
		// above) but is created, and allocated in full (third_party/ristretto).
		WithValueLogFileSize(1 << 20).
		// A damaged table block is an error, not garbage or a panic in
		// Badger's block iterator; Open verifies every block (checkDB).
		WithChecksumVerificationMode(options.OnBlockRead).
		// A FIFO reads each block about once: no block cache, and hence no
		// compression (Badger panics on compression without a cache).
		WithCompression(options.None).WithBlockCacheSize(0).
		WithIndexCacheSize(4 << 20).
		WithNumCompactors(2).WithNumGoroutines(1).
		WithDetectConflicts(false).WithMetricsEnabled(false).
		WithCompactL0OnClose(true).
		WithLogger(badgerLogger{s.log.With("subsystem", "badger")})
}

// openBadger opens Badger, turning a panic on damaged files into an error.
func (s *Store) openBadger(dir string) (db *badger.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			db, err = nil, fmt.Errorf("badger panicked on open: %v", r)
		}
	}()
	return badger.Open(s.badgerOptions(dir))
}

// loadOrRecover runs load. A panic in it (Badger on damage that the checks
// in openDisk did not catch) is the last resort: the database is moved
// aside, numbering resumes above the leases, and the fresh one is loaded.
func (s *Store) loadOrRecover() error {
	panicked, err := s.loadSafely()
	if !panicked || !s.persistent {
		return err
	}
	_ = closeQuietly(s.db)
	s.queues, s.nextQID = map[string]*queue{}, 1
	s.total.Store(0)
	s.removed.Store(0)
	s.startSeq = make(map[string]uint64, len(s.state.Leases))
	for name, l := range s.state.Leases {
		s.startSeq[name] = l
	}
	db, rerr := s.replaceBroken(filepath.Join(s.dir, "db"), err)
	if rerr != nil {
		if err := s.fallBackToMemory(rerr.Error()); err != nil {
			return err
		}
	} else {
		s.db = db
	}
	_, err = s.loadSafely()
	return err
}

func (s *Store) loadSafely() (panicked bool, err error) {
	defer func() {
		if r := recover(); r != nil {
			panicked, err = true, fmt.Errorf("panic while loading the queues: %v", r)
		}
	}()
	return false, s.load()
}

// load reads the queue registry and cursors and recounts every queue.
func (s *Store) load() error {
	txn := s.db.NewTransaction(false)
	defer txn.Discard()

	item, err := txn.Get(keyFormat)
	write := errors.Is(err, badger.ErrKeyNotFound)
	if err == nil {
		v, verr := item.ValueCopy(nil)
		switch {
		case verr != nil || len(v) != 4:
			s.log.Warn("buffer format version key damaged; rewriting it")
			write = true
		case binary.BigEndian.Uint32(v) > formatVersion:
			return fmt.Errorf("buffer: database has newer format %d (this build reads %d)", binary.BigEndian.Uint32(v), formatVersion)
		}
	} else if !write {
		return fmt.Errorf("buffer: read format version: %v", err)
	}
	if write {
		err := s.checkDisk(writeCursor, 0)
		if err == nil {
			err = s.db.Update(func(txn *badger.Txn) error {
				return txn.Set(keyFormat, binary.BigEndian.AppendUint32(nil, formatVersion))
			})
		}
		if err != nil {
			s.noteWriteError(err) // appends will report it too
		}
	}

	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pfxName}})
	for it.Rewind(); it.Valid(); it.Next() {
		v, err := it.Item().ValueCopy(nil)
		if err != nil || len(v) != 4 {
			s.log.Warn("buffer queue registry entry damaged; skipped", "key", fmt.Sprintf("%x", it.Item().Key()))
			continue
		}
		name := string(it.Item().Key()[1:])
		q := newQueue(name, binary.BigEndian.Uint32(v))
		q.failed.Store(s.state.Failed[name])
		s.queues[name] = q
		s.nextQID = max(s.nextQID, q.qid+1)
	}
	it.Close()

	for _, q := range s.queues {
		if err := s.loadQueue(txn, q); err != nil {
			return err
		}
		s.total.Add(q.bytes)
		if q.reclaimedTo < q.head {
			s.removed.Add(1) // removed before the restart, not reclaimed yet
		}
	}
	return nil
}

func newQueue(name string, qid uint32) *queue {
	return &queue{
		name:   name,
		qid:    qid,
		prefix: queuePrefix(qid),
		notify: make(chan struct{}, 1),
		tail:   1,
		next:   1,
	}
}

func (s *Store) loadQueue(txn *badger.Txn, q *queue) error {
	if s.cfg.loadFault != nil {
		s.cfg.loadFault(q.name)
	}
	item, err := txn.Get(headKey(q.qid))
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
	case err != nil:
		return fmt.Errorf("buffer: read cursor of %q: %v", q.name, err)
	default:
		v, err := item.ValueCopy(nil)
		if err != nil || len(v) != 8 {
			s.log.Warn("buffer cursor damaged; delivering the queue from its oldest record", "queue", q.name)
		} else {
			q.head = binary.BigEndian.Uint64(v)
		}
	}
	q.persisted = q.head

	it := txn.NewIterator(badger.IteratorOptions{Prefix: q.prefix})
	defer it.Close()
	first, last := uint64(0), uint64(0)
	it.Rewind()
	if it.Valid() {
		if seq, ok := parseEventKey(it.Item().Key()); ok {
			first = seq
		}
	}
	for it.Seek(eventKey(q.qid, q.head+1)); it.Valid(); it.Next() {
		seq, ok := parseEventKey(it.Item().Key())
		if !ok {
			continue
		}
		q.count++
		q.bytes += keyLen + it.Item().ValueSize()
		last = seq
	}
	switch {
	case first == 0:
		q.reclaimedTo = q.head
	default:
		q.reclaimedTo = first - 1
	}
	exact := max(last, q.head) + 1
	q.tail = max(exact, s.startSeq[q.name], s.seqFloor, 1)
	q.lease = s.state.Leases[q.name]
	q.next = q.tail
	q.skipped = q.tail - exact
	q.corrupt = s.salvaged[q.name]
	if q.tail > exact && exact > 1 {
		s.log.Warn("buffer seq gap at start-up: earlier numbers may have been issued before an unclean stop",
			"queue", q.name, "from_seq", exact, "to_seq", q.tail-1)
	}
	return nil
}

// queue returns the named queue, registering it on first use.
func (s *Store) queue(name string) (*queue, error) {
	s.mu.RLock()
	q := s.queues[name]
	s.mu.RUnlock()
	if q != nil {
		return q, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if q = s.queues[name]; q != nil {
		return q, nil
	}
	q = newQueue(name, s.nextQID)
	q.tail = max(s.startSeq[name], s.seqFloor, 1)
	q.next = q.tail
	s.leaseMu.Lock()
	q.lease = s.state.Leases[name]
	q.failed.Store(s.state.Failed[name])
	s.leaseMu.Unlock()
	if err := s.checkDisk(writeCursor, int64(len(name))+16); err != nil {
		return nil, err
	}
	put := func(kv kvWriter) error {
		return kv.Set(nameKey(name), binary.BigEndian.AppendUint32(nil, q.qid))
	}
	var err error
	// During a reclamation the name is journaled, as the writer's batches
	// are: s.mu is held here, and every Enqueue would wait behind it.
	if s.enterWrite(int64(len(name)) + 16) {
		err = s.journalBatch(put)
		s.jmu.Unlock()
	} else {
		if s.closed {
			err = ErrClosed
		} else {
			err = s.db.Update(func(txn *badger.Txn) error { return put(txn) })
		}
		s.gate.RUnlock()
	}
	if err != nil {
		if errors.Is(err, ErrClosed) {
			return nil, err
		}
		return nil, fmt.Errorf("buffer: register queue %q: %v", name, err)
	}
	s.nextQID++
	s.queues[name] = q
	return q, nil
}

// snapshotQueues returns the queues in no particular order.
func (s *Store) snapshotQueues() []*queue {
	s.mu.RLock()
	defer s.mu.RUnlock()
	qs := make([]*queue, 0, len(s.queues))
	for _, q := range s.queues {
		qs = append(qs, q)
	}
	return qs
}

func (s *Store) isClosed() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// Close stops the background work, syncs and closes the database, and marks
// the shutdown clean. It is idempotent; later calls return the first
// result. Forward loops still running return ErrClosed.
func (s *Store) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.close() })
	return s.closeErr
}

func (s *Store) close() error {
	close(s.done)
	// No hand-over after this; the writer commits what it has, then exits.
	s.handoffMu.Lock()
	s.handoffClosed = true
	close(s.wch)
	s.handoffMu.Unlock()
	s.wg.Wait()
	s.gate.Lock()
	s.closed = true
	s.gate.Unlock()

	var errs []error
	if s.persistent {
		if err := s.db.Sync(); err != nil {
			errs = append(errs, fmt.Errorf("sync: %v", err))
		}
	}
	if err := s.db.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close database: %v", err))
	}
	s.jmu.Lock()
	if s.jrn != nil && len(s.jrn.buf) > 0 {
		// Reclamation could not write it into Badger: Open replays it.
		errs = append(errs, fmt.Errorf("journal of %d bytes left for the next start", len(s.jrn.buf)))
	}
	if err := s.jrn.syncFile(); err != nil {
		errs = append(errs, fmt.Errorf("sync journal: %v", err))
	}
	if err := s.jrn.close(); err != nil {
		errs = append(errs, fmt.Errorf("close journal: %v", err))
	}
	s.jmu.Unlock()
	qs := s.snapshotQueues() // before leaseMu: lock order is mu -> leaseMu
	s.leaseMu.Lock()
	defer s.leaseMu.Unlock()
	s.stateClosed = true
	if s.persistent {
		st := s.state
		st.Leases = make(map[string]uint64, len(s.state.Leases))
		for name, l := range s.state.Leases {
			st.Leases[name] = l
		}
		for _, q := range qs {
			q.mu.Lock()
			st.Leases[q.name] = max(q.tail, q.next)
			q.mu.Unlock()
		}
		st = withFailed(st, qs)
		st.Clean = len(errs) == 0
		if err := writeState(s.dir, st); err != nil {
			errs = append(errs, fmt.Errorf("write %s: %v", stateName, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("buffer: close: %w", errors.Join(errs...))
	}
	return nil
}

// renewLease records in state.json that seqs up to seq+leaseBlock may be
// handed out, before seq is. The caller holds q.appendMu.
func (s *Store) renewLease(q *queue, seq uint64) error {
	qs := s.snapshotQueues() // before leaseMu: lock order is mu -> leaseMu
	s.leaseMu.Lock()
	defer s.leaseMu.Unlock()
	if s.stateClosed {
		return ErrClosed
	}
	bound := seq + s.cfg.leaseBlock
	st := withFailed(s.state, qs)
	st.Leases = make(map[string]uint64, len(s.state.Leases)+1)
	for name, l := range s.state.Leases {
		st.Leases[name] = l
	}
	st.Leases[q.name] = bound
	if err := writeState(s.dir, st); err != nil {
		return fmt.Errorf("buffer: record seq lease for %q: %v", q.name, err)
	}
	s.state = st
	q.lease = bound
	return nil
}

func (s *Store) setFault(f string) {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	if s.fault == "" {
		s.faultSince = time.Now()
	}
	s.fault = f
}

func (s *Store) clearFault(prefix string) {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	if strings.HasPrefix(s.fault, prefix) {
		s.fault = ""
		s.faultSince = time.Time{}
	}
}
