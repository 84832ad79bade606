package buffer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// The side journal lets the writer go on while space reclamation holds the
// gate. Badger's DropPrefix blocks every write for 30-200 ms at the
// product's shape (it flushes the memtable into a table and compacts level
// 0; docs/performance.md, "Writes during reclamation"), and the events
// polled meanwhile used to wait it out. Now, while reclamation runs, the
// writer appends each batch (exactly the entries it would have committed:
// events and cursors) as one record to Dir/journal, with the same fsync
// policy as Badger's log, keeps a copy in memory, and answers the batch as
// stored. The events go to their forwarders from memory (fresh.go). Before
// reclamation releases the gate it writes the journaled entries into Badger
// and empties the journal, so every reader of Badger (all hold the gate)
// finds them there. Open replays a journal left by a crash before anything
// reads; replaying is idempotent (the same keys get the same values, and no
// newer write of those keys precedes the truncation).
//
// Record format, repeated: length (uint32, of the body), CRC-32C of the
// body (uint32), body. The body is a sequence of entries: op (1 set, 2
// delete), key length (uvarint), key, and for a set value length (uvarint)
// and value. A record cut short at the end is a write that never finished
// (with fsync per write it was never answered as stored) and is dropped;
// a record whose checksum or entries are wrong is damage: replay stops
// there, reports it and numbering resumes above the leases.

// journalName is the journal's file in the buffer directory.
const journalName = "journal"

// journalLimit bounds the bytes journaled during one reclamation: past it
// the writer waits for the gate as before. About 30 000 events: a
// reclamation would have to last seconds at full speed to reach it.
const journalLimit = 8 << 20

// maxJournalRecord bounds one record when decoding: a writer batch is at
// most maxBatchBytes of events plus its cursors, far below it.
const maxJournalRecord = 64 << 20

const (
	journalSet    = 1
	journalDelete = 2
)

var journalCRC = crc32.MakeTable(crc32.Castagnoli)

// errJournalDamaged marks a journal whose bytes are not what was written.
var errJournalDamaged = errors.New("buffer journal damaged")

// journal is the side journal. Its fields are under Store.jmu.
type journal struct {
	f      *os.File // nil for an in-memory Store: the copy in buf is all
	buf    []byte   // every record written since the last reset, as in the file
	dirty  bool     // written since the last fsync (group commit)
	sync   bool     // fsync every record (Config.Sync = 0)
	broken bool     // a failed write could not be cut back: no more records
}

// openJournal opens (creating) Dir/journal and returns its contents.
func openJournal(dir string, syncEach bool) (*journal, []byte, error) {
	path := filepath.Join(dir, journalName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, nil, err
	}
	data, err := io.ReadAll(f)
	if err != nil {
		_ = f.Close()
		return nil, nil, err
	}
	return &journal{f: f, sync: syncEach}, data, nil
}

// journalRecord builds one record's body; *journalRecord is a kvWriter, as
// a Badger transaction is, so the writer fills either with the same code.
type journalRecord struct{ body []byte }

// kvWriter is what the writer puts its entries into: a Badger transaction
// or a journal record.
type kvWriter interface {
	Set(key, val []byte) error
	Delete(key []byte) error
}

func (r *journalRecord) Set(key, val []byte) error {
	r.body = append(r.body, journalSet)
	r.body = binary.AppendUvarint(r.body, uint64(len(key)))
	r.body = append(r.body, key...)
	r.body = binary.AppendUvarint(r.body, uint64(len(val)))
	r.body = append(r.body, val...)
	return nil
}

func (r *journalRecord) Delete(key []byte) error {
	r.body = append(r.body, journalDelete)
	r.body = binary.AppendUvarint(r.body, uint64(len(key)))
	r.body = append(r.body, key...)
	return nil
}

