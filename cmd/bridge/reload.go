package main

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"time"

	"fieldbridge/config"
)

// Reload: a new configuration is applied by difference. Buses, devices and
// connections configured exactly as before keep running untouched; a
// changed bus or a bus whose devices changed restarts its loop; a device
// whose identity (type name, token) changed gets a new connection and
// forwarders, one whose mapping or poll changed only new rules on its
// restarted bus; a removed device stops polling at once and its
// connection and forwarders stay until its buffered events are sent; an
// added device starts. The buffer numbers events per queue, and a device's
// queue is its name, so a device that keeps its name keeps counting.
//
// The platform, buffer and metrics blocks cannot be changed by difference
// (every connection, the store and the listener depend on them): a change
// there is reported as needing a restart and the running settings stay.

// ReloadReport says what a reload did.
type ReloadReport struct {
	Added, Removed, Changed []string // devices
	Restarted               []string // buses whose loop restarted, started or stopped
	Unchanged               int      // devices left running untouched
	NeedRestart             []string // blocks whose change needs a restart; their running settings stay
}

// errNotRunning is returned by Reload before Run has started or after it stopped.
var errNotRunning = errors.New("the bridge is not running")

// Reload applies cfg by difference to the running bridge. It is serialised
// with other reloads and with shutdown, and independent of how cfg was
// obtained (SIGHUP reads the file; remote configuration may hand one over).
// On an error nothing was changed.
func (b *bridge) Reload(ctx context.Context, cfg *config.Config) (ReloadReport, error) {
	b.reloadMu.Lock()
	defer b.reloadMu.Unlock()
	var rep ReloadReport
	r := b.run
	if r == nil {
		return rep, errNotRunning
	}
	old := b.view()
	applied := *cfg
	for _, part := range []struct {
		name    string
		same    bool
		keepOld func()
	}{
		{"platform", reflect.DeepEqual(old.cfg.Platform, cfg.Platform), func() { applied.Platform = old.cfg.Platform }},
		{"buffer", reflect.DeepEqual(old.cfg.Buffer, cfg.Buffer), func() { applied.Buffer = old.cfg.Buffer }},
		{"metrics", reflect.DeepEqual(old.cfg.Metrics, cfg.Metrics), func() { applied.Metrics = old.cfg.Metrics }},
		{"management", reflect.DeepEqual(old.cfg.Management, cfg.Management), func() { applied.Management = old.cfg.Management }},
	} {
		if !part.same {
			rep.NeedRestart = append(rep.NeedRestart, part.name)
			part.keepOld()
		}
	}
	v, err := b.buildField(&applied, old)
	if err != nil {
		return rep, err
	}
	if err := ctx.Err(); err != nil {
		return rep, err
	}

	// Stop what changed: loops first (no new events), then the devices that
	// lose their connection.
	for name, u := range old.buses {
		if v.buses[name] != u {
			stopBus(u)
			rep.Restarted = append(rep.Restarted, name)
		}
	}
	for name, d := range old.devices {
		nd := v.devices[name]
		switch {
		case nd == d:
			rep.Unchanged++
		case nd == nil:
			rep.Removed = append(rep.Removed, name)
			stopAgent(d)
			b.retire(r, d)
		default:
			rep.Changed = append(rep.Changed, name)
			stopAgent(d)
			if nd.run != d.run {
				b.stopDevice(d)
			}
		}
	}
	if v.commands != old.commands {
		stopCommands(old.commands)
	}

	b.field.Store(v)
	for name, d := range v.devices {
		o := old.devices[name]
		if o == nil {
			rep.Added = append(rep.Added, name)
		}
		if o == nil || o.run != d.run {
			if dr := b.draining[name]; dr != nil {
				// Removed earlier and still sending: its queue gets one
				// forwarder again, the new one.
				b.stopDevice(dr)
				delete(b.draining, name)
			}
			b.startDevice(r, d)
		}
		if o != d {
			b.startAgent(r, d)
		}
	}
	for name, u := range v.buses {
		if old.buses[name] != u {
			b.startBus(r, u)
			if !slices.Contains(rep.Restarted, name) {
				rep.Restarted = append(rep.Restarted, name)
			}
		}
	}
	if v.commands != old.commands {
		b.startCommands(r, v.commands)
	}
	for _, s := range [][]string{rep.Added, rep.Removed, rep.Changed, rep.Restarted} {
		slices.Sort(s)
	}
	return rep, nil
}

