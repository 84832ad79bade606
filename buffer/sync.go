package buffer

// The group commit: with SyncWrites off, Badger's logs are fsynced
// Config.Sync after the first write that made the Store dirty. The timer is
// armed by that write (markDirty), not by a ticker: an idle Store (a broker
// and devices both down, or a quiet bridge) wakes no goroutine for it.

// markDirty notes a committed write; the first since the last sync arms the
// sync timer.
func (s *Store) markDirty() {
	if !s.dirty.Swap(true) && s.cfg.Sync > 0 {
		s.syncTimer.Reset(s.cfg.Sync)
	}
}

// syncLoop fsyncs when the sync timer fires, until Close.
func (s *Store) syncLoop() {
	defer s.wg.Done()
	for {
		select {
		case <-s.done:
			return
		case <-s.syncTimer.C:
			s.syncWakes.Add(1)
			s.syncNow()
		}
	}
}

func (s *Store) syncNow() {
	s.syncJournal() // not behind the gate: reclamation holds it while the writer journals
	if !s.dirty.Swap(false) {
		return
	}
	if !s.gate.TryRLock() {
		// Reclamation holds the gate (the writer journals meanwhile, and
		// the journal was just synced): sync Badger after Config.Sync.
		s.markDirty()
		return
	}
	defer s.gate.RUnlock()
	if s.closed {
		return
	}
	if err := s.db.Sync(); err != nil {
		s.markDirty() // try again after Config.Sync
		s.noteWriteError(err)
	}
}
