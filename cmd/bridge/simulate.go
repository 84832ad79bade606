package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"fieldbridge/config"
	"fieldbridge/mapping"
	"fieldbridge/simulator"
)

// simTick is how often simulated values change.
const simTick = time.Second

// listenFlags collects -listen bus=host:port overrides.
type listenFlags map[string]string

func (l listenFlags) String() string { return fmt.Sprint(map[string]string(l)) }

func (l listenFlags) Set(v string) error {
	bus, addr, ok := strings.Cut(v, "=")
	if !ok || bus == "" || addr == "" {
		return fmt.Errorf("want bus=host:port, got %q", v)
	}
	l[bus] = addr
	return nil
}

func cmdSimulate(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlagSet("simulate", stderr)
	path := fs.String("config", "", "configuration file whose devices to serve")
	listen := listenFlags{}
	fs.Var(listen, "listen", "serve a bus elsewhere: bus=host:port, or bus=PATH for a serial bus (repeatable)")
	var lf logFlags
	lf.register(fs)
	logger, err := lf.parse(fs, args, stderr)
	if err != nil {
		return err
	}
	cfg, err := loadConfig(*path, stderr)
	if err != nil {
		return err
	}
	for _, b := range cfg.Buses {
		if _, ok := listen[b.Name]; !ok && b.Kind != config.BusModbusTCP && b.Kind != config.BusModbusRTUTCP {
			return fmt.Errorf("bus %s is a serial line: give the simulator's end of it with -listen %s=/dev/pts/N (see README, Serial lines): %w", b.Name, b.Name, errConfig)
		}
	}
	sims, err := startSimulators(cfg, func(b *config.Bus) string {
		if a, ok := listen[b.Name]; ok {
			return a
		}
		return b.Address
	}, logger)
	if err != nil {
		return fmt.Errorf("%v: %w", err, errConfig)
	}
	for _, s := range sims.servers {
		logger.Info("simulating bus", "bus", s.bus, "address", s.server.Addr(), "units", s.units)
	}
	for _, l := range sims.lines {
		// A serial line has no listener to log: say where it is served, so
		// the operator knows the simulator is ready.
		logger.Info("simulating bus", "bus", l.bus, "address", l.where)
	}
	return sims.Run(ctx)
}

// simulation serves the devices of a configuration: Modbus TCP slaves
// (servers), and Modbus RTU/ASCII slaves and text instruments on serial
// lines or RTU-over-TCP listeners (lines).
type simulation struct {
	servers []simBus
	points  []simPoint
	lines   []simLine
}

// pointBuses points each bus of cfg that s simulates over TCP at its
// simulator's address.
func (s *simulation) pointBuses(cfg *config.Config) {
	for _, srv := range s.servers {
		for _, b := range cfg.Buses {
			if b.Name == srv.bus {
				b.Address = srv.server.Addr()
			}
		}
	}
}

// simLine serves one serial bus until ctx ends.
type simLine struct {
	bus        string
	where      string
	serve      func(ctx context.Context) error
	close      func()
	instrument *simulator.Instrument // text instruments only
}

type simBus struct {
	bus     string
	server  *simulator.Server
	units   []int
	devices map[string]byte // unit of each device
}

// writes returns the writes the simulated device received (Modbus TCP buses).
func (s *simulation) writes(device string) []simulator.Write {
	for _, sb := range s.servers {
		if unit, ok := sb.devices[device]; ok {
			return sb.server.Unit(unit).Writes()
		}
	}
	return nil
}

// simPoint animates one point of one device.
type simPoint struct {
	bank  *simulator.Bank
	point mapping.Point
	gen   simulator.Generator
	text  string // fixed value of a string point
}

