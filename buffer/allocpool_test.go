package buffer

import (
	"slices"
	"testing"

	"github.com/dgraph-io/ristretto/v2/z"
)

// TestAllocatorPoolKeepsLittle: Badger's table builders take their memory
// from the z.AllocatorPool that Badger makes with room for 8 (badger
// v4.9.6, db.go), and give it back there when the table is built. Upstream,
// the pool keeps all of them, each grown past twice a table, while flushes
// or compactions keep coming: through an outage that held 48-92 MiB of the
// bridge's heap between compactions (third_party/ristretto/FIELDBRIDGE.md,
// "Idle table builders"). Patched, it keeps one, trimmed to the size it was
// made with.
func TestAllocatorPoolKeepsLittle(t *testing.T) {
	p := z.NewAllocatorPool(8) // as Badger makes it
	defer p.Release()
	const first = 4 << 20 // a builder of a 2 MiB table starts with 2x
	var returned []*z.Allocator
	for range 4 { // four builders at once, as a compaction's splits run
		a := p.Get(first, "test")
		a.Allocate(3 << 20)
		a.Allocate(6 << 20) // past the first buffer: the allocator grows
		if got := a.Allocated(); got < first+6<<20 {
			t.Fatalf("allocator holds %d bytes after growing, want at least %d", got, first+6<<20)
		}
		returned = append(returned, a)
	}
	for _, a := range returned {
		p.Return(a)
	}
	var reused int
	var kept uint64
	for range 4 {
		a := p.Get(first, "test")
		if slices.Contains(returned, a) {
			reused++
			kept += a.Allocated()
		}
		defer a.Release()
	}
	if reused > 1 || kept > first {
		t.Fatalf("the pool kept %d of 4 returned allocators, %d bytes; want at most 1 of at most %d bytes",
			reused, kept, first)
	}
}
