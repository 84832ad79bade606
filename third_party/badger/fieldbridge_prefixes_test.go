package badger

import (
	"bytes"
	"fmt"
	"math/rand"
	"slices"
	"testing"
)

// randBytes returns a string of n bytes from a small alphabet, so that
// random prefixes hit random keys, and prefixes of prefixes occur.
func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = "abcd\x00\xff"[r.Intn(6)]
	}
	return b
}

// randPrefixes returns n random prefixes of minLen to minLen+3 bytes plus, for a quarter of
// them, an extension (so that the list holds prefixes of each other) and a
// duplicate now and then.
func randPrefixes(r *rand.Rand, n, minLen int) [][]byte {
	var ps [][]byte
	for range n {
		p := randBytes(r, minLen+r.Intn(4))
		ps = append(ps, p)
		switch r.Intn(8) {
		case 0, 1:
			ps = append(ps, append(slices.Clone(p), randBytes(r, 1+r.Intn(3))...))
		case 2:
			ps = append(ps, slices.Clone(p))
		}
	}
	r.Shuffle(len(ps), func(i, j int) { ps[i], ps[j] = ps[j], ps[i] })
	return ps
}

// TestPrefixSetMatchesLinear: the sorted, prefix-free set answers as
// upstream's linear scan (hasAnyPrefixes) for random keys and prefix lists
// that hold prefixes of each other, duplicates, and (once) the empty prefix.
func TestPrefixSetMatchesLinear(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	for round := range 200 {
		ps := randPrefixes(r, 1+r.Intn(60), 1)
		if round == 7 {
			ps = append(ps, []byte{})
		}
		set := newPrefixSet(ps)
		for i := 1; i < len(set.ps); i++ {
			if bytes.Compare(set.ps[i-1], set.ps[i]) >= 0 || bytes.HasPrefix(set.ps[i], set.ps[i-1]) {
				t.Fatalf("set not sorted and prefix-free: %q", set.ps)
			}
		}
		for range 500 {
			key := randBytes(r, r.Intn(9))
			if got, want := set.hasPrefixOf(key), hasAnyPrefixes(key, ps); got != want {
				t.Fatalf("key %q, prefixes %q: set says %v, linear %v", key, ps, got, want)
			}
		}
	}
}