// startSimulators starts one Modbus TCP server per bus that has devices, on
// the address addr returns for it ("127.0.0.1:0" picks a free port).
func startSimulators(cfg *config.Config, addr func(*config.Bus) string, logger *slog.Logger) (*simulation, error) {
	sim := &simulation{}
	for _, bus := range cfg.Buses {
		var devs []*config.Device
		for _, d := range cfg.Devices {
			if d.Bus == bus {
				devs = append(devs, d)
			}
		}
		if len(devs) == 0 {
			continue
		}
		if bus.Kind == config.BusSerialLine {
			line, err := sim.instrument(bus, devs, addr(bus))
			if err != nil {
				sim.Close()
				return nil, fmt.Errorf("simulate bus %s: %w", bus.Name, err)
			}
			sim.lines = append(sim.lines, line)
			continue
		}
		srv, err := simulator.New(simulator.Config{Addr: addr(bus)}, logger.With("component", "simulator", "bus", bus.Name))
		if err != nil {
			sim.Close()
			return nil, err
		}
		sb := simBus{bus: bus.Name, server: srv, devices: map[string]byte{}}
		for _, d := range devs {
			bank := srv.AddUnit(d.Unit)
			sb.devices[d.Name] = d.Unit
			sb.units = append(sb.units, int(d.Unit))
			for i, p := range d.Type.Points {
				spec, ok := d.Type.Simulate[p.Name]
				if !ok && p.Writable {
					continue // hold still, so written values stay visible
				}
				if !ok {
					spec = defaultSimulation(p)
				}
				sp := newSimPoint(bank, p, spec, uint64(len(sim.points)+i))
				if p.Writable && spec.Mode == config.SimFixed {
					// A writable point's fixed value is where it starts;
					// then it holds what commands write.
					sp.write(time.Now())
					continue
				}
				sim.points = append(sim.points, sp)
			}
		}
		if bus.Kind != config.BusModbusTCP {
			line, err := serialSlaves(srv, bus, addr(bus))
			if err != nil {
				srv.Close()
				sim.Close()
				return nil, fmt.Errorf("simulate bus %s on %s: %w", bus.Name, addr(bus), err)
			}
			sim.lines = append(sim.lines, line)
			continue
		}
		if err := srv.Start(); err != nil {
			sim.Close()
			return nil, fmt.Errorf("simulate bus %s on %s: %w", bus.Name, addr(bus), err)
		}
		sim.servers = append(sim.servers, sb)
	}
	sim.update(time.Now())
	return sim, nil
}

// defaultSimulation animates read-only points the configuration says
// nothing about: numbers wander between 0 and 100, the rest hold still.
func defaultSimulation(p mapping.Point) config.Simulation {
	if p.Type == mapping.TypeBool || p.Type == mapping.TypeString {
		return config.Simulation{Mode: config.SimFixed}
	}
	return config.Simulation{Mode: config.SimRandomWalk, Value: 50, Min: 0, Max: 100, Step: 1}
}

func newSimPoint(bank *simulator.Bank, p mapping.Point, s config.Simulation, seed uint64) simPoint {
	sp := simPoint{bank: bank, point: p}
	switch s.Mode {
	case config.SimCounter:
		sp.gen = simulator.Counter(s.Value, s.Step, time.Second)
	case config.SimSine:
		sp.gen = simulator.Sine((s.Max-s.Min)/2, s.Period, (s.Max+s.Min)/2)
	case config.SimRandomWalk:
		sp.gen = simulator.RandomWalk(s.Value, s.Step, s.Min, s.Max, seed)
	default:
		sp.gen = simulator.Fixed(s.Value)
	}
	return sp
}

// update writes every point's current value into its bank.
func (s *simulation) update(now time.Time) {
	for i := range s.points {
		s.points[i].write(now)
	}
}

// write encodes the generator's value (engineering units) as the device
// would hold it: the inverse of scale and offset, then the codec.
func (sp *simPoint) write(now time.Time) {
	p := sp.point
	v := sp.gen.Next(now)
	if p.Table.IsBit() {
		sp.bank.SetBits(p.Table, p.Address, []bool{v != 0})
		return
	}
	if p.Bit >= 0 {
		regs, err := sp.bank.Registers(p.Table, p.Address, 1)
		if err == nil {
			sp.bank.SetRegisters(p.Table, p.Address, []uint16{p.SetRegisterBit(regs[0], v != 0)})
		}
		return
	}
	raw := (v - p.Offset) / p.Scale
	var val mapping.Value
	switch p.Type.Kind() {
	case mapping.KindFloat:
		val = mapping.Value{Kind: mapping.KindFloat, F: raw}
	case mapping.KindInt:
		val = mapping.Value{Kind: mapping.KindInt, I: int64(math.Round(raw))}
	case mapping.KindUint:
		val = mapping.Value{Kind: mapping.KindUint, U: uint64(math.Max(0, math.Round(raw)))}
	case mapping.KindBool:
		val = mapping.Value{Kind: mapping.KindBool, B: raw != 0}
	case mapping.KindString:
		val = mapping.Value{Kind: mapping.KindString, S: sp.text}
	}
	regs := make([]uint16, p.Registers())
	if err := mapping.Encode(p.Type, p.Order, val, regs); err != nil {
		return // out of the type's range: keep the last value
	}
	sp.bank.SetRegisters(p.Table, p.Address, regs)
}

// Run changes the values every tick and serves the serial lines until ctx
// is done, then closes everything.
func (s *simulation) Run(ctx context.Context) error {
	defer s.Close()
	var wg sync.WaitGroup
	errs := make(chan error, len(s.lines))
	for _, l := range s.lines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.serve(ctx); err != nil {
				errs <- fmt.Errorf("bus %s on %s: %w", l.bus, l.where, err)
			}
		}()
	}
	err := simulator.Every(ctx, simTick, s.update)
	wg.Wait()
	close(errs)
	for e := range errs {
		err = errors.Join(err, e)
	}
	return err
}

