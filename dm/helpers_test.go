package dm_test

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"fieldbridge/adapters"
	"fieldbridge/adapters/modbus"
	"fieldbridge/dm"
	"fieldbridge/mapping"
	"fieldbridge/simulator"
)

// The tests run commands against real parts: the Modbus simulator, a
// Modbus TCP bus and its adapters.Loop, and plans made by mapping.

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func ptr(f float64) *float64 { return &f }

// pumpType is the device type of the tests.
func pumpType() *mapping.DeviceType {
	return &mapping.DeviceType{
		Name: "pump",
		Points: []mapping.Point{
			{Name: "speed", Table: adapters.HoldingRegister, Address: 10, Type: mapping.TypeUint16, Bit: -1, Scale: 1, Decimals: -1, Writable: true, Min: ptr(0), Max: ptr(3000)},
			{Name: "run", Table: adapters.Coil, Address: 0, Type: mapping.TypeBool, Bit: -1, Scale: 1, Decimals: -1, Writable: true},
			{Name: "flags", Table: adapters.HoldingRegister, Address: 20, Type: mapping.TypeBool, Bit: 2, Scale: 1, Decimals: -1, Writable: true},
			{Name: "alarm", Table: adapters.HoldingRegister, Address: 30, Type: mapping.TypeUint16, Bit: -1, Scale: 1, Decimals: -1, Writable: true},
			{Name: "temp", Table: adapters.InputRegister, Address: 0, Type: mapping.TypeInt16, Bit: -1, Scale: 1, Decimals: -1},
		},
		Commands: []mapping.Command{
			{Name: "set_speed", Readback: true, Timeout: 2 * time.Second, Writes: []mapping.Write{{Point: "speed", Path: "$.d.value"}}},
			{Name: "start", Writes: []mapping.Write{{Point: "speed", Path: "$.d.value"}, {Point: "run", Literal: mapping.Value{Kind: mapping.KindBool, B: true}}}},
			{Name: "flag", Writes: []mapping.Write{{Point: "flags", Path: "$.d.on"}}},
			{Name: "clear_alarm", Writes: []mapping.Write{{Point: "alarm", Literal: mapping.Value{Kind: mapping.KindInt, I: 0}}}},
			// Built by hand: config would refuse a write to a read-only point.
			{Name: "set_temp", Writes: []mapping.Write{{Point: "temp", Path: "$.d.value"}}},
		},
	}
}

// planner is what cmd/bridge does: mapping's plan in dm's terms.
type planner struct {
	types map[string]*mapping.DeviceType // by device
}

func (p planner) PlanCommand(device, command string, payload []byte) (dm.Plan, error) {
	mp, err := p.types[device].PlanCommand(device, 1, command, payload)
	if err != nil {
		return dm.Plan{}, err
	}
	plan := dm.Plan{Writes: mp.Writes, Readback: mp.Readback, Timeout: mp.Timeout}
	for _, f := range mp.Written {
		plan.Written = append(plan.Written, dm.NamedValue{Name: f.Name, Value: f.Value.Interface()})
	}
	plan.DecodeReadback = func(blocks []adapters.Block) ([]dm.NamedValue, error) {
		fields, err := mp.DecodeReadback(blocks)
		var out []dm.NamedValue
		for _, f := range fields {
			out = append(out, dm.NamedValue{Name: f.Name, Value: f.Value.Interface()})
		}
		return out, err
	}
	return plan, nil
}

// results records every published result.
type results struct {
	mu  sync.Mutex
	got []dm.Result
	c   chan dm.Result
}

func newResults() *results { return &results{c: make(chan dm.Result, 100000)} }

func (r *results) PublishResult(device string, res dm.Result) error {
	r.mu.Lock()
	r.got = append(r.got, res)
	r.mu.Unlock()
	r.c <- res
	return nil
}

func (r *results) next(t *testing.T) dm.Result {
	t.Helper()
	select {
	case res := <-r.c:
		return res
	case <-time.After(10 * time.Second):
		t.Fatal("no command result")
		return dm.Result{}
	}
}

func (r *results) all() []dm.Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]dm.Result(nil), r.got...)
}

// rig is a simulated pump on unit 1 behind a Modbus TCP bus loop that polls
// it, and an Executor for device "p1".
type rig struct {
	srv     *simulator.Server
	bank    *simulator.Bank
	loop    *adapters.Loop
	exec    *dm.Executor
	results *results
	cycles  chan adapters.Reading
}

func newRig(t *testing.T, cfg dm.ExecutorConfig) *rig {
	t.Helper()
	srv, err := simulator.New(simulator.Config{Addr: "127.0.0.1:0"}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	r := &rig{srv: srv, bank: srv.AddUnit(1), results: newResults(), cycles: make(chan adapters.Reading, 1000)}
	bus, err := modbus.NewTCP(modbus.TCPConfig{Address: srv.Addr(), Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	plan := []adapters.Range{{Unit: 1, Table: adapters.HoldingRegister, Address: 0, Count: 40}}
	r.loop = adapters.NewLoop(bus, adapters.LoopConfig{Bus: "line", Devices: []adapters.Device{{Name: "p1", Interval: 20 * time.Millisecond, Plan: plan}},
		Handler: adapters.ReadingHandlerFunc(func(_ context.Context, rd adapters.Reading) {
			select {
			case r.cycles <- rd:
			default:
			}
		}), MinBackoff: time.Hour, MaxBackoff: time.Hour}, quiet())
	if cfg.Devices == nil {
		cfg.Devices = map[string]string{"p1": "pump"}
	}
	cfg.Planner = planner{types: map[string]*mapping.DeviceType{"p1": pumpType()}}
	cfg.Field, cfg.Results = r.loop, r.results
	r.exec, err = dm.NewExecutor(cfg, quiet())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); r.loop.Run(ctx) }()
	go func() { defer wg.Done(); r.exec.Run(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
	return r
}

func (r *rig) send(command, payload string) {
	r.exec.HandleCommand(context.Background(), dm.Command{DeviceType: "pump", DeviceID: "p1", Name: command, Format: "json", Payload: []byte(payload)})
}
