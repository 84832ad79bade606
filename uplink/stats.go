package uplink

// Stats describes a Client for metrics.
type Stats struct {
	ClientID string
	// Connected is what Connected reports.
	Connected bool
	// Connections counts the connections that started accepting publishes
	// since the Client was built; each one after the first is a reconnect.
	Connections uint64
	// InFlight is how many publishes were written to the open connection
	// and wait for their acknowledgement (at most Config.MaxInflight); 0
	// without a connection.
	InFlight int
}

// Stats returns the Client's statistics. It is safe for concurrent use.
func (c *Client) Stats() Stats {
	st := Stats{ClientID: c.cfg.ClientID, Connections: c.epoch.Load()}
	c.mu.Lock()
	if s := c.sess; s != nil {
		st.Connected = true
		st.InFlight = s.inFlight()
	}
	c.mu.Unlock()
	return st
}
