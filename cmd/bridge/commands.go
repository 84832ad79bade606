package main

import (
	"context"
	"fmt"
	"reflect"
	"sync"

	"fieldbridge/adapters"
	"fieldbridge/buffer"
	"fieldbridge/config"
	"fieldbridge/dm"
	"fieldbridge/mapping"
	"fieldbridge/uplink"
)

// Commands: the wiring between the uplinks (inbound messages), dm (routing,
// queues, results), mapping (planning writes) and the bus loops (writing).
//
//	uplink ──▶ dm.Mux ──▶ dm.Executor ──▶ commandPlanner (mapping) ──▶ fieldRouter ──▶ adapters.Loop
//	                                  └─▶ resultSink ──▶ buffer queue "cmd:<device>" ──▶ forwarder ──▶ uplink
//
// Results have a buffer queue of their own per device (and one for the
// gateway), so a command's answer never waits behind a backlog of readings
// and a flood of results never delays readings. They are numbered by that
// queue: the seq of a command event counts command events.

// resultQueue is the buffer queue of a device's (or the gateway's) command
// results. ':' never appears in a device id, so it cannot collide.
func resultQueue(device string) string { return "cmd:" + device }

// commands is the command machinery of a bridge; nil in quickstart mode,
// where devices receive no commands.
//
// A reload that changes a device's identity, type or unit, or the set of
// devices, builds new commands and stops the old Executor; commands it
// still had queued are answered "not executed".
type commands struct {
	exec    *dm.Executor
	muxes   map[string]*dm.Mux // device mode: per device; gateway mode: "" for the gateway connection
	targets map[string]commandTarget
	loopOf  func(device string) *adapters.Loop // the running loop of the device's bus

	stop context.CancelFunc // set by startCommands
	done sync.WaitGroup
}

// commandTarget is what commands need to know about a device.
type commandTarget struct {
	typ     *mapping.DeviceType
	unit    uint8
	topic   string // its command event's topic
	pub     buffer.Publisher
	results *onDemand // the forwarder of its results queue
}

// wireCommands builds the Executor and the Muxes of v, or takes old's
// when they would be the same. It runs after v's devices and loops exist.
func (b *bridge) wireCommands(v, old *fieldView) error {
	if v.cfg.Platform.Mode == config.ModeQuickstart {
		return nil
	}
	if old != nil && old.commands != nil && sameCommandTargets(old, v) {
		v.commands = old.commands
		return nil
	}
	c := &commands{muxes: map[string]*dm.Mux{}, targets: map[string]commandTarget{}, loopOf: func(device string) *adapters.Loop { return b.view().loopOf[device] }}
	devices := map[string]string{}
	for _, d := range v.cfg.Devices {
		fd := v.devices[d.Name]
		devices[d.Name] = d.Type.Name
		c.targets[d.Name] = commandTarget{typ: d.Type.DeviceType, unit: d.Unit, topic: fd.topic.of(mapping.CommandEvent), pub: fd.pub, results: &fd.run.results}
	}
	ec := dm.ExecutorConfig{Devices: devices, Planner: c, Field: c, Results: resultSink{b: b, c: c}}
	if g := b.gateway; g != nil {
		if _, clash := devices[g.id.ID]; clash {
			return fmt.Errorf("gateway id %q is also a device name; commands could not tell them apart", g.id.ID)
		}
		devices[g.id.ID], ec.Gateway = g.id.Type, g.id.ID
		c.targets[g.id.ID] = commandTarget{topic: uplink.GatewayEventTopic(g.id, mapping.CommandEvent, "json"), pub: g.link, results: &g.results}
	}
	exec, err := dm.NewExecutor(ec, b.logger.With("component", "commands"))
	if err != nil {
		return err
	}
	c.exec = exec
	newMux := func(typ, id string) (*dm.Mux, error) {
		return dm.NewMux(dm.MuxConfig{SelfType: typ, SelfID: id, Commands: exec, Requests: requestRouter{b}}, b.logger.With("component", "dm"))
	}
	if g := b.gateway; g != nil {
		if c.muxes[""], err = newMux(g.id.Type, g.id.ID); err != nil {
			return err
		}
	} else {
		for _, d := range v.cfg.Devices {
			if c.muxes[d.Name], err = newMux(d.Type.Name, d.Name); err != nil {
				return err
			}
		}
	}
	v.commands = c
	return nil
}

// sameCommandTargets says whether old's commands serve v's devices as they
// are: the same devices with the same identity, type and unit.
func sameCommandTargets(old, v *fieldView) bool {
	if len(old.devices) != len(v.devices) {
		return false
	}
	for name, d := range v.devices {
		o := old.devices[name]
		if o == nil || !sameIdentity(o.cfg, d.cfg) || o.cfg.Unit != d.cfg.Unit || !reflect.DeepEqual(o.cfg.Type, d.cfg.Type) {
			return false
		}
	}
	return true
}

