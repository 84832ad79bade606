package buffer

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// Start-up on a damaged database. Badger verifies the index of every table
// when it opens; a damaged index or MANIFEST makes the open fail and the
// database is moved aside (replaceBroken). Damage inside a table's data
// blocks only shows when the block is read: Open verifies every block
// (checkDB) and, on a failure, copies what is still readable into a fresh
// database (salvage), so one bad block costs the records in it, not the
// whole backlog.

// checkDB verifies the checksum of every table block. A panic of Badger on
// damaged data is returned as an error.
func checkDB(db *badger.DB) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("badger panicked verifying tables: %v", r)
		}
	}()
	return db.VerifyChecksum()
}

// salvageReport is what a salvage recovered and lost, per queue name.
type salvageReport struct {
	records uint64
	lost    map[string]uint64 // records certainly lost to damage
	unknown int               // gaps whose cause cannot be told (logged)
}

// salvage replaces the damaged database in dbDir (open as old) with a fresh
// one holding every record, cursor and queue name still readable. The
// damaged directory is moved aside, never deleted. On success it returns
// the new database; on failure the caller moves the database aside whole.
func (s *Store) salvage(dbDir string, old *badger.DB, damage error) (*badger.DB, error) {
	// The copy needs about the space of the tables: do not start one that
	// would fill the disk (Badger would then retry its flush for ever).
	if free, err := s.cfg.diskFree(filepath.Dir(dbDir)); err == nil && free < tablesSize(dbDir)+s.cfg.MinFree/2 {
		_ = closeQuietly(old)
		return nil, fmt.Errorf("not enough free space to copy the readable records (%d bytes free)", free)
	}
	fresh := dbDir + ".new"
	if err := os.RemoveAll(fresh); err != nil {
		_ = closeQuietly(old)
		return nil, err
	}
	nw, err := s.openBadger(fresh)
	if err != nil {
		_ = closeQuietly(old)
		return nil, err
	}
	rep, cerr := s.copyReadable(old, nw)
	oerr := closeQuietly(old)
	nerr := closeQuietly(nw)
	if err := firstErr(cerr, nerr); err != nil {
		_ = os.RemoveAll(fresh)
		return nil, fmt.Errorf("salvage: %v", err)
	}
	if oerr != nil {
		s.log.Warn("buffer damaged database did not close cleanly", "err", oerr)
	}
	broken := dbDir + ".broken-" + time.Now().UTC().Format("20060102T150405Z")
	if err := os.Rename(dbDir, broken); err != nil {
		return nil, fmt.Errorf("salvage: move the damaged database aside: %v", err)
	}
	if err := os.Rename(fresh, dbDir); err != nil {
		return nil, fmt.Errorf("salvage: put the new database in place: %v", err)
	}
	db, err := s.openBadger(dbDir)
	if err != nil {
		return nil, fmt.Errorf("salvage: reopen: %v", err)
	}
	var lost uint64
	for _, n := range rep.lost {
		lost += n
	}
	s.salvaged = rep.lost
	s.log.Error("buffer database damaged; copied what was readable into a new one and moved the old one aside",
		"path", dbDir, "moved_to", broken, "err", damage, "records_recovered", rep.records,
		"records_lost", lost, "unexplained_gaps", rep.unknown)
	s.setFault(fmt.Sprintf("database damaged (%v): %d records recovered, %d lost, moved to %s",
		damage, rep.records, lost, broken))
	return db, nil
}

// tablesSize is the size of the tables (.sst) in dbDir.
func tablesSize(dbDir string) int64 {
	var n int64
	tables, _ := filepath.Glob(filepath.Join(dbDir, "*.sst"))
	for _, t := range tables {
		if fi, err := os.Stat(t); err == nil {
			n += fi.Size()
		}
	}
	return n
}

func closeQuietly(db *badger.DB) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("badger panicked on close: %v", r)
		}
	}()
	return db.Close()
}

