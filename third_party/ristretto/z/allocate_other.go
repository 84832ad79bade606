//go:build !linux

/*
 * fieldbridge patch, not part of upstream ristretto (see ../FIELDBRIDGE.md).
 * SPDX-License-Identifier: Apache-2.0
 */

package z

import "os"

// allocate is a no-op here: fieldbridge runs on Linux, where allocate
// reserves the blocks of memory-mapped files.
func allocate(*os.File, int64, int64) error { return nil }
