package badger

import (
	"bytes"
	"slices"
	"sort"

	"github.com/dgraph-io/badger/v4/table"
	"github.com/dgraph-io/badger/v4/y"
)

// prefixSet is the set of prefixes one DropPrefix call drops (fieldbridge).
// Upstream checked every key of the flushed memtable and of every rewritten
// table against every prefix in turn (hasAnyPrefixes), O(keys × prefixes);
// fieldbridge drops up to ~1 000 queue prefixes at once. The set is sorted
// and prefix-free (a prefix that has another prefix of the set as its own
// prefix is left out: the shorter one covers all its keys), so the only
// prefix of the set that can be a prefix of a key is the greatest one that
// is <= the key: every byte string between a prefix p and a key that starts
// with p also starts with p, so a greater q <= key would have p as a prefix,
// which a prefix-free set excludes. One binary search per key.
type prefixSet struct {
	ps [][]byte // sorted by bytes.Compare, no element a prefix of another
}

// newPrefixSet builds the set once per DropPrefix call.
func newPrefixSet(prefixes [][]byte) prefixSet {
	if len(prefixes) == 0 {
		return prefixSet{}
	}
	sorted := slices.Clone(prefixes)
	slices.SortFunc(sorted, bytes.Compare)
	ps := make([][]byte, 0, len(sorted))
	for _, p := range sorted {
		// In sorted order a prefix comes right before the strings it covers,
		// so comparing with the last kept one is enough.
		if len(ps) > 0 && bytes.HasPrefix(p, ps[len(ps)-1]) {
			continue
		}
		ps = append(ps, p)
	}
	return prefixSet{ps: ps}
}

func (s prefixSet) empty() bool { return len(s.ps) == 0 }

func (s prefixSet) len() int { return len(s.ps) }

// floor returns the index of the greatest prefix <= key, or -1.
func (s prefixSet) floor(key []byte) int {
	i := sort.Search(len(s.ps), func(i int) bool { return bytes.Compare(s.ps[i], key) > 0 })
	return i - 1
}

// covering returns the prefix of the set that key starts with, or nil.
func (s prefixSet) covering(key []byte) []byte {
	if i := s.floor(key); i >= 0 && bytes.HasPrefix(key, s.ps[i]) {
		return s.ps[i]
	}
	return nil
}

// hasPrefixOf reports whether key starts with some prefix of the set
// (upstream: hasAnyPrefixes(key, prefixes)).
func (s prefixSet) hasPrefixOf(key []byte) bool {
	return s.covering(key) != nil
}

// coversTable reports whether every key of t starts with one prefix of the
// set (upstream's keepTable in compactBuildTables: the smallest and the
// biggest key start with the same prefix). Only the prefix that covers the
// smallest key can cover both.
func (s prefixSet) coversTable(t *table.Table) bool {
	p := s.covering(t.Smallest())
	return p != nil && bytes.HasPrefix(t.Biggest(), p)
}

// inTable reports whether t holds a key that starts with some prefix of the
// set (upstream: containsAnyPrefixes, containsPrefix for every prefix).
// containsPrefix can only be true for the prefix that covers the smallest
// key and for prefixes after the smallest key up to the biggest: those are
// the candidates, checked with upstream's containsPrefix.
func (s prefixSet) inTable(t *table.Table) bool {
	small, big := t.Smallest(), t.Biggest()
	i := s.floor(small)
	if i >= 0 && containsPrefix(t, s.ps[i]) {
		return true
	}
	for i++; i < len(s.ps) && bytes.Compare(s.ps[i], big) <= 0; i++ {
		if containsPrefix(t, s.ps[i]) {
			return true
		}
	}
	return false
}

// mayHoldKey reports whether some table may hold a version of key (an
// internal key, with its timestamp): a table of level 0, or the tables of a
// deeper level whose key range covers it, without a bloom filter or whose
// bloom filter does not rule the key out. False means no table holds it.
func (s *levelsController) mayHoldKey(key []byte) bool {
	user := y.ParseKey(key)
	hash := y.Hash(user)
	for _, l := range s.levels {
		l.RLock()
		tables := l.tables
		if l.level > 0 {
			// Sorted and disjoint: from the first table whose biggest key
			// is >= user, while its smallest key is <= user.
			i := sort.Search(len(tables), func(i int) bool {
				return bytes.Compare(y.ParseKey(tables[i].Biggest()), user) >= 0
			})
			j := i
			for j < len(tables) && bytes.Compare(y.ParseKey(tables[j].Smallest()), user) <= 0 {
				j++
			}
			tables = tables[i:j]
		}
		for _, t := range tables {
			if l.level == 0 && (bytes.Compare(y.ParseKey(t.Smallest()), user) > 0 ||
				bytes.Compare(y.ParseKey(t.Biggest()), user) < 0) {
				continue
			}
			if !t.DoesNotHave(hash) {
				l.RUnlock()
				return true
			}
		}
		l.RUnlock()
	}
	return false
}
