/*
 * SPDX-FileCopyrightText: © Hypermode Inc. <hello@hypermode.com>
 * SPDX-License-Identifier: Apache-2.0
 */

package z

import "golang.org/x/sys/unix"

// dropResident: fieldbridge patch, see resident.go.
func dropResident(b []byte) error {
	return unix.Madvise(b, unix.MADV_DONTNEED)
}
