package buffer

import (
	"bytes"
	"slices"
	"testing"
)

func TestRangePrefixes(t *testing.T) {
	for _, c := range []struct {
		name     string
		from, to uint64
		max      int
		wantLens []int // prefix lengths
		wantEnd  uint64
	}{
		{"three_small_blocks", 0, 768, 100, []int{12, 12, 12}, 768},
		{"two_big_one_small", 0, 2<<16 + 256, 100, []int{11, 11, 12}, 2<<16 + 256},
		{"unaligned_start_capped", 256, 1<<16 + 512, 10, []int{12, 12, 12, 12, 12, 12, 12, 12, 12, 12}, 256 + 10*256},
		{"huge_block", 0, 1 << 24, 100, []int{10}, 1 << 24},
		{"empty", 512, 512, 100, nil, 512},
	} {
		t.Run(c.name, func(t *testing.T) {
			ps, end := rangePrefixes(7, c.from, c.to, c.max)
			var lens []int
			for _, p := range ps {
				lens = append(lens, len(p))
			}
			if !slices.Equal(lens, c.wantLens) || end != c.wantEnd {
				t.Fatalf("rangePrefixes(%d, %d, %d) = lens %v, end %d; want %v, %d", c.from, c.to, c.max, lens, end, c.wantLens, c.wantEnd)
			}
			// Every seq in [from, end) is covered by exactly one prefix, and
			// nothing outside.
			for seq := c.from - min(c.from, 300); seq < end+300; seq++ {
				if seq > c.from+300 && seq+300 < end && seq%4099 != 0 {
					continue // boundaries and a sample of the inside
				}
				k := eventKey(7, seq)
				n := 0
				for _, p := range ps {
					if bytes.HasPrefix(k, p) {
						n++
					}
				}
				want := 0
				if seq >= c.from && seq < end {
					want = 1
				}
				if n != want {
					t.Fatalf("seq %d covered %d times, want %d", seq, n, want)
				}
			}
		})
	}
}
