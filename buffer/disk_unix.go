//go:build unix

package buffer

import "syscall"

// statfsFree returns the bytes available to an unprivileged user on the file
// system holding dir.
func statfsFree(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}
