/*
 * fieldbridge patch, not part of upstream ristretto (see ../FIELDBRIDGE.md).
 * SPDX-License-Identifier: Apache-2.0
 */

package z

import (
	"errors"
	"os"
	"syscall"
)

// allocate reserves the blocks of [off, off+n) in f, so that later writes
// through a memory mapping of f cannot fault for lack of space. Where the
// file system has no fallocate it writes zeros instead.
func allocate(f *os.File, off, n int64) error {
	if n <= 0 {
		return nil
	}
	err := syscall.Fallocate(int(f.Fd()), 0, off, n)
	if err == nil || !errors.Is(err, syscall.EOPNOTSUPP) {
		return err
	}
	zeros := make([]byte, 1<<16)
	for n > 0 {
		w := int(min(n, int64(len(zeros))))
		if _, err := f.WriteAt(zeros[:w], off); err != nil {
			return err
		}
		off += int64(w)
		n -= int64(w)
	}
	return nil
}