// startCommands starts c's Executor.
func (b *bridge) startCommands(r *runner, c *commands) {
	if c == nil {
		return
	}
	ctx, stop := context.WithCancel(r.pollCtx)
	c.stop = stop
	r.spawn(ctx, &r.pollers, "commands", func() error { return c.exec.Run(ctx) }, &c.done)
}

// stopCommands stops c's Executor and waits for it.
func stopCommands(c *commands) {
	if c == nil {
		return
	}
	c.stop()
	c.done.Wait()
}

// commandHandler is the inbound handler of a device's connection (device
// mode) or, with device "", of the gateway connection.
func (b *bridge) commandHandler(device string) uplink.Handler {
	return uplink.HandlerFunc(func(ctx context.Context, topic string, payload []byte) error {
		c := b.view().commands
		if c == nil || c.muxes[device] == nil {
			return fmt.Errorf("commands are not wired for %q", device)
		}
		return c.muxes[device].HandleMessage(ctx, topic, payload)
	})
}

// PlanCommand plans with the device type's mapping.
func (c *commands) PlanCommand(device, command string, payload []byte) (dm.Plan, error) {
	t, ok := c.targets[device]
	if !ok || t.typ == nil {
		return dm.Plan{}, fmt.Errorf("%w: %s", dm.ErrUnknownDevice, device)
	}
	mp, err := t.typ.PlanCommand(device, t.unit, command, payload)
	if err != nil {
		return dm.Plan{}, err
	}
	plan := dm.Plan{Writes: mp.Writes, Readback: mp.Readback, Timeout: mp.Timeout, Written: namedValues(mp.Written)}
	plan.DecodeReadback = func(blocks []adapters.Block) ([]dm.NamedValue, error) {
		fields, err := mp.DecodeReadback(blocks)
		return namedValues(fields), err
	}
	return plan, nil
}

func namedValues(fields []mapping.Field) []dm.NamedValue {
	out := make([]dm.NamedValue, len(fields))
	for i, f := range fields {
		out[i] = dm.NamedValue{Name: f.Name, Value: f.Value.Interface()}
	}
	return out
}

// Write hands a write to the loop that owns the device's bus.
func (c *commands) Write(ctx context.Context, w adapters.WriteRequest) error {
	loop := c.loopOf(w.Device)
	if loop == nil {
		return fmt.Errorf("%w: %s is on no running bus", adapters.ErrClosed, w.Device)
	}
	return loop.Write(ctx, w)
}

// Read reads on the loop that owns the device's bus.
func (c *commands) Read(ctx context.Context, device string, r adapters.Range) (adapters.Block, error) {
	loop := c.loopOf(device)
	if loop == nil {
		return adapters.Block{}, fmt.Errorf("%w: %s is on no running bus", adapters.ErrClosed, device)
	}
	return loop.Read(ctx, device, r)
}

// requestRouter hands device-management requests to the agent of the
// device they are for; with management off, or for a device no agent
// manages, they are ignored.
type requestRouter struct{ b *bridge }

func (r requestRouter) HandleRequest(ctx context.Context, deviceType, deviceID, rest string, payload []byte) {
	a := r.b.agentFor(deviceID)
	if a == nil {
		r.b.logger.Debug("device-management request ignored: no agent", "type", deviceType, "device", deviceID, "request", rest)
		return
	}
	a.HandleRequest(ctx, deviceType, deviceID, rest, payload)
}

// commandLabel is the command's name as a metric label: "unknown" for a
// name the device does not define, so that a sender of made-up names
// cannot grow the number of series.
func (t commandTarget) commandLabel(name string) string {
	switch {
	case t.typ == nil && name == "ping": // the gateway's one command
		return name
	case t.typ != nil && t.typ.Command(name) != nil:
		return name
	}
	return "unknown"
}

// resultSink appends results to the buffer, which assigns their seq.
type resultSink struct {
	b *bridge
	c *commands
}

func (s resultSink) PublishResult(device string, r dm.Result) error {
	t := s.c.targets[device]
	s.b.metrics.CountCommand(t.commandLabel(r.Command), r.Class)
	_, err := s.b.store.Append(resultQueue(device), t.topic, r.Payload)
	if err == nil {
		t.results.kick()
		s.b.logger.Debug("command result buffered", "device", device, "command", r.Command, "ok", r.OK)
	}
	return err
}

// Interface guards: the implementers do not import the packages that
// declare these interfaces.
var (
	_ uplink.Handler     = (*dm.Mux)(nil)
	_ dm.CommandHandler  = (*dm.Executor)(nil)
	_ dm.FieldIO         = (*adapters.Loop)(nil)
	_ dm.FieldIO         = (*commands)(nil)
	_ dm.Planner         = (*commands)(nil)
	_ dm.ResultPublisher = resultSink{}
	_ dm.RequestHandler  = requestRouter{}
)
