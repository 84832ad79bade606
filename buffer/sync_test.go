package buffer

import (
	"testing"
	"time"

	"fieldbridge/internal/testwait"
)

// TestSyncTimerRunsOnlyWhileDirty: the group commit fsyncs once per dirty
// period, within Config.Sync of the first write, and an idle Store wakes
// no goroutine for it (a ticker woke the sync loop every Config.Sync).
func TestSyncTimerRunsOnlyWhileDirty(t *testing.T) {
	const every = 5 * time.Millisecond
	s := openTest(t, Config{Dir: t.TempDir(), Sync: every})
	mustAppend(t, s, "q", 3, 10)
	testwait.For(t, 20*time.Second, "the appends synced", func() bool { return !s.dirty.Load() })
	synced := s.syncWakes.Load()
	if synced == 0 {
		t.Fatal("the Store is clean, but the sync loop never ran")
	}

	// Idle for twenty sync periods: no wake-up at all, however slow the
	// machine (a ticker would have woken the loop about twenty times).
	time.Sleep(20 * every)
	if got := s.syncWakes.Load() - synced; got != 0 {
		t.Errorf("an idle Store woke the sync loop %d times, want 0", got)
	}

	// The next write arms the timer again.
	mustAppend(t, s, "q", 1, 10)
	testwait.For(t, 20*time.Second, "the next append synced", func() bool { return !s.dirty.Load() })
	if got := s.syncWakes.Load() - synced; got < 1 {
		t.Errorf("the sync loop ran %d times after the next append, want at least 1", got)
	}
}
