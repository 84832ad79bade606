//go:build linux

package buffer

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"fieldbridge/internal/testwait"
)

// tableRSS is the resident size of the Store's table mappings, from
// /proc/self/smaps (what VmRSS counts of them).
func tableRSS(t testing.TB, s *Store) int64 {
	t.Helper()
	dbDir, err := filepath.EvalSymlinks(filepath.Join(s.dir, "db"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rss int64
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if key, _, _ := strings.Cut(line, " "); !strings.HasSuffix(key, ":") {
			// A mapping's header line (an anonymous one has no path).
			_, path, _ := parseMapsLine([]byte(line))
			in = strings.HasPrefix(path, dbDir+"/") && strings.HasSuffix(path, ".sst")
			continue
		}
		if v, ok := strings.CutPrefix(line, "Rss:"); ok && in {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(v, "kB")), 10, 64)
			if err != nil {
				t.Fatalf("smaps line %q: %v", line, err)
			}
			rss += kb << 10
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return rss
}

// appendBacklog appends about bytes of events to queue q, nothing
// forwarded, and waits until Badger's tables hold most of them.
func appendBacklog(t *testing.T, s *Store, q string, bytes int64) []uint64 {
	t.Helper()
	const pad = 1000
	seqs := mustAppend(t, s, q, int(bytes/pad), pad)
	waitTablesSettled(t, s, bytes)
	return seqs
}

// waitTablesSettled waits until Badger's tables hold at least half of
// bytes and no compaction changed them for a second.
func waitTablesSettled(t *testing.T, s *Store, bytes int64) {
	t.Helper()
	testwait.For(t, 30*time.Second, "backlog flushed into tables", func() bool {
		return tablesOnDisk(s) >= bytes/2
	})
	// Compactions read and write tables through their mappings too: let
	// them end (the set of tables unchanged for a second) before the
	// resident size is compared.
	var last []uint64
	var since time.Time
	testwait.For(t, 60*time.Second, "compactions over", func() bool {
		var ids []uint64
		for _, ti := range s.db.Tables() {
			ids = append(ids, ti.ID)
		}
		slices.Sort(ids)
		if !slices.Equal(ids, last) {
			last, since = ids, time.Now()
		}
		return time.Since(since) >= time.Second
	})
}

// TestDropTablePages: a backlog that spilled into Badger's tables leaves
// their pages resident in the process (the table builders wrote them
// through the mapping); dropTablePages takes them out, and every event
// still reads back, in order, exactly once. Without the advice the tables'
// resident size stays where it was.
func TestDropTablePages(t *testing.T) {
	s := openTest(t, Config{Dir: t.TempDir(), Sync: time.Second, memTableSizeMiB: 1, noBackground: true})
	seqs := appendBacklog(t, s, "q", 12<<20)

	before := tableRSS(t, s)
	t.Logf("tables: %d bytes on disk, %d resident", tablesOnDisk(s), before)
	if before < 4<<20 {
		t.Fatalf("tables resident %d bytes before the advice, want at least 4 MiB (the test shows nothing otherwise)", before)
	}
	advised, err := s.dropTablePages()
	if err != nil {
		t.Fatalf("dropTablePages: %v", err)
	}
	after := tableRSS(t, s)
	t.Logf("advised %d bytes of mappings; resident after %d", advised, after)
	if advised < tablesOnDisk(s)/2 {
		t.Fatalf("advised %d bytes of mappings, want about the %d bytes of tables", advised, tablesOnDisk(s))
	}
	if after > before/4 {
		t.Fatalf("tables resident %d bytes after the advice (before %d), want at most a quarter", after, before)
	}

	got := drainAll(t, s, "q")
	if !slices.Equal(got, seqs) {
		t.Fatalf("after paging out, %d events forwarded, want the %d appended in order once each", len(got), len(seqs))
	}
}

// TestPageOutLoopBoundsTables: with the background loop on, the tables
// of a backlog do not stay resident; with it off (pageOutEvery < 0) they
// do. Both stores hold the same backlog. With the loop on, the backlog then
// drains and a reclamation rewrites and deletes tables while pageOutDuring
// advises every millisecond (z.DropResident against the unmapping of
// deleted tables, under -race): every event arrives once, in order.
func TestPageOutLoopBoundsTables(t *testing.T) {
	for _, on := range []bool{false, true} {
		every := time.Duration(-1)
		if on {
			every = time.Millisecond
		}
		s := openTest(t, Config{Dir: t.TempDir(), Sync: time.Second, memTableSizeMiB: 1,
			reclaimEvery: time.Hour, reclaimBytes: 1 << 40, pageOutEvery: every})
		seqs := appendBacklog(t, s, "q", 12<<20)
		if !on {
			if rss := tableRSS(t, s); rss < 4<<20 {
				t.Fatalf("without the loop the tables are resident %d bytes, want at least 4 MiB", rss)
			}
			continue
		}
		testwait.For(t, 10*time.Second, "table pages out of the RSS", func() bool {
			return tableRSS(t, s) < 1<<20
		})
		if got := drainAll(t, s, "q"); !slices.Equal(got, seqs) {
			t.Fatalf("%d events forwarded, want the %d appended in order once each", len(got), len(seqs))
		}
		before := tablesOnDisk(s)
		s.reclaim()
		t.Logf("reclamation: tables %d -> %d bytes on disk", before, tablesOnDisk(s))
		if after := tablesOnDisk(s); after >= before {
			t.Fatalf("reclamation left %d bytes of tables (before %d): no table was deleted under the loop", after, before)
		}
	}
}

func TestParseMapsLine(t *testing.T) {
	for _, c := range []struct {
		line  string
		start uintptr
		path  string
		ok    bool
	}{
		{"7f3a1c000000-7f3a1c400000 rw-s 00000000 fd:00 1234 /var/lib/fieldbridge/db/000001.sst",
			0x7f3a1c000000, "/var/lib/fieldbridge/db/000001.sst", true},
		{"7f3a1c000000-7f3a1c400000 rw-s 00000000 fd:00 1234 /data/my buffer/db/000002.sst",
			0x7f3a1c000000, "/data/my buffer/db/000002.sst", true},
		{"7f3a1c000000-7f3a1c400000 rw-s 00000000 fd:00 1234 /d/db/000003.sst (deleted)",
			0x7f3a1c000000, "/d/db/000003.sst (deleted)", true},
		{"c000000000-c004000000 rw-p 00000000 00:00 0 ", 0, "", false},
		{"garbage", 0, "", false},
	} {
		r, path, ok := parseMapsLine([]byte(c.line))
		if ok != c.ok || path != c.path || (ok && r.start != c.start) {
			t.Errorf("parseMapsLine(%q) = %#x, %q, %v; want %#x, %q, %v", c.line, r.start, path, ok, c.start, c.path, c.ok)
		}
	}
}

// addrRange is one mapping's [start, end) from /proc/self/maps.
type addrRange struct{ start, end uintptr }

// parseMapsLine splits a /proc/self/maps line
// ("start-end perms offset dev inode path") into its range and path.
func parseMapsLine(line []byte) (addrRange, string, bool) {
	fields := bytes.Fields(line)
	if len(fields) < 6 {
		return addrRange{}, "", false // anonymous
	}
	lo, hi, ok := bytes.Cut(fields[0], []byte("-"))
	if !ok {
		return addrRange{}, "", false
	}
	start, err1 := strconv.ParseUint(string(lo), 16, 64)
	end, err2 := strconv.ParseUint(string(hi), 16, 64)
	if err := errors.Join(err1, err2); err != nil || end <= start {
		return addrRange{}, "", false
	}
	// The path is the rest of the line (it may hold spaces); a deleted
	// file's ends in " (deleted)" and does not match ".sst".
	path := string(line[bytes.Index(line, fields[5]):])
	return addrRange{uintptr(start), uintptr(end)}, path, true
}

// TestPageOutDuring: while pageOutDuring runs (reclaim wraps DropPrefix in
// it, which rewrites every table of a former backlog through the mappings
// after pageOutLoop went idle), tables read through the mappings leave the
// RSS again within its passes; without it (pageOutEvery < 0) they stay.
// The tables are read the way a rewrite reads them, by iterating every key.
// (Its effect inside a reclamation is timing: docs/performance.md.)
func TestPageOutDuring(t *testing.T) {
	for _, on := range []bool{false, true} {
		every := time.Duration(-1)
		if on {
			every = 5 * time.Millisecond // passes every 1 ms
		}
		s := openTest(t, Config{Dir: t.TempDir(), Sync: time.Second, memTableSizeMiB: 1,
			noBackground: true, pageOutEvery: every})
		appendBacklog(t, s, "q", 12<<20)
		onDisk := tablesOnDisk(s)
		if _, err := s.dropTablePages(); err != nil {
			t.Fatal(err)
		}
		stop := s.pageOutDuring()
		readAll := func() {
			err := s.db.View(func(txn *badgerTxn) error {
				it := txn.NewIterator(badgerIterOpts(nil, false))
				defer it.Close()
				for it.Rewind(); it.Valid(); it.Next() {
					if err := it.Item().Value(func([]byte) error { return nil }); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		readAll()
		if !on {
			if rss := tableRSS(t, s); rss < onDisk/2 {
				t.Fatalf("without page-out the tables read are resident %d bytes, want at least half of their %d (the test shows nothing otherwise)", rss, onDisk)
			}
			stop()
			continue
		}
		testwait.For(t, 10*time.Second, "the tables read out of the RSS while pageOutDuring runs", func() bool {
			return tableRSS(t, s) < 1<<20
		})
		stop()
	}
}