// copyReadable copies the format key, queue names, cursors and every
// readable event from old to nw.
func (s *Store) copyReadable(old, nw *badger.DB) (salvageReport, error) {
	rep := salvageReport{lost: map[string]uint64{}}
	wb := nw.NewWriteBatch()
	defer wb.Cancel()
	txn := old.NewTransaction(false)
	defer txn.Discard()

	set := func(k, v []byte) error { return wb.Set(k, v) }
	names := map[uint32]string{}
	heads := map[uint32]uint64{}
	for _, p := range [][]byte{{pfxMeta}, {pfxName}, {pfxHead}} {
		err := scanPrefix(txn, p, func(k, v []byte) error {
			switch {
			case k[0] == pfxName && len(v) == 4:
				names[binary.BigEndian.Uint32(v)] = string(k[1:])
			case k[0] == pfxHead && len(k) == 5 && len(v) == 8:
				heads[binary.BigEndian.Uint32(k[1:])] = binary.BigEndian.Uint64(v)
			}
			return set(k, v)
		})
		if err != nil {
			return rep, err
		}
	}
	for name, qid := range s.state.Queues {
		if _, ok := names[qid]; !ok {
			// The registry entry was damaged; state.json remembers it.
			names[qid] = name
			if err := set(nameKey(name), binary.BigEndian.AppendUint32(nil, qid)); err != nil {
				return rep, err
			}
		}
	}
	for qid, name := range names {
		n, lost, unknown, err := s.copyQueue(txn, qid, heads[qid]+1, s.state.Leases[name], set)
		if err != nil {
			return rep, err
		}
		rep.records += n
		rep.unknown += unknown
		if lost > 0 {
			rep.lost[name] = lost
		}
		if unknown > 0 {
			s.log.Warn("buffer salvage: seq gaps whose cause cannot be told (earlier gaps or damage)",
				"queue", name, "gaps", unknown)
		}
	}
	return rep, wb.Flush()
}

// scanPrefix calls fn with a copy of every readable key and value under
// prefix, stopping quietly at damage.
func scanPrefix(txn *badger.Txn, prefix []byte, fn func(k, v []byte) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = nil // damaged: what was read is kept
		}
	}()
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		v, verr := it.Item().ValueCopy(nil)
		if verr != nil {
			continue
		}
		if err := fn(it.Item().KeyCopy(nil), v); err != nil {
			return err
		}
	}
	return nil
}

// maxProbes bounds the seeks spent looking past one gap (see copyQueue).
const maxProbes = 4096

// copyQueue copies the readable events of queue qid from seq from on.
//
// A damaged block ends the iteration of its table, so the records after it
// in the same table are skipped: the iterator jumps to the next key found in
// another table, which looks like a seq gap. At every gap copyQueue seeks
// seq by seq past the start of it (a block holds at most a few hundred
// records; then the step doubles, for real gaps): a record found inside the
// gap means a damaged block hid the seqs before it, which are counted as
// lost. A gap with nothing behind it may be damage at a table's end or an
// older gap (a power loss, refused events): it is counted as unknown. When
// the run that wrote the database stopped cleanly, tail is the exact next
// seq, and records missing at the end count as lost too.
func (s *Store) copyQueue(txn *badger.Txn, qid uint32, from, tail uint64, set func(k, v []byte) error) (n, lost uint64, unknown int, err error) {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: queuePrefix(qid)})
	defer it.Close()
	seek := func(seq uint64) (uint64, bool) {
		defer func() { _ = recover() }()
		it.Seek(eventKey(qid, seq))
		if !it.Valid() {
			return 0, false
		}
		return parseEventKey(it.Item().Key())
	}
	next := func() (uint64, bool) {
		defer func() { _ = recover() }()
		it.Next()
		if !it.Valid() {
			return 0, false
		}
		return parseEventKey(it.Item().Key())
	}
	expected := from
	seq, ok := seek(expected)
	for {
		end := seq
		if !ok {
			end = tail // what should have been there, when known
		}
		if end > expected {
			if found, fok := probeGap(seek, expected, end); fok {
				lost += found - expected
				expected, seq, ok = found, found, true
			} else if ok {
				unknown++
				if seq, ok = seek(seq); !ok {
					continue
				}
			} else {
				if s.state.Clean && tail > expected {
					lost += tail - expected
				}
				return n, lost, unknown, nil
			}
		}
		if !ok {
			return n, lost, unknown, nil
		}
		v, verr := it.Item().ValueCopy(nil)
		if verr == nil {
			if err := set(it.Item().KeyCopy(nil), v); err != nil {
				return n, lost, unknown, err
			}
			n++
		} else {
			lost++
		}
		expected = seq + 1
		seq, ok = next()
	}
}

// probeGap looks for a record with seq in [from, to) by seeking to from,
// from+1, ... (doubling the step after 256 seeks). It returns the first
// seq found below to.
func probeGap(seek func(uint64) (uint64, bool), from, to uint64) (uint64, bool) {
	step := uint64(1)
	for i, x := 0, from; i < maxProbes && x < to; i++ {
		if seq, ok := seek(x); ok && seq < to {
			return seq, true
		}
		if i >= 256 {
			step *= 2
		}
		x += step
	}
	return 0, false
}

// damagedLog finds the memtable or value log named in a Badger open error.
var damagedLog = regexp.MustCompile(`[0-9]+\.(mem|vlog)\b`)

