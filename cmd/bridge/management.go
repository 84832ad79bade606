package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"

	"fieldbridge/adapters"
	"fieldbridge/config"
	"fieldbridge/dm"
	"fieldbridge/mapping"
	"fieldbridge/uplink"
)

// Device management wiring: each managed device (and, in gateway mode,
// the gateway) has a dm.Agent of its own, which receives the iotdm-1
// messages for it and publishes on its connection. One agent per device
// lets a reload stop and start a device's management with the device:
// stopping an agent sends Unmanage, starting one sends Manage.

// managementOn reports whether device management is configured and usable.
func managementOn(cfg *config.Config) bool {
	m := cfg.Management
	return m != nil && m.Enabled && cfg.Platform.Mode != config.ModeQuickstart
}

// manageLink subscribes a connection to its device-management requests
// (the connection's Mux routes them to the agents): iotdm-1/# for a
// device, iotdm-1/type/+/id/+/# for the gateway, itself and every device
// behind it. On every connect the devices of the connection send Manage
// again.
func (b *bridge) manageLink(lc *uplink.Config, typ, id string) {
	if !managementOn(b.cfg) {
		return
	}
	filter := "iotdm-1/#"
	if b.gateway != nil {
		filter = "iotdm-1/type/+/id/+/#"
	}
	lc.Subscriptions = append(lc.Subscriptions, uplink.Subscription{Filter: filter, QoS: 1})
	lc.OnStateChange = func(connected bool, err error) {
		if !connected {
			return
		}
		if b.gateway == nil {
			if d := b.view().devices[id]; d != nil && d.agent != nil {
				d.agent.Connected(typ, id)
			}
			return
		}
		if a := b.gateway.agent; a != nil {
			a.Connected(b.gateway.id.Type, b.gateway.id.ID)
		}
		for _, d := range b.view().devices {
			if d.agent != nil {
				d.agent.Connected(d.typ, d.name)
			}
		}
	}
}

// agentConfig is what every agent shares.
func (b *bridge) agentConfig() dm.Config {
	m := b.cfg.Management
	return dm.Config{
		Lifetime:         m.Lifetime,
		StagingDir:       m.StagingDir,
		MaxFirmwareBytes: m.MaxFirmwareBytes,
		DownloadTimeout:  m.DownloadTimeout,
		AllowHTTP:        m.AllowHTTP,
		Commands:         commandRunner{b},
		Answered:         func(kind string, rc int) { b.metrics.CountDMRequest(kind, strconv.Itoa(rc)) },
	}
}

// newGatewayAgent builds the gateway's own agent (gateway mode).
func (b *bridge) newGatewayAgent() error {
	if !managementOn(b.cfg) || b.gateway == nil {
		return nil
	}
	g := b.gateway
	cfg := b.agentConfig()
	cfg.Devices = []dm.Device{{Type: g.id.Type, ID: g.id.ID, Gateway: true, Link: g.link,
		DeviceInfo: map[string]string{"deviceClass": "gateway", "description": "fieldbridge edge bridge", "fwVersion": version}}}
	agent, err := dm.NewAgent(cfg, b.logger.With("component", "dm"))
	if err != nil {
		return fmt.Errorf("device management: %w", err)
	}
	g.agent = agent
	return nil
}

// newDeviceAgent builds the agent of device d and the points read into its
// deviceInfo.
func (b *bridge) newDeviceAgent(d *config.Device, fd *fieldDevice) error {
	if !managementOn(b.cfg) {
		return nil
	}
	cfg := b.agentConfig()
	cfg.Devices = []dm.Device{managedDevice(d, fd.link, b.gateway != nil)}
	agent, err := dm.NewAgent(cfg, b.logger.With("component", "dm"))
	if err != nil {
		return fmt.Errorf("device management of %s: %w", d.Name, err)
	}
	fd.agent, fd.info = agent, nil
	if tm := d.Type.Management; tm != nil {
		for attr, point := range tm.DeviceInfoPoints {
			fd.info = append(fd.info, infoPoint{attr, d.Type.Points[d.Type.PointIndex(point)]})
		}
	}
	return nil
}

// agentFor returns the agent that manages device id; nil when none does.
func (b *bridge) agentFor(id string) *dm.Agent {
	if g := b.gateway; g != nil && g.agent != nil && id == g.id.ID {
		return g.agent
	}
	if d := b.view().devices[id]; d != nil {
		return d.agent
	}
	return nil
}

