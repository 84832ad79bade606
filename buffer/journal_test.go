package buffer

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"fieldbridge/internal/testwait"

	badger "github.com/dgraph-io/badger/v4"
)

// journalBytes builds a journal of records, each a list of entries.
func journalBytes(t testing.TB, records ...[]journalEntry) []byte {
	t.Helper()
	j := &journal{}
	appendRecords(t, j, records...)
	return j.buf
}

// appendRecords appends one journal record per list of entries to j.
func appendRecords(t testing.TB, j *journal, records ...[]journalEntry) {
	t.Helper()
	for _, entries := range records {
		var rec journalRecord
		for _, e := range entries {
			if e.del {
				_ = rec.Delete(e.key)
			} else {
				_ = rec.Set(e.key, e.val)
			}
		}
		if err := j.append(&rec); err != nil {
			t.Fatal(err)
		}
	}
}

func decodeAll(data []byte) (entries []journalEntry, good int, torn bool, err error) {
	good, torn, err = decodeJournal(data, func(e journalEntry) error {
		entries = append(entries, journalEntry{e.del, slices.Clone(e.key), slices.Clone(e.val)})
		return nil
	})
	return entries, good, torn, err
}

var journalSample = [][]journalEntry{
	{{key: []byte("k1"), val: []byte("v1")}, {key: []byte("k2"), val: []byte{}}},
	{{del: true, key: []byte("k1")}},
	{{key: []byte("k3"), val: bytes.Repeat([]byte("x"), 300)}},
}

