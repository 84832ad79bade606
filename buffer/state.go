package buffer

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// stateName is the file, next to the Badger directory, that keeps what must
// survive even the loss of the database: the seq leases.
const stateName = "state.json"

// stateFile is the content of state.json. It is rewritten atomically
// (temporary file, fsync, rename, fsync of the directory) at Open, when a
// queue's lease runs out, and at Close.
type stateFile struct {
	Format int `json:"format"`
	// BootID is the kernel boot id of the run that wrote the file. A
	// different boot id after an unclean stop means the page cache was lost
	// (power cut or kernel crash), not only the process.
	BootID string `json:"boot_id"`
	// Clean is true only when Close completed.
	Clean bool `json:"clean"`
	// SyncAlways records that the writing run fsynced every write, so even
	// a power loss lost nothing that Append had confirmed.
	SyncAlways bool `json:"sync_always"`
	// Leases maps a queue name to a seq bound: no seq at or above it has
	// been handed out. After a clean Close it is the exact next seq.
	Leases map[string]uint64 `json:"leases"`
	// Failed maps a queue name to the events it could not keep (no disk
	// space, a failed write) since the buffer was created: QueueStats.Failed
	// survives restarts, so what went missing stays reported.
	Failed map[string]uint64 `json:"failed,omitempty"`
	// Queues maps a queue name to its id: a copy of the registry in the
	// database, so that a salvage finds the queues of a damaged registry.
	Queues  map[string]uint32 `json:"queues,omitempty"`
	Written time.Time         `json:"written"`
}

func readState(dir string) (stateFile, error) {
	var st stateFile
	b, err := os.ReadFile(filepath.Join(dir, stateName))
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("decode %s: %v", stateName, err)
	}
	if st.Format != 1 {
		return st, fmt.Errorf("%s: unknown format %d", stateName, st.Format)
	}
	if st.Leases == nil {
		st.Leases = map[string]uint64{}
	}
	if st.Failed == nil {
		st.Failed = map[string]uint64{}
	}
	return st, nil
}

// withFailed returns st with the Failed counters and the ids of qs. The
// caller holds leaseMu (lock order: leaseMu -> queue.mu).
func withFailed(st stateFile, qs []*queue) stateFile {
	failed := make(map[string]uint64, len(st.Failed)+len(qs))
	for name, n := range st.Failed {
		failed[name] = n
	}
	ids := make(map[string]uint32, len(st.Queues)+len(qs))
	for name, id := range st.Queues {
		ids[name] = id
	}
	for _, q := range qs {
		ids[q.name] = q.qid
		q.mu.Lock()
		if n := q.failed.Load(); n > 0 {
			failed[q.name] = n
		}
		q.mu.Unlock()
	}
	st.Failed, st.Queues = failed, ids
	return st
}

// saveFailed writes the Failed counters to state.json when they changed
// since the last write. A failure (the disk is full) is retried on the next
// call; Close writes them too.
func (s *Store) saveFailed() {
	if !s.persistent || !s.failedDirty.Swap(false) {
		return
	}
	qs := s.snapshotQueues() // before leaseMu: lock order is mu -> leaseMu
	s.leaseMu.Lock()
	defer s.leaseMu.Unlock()
	if s.stateClosed {
		return
	}
	st := withFailed(s.state, qs)
	if err := writeState(s.dir, st); err != nil {
		s.failedDirty.Store(true)
		return
	}
	s.state = st
}

func writeState(dir string, st stateFile) error {
	st.Format = 1
	st.Written = time.Now().UTC()
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, stateName+".tmp*")
	if err != nil {
		return err
	}
	_, werr := tmp.Write(b)
	serr := tmp.Sync()
	cerr := tmp.Close()
	if err := firstErr(werr, serr, cerr); err != nil {
		_ = os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, stateName)); err != nil {
		_ = os.Remove(tmp.Name())
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	serr := d.Sync()
	cerr := d.Close()
	return firstErr(serr, cerr)
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// bootID returns the kernel's boot id, or "" where there is none (then every
// unclean stop is treated as a possible power loss).
func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
