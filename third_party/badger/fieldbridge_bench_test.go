package badger

import (
	"encoding/binary"
	"testing"
)

// BenchmarkDropPrefixReclaim is the bridge's reclamation at 500 devices in
// miniature: 1 000 queues write ~3 MiB of events into a 4 MiB memtable,
// then one DropPrefix drops one 256-seq block of every queue (1 000
// prefixes, buffer/keys.go rangePrefixes), which flushes the memtable and
// compacts level 0 with the prefixes. It measures the DropPrefix call only,
// and uses only Badger's API, so that it runs on upstream's code too (A/B).
func BenchmarkDropPrefixReclaim(b *testing.B) {
	const queues, perQueue = 1000, 12
	db, err := Open(fieldbridgeOptions(b.TempDir()).WithMemTableSize(4 << 20))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	key := func(q, seq uint64) []byte {
		k := []byte{'e', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
		binary.BigEndian.PutUint32(k[1:], uint32(q))
		binary.BigEndian.PutUint64(k[5:], seq)
		return k
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		base := uint64(i) * 256
		wb := db.NewWriteBatch()
		for s := uint64(0); s < perQueue; s++ {
			for q := uint64(0); q < queues; q++ {
				if err := wb.Set(key(q, base+s), make([]byte, 200)); err != nil {
					b.Fatal(err)
				}
			}
		}
		if err := wb.Flush(); err != nil {
			b.Fatal(err)
		}
		prefixes := make([][]byte, 0, queues)
		for q := uint64(0); q < queues; q++ {
			prefixes = append(prefixes, key(q, base)[:12])
		}
		b.StartTimer()
		if err := db.DropPrefix(prefixes...); err != nil {
			b.Fatal(err)
		}
	}
}
