package buffer

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// writeClosed writes n events to each of queues "d" and "e" in a new buffer
// in dir and closes it, so that they sit in a table (.sst).
func writeClosed(t testing.TB, dir string, n int) {
	t.Helper()
	s, err := Open(Config{Dir: dir, Sync: time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for range n {
		for _, q := range []string{"d", "e"} {
			if _, err := s.Append(q, "iot-2/evt/reading/fmt/json", seqPayload(100)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// damage copies the buffer in src to a new directory and XORs the byte at
// off (negative: from the end) of the database file matching pattern with
// x. It returns the new buffer directory.
func damage(t testing.TB, src, pattern string, off int, x byte) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "buffer")
	if err := os.CopyFS(dir, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "db", pattern))
	if len(files) == 0 {
		t.Fatalf("no %s in %s", pattern, src)
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	if off < 0 {
		off += len(b)
	}
	b[off] ^= x
	if err := os.WriteFile(files[0], b, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// checkSurvivors drains queue q and checks that what comes out is in order
// and was written (seqs 1..n), and that Len and Corrupt account for every
// written event when exact is set.
func checkSurvivors(t *testing.T, s *Store, q string, n int, exact bool) {
	t.Helper()
	st := s.QueueStats(q)
	if exact && st.Len+int64(st.Corrupt) != int64(n) {
		t.Errorf("queue %s: Len %d + Corrupt %d, want %d: every event kept or counted", q, st.Len, st.Corrupt, n)
	}
	got := drainAll(t, s, q)
	if !slices.IsSorted(got) || len(slices.Compact(slices.Clone(got))) != len(got) {
		t.Errorf("queue %s delivered out of order or twice: %v", q, got)
	}
	for _, seq := range got {
		if seq < 1 || seq > uint64(n) {
			t.Errorf("queue %s delivered seq %d, never written", q, seq)
		}
	}
	if next := s.QueueStats(q).NextSeq; next <= uint64(n) {
		t.Errorf("queue %s NextSeq = %d after damage, want above %d (no seq reused)", q, next, n)
	}
}

// TestCorruptFiles damages the files of a real buffer directory, one byte,
// and opens it: never a panic, never a refusal to start; what is readable
// is delivered in order, what is lost is counted or reported in the fault.
func TestCorruptFiles(t *testing.T) {
	const n = 3000
	src := filepath.Join(t.TempDir(), "src")
	writeClosed(t, src, n)

	// Inside a table's data blocks: the block checksum catches it; the
	// rest of the database is copied into a new one and the records of the
	// bad block are counted as corrupt.
	for _, frac := range []float64{0, 0.1, 0.45, 0.8} {
		t.Run("sst_block", func(t *testing.T) {
			sst, _ := filepath.Glob(filepath.Join(src, "db", "*.sst"))
			fi, err := os.Stat(sst[0])
			if err != nil {
				t.Fatal(err)
			}
			// The index and bloom filter take the last few KB; 80% of the
			// file is data.
			dir := damage(t, src, "*.sst", int(float64(fi.Size())*frac), 0xff)
			s := openTest(t, Config{Dir: dir, Sync: time.Millisecond})
			st := s.Stats()
			if !strings.Contains(st.Fault, "damaged") || st.Corrupt == 0 {
				t.Errorf("Stats() = Fault %q Corrupt %d, want a damage fault and a count", st.Fault, st.Corrupt)
			}
			checkSurvivors(t, s, "d", n, true)
			checkSurvivors(t, s, "e", n, true)
			if moved, _ := filepath.Glob(filepath.Join(dir, "db.broken-*")); len(moved) != 1 {
				t.Errorf("damaged database kept aside: %v, want one", moved)
			}
		})
	}
	// No room to copy the readable records: the database is moved aside
	// whole rather than filling the disk.
	t.Run("sst_block_no_space_to_salvage", func(t *testing.T) {
		sst, _ := filepath.Glob(filepath.Join(src, "db", "*.sst"))
		fi, err := os.Stat(sst[0])
		if err != nil {
			t.Fatal(err)
		}
		dir := damage(t, src, "*.sst", int(fi.Size()/3), 0xff)
		s := openTest(t, Config{Dir: dir, Sync: time.Millisecond, MinFree: 16 << 20,
			diskFree: func(string) (int64, error) { return 20 << 20, nil }})
		if st := s.Stats(); !strings.Contains(st.Fault, "moved to") || st.InMemory {
			t.Errorf("Stats() = %+v, want on disk with the database moved aside", st)
		}
		checkSurvivors(t, s, "d", n, false)
	})
	// In a table's index: Badger refuses to open the database; it is moved
	// aside whole and numbering continues from state.json.
	t.Run("sst_index", func(t *testing.T) {
		dir := damage(t, src, "*.sst", -200, 0xff)
		s := openTest(t, Config{Dir: dir, Sync: time.Millisecond})
		if st := s.Stats(); !strings.Contains(st.Fault, "moved to") || st.InMemory {
			t.Errorf("Stats() = %+v, want on disk with a moved-aside fault", st)
		}
		checkSurvivors(t, s, "d", n, false)
	})
	// The value log holds none of our records (all inline): it is set
	// aside and nothing is lost.
	t.Run("vlog", func(t *testing.T) {
		dir := damage(t, src, "*.vlog", 0, 0xff)
		s := openTest(t, Config{Dir: dir, Sync: time.Millisecond})
		if st := s.Stats(); !strings.Contains(st.Fault, ".vlog damaged") {
			t.Errorf("Fault = %q, want the value log named", st.Fault)
		}
		checkSurvivors(t, s, "d", n, true)
		if st := s.QueueStats("e"); st.Len != n {
			t.Errorf("queue e Len = %d, want %d", st.Len, n)
		}
	})
	t.Run("manifest", func(t *testing.T) {
		dir := damage(t, src, "MANIFEST", 10, 0x55)
		s := openTest(t, Config{Dir: dir, Sync: time.Millisecond})
		if st := s.Stats(); !strings.Contains(st.Fault, "moved to") {
			t.Errorf("Fault = %q, want the database moved aside", st.Fault)
		}
		checkSurvivors(t, s, "d", n, false)
	})
}

// TestCorruptMemtableLog damages the memtable log of a buffer whose writer
// was killed (kill -9, so the newest events exist only in that log).
func TestCorruptMemtableLog(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	src := filepath.Join(t.TempDir(), "src")
	lines, stderr := runAndKill(t, src, 1, false, false)
	appended := lines.appended["b"] // never forwarded
	if len(appended) == 0 {
		t.Fatalf("child appended nothing; stderr:\n%s", stderr)
	}
	last := appended[len(appended)-1]
	for _, off := range []int{0, 200} { // the log's header, an entry
		dir := damage(t, src, "*.mem", off, 0xff)
		s := openTest(t, Config{Dir: dir, Sync: time.Millisecond})
		st := s.QueueStats("b")
		if st.NextSeq <= last {
			t.Errorf("offset %d: NextSeq = %d, want above %d, the last seq the child appended", off, st.NextSeq, last)
		}
		got := drainAll(t, s, "b")
		if !slices.IsSorted(got) {
			t.Errorf("offset %d: delivered out of order", off)
		}
		t.Logf("offset %d: %d of %d events readable; fault %q", off, len(got), len(appended), s.Stats().Fault)
	}
}

// TestLoadPanicMovesAside: a panic while loading the queues at Open (the
// last resort; TestCorruptFiles shows the checks that normally come first)
// moves the database aside instead of crashing at every start.
func TestLoadPanicMovesAside(t *testing.T) {
	dir := t.TempDir()
	writeClosed(t, dir, 10)
	s := openTest(t, Config{Dir: dir, Sync: time.Millisecond, loadFault: func(q string) {
		if q == "d" {
			panic("slice bounds out of range [:4278190860] with capacity 3852")
		}
	}})
	st := s.Stats()
	if !strings.Contains(st.Fault, "moved to") || st.InMemory {
		t.Errorf("Stats() = %+v, want on disk with the database moved aside", st)
	}
	if next := s.QueueStats("d").NextSeq; next != 11 {
		t.Errorf("NextSeq = %d, want 11 (from state.json)", next)
	}
}

// FuzzOpenCorrupt damages one byte of one file of a real buffer directory
// and opens it: Open must not panic or fail, must never reuse a seq, and
// what it delivers must be in order and have been written.
func FuzzOpenCorrupt(f *testing.F) {
	const n = 300
	tmpl := f.TempDir()
	writeClosed(f, tmpl, n)
	files, _ := os.ReadDir(filepath.Join(tmpl, "db"))
	var names []string
	for _, e := range files {
		if e.Type().IsRegular() {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	for i := range names {
		f.Add(uint8(i), uint32(0), byte(0xff))
		f.Add(uint8(i), uint32(100), byte(0x01))
		f.Add(uint8(i), uint32(30000), byte(0x80))
	}
	f.Fuzz(func(t *testing.T, file uint8, off uint32, x byte) {
		if x == 0 {
			x = 0xff
		}
		name := names[int(file)%len(names)]
		fi, err := os.Stat(filepath.Join(tmpl, "db", name))
		if err != nil || fi.Size() == 0 {
			return
		}
		dir := damage(t, tmpl, name, int(int64(off)%fi.Size()), x)
		s, err := Open(Config{Dir: dir, Sync: time.Millisecond}, nil)
		if err != nil {
			t.Fatalf("Open after damaging %s at %d: %v", name, off, err)
		}
		defer s.Close()
		checkSurvivors(t, s, "d", n, false)
		if _, err := s.Append("d", "t", seqPayload(1)); err != nil {
			t.Fatalf("Append after damage: %v", err)
		}
	})
}