// append writes rec as one record (one write(2)), fsynced when j.sync. On
// failure the file is cut back to where it was, so that a later record is
// not hidden behind a torn one; if even that fails the error says so and
// the caller stops journaling.
func (j *journal) append(rec *journalRecord) error {
	start := len(j.buf)
	j.buf = binary.BigEndian.AppendUint32(j.buf, uint32(len(rec.body)))
	j.buf = binary.BigEndian.AppendUint32(j.buf, crc32.Checksum(rec.body, journalCRC))
	j.buf = append(j.buf, rec.body...)
	if j.f == nil {
		return nil
	}
	_, err := j.f.WriteAt(j.buf[start:], int64(start))
	if err == nil && j.sync {
		err = j.f.Sync()
	}
	if err != nil {
		j.buf = j.buf[:start]
		if terr := j.f.Truncate(int64(start)); terr != nil {
			j.broken = true
			return fmt.Errorf("journal write: %v; cutting it back: %w", err, terr)
		}
		return fmt.Errorf("journal write: %w", err)
	}
	j.dirty = !j.sync
	return nil
}

// syncFile fsyncs what was journaled since the last fsync (group commit).
func (j *journal) syncFile() error {
	if j == nil || j.f == nil || !j.dirty {
		return nil
	}
	if err := j.f.Sync(); err != nil {
		return err
	}
	j.dirty = false
	return nil
}

// reset empties the journal once its entries are in Badger. With fsync per
// write the truncation is fsynced too; under group commit a truncation
// lost to a power cut only replays entries Badger already has.
func (j *journal) reset() error {
	if cap(j.buf) > 1<<20 {
		j.buf = nil // a rare large journal does not keep its memory
	}
	j.buf = j.buf[:0]
	if j.f == nil {
		return nil
	}
	if err := j.f.Truncate(0); err != nil {
		return err
	}
	if j.sync {
		return j.f.Sync()
	}
	return nil
}

func (j *journal) close() error {
	if j == nil || j.f == nil {
		return nil
	}
	return j.f.Close()
}

// journalEntry is one decoded entry; key and val point into the journal's
// bytes.
type journalEntry struct {
	del      bool
	key, val []byte
}

// decodeJournal calls each for every entry of data's records, record by
// record (each record's entries only once the whole record checked out).
// It returns the bytes of whole, valid records, whether a record was cut
// short at the end (torn: a write that never finished), and an error
// wrapping errJournalDamaged at the first damaged record; or each's error.
func decodeJournal(data []byte, each func(journalEntry) error) (good int, torn bool, err error) {
	var entries []journalEntry
	for off := 0; off < len(data); {
		if len(data)-off < 8 {
			return off, true, nil
		}
		n := binary.BigEndian.Uint32(data[off:])
		sum := binary.BigEndian.Uint32(data[off+4:])
		if n > maxJournalRecord {
			return off, false, fmt.Errorf("%w: record at offset %d claims %d bytes", errJournalDamaged, off, n)
		}
		if uint64(len(data)-off-8) < uint64(n) {
			return off, true, nil
		}
		body := data[off+8 : off+8+int(n)]
		if crc32.Checksum(body, journalCRC) != sum {
			return off, false, fmt.Errorf("%w: checksum mismatch in the record at offset %d", errJournalDamaged, off)
		}
		entries, err = decodeJournalBody(body, entries[:0])
		if err != nil {
			return off, false, fmt.Errorf("%w: record at offset %d: %v", errJournalDamaged, off, err)
		}
		for _, e := range entries {
			if err := each(e); err != nil {
				return off, false, err
			}
		}
		off += 8 + int(n)
		good = off
	}
	return good, false, nil
}

// decodeJournalBody appends body's entries to into.
func decodeJournalBody(body []byte, into []journalEntry) ([]journalEntry, error) {
	field := func() ([]byte, error) {
		n, w := binary.Uvarint(body)
		if w <= 0 || n > uint64(len(body)-w) {
			return nil, errors.New("bad length")
		}
		b := body[w : w+int(n)]
		body = body[w+int(n):]
		return b, nil
	}
	for len(body) > 0 {
		op := body[0]
		body = body[1:]
		if op != journalSet && op != journalDelete {
			return nil, fmt.Errorf("unknown entry type %d", op)
		}
		key, err := field()
		if err != nil {
			return nil, fmt.Errorf("key: %v", err)
		}
		if len(key) == 0 {
			return nil, errors.New("empty key")
		}
		e := journalEntry{del: op == journalDelete, key: key}
		if !e.del {
			if e.val, err = field(); err != nil {
				return nil, fmt.Errorf("value: %v", err)
			}
		}
		into = append(into, e)
	}
	return into, nil
}

