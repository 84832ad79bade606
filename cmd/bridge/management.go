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

// Device management wiring: the dm.Agent manages every configured device
// (and, in gateway mode, the gateway), receives the iotdm-1 messages of
// their connections and publishes on them.

// managementOn reports whether device management is configured and usable.
func managementOn(cfg *config.Config) bool {
	m := cfg.Management
	return m != nil && m.Enabled && cfg.Platform.Mode != config.ModeQuickstart
}

// manageLink subscribes a connection to its device-management requests
// (the connection's Mux routes them to the agent): iotdm-1/# for a device,
// iotdm-1/type/+/id/+/# for the gateway, itself and every device behind it.
// On every connect the devices of the connection send Manage again.
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
		if !connected || b.dm == nil {
			return
		}
		if b.gateway == nil {
			b.dm.Connected(typ, id)
			return
		}
		b.dm.Connected(b.gateway.id.Type, b.gateway.id.ID)
		for _, d := range b.devices {
			b.dm.Connected(d.typ, d.name)
		}
	}
}

// newAgent builds the device-management agent once every connection exists.
func (b *bridge) newAgent() error {
	if !managementOn(b.cfg) {
		return nil
	}
	m := b.cfg.Management
	cfg := dm.Config{
		Lifetime:         m.Lifetime,
		StagingDir:       m.StagingDir,
		MaxFirmwareBytes: m.MaxFirmwareBytes,
		DownloadTimeout:  m.DownloadTimeout,
		AllowHTTP:        m.AllowHTTP,
		Commands:         commandRunner{b},
		Answered:         func(kind string, rc int) { b.metrics.CountDMRequest(kind, strconv.Itoa(rc)) },
	}
	if g := b.gateway; g != nil {
		cfg.Devices = append(cfg.Devices, dm.Device{Type: g.id.Type, ID: g.id.ID, Gateway: true, Link: g.link,
			DeviceInfo: map[string]string{"deviceClass": "gateway", "description": "fieldbridge edge bridge", "fwVersion": version}})
	}
	b.dmInfo = map[string][]infoPoint{}
	for _, d := range b.cfg.Devices {
		fd := b.devices[d.Name]
		cfg.Devices = append(cfg.Devices, managedDevice(d, fd.link, b.gateway != nil))
		if tm := d.Type.Management; tm != nil {
			for attr, point := range tm.DeviceInfoPoints {
				b.dmInfo[d.Name] = append(b.dmInfo[d.Name], infoPoint{attr, d.Type.Points[d.Type.PointIndex(point)]})
			}
		}
	}
	agent, err := dm.NewAgent(cfg, b.logger.With("component", "dm"))
	if err != nil {
		return fmt.Errorf("device management: %w", err)
	}
	b.dm, b.requests = agent, agent
	return nil
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
// the device's faults and the deviceInfo values read from it to the agent.
func (b *bridge) noteManagement(r adapters.Reading) {
	b.dm.NoteReading(r)
	points := b.dmInfo[r.Device]
	if len(points) == 0 {
		return
	}
	info := make(map[string]string, len(points))
	for _, ip := range points {
		if v, ok := pointText(ip.point, r); ok {
			info[ip.attr] = v
		}
	}
	b.dm.SetDeviceInfo(r.Device, info)
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
	if r.b.commands == nil {
		return errors.New("commands are not available in this mode")
	}
	return r.b.commands.exec.RunCommand(ctx, device, command, payload)
}

// Interface guards.
var (
	_ dm.Publisher      = (*uplink.Client)(nil)
	_ dm.CommandRunner  = (*dm.Executor)(nil)
	_ dm.RequestHandler = (*dm.Agent)(nil)
)