// TestJournalRoundTrip: what the writer journals decodes to the same
// entries, in order, from the file as from memory.
func TestJournalRoundTrip(t *testing.T) {
	dir := t.TempDir()
	j, data, err := openJournal(dir, true)
	if err != nil || len(data) != 0 {
		t.Fatalf("openJournal on a new directory = %d bytes, %v", len(data), err)
	}
	appendRecords(t, j, journalSample...)
	_ = j.close()
	file, err := os.ReadFile(filepath.Join(dir, journalName))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(file, j.buf) {
		t.Fatalf("file holds %d bytes, memory %d: they differ", len(file), len(j.buf))
	}
	got, good, torn, err := decodeAll(file)
	want := slices.Concat(journalSample...)
	if err != nil || torn || good != len(file) {
		t.Fatalf("decode = good %d of %d, torn %v, %v", good, len(file), torn, err)
	}
	if len(got) != len(want) {
		t.Fatalf("decoded %d entries, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].del != want[i].del || !bytes.Equal(got[i].key, want[i].key) || !bytes.Equal(got[i].val, want[i].val) {
			t.Errorf("entry %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

// TestJournalTornAndDamaged: a record cut short at the end is dropped
// quietly (torn); a flipped byte stops the replay at its record with
// errJournalDamaged, and the records before it still decode.
func TestJournalTornAndDamaged(t *testing.T) {
	data := journalBytes(t, journalSample...)
	second := len(journalBytes(t, journalSample[0])) // offset of record 2
	third := len(journalBytes(t, journalSample[:2]...))

	for cut := third + 1; cut < len(data); cut += 37 {
		got, good, torn, err := decodeAll(data[:cut])
		if err != nil || !torn || good != third || len(got) != 3 {
			t.Errorf("cut at %d: %d entries, good %d, torn %v, %v; want 3 entries, good %d, torn",
				cut, len(got), good, torn, err, third)
		}
	}
	// From the checksum on: a flipped length is indistinguishable from a
	// record cut short (FuzzJournal covers it; Open resumes numbering above
	// the leases for both).
	for i := second + 4; i < third; i++ {
		bad := slices.Clone(data)
		bad[i] ^= 0x40
		got, good, _, err := decodeAll(bad)
		if !errors.Is(err, errJournalDamaged) || good != second || len(got) != 2 {
			t.Errorf("byte %d flipped: %d entries, good %d, %v; want the 2 entries of record 1, good %d, errJournalDamaged",
				i, len(got), good, err, second)
		}
	}
}

// FuzzJournal: any bytes (a journal read back from disk) decode without a
// panic; the valid prefix re-encodes to itself.
func FuzzJournal(f *testing.F) {
	data := journalBytes(f, journalSample...)
	f.Add(data)
	f.Add(data[:len(data)-3])
	flipped := slices.Clone(data)
	flipped[12] ^= 1
	f.Add(flipped)
	f.Add([]byte{0, 0, 0, 1, 0, 0, 0, 0, 9})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		var records [][]journalEntry
		var cur []journalEntry
		last := 0
		good, torn, err := decodeJournal(data, func(e journalEntry) error {
			cur = append(cur, e)
			return nil
		})
		if good > len(data) || (err == nil && !torn && good != len(data)) {
			t.Fatalf("good %d of %d, torn %v, err %v", good, len(data), torn, err)
		}
		if err != nil && !errors.Is(err, errJournalDamaged) {
			t.Fatalf("error not errJournalDamaged: %v", err)
		}
		// Re-encode record by record: the entries come in record order,
		// so decode the valid prefix again record by record.
		for off := 0; off < good; {
			n := int(uint32(data[off])<<24 | uint32(data[off+1])<<16 | uint32(data[off+2])<<8 | uint32(data[off+3]))
			body := data[off+8 : off+8+n]
			entries, err := decodeJournalBody(body, nil)
			if err != nil {
				t.Fatalf("record at %d decoded once, not twice: %v", off, err)
			}
			records = append(records, entries)
			off += 8 + n
			last = off
		}
		if last != good {
			t.Fatalf("records end at %d, good %d", last, good)
		}
		if again := journalBytes(t, records...); !bytes.Equal(again, data[:good]) {
			t.Fatalf("re-encoded %d bytes differ from the %d valid ones", len(again), good)
		}
		if n := len(slices.Concat(records...)); n != len(cur) {
			t.Fatalf("%d entries from the records, %d reported", n, len(cur))
		}
	})
}

// reclaimHold makes the first reclamation with something to drop wait
// (after DropPrefix, the gate held) until released.
type reclaimHold struct {
	in      chan struct{}
	release chan struct{}
	once    atomic.Bool
}

func newReclaimHold() *reclaimHold {
	return &reclaimHold{in: make(chan struct{}), release: make(chan struct{})}
}

func (h *reclaimHold) hook() {
	if h.once.Swap(true) {
		return
	}
	close(h.in)
	<-h.release
}

// within runs f, failing the test if f fails or still waits after 20 s
// (then for the held reclamation: the hold is released first, so that the
// Store can close).
func (h *reclaimHold) within(t *testing.T, what string, f func() error) {
	t.Helper()
	res := make(chan error, 1)
	go func() { res <- f() }()
	select {
	case err := <-res:
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	case <-time.After(20 * time.Second):
		close(h.release)
		t.Fatalf("%s waited for the reclamation", what)
	}
}

// startHeldReclaim gives queue "a" acknowledged events, then starts a
// reclamation in the background and returns once it holds the gate (held by
// h). done is closed when reclaim returns.
func startHeldReclaim(t *testing.T, s *Store, h *reclaimHold) (done chan struct{}) {
	t.Helper()
	mustAppend(t, s, "a", 3, 10)
	drainAll(t, s, "a")
	if s.removed.Load() == 0 {
		t.Fatal("nothing removed: no reclamation to hold")
	}
	done = make(chan struct{})
	go func() {
		defer close(done)
		s.reclaim()
	}()
	<-h.in
	return done
}

func journalSize(t *testing.T, dir string) int64 {
	t.Helper()
	st, err := os.Stat(filepath.Join(dir, journalName))
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

func inBadger(s *Store, queue string, seq uint64) bool {
	q, _ := s.queue(queue)
	err := s.db.View(func(txn *badger.Txn) error {
		_, err := txn.Get(eventKey(q.qid, seq))
		return err
	})
	return err == nil
}

// TestWriterJournalsDuringReclaim: while reclamation holds the gate
// (DropPrefix pauses Badger's writes), Enqueue+Flush complete, the events
// are counted as stored and their forwarder publishes them from memory;
// they are in the journal file, not yet in Badger. When reclamation ends
// they are in Badger and the journal is empty. Without the journal Flush
// waits for the reclamation and the test fails on the first wait.
func TestWriterJournalsDuringReclaim(t *testing.T) {
	for _, sync := range []time.Duration{0, time.Second} {
		t.Run("sync="+sync.String(), func(t *testing.T) {
			dir := t.TempDir()
			h := newReclaimHold()
			s := openTest(t, Config{Dir: dir, Sync: sync, noBackground: true, duringReclaim: h.hook})
			pub := &fakePublisher{}
			ctx, cancel := context.WithCancel(context.Background())
			fwd := make(chan error, 1)
			go func() { fwd <- s.Forward(ctx, "live", pub) }()
			testwait.For(t, 10*time.Second, "forwarder running", func() bool {
				q, _ := s.queue("live")
				q.mu.Lock()
				defer q.mu.Unlock()
				return q.forwarding
			})
			done := startHeldReclaim(t, s, h)

			var seqs []uint64
			h.within(t, "Enqueue and Flush", func() error {
				for range 5 {
					for _, q := range []string{"live", "idle"} {
						seq, err := s.Enqueue(q, "t", seqPayload(20))
						if err != nil {
							return err
						}
						if q == "live" {
							seqs = append(seqs, seq)
						}
					}
					if err := s.Flush(); err != nil {
						return err
					}
				}
				return nil
			})
			// Append too: it goes through the writer while reclamation runs.
			h.within(t, "Append", func() error {
				_, err := s.Append("idle", "t", seqPayload(20))
				return err
			})
			if got := s.QueueCounters("idle").Appended; got != 6 {
				t.Errorf("idle: Appended %d during the reclamation, want 6", got)
			}
			testwait.For(t, 20*time.Second, "live events published during the reclamation", func() bool {
				return len(pub.seqs()) >= len(seqs)
			})
			if got := distinct(pub.seqs()); !slices.Equal(got, seqs) {
				t.Errorf("published %v, want %v", got, seqs)
			}
			if n := journalSize(t, dir); n == 0 {
				t.Error("journal file empty while the reclamation holds the gate")
			}
			if inBadger(s, "idle", 1) {
				t.Error("idle/1 in Badger while DropPrefix held it: not journaled?")
			}

			close(h.release)
			<-done
			if n := journalSize(t, dir); n != 0 {
				t.Errorf("journal holds %d bytes after the reclamation, want 0", n)
			}
			for seq := uint64(1); seq <= 6; seq++ {
				if !inBadger(s, "idle", seq) {
					t.Errorf("idle/%d not in Badger after the reclamation", seq)
				}
			}
			cancel()
			if err := <-fwd; err != nil {
				t.Fatal(err)
			}
			// Close, reopen: everything of "idle" is there, in order.
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s2 := openTest(t, Config{Dir: dir, Sync: sync})
			if got := drainAll(t, s2, "idle"); !slices.Equal(got, seqRange(1, 6)) {
				t.Errorf("idle after reopen = %v, want 1..6", got)
			}
			if st := s2.Stats(); st.Fault != "" {
				t.Errorf("Fault = %q", st.Fault)
			}
		})
	}
}

// TestJournalReplayAtOpen: a journal left behind (a crash while
// reclamation held the gate) is written into Badger at Open, before the
// queues are loaded: its events are delivered and numbering goes on after
// them. A torn last record is dropped without a fault; a flipped byte
// loses only the records from the damage on, is reported, and numbering
// resumes above the leases.
func TestJournalReplayAtOpen(t *testing.T) {
	cases := []struct {
		name      string
		damage    func(data []byte, recordStarts []int) []byte
		delivered []uint64
		fault     string
	}{
		{"intact", func(d []byte, _ []int) []byte { return d }, seqRange(1, 4), ""},
		{"torn", func(d []byte, r []int) []byte { return d[:r[2]+5] }, seqRange(1, 3), ""},
		{"flipped", func(d []byte, r []int) []byte { d[r[1]+20] ^= 0x10; return d }, seqRange(1, 2), "journal damaged"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openTest(t, Config{Dir: dir, Sync: time.Second})
			mustAppend(t, s, "q", 1, 10)
			q, _ := s.queue("q")
			qid := q.qid
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			// As a crash leaves it: seqs leased beyond the journaled
			// ones, shutdown not clean.
			state, err := readState(dir)
			if err != nil {
				t.Fatal(err)
			}
			state.Leases["q"], state.Clean = 100, false
			if err := writeState(dir, state); err != nil {
				t.Fatal(err)
			}
			// Seqs 2, 3, 4 in one record each, as the writer journals them.
			var data []byte
			var starts []int
			for seq := uint64(2); seq <= 4; seq++ {
				payload, _ := seqPayload(10)(seq)
				starts = append(starts, len(data))
				data = append(data, journalBytes(t, []journalEntry{{
					key: eventKey(qid, seq),
					val: appendRecord(nil, seq, time.Now(), "t", payload),
				}})...)
			}
			data = c.damage(data, starts)
			if err := os.WriteFile(filepath.Join(dir, journalName), data, 0o640); err != nil {
				t.Fatal(err)
			}
			s2 := openTest(t, Config{Dir: dir, Sync: time.Second})
			if n := journalSize(t, dir); n != 0 {
				t.Errorf("journal holds %d bytes after Open, want 0", n)
			}
			if got := drainAll(t, s2, "q"); !slices.Equal(got, c.delivered) {
				t.Errorf("delivered %v, want %v", got, c.delivered)
			}
			st := s2.Stats()
			if !strings.Contains(st.Fault, c.fault) || (c.fault == "") != (st.Fault == "") {
				t.Errorf("Fault = %q, want %q", st.Fault, c.fault)
			}
			next := s2.QueueStats("q").NextSeq
			if c.name == "intact" && next != 5 {
				t.Errorf("NextSeq = %d, want 5", next)
			}
			if c.name != "intact" && next <= 4 {
				t.Errorf("NextSeq = %d after a journal cut short or damaged: a lost seq could be reused", next)
			}
		})
	}
}

// TestJournalDiskFull: with the disk below MinFree while reclamation holds
// the gate, the writer refuses the events (ErrDiskFull path: seqs consumed,
// counted in Failed) and journals nothing for them; what was journaled
// before stays and reaches Badger; all resumes when space returns.
func TestJournalDiskFull(t *testing.T) {
	var free atomic.Int64
	free.Store(30 << 20)
	dir := t.TempDir()
	h := newReclaimHold()
	s := openTest(t, Config{Dir: dir, Sync: 0, MinFree: 16 << 20, noBackground: true, duringReclaim: h.hook,
		diskFree: func(string) (int64, error) { return free.Load(), nil }, retryMax: 20 * time.Millisecond})
	done := startHeldReclaim(t, s, h)

	for range 3 {
		if _, err := s.Enqueue("d", "t", seqPayload(10)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	before := journalSize(t, dir)
	free.Store(12 << 20) // below MinFree
	s.recheckDisk()
	for range 2 {
		if _, err := s.Enqueue("d", "t", seqPayload(10)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	if st := s.QueueCounters("d"); st.Appended != 3 || st.Failed != 2 {
		t.Errorf("d: Appended %d, Failed %d; want 3 stored, 2 refused", st.Appended, st.Failed)
	}
	if after := journalSize(t, dir); after != before {
		t.Errorf("journal grew from %d to %d bytes for refused events", before, after)
	}
	close(h.release)
	<-done
	free.Store(30 << 20)
	s.recheckDisk()
	mustAppend(t, s, "d", 1, 10)
	if got := drainAll(t, s, "d"); !slices.Equal(got, []uint64{1, 2, 3, 6}) {
		t.Errorf("delivered %v, want 1 2 3 (stored) and 6 (after the refused 4, 5)", got)
	}
}

// TestJournalWriteFails: a journal write that fails (here the file turned
// read-only) refuses that batch with a clear error and loses nothing
// stored before it: those entries still reach Badger when reclamation
// ends, and the Store goes on without the journal (writes wait for
// reclamation again).
func TestJournalWriteFails(t *testing.T) {
	dir := t.TempDir()
	h := newReclaimHold()
	var logs captureLogger
	cfg := Config{Dir: dir, Sync: 0, noBackground: true, duringReclaim: h.hook}
	s, err := Open(cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	done := startHeldReclaim(t, s, h)
	for range 2 {
		if _, err := s.Enqueue("d", "t", seqPayload(10)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	s.jmu.Lock()
	ro, err := os.Open(filepath.Join(dir, journalName))
	if err != nil {
		t.Fatal(err)
	}
	_ = s.jrn.f.Close()
	s.jrn.f = ro // writes fail with EBADF, and so does cutting back
	s.jmu.Unlock()
	if _, err := s.Enqueue("d", "t", seqPayload(10)); err != nil {
		t.Fatal(err)
	}
	// The writer refuses the batch, then (journal broken) waits for the
	// gate as it did before the journal: Flush only after the release.
	testwait.For(t, 20*time.Second, "the event refused", func() bool { return s.QueueCounters("d").Failed == 1 })
	if st := s.QueueCounters("d"); st.Appended != 2 {
		t.Errorf("d: Appended %d with the journal unwritable, want 2", st.Appended)
	}
	if !strings.Contains(logs.String(), "buffer journal write failed") {
		t.Errorf("no error logged:\n%s", logs.String())
	}
	close(h.release)
	<-done
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); !strings.Contains(st.Fault, "journal unusable") {
		t.Errorf("Fault = %q, want it to say the journal is unusable", st.Fault)
	}
	s.jmu.Lock()
	gone := s.jrn == nil
	s.jmu.Unlock()
	if !gone {
		t.Error("the Store still journals into a broken journal")
	}
	mustAppend(t, s, "d", 1, 10)
	if got := drainAll(t, s, "d"); !slices.Equal(got, []uint64{1, 2, 4}) {
		t.Errorf("delivered %v, want 1 2 (journaled), 4 (after the refused 3)", got)
	}
}

// TestReclaimWithoutJournal: a Store whose journal is unusable (it could
// not be opened, or a write failed) waits for reclamation as before the
// journal, and nothing deadlocks: the writer waits for the gate holding
// jmu, and reclamation must not take jmu then.
func TestReclaimWithoutJournal(t *testing.T) {
	dir := t.TempDir()
	h := newReclaimHold()
	s := openTest(t, Config{Dir: dir, Sync: 0, noBackground: true, duringReclaim: h.hook})
	s.jmu.Lock()
	_ = s.jrn.close()
	s.jrn = nil
	s.jmu.Unlock()
	done := startHeldReclaim(t, s, h)
	flushed := make(chan error, 1)
	go func() {
		if _, err := s.Enqueue("d", "t", seqPayload(10)); err != nil {
			flushed <- err
			return
		}
		flushed <- s.Flush()
	}()
	testwait.For(t, 20*time.Second, "the writer waiting for the gate, jmu held", func() bool {
		if s.jmu.TryLock() {
			s.jmu.Unlock()
			return false
		}
		return true
	})
	close(h.release)
	<-done
	if err := <-flushed; err != nil {
		t.Fatal(err)
	}
	if got := drainAll(t, s, "d"); !slices.Equal(got, []uint64{1}) {
		t.Errorf("delivered %v, want [1]", got)
	}
}