// Close stops every server and closes every line.
func (s *simulation) Close() {
	var wg sync.WaitGroup
	for _, b := range s.servers {
		wg.Add(1)
		go func() { defer wg.Done(); b.server.Close() }()
	}
	for _, l := range s.lines {
		l.close()
	}
	wg.Wait()
}

// serialSlaves serves srv's units as Modbus RTU or ASCII slaves: on the
// serial port at where (a device path, e.g. one end of a socat pty pair),
// or, for modbus_rtu_tcp, on a TCP listener at where.
func serialSlaves(srv *simulator.Server, bus *config.Bus, where string) (simLine, error) {
	line := simLine{bus: bus.Name, where: where}
	if bus.Kind == config.BusModbusRTUTCP {
		ln, err := net.Listen("tcp", where)
		if err != nil {
			return line, err
		}
		line.where = ln.Addr().String()
		line.close = func() { ln.Close(); srv.Close() }
		line.serve = func(ctx context.Context) error {
			go func() { <-ctx.Done(); ln.Close() }()
			for {
				conn, err := ln.Accept()
				if err != nil {
					return nil // closed
				}
				go func() { defer conn.Close(); srv.ServeRTU(ctx, conn) }()
			}
		}
		return line, nil
	}
	sp := bus.Serial
	port, err := simulator.OpenSerial(simulator.SerialConfig{Port: where, Baud: sp.Baud, DataBits: sp.DataBits, Parity: sp.Parity, StopBits: sp.StopBits})
	if err != nil {
		return line, err
	}
	line.close = func() { port.Close(); srv.Close() }
	line.serve = func(ctx context.Context) error {
		if bus.Kind == config.BusModbusASCII {
			return srv.ServeASCII(ctx, port)
		}
		return srv.ServeRTU(ctx, port)
	}
	return line, nil
}

// instrument serves a serial_line bus as a text instrument printing the
// fields of its device type: with the bus's simulate_template, or, with a
// separator, the fields as columns.
func (s *simulation) instrument(bus *config.Bus, devs []*config.Device, where string) (simLine, error) {
	line := simLine{bus: bus.Name, where: where}
	typ, l := devs[0].Type, bus.Line
	values := map[string]simulator.Generator{}
	for i, f := range typ.Fields {
		p := typ.Points[typ.PointIndex(f.Point)]
		spec, ok := typ.Simulate[p.Name]
		if !ok {
			spec = defaultSimulation(p)
		}
		g := newSimPoint(nil, p, spec, uint64(i)).gen
		values[f.Name] = simulator.GeneratorFunc(func(t time.Time) float64 { return (g.Next(t) - p.Offset) / p.Scale })
	}
	tmpl := l.Template
	if tmpl == "" {
		if l.Separator == "" {
			return line, errors.New("a serial_line bus with a regexp needs simulate_template to be simulated")
		}
		cols := map[int]string{}
		last := 0
		for _, f := range typ.Fields {
			cols[f.Column] = "{" + f.Name + "}"
			last = max(last, f.Column)
		}
		parts := make([]string, last)
		for c := 1; c <= last; c++ {
			parts[c-1] = cols[c]
		}
		tmpl = l.Start + strings.Join(parts, l.Separator) + l.Delimiter
	}
	cfg := simulator.InstrumentConfig{Template: tmpl, Values: values, Request: expandUnit(l.Request, devs[0].Unit)}
	if cfg.Request == "" {
		cfg.Interval = time.Second
	}
	in, err := simulator.NewInstrument(cfg)
	if err != nil {
		return line, err
	}
	sp := bus.Serial
	port, err := simulator.OpenSerial(simulator.SerialConfig{Port: where, Baud: sp.Baud, DataBits: sp.DataBits, Parity: sp.Parity, StopBits: sp.StopBits})
	if err != nil {
		return line, err
	}
	line.close = func() { port.Close() }
	line.serve = func(ctx context.Context) error { return in.Serve(ctx, port) }
	line.instrument = in
	return line, nil
}

// unitPattern matches {unit} and {unit:FMT} in a request string.
var unitPattern = regexp.MustCompile(`\{unit(?::([^}]*))?\}`)

// expandUnit fills a request template with a unit id, as the bus does.
func expandUnit(req string, unit uint8) string {
	return unitPattern.ReplaceAllStringFunc(req, func(m string) string {
		if f := unitPattern.FindStringSubmatch(m)[1]; f != "" {
			return fmt.Sprintf(f, unit)
		}
		return strconv.Itoa(int(unit))
	})
}