// applyJournal writes data's entries into db, in as many transactions as
// Badger's size limit needs, and reports what decodeJournal reports. The
// entries of a damaged record and after it are not written.
func applyJournal(db *badger.DB, data []byte) (good int, torn bool, err error) {
	txn := db.NewTransaction(true)
	defer func() { txn.Discard() }()
	put := func(e journalEntry) error {
		if e.del {
			return txn.Delete(e.key)
		}
		return txn.Set(e.key, e.val)
	}
	good, torn, err = decodeJournal(data, func(e journalEntry) error {
		err := put(e)
		if errors.Is(err, badger.ErrTxnTooBig) {
			if err := txn.Commit(); err != nil {
				return err
			}
			txn = db.NewTransaction(true)
			err = put(e)
		}
		return err
	})
	if cerr := txn.Commit(); err == nil {
		err = cerr
	}
	return good, torn, err
}

// enterWrite is the writer's way into a commit of about bytes: it returns
// true with s.jmu held when reclamation holds (or is about to take) the
// gate and the batch is to be journaled, and false with the gate held for
// reading otherwise. Past journalLimit it waits for the gate as before.
func (s *Store) enterWrite(bytes int64) (journaled bool) {
	s.jmu.Lock()
	if s.journaling && !s.jrn.broken && int64(len(s.jrn.buf))+bytes <= journalLimit {
		return true
	}
	if s.journaling {
		s.jmu.Unlock()
		s.gate.RLock()
		return false
	}
	// Reclamation sets journaling under jmu before it takes the gate, so
	// this cannot wait for one.
	s.gate.RLock()
	s.jmu.Unlock()
	return false
}

// journalBatch journals what put writes as one record. The caller holds
// s.jmu with journaling on.
func (s *Store) journalBatch(put func(kvWriter) error) error {
	rec := journalRecord{body: s.jrnBody[:0]}
	defer func() { s.jrnBody = rec.body[:0] }()
	if err := put(&rec); err != nil {
		return err
	}
	if err := s.jrn.append(&rec); err != nil {
		s.log.Error("buffer journal write failed", "err", err)
		return err
	}
	s.markDirty() // arms the group commit, which fsyncs the journal too
	return nil
}

// startJournal makes the writer journal its batches from now until
// finishJournal: reclamation calls it before it takes the gate.
func (s *Store) startJournal() {
	s.jmu.Lock()
	s.journaling = s.jrn != nil
	s.reclaiming.Store(s.journaling)
	s.jmu.Unlock()
}

// finishJournal writes the journaled entries into Badger and empties the
// journal; reclamation calls it holding the gate exclusively, so that no
// reader of Badger can miss them. If Badger refuses them, it keeps the
// gate and retries: releasing it would let a forwarder read past records
// that are only in the journal. At Close it gives up, marks the Store
// closed (readers then stop) and leaves the journal on disk for Open.
func (s *Store) finishJournal() {
	if !s.reclaiming.Load() {
		// No journal (unusable): the writer may hold jmu while it waits
		// for the gate, as before the journal. Only reclaim (serialised
		// by reclaimMu) changes reclaiming, so this read is exact.
		return
	}
	s.jmu.Lock()
	defer s.jmu.Unlock()
	if !s.journaling {
		return
	}
	for wait := 10 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		err := s.flushJournal()
		if err == nil {
			s.journaling = false
			s.reclaiming.Store(false)
			return
		}
		s.noteWriteError(err)
		s.log.Error("buffer journal not written into the database; writes and reads wait", "err", err)
		s.jmu.Unlock() // let the writer journal meanwhile
		select {
		case <-s.done:
			s.jmu.Lock()
			s.closed = true
			return
		case <-time.After(wait):
		}
		s.jmu.Lock()
	}
}

