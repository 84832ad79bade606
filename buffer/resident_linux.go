//go:build linux

package buffer

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// pageOutTables advises MADV_PAGEOUT on every mapping of a table (.sst) of
// this Store's database, as /proc/self/maps lists them, and returns how
// many bytes of mappings it advised.
//
// MADV_PAGEOUT unmaps the pages from this process and reclaims them as
// memory pressure would: clean pages leave the page cache (a later read
// faults them in from disk again), dirty ones stay in the cache until
// written back. It never changes what the memory holds, so it is safe on
// an address that Badger unmapped (ENOMEM, ignored) and the runtime reused
// for something else since /proc/self/maps was read: an anonymous page
// would be swapped out (or, without swap, left alone), never zeroed.
// MADV_DONTNEED would be cheaper for Badger (the pages would stay cached)
// but zeroes a private anonymous mapping; it is not used here for that
// race.
func (s *Store) pageOutTables() (int64, error) {
	if s.dir == "" {
		return 0, nil
	}
	dbDir, err := filepath.Abs(filepath.Join(s.dir, "db"))
	if err != nil {
		return 0, err
	}
	if real, err := filepath.EvalSymlinks(dbDir); err == nil {
		dbDir = real // /proc/self/maps shows the resolved path
	}
	ranges, err := tableMappings(dbDir + string(filepath.Separator))
	if err != nil {
		return 0, err
	}
	var advised int64
	for _, r := range ranges {
		_, _, errno := syscall.Syscall(syscall.SYS_MADVISE, r.start, r.end-r.start, unix.MADV_PAGEOUT)
		switch errno {
		case 0:
			advised += int64(r.end - r.start)
		case syscall.ENOMEM:
			// Unmapped since /proc/self/maps was read (a table
			// deleted by a compaction): nothing to do.
		default:
			return advised, fmt.Errorf("madvise(MADV_PAGEOUT): %w", errno)
		}
	}
	return advised, nil
}

// addrRange is one mapping's [start, end) from /proc/self/maps.
type addrRange struct{ start, end uintptr }

// tableMappings lists the mappings of files named *.sst directly under dir
// (which ends in a separator).
func tableMappings(dir string) ([]addrRange, error) {
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []addrRange
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		r, path, ok := parseMapsLine(sc.Bytes())
		if !ok || !strings.HasPrefix(path, dir) || !strings.HasSuffix(path, ".sst") ||
			strings.ContainsRune(path[len(dir):], filepath.Separator) {
			continue
		}
		out = append(out, r)
	}
	return out, sc.Err()
}

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