// setAsideLogs handles an open that failed on one log file: a value log
// (which never holds our records: they are all inline) or a memtable log
// (the records not yet flushed to a table). It moves that file out of the
// database, next to it, and tries again, a few times. The tables, and so
// every record already flushed, are kept. setAside reports that a file was
// moved.
func (s *Store) setAsideLogs(dbDir string, openErr error) (db *badger.DB, setAside bool, err error) {
	err = openErr
	for range 4 {
		name := damagedLog.FindString(err.Error())
		if name == "" {
			return nil, setAside, err
		}
		moved := dbDir + "." + name + ".damaged-" + time.Now().UTC().Format("20060102T150405.000Z")
		if rerr := os.Rename(filepath.Join(dbDir, name), moved); rerr != nil {
			return nil, setAside, err
		}
		setAside = true
		s.log.Error("buffer log file damaged, moved it aside; events not yet in a table may be lost",
			"file", name, "moved_to", moved, "err", err)
		s.setFault(fmt.Sprintf("log file %s damaged (%v), moved to %s", name, err, moved))
		if db, err = s.openBadger(dbDir); err == nil {
			return db, true, nil
		}
	}
	return nil, setAside, err
}

// Memtable logs. Badger replays a memtable log (*.mem) at open up to the
// first entry whose checksum fails and silently drops the rest, so damage
// there would lose the newest events without a trace, and (after a kill -9,
// when numbering continues from the last stored event) hand their seqs out
// again. damagedLogs finds such logs before Badger opens them, so that Open
// reports the loss and numbers above the leases. It reads Badger v4's log
// format (memtable.go, structs.go): a 20-byte header, then entries of meta
// byte, user-meta byte, uvarint key length, value length and expiry, key,
// value, and a big-endian CRC-32C of all that. TestCorruptMemtableLog keeps
// it honest across Badger upgrades.

const walHeader = 20

// damagedLogs returns the memtable logs in dbDir holding data after the
// point where replaying them stops, with that offset.
func damagedLogs(dbDir string) map[string]int64 {
	logs, _ := filepath.Glob(filepath.Join(dbDir, "*.mem"))
	out := map[string]int64{}
	for _, path := range logs {
		if end, damaged := logReplayEnd(path); damaged {
			out[filepath.Base(path)] = end
		}
	}
	return out
}

// logReplayEnd returns where a replay of the log at path stops and whether
// non-zero bytes follow (damage, or an entry torn by a crash).
func logReplayEnd(path string) (end int64, damaged bool) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<16)
	if _, err := r.Discard(walHeader); err != nil {
		return 0, false
	}
	end = walHeader
	for {
		n, ok := walEntry(r)
		if !ok {
			break
		}
		end += n
	}
	if _, err := f.Seek(end, io.SeekStart); err != nil {
		return end, false
	}
	r.Reset(f)
	buf := make([]byte, 1<<16)
	for {
		n, err := r.Read(buf)
		for _, b := range buf[:n] {
			if b != 0 {
				return end, true
			}
		}
		if err != nil {
			return end, false
		}
	}
}

// walEntry reads one log entry and reports its size and whether it is a
// valid, non-empty entry.
func walEntry(r *bufio.Reader) (int64, bool) {
	h := &crcReader{r: r, crc: crc32.New(crcTable)}
	var meta [2]byte
	if _, err := io.ReadFull(h, meta[:]); err != nil {
		return 0, false
	}
	klen, err1 := binary.ReadUvarint(h)
	vlen, err2 := binary.ReadUvarint(h)
	exp, err3 := binary.ReadUvarint(h)
	if err := errors.Join(err1, err2, err3); err != nil || klen == 0 || klen > 1<<16 || vlen > 1<<30 {
		return 0, false
	}
	_ = exp
	if _, err := io.CopyN(io.Discard, h, int64(klen+vlen)); err != nil {
		return 0, false
	}
	var sum [4]byte
	if _, err := io.ReadFull(r, sum[:]); err != nil || binary.BigEndian.Uint32(sum[:]) != h.crc.Sum32() {
		return 0, false
	}
	return h.n + 4, true
}

// crcReader checksums and counts what is read through it.
type crcReader struct {
	r   *bufio.Reader
	crc hash32
	n   int64
}

type hash32 interface {
	io.Writer
	Sum32() uint32
}

func (c *crcReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.crc.Write(p[:n])
	c.n += int64(n)
	return n, err
}

func (c *crcReader) ReadByte() (byte, error) {
	b, err := c.r.ReadByte()
	if err == nil {
		c.crc.Write([]byte{b})
		c.n++
	}
	return b, err
}
