//go:build !linux

package buffer

import "errors"

// pageOutTables needs Linux's MADV_PAGEOUT and /proc/self/maps.
func (s *Store) pageOutTables() (int64, error) {
	return 0, errors.New("not supported on this platform")
}