// retire stops a removed device's polling (its bus loop was stopped) and
// keeps its forwarders and connection until its queues are empty, so that
// nothing it buffered is lost; then it stops them. If the bridge stops
// first, what is left stays buffered.
func (b *bridge) retire(r *runner, d *fieldDevice) {
	b.draining[d.name] = d
	b.logger.Info("device removed; sending what it buffered before disconnecting", "device", d.name, "buffered", b.store.QueueStats(d.name).Len)
	r.spawn(r.fwdCtx, &r.forwarders, "retire "+d.name, func() error {
		// Its last readings may still be on their way to the disk: the
		// queue counts them once they are committed.
		if err := b.store.Flush(); err != nil {
			return nil // the buffer closed: the bridge is stopping
		}
		for b.waitEmpty(r.fwdCtx, d.name) {
			if b.finishRetiring(d) {
				return nil
			}
		}
		return nil
	})
}

// finishRetiring stops a retiring device whose queues are empty; false
// when they are not empty any more (the reload that removed it may still
// have been answering its queued commands) and it must wait again. A
// device that was added back in the meantime is left alone.
func (b *bridge) finishRetiring(d *fieldDevice) bool {
	b.reloadMu.Lock()
	defer b.reloadMu.Unlock()
	if b.draining[d.name] != d {
		return true
	}
	if b.store.QueueStats(d.name).Len+b.store.QueueStats(resultQueue(d.name)).Len > 0 {
		return false
	}
	delete(b.draining, d.name)
	b.stopDevice(d)
	b.logger.Info("removed device's events sent; disconnected", "device", d.name)
	return true
}

// waitEmpty waits until the device's queues (readings and command results)
// are empty; false when ctx ended first.
func (b *bridge) waitEmpty(ctx context.Context, device string) bool {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for b.store.QueueStats(device).Len+b.store.QueueStats(resultQueue(device)).Len > 0 {
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
	}
	return true
}

// sameDevice says whether a device is configured exactly as before (its
// bus is compared by the bus unit).
func sameDevice(a, b *config.Device) bool {
	return sameIdentity(a, b) && a.Unit == b.Unit && a.Poll == b.Poll &&
		reflect.DeepEqual(a.Plan, b.Plan) && reflect.DeepEqual(a.Type, b.Type) && reflect.DeepEqual(a.Management, b.Management)
}

// sameIdentity says whether a device connects and publishes as before.
func sameIdentity(a, b *config.Device) bool {
	return a.Name == b.Name && a.Type.Name == b.Type.Name && a.Token == b.Token
}

// sameBus says whether prev polls the same bus, configured as before, with
// the same running devices (fds) in the same order.
func sameBus(prev *busUnit, bus *config.Bus, ds []*config.Device, fds map[string]*fieldDevice) bool {
	if !reflect.DeepEqual(prev.cfg, bus) || len(prev.devices) != len(ds) {
		return false
	}
	for i, d := range ds {
		if prev.devices[i].Name != d.Name || prev.fds[d.Name] != fds[d.Name] {
			return false
		}
	}
	return true
}

// logReload logs a reload's outcome.
func (b *bridge) logReload(source string, rep ReloadReport, err error) {
	if err != nil {
		b.logger.Error("reload failed; the running configuration stays", "source", source, "err", err)
		return
	}
	for _, part := range rep.NeedRestart {
		b.logger.Warn("reload: this block changed but cannot be applied while running; restart the bridge to apply it (its running settings stay)", "block", part)
	}
	b.logger.Info("reloaded", "source", source, "added", rep.Added, "removed", rep.Removed, "changed", rep.Changed, "buses_restarted", rep.Restarted, "unchanged", rep.Unchanged)
}
