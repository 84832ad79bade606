/*
 * SPDX-FileCopyrightText: © Hypermode Inc. <hello@hypermode.com>
 * SPDX-License-Identifier: Apache-2.0
 */

package z

import "sync"

// fieldbridge patch (see ../FIELDBRIDGE.md, "Resident pages"): a registry of
// the live mappings made by OpenMmapFileUsing, so that DropResident can
// advise on them without racing with their unmapping. Close, Delete and
// Truncate change or end a registered mapping only under mapped's lock.
var mapped struct {
	sync.Mutex
	files map[*MmapFile]struct{}
}

func track(m *MmapFile) {
	mapped.Lock()
	defer mapped.Unlock()
	if mapped.files == nil {
		mapped.files = map[*MmapFile]struct{}{}
	}
	mapped.files[m] = struct{}{}
}

// untrackAndUnmap removes m from the registry and unmaps it, under the
// registry's lock: DropResident never advises on an address that is no
// longer m's mapping.
func untrackAndUnmap(m *MmapFile) error {
	mapped.Lock()
	defer mapped.Unlock()
	delete(mapped.files, m)
	return Munmap(m.Data)
}

// DropResident takes the pages of every live mapping whose file name
// matches out of this process's page tables (MADV_DONTNEED) and returns the
// bytes of mappings it advised. The mappings are MAP_SHARED mappings of
// files, so nothing is lost: the pages stay in the page cache (dirty ones
// are written back as usual) and the next access maps them again with a
// minor fault. What changes is that they no longer count in the process's
// RSS, and the kernel can reclaim them like any unmapped cache.
func DropResident(match func(name string) bool) (int64, error) {
	mapped.Lock()
	defer mapped.Unlock()
	var n int64
	for m := range mapped.files {
		if len(m.Data) == 0 || m.Fd == nil || !match(m.Fd.Name()) {
			continue
		}
		if err := dropResident(m.Data); err != nil {
			return n, err
		}
		n += int64(len(m.Data))
	}
	return n, nil
}