// flushJournal writes the journal's entries into Badger and empties it.
// The caller holds s.jmu and the gate exclusively.
func (s *Store) flushJournal() error {
	if len(s.jrn.buf) == 0 {
		return nil
	}
	if _, _, err := applyJournal(s.db, s.jrn.buf); err != nil {
		return fmt.Errorf("buffer: journal into the database: %w", err)
	}
	s.markDirty()
	if err := s.jrn.reset(); err != nil || s.jrn.broken {
		// The entries are in Badger; what stays in the file would only be
		// replayed again at the next start (the same values, or an older
		// cursor: events sent twice, never lost). Run without the journal.
		s.log.Error("buffer journal unusable after a failed write; writes wait for space reclamation from now on",
			"err", err)
		s.setFault("journal unusable after a failed write")
		_ = s.jrn.close()
		s.jrn = nil
	}
	return nil
}

// syncJournal is the group commit's fsync of the journal.
func (s *Store) syncJournal() {
	s.jmu.Lock()
	defer s.jmu.Unlock()
	if err := s.jrn.syncFile(); err != nil {
		s.noteWriteError(fmt.Errorf("buffer: sync journal: %w", err))
	}
}

// loadJournal opens Dir/journal and replays what a crash left in it into
// db (before anything reads), then empties it. It reports whether events
// may have been lost (a damaged record): then numbering resumes above the
// leases. With replaced (the database was moved aside and started anew)
// the journal's entries belong to the old database and are moved aside
// with it. A journal that cannot be opened leaves the Store without one:
// the writer then waits for reclamation as it did before the journal.
func (s *Store) loadJournal(db *badger.DB, replaced bool) (quarantined bool) {
	path := filepath.Join(s.cfg.Dir, journalName)
	if replaced {
		if st, err := os.Stat(path); err == nil && st.Size() > 0 {
			aside := path + ".broken-" + time.Now().UTC().Format("20060102T150405Z")
			if err := os.Rename(path, aside); err != nil {
				s.log.Error("buffer journal of the moved-aside database not moved aside", "err", err)
			}
		}
	}
	j, data, err := openJournal(s.cfg.Dir, s.cfg.Sync == 0)
	if err != nil {
		s.log.Error("buffer journal unusable; writes wait for space reclamation", "path", path, "err", err)
		s.setFault(fmt.Sprintf("journal unusable: %v", err))
		return true
	}
	s.jrn = j
	if len(data) == 0 {
		return false
	}
	good, torn, err := applyJournal(db, data)
	switch {
	case errors.Is(err, errJournalDamaged):
		quarantined = true
		s.log.Error("buffer journal damaged; the entries from the damage on are lost, numbering resumes above the last lease",
			"path", path, "offset", good, "bytes_lost", len(data)-good, "err", err)
		s.setFault(fmt.Sprintf("journal damaged at offset %d, %d bytes lost", good, len(data)-good))
	case err != nil:
		// Badger refused the entries: keep the journal for the next
		// start rather than lose them, and run without journaling.
		s.log.Error("buffer journal not replayed; kept for the next start", "path", path, "err", err)
		s.setFault(fmt.Sprintf("journal not replayed: %v", err))
		_ = j.close()
		s.jrn = nil
		return true
	case torn:
		// A write that never finished (never answered as stored with
		// fsync per write), or a damaged length field that looks the
		// same: number above the leases either way, so no seq of a
		// record it hid is handed out again.
		quarantined = true
		s.log.Warn("buffer journal ends in a record cut short (a write that never finished); dropped, numbering resumes above the last lease",
			"path", path, "bytes", len(data)-good)
	}
	s.log.Info("buffer journal replayed", "bytes", good)
	if err := db.Sync(); err == nil {
		err = j.reset()
	}
	if err != nil {
		s.log.Error("buffer journal replayed but not emptied; writes wait for space reclamation", "err", err)
		_ = j.close()
		s.jrn = nil
	}
	return quarantined
}