// TestDropPrefixManyPrefixes: DropPrefix with hundreds of prefixes, some
// prefixes of others, over keys in the memtable, in level 0 and in deeper
// levels, leaves exactly the keys that no prefix covers (by the linear
// definition), before and after a reopen; and the tables it keeps or drops
// agree with upstream's containsAnyPrefixes.
func TestDropPrefixManyPrefixes(t *testing.T) {
	for seed := int64(1); seed <= 3; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			r := rand.New(rand.NewSource(seed))
			dir := t.TempDir()
			db, err := Open(fieldbridgeOptions(dir))
			if err != nil {
				t.Fatal(err)
			}
			keys := map[string]bool{}
			// ~60 000 keys of ~120 bytes: several memtables, tables on
			// level 0 and below, and the last ones still in the memtable.
			for range 1200 {
				wb := db.NewWriteBatch()
				for range 50 {
					k := append(randBytes(r, 3+r.Intn(5)), fmt.Sprintf("/%d", r.Int63())...)
					keys[string(k)] = true
					if err := wb.Set(k, bytes.Repeat([]byte{'v'}, 100)); err != nil {
						t.Fatal(err)
					}
				}
				if err := wb.Flush(); err != nil {
					t.Fatal(err)
				}
			}
			ps := randPrefixes(r, 300, 3)
			// Prefixes that hold no key at all, and long ones.
			ps = append(ps, []byte("zz"), []byte("abcdabcd"), []byte("a\xff\x00"))

			set := newPrefixSet(ps)
			for _, l := range db.lc.levels {
				l.RLock()
				for _, tbl := range l.tables {
					if got, want := set.inTable(tbl), containsAnyPrefixes(tbl, ps); got != want {
						t.Errorf("table %d [%q, %q]: set says %v, upstream %v",
							tbl.ID(), tbl.Smallest(), tbl.Biggest(), got, want)
					}
					covered := false
					for _, p := range ps {
						covered = covered || bytes.HasPrefix(tbl.Smallest(), p) && bytes.HasPrefix(tbl.Biggest(), p)
					}
					if got := set.coversTable(tbl); got != covered {
						t.Errorf("table %d [%q, %q]: set covers %v, upstream %v",
							tbl.ID(), tbl.Smallest(), tbl.Biggest(), got, covered)
					}
				}
				l.RUnlock()
			}

			if err := db.DropPrefix(ps...); err != nil {
				t.Fatal(err)
			}
			want := map[string]bool{}
			for k := range keys {
				if !hasAnyPrefixes([]byte(k), ps) {
					want[k] = true
				}
			}
			if len(want) == 0 || len(want) == len(keys) {
				t.Fatalf("the prefixes cover %d of %d keys: not a test", len(keys)-len(want), len(keys))
			}
			checkKeys(t, db, want)
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			db, err = Open(fieldbridgeOptions(dir))
			if err != nil {
				t.Fatal(err)
			}
			checkKeys(t, db, want)
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func checkKeys(t *testing.T, db *DB, want map[string]bool) {
	t.Helper()
	got := map[string]bool{}
	err := db.View(func(txn *Txn) error {
		it := txn.NewIterator(IteratorOptions{})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			got[string(it.Item().KeyCopy(nil))] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for k := range want {
		if !got[k] {
			t.Errorf("key %q was dropped", k)
		}
	}
	for k := range got {
		if !want[k] {
			t.Errorf("key %q was kept", k)
		}
	}
}

// TestDropPrefixFlushLeavesOutUnheldKeys: DropPrefix's memtable flush leaves
// out the keys of dropped prefixes that no table holds (new/), keeps those
// of which a table holds an older version (old/: the level drops remove
// both, bottom-up, so the old one never resurfaces alone), and the result is
// exactly the keys of no dropped prefix, before and after a reopen.
func TestDropPrefixFlushLeavesOutUnheldKeys(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(fieldbridgeOptions(dir).WithMemTableSize(4 << 20))
	if err != nil {
		t.Fatal(err)
	}
	set := func(keys ...string) {
		t.Helper()
		wb := db.NewWriteBatch()
		for _, k := range keys {
			if err := wb.Set([]byte(k), []byte("v-"+k)); err != nil {
				t.Fatal(err)
			}
		}
		if err := wb.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	var old, fresh, keep []string
	for i := range 2000 {
		old = append(old, fmt.Sprintf("old/%05d", i))
		fresh = append(fresh, fmt.Sprintf("new/%05d", i))
		keep = append(keep, fmt.Sprintf("keep/%05d", i))
	}
	// old/ and the first half of keep/ into a level-0 table: DropPrefix of
	// a junk key flushes the memtable.
	set(old...)
	set(keep[:1000]...)
	set("junk")
	if err := db.DropPrefix([]byte("junk")); err != nil {
		t.Fatal(err)
	}
	if n := len(db.Tables()); n == 0 {
		t.Fatal("no table after the first DropPrefix")
	}
	// Newer versions of old/, and new/ and keep/ only in the memtable.
	set(old...)
	set(fresh...)
	set(keep[1000:]...)
	before := db.flushDropped.Load()
	if err := db.DropPrefix([]byte("old/"), []byte("new/")); err != nil {
		t.Fatal(err)
	}
	left := int(db.flushDropped.Load() - before)
	// Bloom filters may keep a few new/ keys (false positives), never an
	// old/ key (a table holds it: no false negatives).
	if left > len(fresh) || left < len(fresh)*9/10 {
		t.Errorf("the flush left out %d keys, want (a little less than) the %d new/ keys", left, len(fresh))
	}
	want := map[string]bool{}
	for _, k := range keep {
		want[k] = true
	}
	checkKeys(t, db, want)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = Open(fieldbridgeOptions(dir).WithMemTableSize(4 << 20))
	if err != nil {
		t.Fatal(err)
	}
	checkKeys(t, db, want)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// filterPrefixesToDropEach is upstream's filterPrefixesToDrop: a
// transaction and a prefix iterator per prefix.
func filterPrefixesToDropEach(db *DB, prefixes [][]byte) ([][]byte, error) {
	var filtered [][]byte
	for _, prefix := range prefixes {
		err := db.View(func(txn *Txn) error {
			iopts := DefaultIteratorOptions
			iopts.Prefix = prefix
			iopts.PrefetchValues = false
			itr := txn.NewIterator(iopts)
			defer itr.Close()
			itr.Rewind()
			if itr.ValidForPrefix(prefix) {
				filtered = append(filtered, prefix)
			}
			return nil
		})
		if err != nil {
			return filtered, err
		}
	}
	return filtered, nil
}

// TestFilterPrefixesToDropMatchesUpstream: one iterator with a Seek per
// prefix keeps the same prefixes, in the same order, as upstream's iterator
// per prefix, over keys in tables and in the memtable, some deleted (a
// prefix whose keys are all deleted holds no data), for random prefix lists
// with prefixes of each other, duplicates and the empty prefix.
func TestFilterPrefixesToDropMatchesUpstream(t *testing.T) {
	r := rand.New(rand.NewSource(7))
	db, err := Open(fieldbridgeOptions(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var keys [][]byte
	for range 400 {
		wb := db.NewWriteBatch()
		for range 50 {
			k := append(randBytes(r, 3+r.Intn(5)), fmt.Sprintf("/%d", r.Int63())...)
			keys = append(keys, k)
			if err := wb.Set(k, bytes.Repeat([]byte{'v'}, 100)); err != nil {
				t.Fatal(err)
			}
		}
		if err := wb.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	wb := db.NewWriteBatch()
	for _, k := range keys {
		if r.Intn(3) > 0 {
			if err := wb.Delete(k); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := wb.Flush(); err != nil {
		t.Fatal(err)
	}
	kept := 0
	for round := range 30 {
		ps := randPrefixes(r, 1+r.Intn(300), 3)
		if round == 3 {
			ps = append(ps, []byte{})
		}
		got, err := db.filterPrefixesToDrop(ps)
		if err != nil {
			t.Fatal(err)
		}
		want, err := filterPrefixesToDropEach(db, ps)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.EqualFunc(got, want, bytes.Equal) {
			t.Fatalf("round %d: kept %q, upstream %q", round, got, want)
		}
		kept += len(got)
	}
	if kept == 0 {
		t.Fatal("no prefix held data: not a test")
	}
}