// startAgent starts d's agent, which sends Manage at once when the
// connection is already up.
func (b *bridge) startAgent(r *runner, d *fieldDevice) {
	if d.agent == nil {
		return
	}
	ctx, stop := context.WithCancel(r.pollCtx)
	d.stopAgent = stop
	a := d.agent
	r.spawn(ctx, &r.pollers, "device management "+d.name, func() error { return a.Run(ctx) }, &d.agentDone)
	if d.link.Connected() {
		a.Connected(d.typ, d.name)
	}
}

// stopAgent stops d's agent (it sends Unmanage while the connection is
// still up) and waits for it.
func stopAgent(d *fieldDevice) {
	if d.stopAgent == nil {
		return
	}
	d.stopAgent()
	d.agentDone.Wait()
}

// managedDevice describes a configured device to the agent.
func managedDevice(d *config.Device, link dm.Publisher, gateway bool) dm.Device {
	out := dm.Device{Type: d.Type.Name, ID: d.Name, Name: d.Name, Gateway: gateway, Link: link,
		DeviceInfo: maps.Clone(d.Management.DeviceInfo), Metadata: d.Management.Metadata}
	if l := d.Management.Location; l != nil {
		out.Location = &dm.Location{Latitude: l.Latitude, Longitude: l.Longitude, Elevation: l.Elevation, Accuracy: l.Accuracy}
	}
	tm := d.Type.Management
	if tm == nil {
		return out
	}
	out.Reboot, out.FactoryReset = action(tm.Reboot), action(tm.FactoryReset)
	if tm.Firmware != nil {
		out.Firmware = &dm.Firmware{Install: *action(tm.Firmware)}
	}
	for bundle, actions := range tm.Custom {
		if out.Custom == nil {
			out.Custom = map[string]map[string]*dm.Action{}
		}
		out.Custom[bundle] = map[string]*dm.Action{}
		for id, a := range actions {
			out.Custom[bundle][id] = action(a)
		}
	}
	return out
}

func action(a *config.ManagementAction) *dm.Action {
	if a == nil {
		return nil
	}
	return &dm.Action{Command: a.Command, Exec: a.Exec, Timeout: a.Timeout}
}

// infoPoint is a point whose value fills a deviceInfo attribute.
type infoPoint struct {
	attr  string
	point mapping.Point
}

// noteManagement runs on a bus loop's goroutine after every poll: it feeds
// the device's faults and the deviceInfo values read from it to its agent.
func noteManagement(d *fieldDevice, r adapters.Reading) {
	d.agent.NoteReading(r)
	points := d.info
	if len(points) == 0 {
		return
	}
	info := make(map[string]string, len(points))
	for _, ip := range points {
		if v, ok := pointText(ip.point, r); ok {
			info[ip.attr] = v
		}
	}
	d.agent.SetDeviceInfo(r.Device, info)
}

// pointText decodes a register point of a reading as text: a string as
// read, a number scaled as the point says. False when its range failed.
func pointText(p mapping.Point, r adapters.Reading) (string, bool) {
	n := p.Registers()
	for _, blk := range r.Blocks {
		rg := blk.Range
		if blk.Err != nil || rg.Table != p.Table || int(p.Address) < int(rg.Address) || int(p.Address)+n > rg.End() {
			continue
		}
		off := int(p.Address - rg.Address)
		if off+n > len(blk.Registers) {
			return "", false
		}
		v, err := mapping.Decode(p.Type, p.Order, blk.Registers[off:off+n])
		if err != nil {
			return "", false
		}
		if v.Kind == mapping.KindString {
			return v.S, true
		}
		f, _ := v.Float()
		if p.Scaled() {
			f = f*p.Scale + p.Offset
		}
		return strconv.FormatFloat(f, 'f', -1, 64), true
	}
	return "", false
}

// commandRunner runs the agent's commands (reboot, factory reset, custom
// actions) through the command Executor.
type commandRunner struct{ b *bridge }

func (r commandRunner) RunCommand(ctx context.Context, device, command string, payload []byte) error {
	c := r.b.view().commands
	if c == nil {
		return errors.New("commands are not available in this mode")
	}
	return c.exec.RunCommand(ctx, device, command, payload)
}

// Interface guards.
var (
	_ dm.Publisher      = (*uplink.Client)(nil)
	_ dm.CommandRunner  = (*dm.Executor)(nil)
	_ dm.RequestHandler = (*dm.Agent)(nil)
)
