//go:build !linux

/*
 * SPDX-FileCopyrightText: © Hypermode Inc. <hello@hypermode.com>
 * SPDX-License-Identifier: Apache-2.0
 */

package z

import "errors"

// dropResident: fieldbridge patch, see resident.go. Only Linux is done.
func dropResident([]byte) error {
	return errors.New("z.DropResident: not implemented on this platform")
}
