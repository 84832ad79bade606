package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"fieldbridge/adapters"
	"fieldbridge/adapters/modbus"
	"fieldbridge/adapters/serialline"
	"fieldbridge/buffer"
	"fieldbridge/config"
	"fieldbridge/dm"
	"fieldbridge/mapping"
	"fieldbridge/uplink"
)

// In-flight limits of the platform per connection (protocol.md §2.12).
const (
	platformDeviceInflight  = 10
	platformGatewayInflight = 1000
)

// bridgeOptions are the settings that do not come from the configuration
// file: overrides for the demo and tests, and shutdown behaviour.
type bridgeOptions struct {
	// Broker replaces the broker URL derived from the platform block.
	Broker string
	// InMemoryBuffer keeps the buffer in memory (demo).
	InMemoryBuffer bool
	// Drain is how long, on stop, buffered events keep being sent.
	Drain time.Duration
	// OnStop is called once shutdown begins (to restore default signal
	// handling, so a second Ctrl-C kills the process).
	OnStop func()
	// UplinkSummaryEvery is how often, while uplinks are down, one log line
	// sums them up; default one minute.
	UplinkSummaryEvery time.Duration
	// DrainProgressEvery is how often backlog drain progress is measured
	// and logged; default 10 s.
	DrainProgressEvery time.Duration
	// legacyAppend restores the hot path as it was before issue #12, as the
	// baseline of the benchmarks: the drop count from QueueStats (a
	// database read), each event written by the bus goroutine itself
	// (Store.Append) from a freshly allocated payload buffer.
	legacyAppend bool
}

// bridge is the daemon: bus loops produce readings, the mapping turns them
// into events, the buffer keeps them, forwarders publish them over uplinks.
type bridge struct {
	cfg     *config.Config
	opts    bridgeOptions
	logger  *slog.Logger
	store   *buffer.Store
	devices map[string]*fieldDevice
	loops   []*adapters.Loop
	links   []*uplink.Client
	uplinks *uplinkStates
	gateway *gateway // gateway mode only

	loopOf   map[string]*adapters.Loop // the loop that owns each device's bus
	commands *commands                 // nil in quickstart mode
	requests dm.RequestHandler         // device-management requests; nil ignores them (set before Run)
	dm       *dm.Agent                 // nil when device management is off
	dmInfo   map[string][]infoPoint    // device → points read into its deviceInfo
	metrics  *bridgeMetrics
}

// fieldDevice is one configured device at run time.
type fieldDevice struct {
	name    string
	typ     string
	rules   *mapping.Device // used only on its bus loop's goroutine
	topic   func(event string) string
	link    *uplink.Client
	pub     buffer.Publisher // what its forwarder publishes through
	state   atomic.Int32     // stateUnknown, stateUp or stateDown
	mailbox *mailbox         // quickstart mode only
}

// Device states as the last status event said.
const (
	stateUnknown int32 = iota
	stateUp
	stateDown
)

// newBridge builds every component from cfg. It does no network I/O: an
// offline device or broker at start-up must not keep the bridge from
// starting. Opening the buffer is the only disk I/O.
func newBridge(cfg *config.Config, opts bridgeOptions, logger *slog.Logger) (*bridge, error) {
	b := &bridge{cfg: cfg, opts: opts, logger: logger, devices: map[string]*fieldDevice{}, uplinks: newUplinkStates(logger.With("component", "uplink")),
		loopOf: map[string]*adapters.Loop{}}
	if b.opts.UplinkSummaryEvery <= 0 {
		b.opts.UplinkSummaryEvery = defaultUplinkSummaryEvery
	}
	if b.opts.DrainProgressEvery <= 0 {
		b.opts.DrainProgressEvery = defaultDrainProgressEvery
	}
	broker := opts.Broker
	if broker == "" {
		broker = brokerURL(cfg.Platform)
	}
	linkBase := uplink.Config{
		Broker:       broker,
		KeepAlive:    cfg.Platform.KeepAlive,
		CleanSession: cfg.Platform.CleanSession,
		QoS:          byte(cfg.Platform.QoS),
		// The platform closes a device connection with more than 10
		// unacknowledged messages and a gateway's above 1000 (protocol.md §2.12).
		MaxInflight: min(cfg.Buffer.InFlight, platformDeviceInflight),
		// Every connection goes to the same broker: when one is back, all
		// try again at once instead of waiting out their own backoff.
		Reachable: uplink.NewReachability(),
	}
	if cfg.Platform.TLS && opts.Broker == "" {
		tc, err := uplink.NewTLSConfig(cfg.Platform.CAFile, cfg.Platform.ClientCert, cfg.Platform.ClientKey, cfg.Platform.InsecureSkipVerify)
		if err != nil {
			return nil, err
		}
		if cfg.Platform.InsecureSkipVerify {
			logger.Warn("tls certificate verification is off (insecure_skip_verify); use only for testing")
		}
		linkBase.TLS = tc
	}

	if cfg.Platform.Mode == config.ModeGateway {
		gw := cfg.Platform.Gateway
		id := uplink.Identity{Org: cfg.Platform.Org, Type: gw.Type, ID: gw.ID}
		b.gateway = newGateway(id, gw.Rate, logger.With("component", "gateway"))
		lc := linkBase
		lc.ClientID, lc.Username, lc.Password = uplink.GatewayClientID(id), uplink.TokenAuthUsername, gw.Token
		lc.MaxInflight = min(cfg.Buffer.InFlight*(len(cfg.Devices)+1), platformGatewayInflight)
		// Every queue's forwarder (readings and command results per device,
		// the gateway's own two) may have a full window waiting; a publish
		// refused as busy would make a forwarder back off.
		lc.MaxPending = max(uplink.DefaultMaxPending, cfg.Buffer.InFlight*(2*len(cfg.Devices)+2))
		// Commands for the gateway and every device behind it, and the
		// platform's notify messages about rejected requests.
		lc.Subscriptions = []uplink.Subscription{{Filter: "iot-2/type/+/id/+/cmd/+/fmt/+", QoS: 1}, {Filter: b.gateway.notify, QoS: 0}}
		lc.Handler = b.gatewayHandler()
		b.manageLink(&lc, gw.Type, gw.ID)
		link, err := b.newLink(lc, "gateway", gw.ID)
		if err != nil {
			return nil, err
		}
		b.gateway.link = link
	}

	for _, d := range cfg.Devices {
		rules, err := mapping.NewDevice(d.Name, d.Type.DeviceType, d.Unit, d.Plan)
		if err != nil {
			return nil, fmt.Errorf("device %s: %w", d.Name, err)
		}
		fd := &fieldDevice{name: d.Name, typ: d.Type.Name, rules: rules}
		id := uplink.Identity{Org: cfg.Platform.Org, Type: d.Type.Name, ID: d.Name}
		switch cfg.Platform.Mode {
		case config.ModeGateway:
			fd.link = b.gateway.link
			fd.pub = gatewayPublisher{g: b.gateway, device: d.Name}
			fd.topic = func(event string) string { return uplink.GatewayEventTopic(id, event, "json") }
		default:
			lc := linkBase
			lc.ClientID = uplink.DeviceClientID(id)
			if cfg.Platform.Mode == config.ModeDevice {
				lc.Username, lc.Password = uplink.TokenAuthUsername, d.Token
				lc.Subscriptions = []uplink.Subscription{{Filter: "iot-2/cmd/+/fmt/+", QoS: 1}}
				lc.Handler = b.commandHandler(fd)
				b.manageLink(&lc, d.Type.Name, d.Name)
			} else {
				fd.mailbox = &mailbox{}
				logger.Info("quickstart: see the device's events on the dashboard", "device", d.Name, "url", quickstartDashboard+d.Name)
			}
			fd.link, err = b.newLink(lc, "device", d.Name)
			if err != nil {
				return nil, err
			}
			fd.pub = fd.link
			fd.topic = func(event string) string { return uplink.DeviceEventTopic(event, "json") }
		}
		b.devices[d.Name] = fd
	}

	for _, bus := range cfg.Buses {
		loop, err := b.newLoop(bus)
		if err != nil {
			return nil, err
		}
		if loop != nil {
			b.loops = append(b.loops, loop)
		}
	}
	if err := b.wireCommands(b.loopOf); err != nil {
		return nil, err
	}
	if err := b.newAgent(); err != nil { // after the Executor, which runs its commands
		return nil, err
	}

	store, err := buffer.Open(bufferConfig(cfg, opts), logger.With("component", "buffer"))
	if err != nil {
		return nil, fmt.Errorf("open buffer: %w", err)
	}
	b.store = store
	b.metrics = newBridgeMetrics(b, logger)
	// Register every queue and lease its seqs in one write of the state
	// file, rather than one fsynced write per device during the first poll.
	var queues []string
	for _, d := range b.devices {
		if d.mailbox == nil {
			queues = append(queues, d.name)
		}
	}
	if b.gateway != nil {
		queues = append(queues, b.gateway.queue)
	}
	if err := store.Prepare(queues...); err != nil {
		logger.Warn("buffer queues not prepared; each is set up on its first event", "err", err)
	}
	return b, nil
}

func (b *bridge) newLink(lc uplink.Config, class, name string) (*uplink.Client, error) {
	logger := b.logger.With("component", "uplink", class, name)
	// The client logs each connection and each new kind of failure itself;
	// the bridge logs state changes and sums up the links that are down.
	track := b.uplinks.track(class+" "+name, logger)
	then := lc.OnStateChange // device management's, if any
	lc.OnStateChange = func(connected bool, err error) {
		track(connected, err)
		if then != nil {
			then(connected, err)
		}
	}
	link, err := uplink.New(lc, logger)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", class, name, err)
	}
	b.links = append(b.links, link)
	return link, nil
}

// newLoop builds the bus and the loop that owns it; nil when no device uses the bus.
func (b *bridge) newLoop(bus *config.Bus) (*adapters.Loop, error) {
	var devs []adapters.Device
	for _, d := range b.cfg.Devices {
		if d.Bus == bus {
			devs = append(devs, adapters.Device{Name: d.Name, Interval: d.Poll, Plan: b.devices[d.Name].rules.Plan()})
		}
	}
	if len(devs) == 0 {
		b.logger.Warn("bus has no devices", "bus", bus.Name)
		return nil, nil
	}
	conn, err := openBus(bus, b.cfg.Devices)
	if err != nil {
		return nil, fmt.Errorf("bus %s: %w", bus.Name, err)
	}
	if bus.WriteMultiple {
		conn.(interface{ SetWriteMultiple(bool) }).SetWriteMultiple(true)
	}
	logger := b.logger.With("component", "bus") // the loop adds "bus"
	loop := adapters.NewLoop(conn, adapters.LoopConfig{
		Bus:     bus.Name,
		Devices: devs,
		Handler: adapters.ReadingHandlerFunc(b.handleReading),
		Pause:   bus.Pause,
	}, logger)
	for _, d := range devs {
		b.loopOf[d.Name] = loop
	}
	return loop, nil
}

// handleReading runs on a bus loop's goroutine: decode, decide which events
// are due, and append them to the buffer, which assigns each its seq.
func (b *bridge) handleReading(ctx context.Context, r adapters.Reading) {
	d := b.devices[r.Device]
	// dropped_events counts every event of the device the buffer could
	// not keep: dropped by policy or refused for lack of disk space.
	qs := b.store.QueueCounters(d.name)
	if b.opts.legacyAppend {
		qs = b.store.QueueStats(d.name)
	}
	d.rules.NoteDropped(qs.Dropped + qs.Failed)
	if b.dm != nil {
		b.noteManagement(r)
	}
	for _, out := range d.rules.Process(r) {
		if out.Status != nil {
			d.state.Store(map[bool]int32{true: stateUp, false: stateDown}[out.Status.Up])
		}
		b.appendEvent(d, out)
	}
}

// appendEvent puts one event of d into the buffer, which assigns its seq
// (or, in quickstart mode, into d's mailbox). An event over the platform's
// payload limit is refused here, never queued.
func (b *bridge) appendEvent(d *fieldDevice, out mapping.Output) {
	if d.mailbox != nil {
		d.mailbox.put(out)
		return
	}
	// The buffer copies the payload, so one scratch buffer serves many
	// events; Enqueue returns without waiting for the disk.
	scratch := payloadPool.Get().(*[]byte)
	defer payloadPool.Put(scratch)
	appendFn := b.store.Enqueue
	if b.opts.legacyAppend {
		appendFn = b.store.Append
		scratch = &[]byte{}
	}
	seq, err := appendFn(d.name, d.topic(out.Event), func(seq uint64) ([]byte, error) {
		p := out.AppendPayload((*scratch)[:0], seq)
		*scratch = p
		if len(p) > mapping.MaxPayload {
			return nil, fmt.Errorf("event %s is %d bytes, over the platform's limit of %d: %w", out.Event, len(p), mapping.MaxPayload, buffer.ErrTooLarge)
		}
		return p, nil
	})
	if err != nil {
		b.logger.Error("event not buffered", "device", d.name, "event", out.Event, "err", err)
		return
	}
	b.logger.Debug("event buffered", "device", d.name, "event", out.Event, "seq", seq)
}

// payloadPool holds scratch buffers for encoding payloads (appendEvent runs
// on every bus goroutine and on command handlers at once).
var payloadPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// gatewayHandler routes what the gateway connection receives: notify
// messages about rejected requests, and commands.
func (b *bridge) gatewayHandler() uplink.Handler {
	commands := b.commandHandler(nil)
	known := func(typ, id string) bool { d := b.devices[id]; return d != nil && d.typ == typ }
	return uplink.HandlerFunc(func(ctx context.Context, topic string, payload []byte) error {
		if topic == b.gateway.notify {
			b.gateway.handleNotify(payload, known)
			return nil
		}
		return commands.HandleMessage(ctx, topic, payload)
	})
}

// Run runs until ctx is done, then stops in order: pollers first (no new
// events), then the forwarders get the drain window to send what is
// buffered, then the uplinks disconnect, and the buffer closes last.
func (b *bridge) Run(ctx context.Context) error {
	linkCtx, stopLinks := context.WithCancel(context.WithoutCancel(ctx))
	fwdCtx, stopForward := context.WithCancel(context.WithoutCancel(ctx))
	defer stopLinks()
	defer stopForward()

	if err := b.metrics.listen(b.cfg.Metrics.Listen); err != nil {
		b.store.Close()
		return err
	}
	var links, forwarders, pollers sync.WaitGroup
	errs := make(chan error, len(b.links)+3*len(b.devices)+len(b.loops)+4)
	goRun := func(wg *sync.WaitGroup, what string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil {
				errs <- fmt.Errorf("%s: %w", what, err)
			}
		}()
	}
	for _, l := range b.links {
		goRun(&links, "uplink", func() error { return l.Run(linkCtx) })
	}
	goRun(&links, "uplink summary", func() error { b.uplinks.summarize(linkCtx, b.opts.UplinkSummaryEvery); return nil })
	goRun(&links, "metrics", func() error { return b.metrics.serve(linkCtx) })
	goRun(&links, "drain progress", func() error { b.metrics.drain.run(linkCtx, b.opts.DrainProgressEvery, b.drainStats); return nil })
	for _, d := range b.devices {
		if d.mailbox != nil {
			goRun(&forwarders, "quickstart "+d.name, func() error { return b.runQuickstart(fwdCtx, d) })
			continue
		}
		goRun(&forwarders, "forward "+d.name, func() error { return b.store.Forward(fwdCtx, d.name, d.pub) })
	}
	if g := b.gateway; g != nil {
		goRun(&forwarders, "forward gateway", func() error { return b.store.Forward(fwdCtx, g.queue, g.link) })
		goRun(&pollers, "gateway health", func() error { return b.runHealth(ctx) })
	}
	for _, l := range b.loops {
		goRun(&pollers, "bus", func() error { return l.Run(ctx) })
	}
	b.runCommands(ctx, fwdCtx, func(forwarder bool, what string, f func() error) {
		if forwarder {
			goRun(&forwarders, what, f)
		} else {
			goRun(&pollers, what, f)
		}
	})
	if b.dm != nil { // stops with the pollers, while the uplinks still carry its Unmanage
		goRun(&pollers, "device management", func() error { return b.dm.Run(ctx) })
	}

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errs:
		b.logger.Error("component failed; stopping", "err", runErr)
	}
	if b.opts.OnStop != nil {
		b.opts.OnStop()
	}
	b.logger.Info("stopping", "drain", b.opts.Drain)
	pollers.Wait()
	b.drain()
	stopForward()
	forwarders.Wait()
	stopLinks()
	links.Wait()
	if err := b.store.Close(); err != nil && runErr == nil {
		runErr = fmt.Errorf("close buffer: %w", err)
	}
	b.logger.Info("stopped")
	return runErr
}

// drain waits up to the drain window for the queues to empty.
func (b *bridge) drain() {
	deadline := time.Now().Add(b.opts.Drain)
	for time.Now().Before(deadline) {
		left := b.store.Stats().Len
		if left == 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.logger.Info("drain window over; events stay buffered for the next start")
}

// brokerURL derives the broker URL from the platform block.
func brokerURL(p config.Platform) string {
	host := p.Host
	if host == "" {
		host = uplink.Host(p.Org, p.Domain)
	}
	scheme, path := "tcp", ""
	switch {
	case p.Transport == "websocket" && p.TLS:
		scheme, path = "wss", "/mqtt"
	case p.Transport == "websocket":
		scheme, path = "ws", "/mqtt"
	case p.TLS:
		scheme = "ssl"
	}
	return scheme + "://" + net.JoinHostPort(host, strconv.Itoa(p.Port)) + path
}

func bufferConfig(cfg *config.Config, opts bridgeOptions) buffer.Config {
	bc := buffer.Config{
		Dir:      cfg.Buffer.Dir,
		InMemory: opts.InMemoryBuffer,
		MaxBytes: cfg.Buffer.MaxBytes,
		MaxAge:   cfg.Buffer.MaxAge,
		Sync:     cfg.Buffer.Sync,
		InFlight: cfg.Buffer.InFlight,
		Rate:     cfg.Buffer.Rate,
		MinFree:  cfg.Buffer.MinFree,
		OnFull:   buffer.DropOldest,
	}
	if cfg.Buffer.OnFull == "drop_newest" {
		bc.OnFull = buffer.DropNewest
	}
	if cfg.Platform.Mode == config.ModeQuickstart && (bc.Rate == 0 || bc.Rate > 1) {
		bc.Rate = 1 // quickstart accepts at most one event per second per device
	}
	return bc
}

// openBus builds the adapters.Bus of a configured bus. It does not connect:
// the loop's first request does, so a missing device never blocks start-up.
func openBus(bus *config.Bus, devices []*config.Device) (adapters.Bus, error) {
	sp := bus.Serial
	switch bus.Kind {
	case config.BusModbusTCP:
		return modbus.NewTCP(modbus.TCPConfig{Address: bus.Address, Timeout: bus.Timeout, ConnectPause: bus.ConnectPause})
	case config.BusModbusRTUTCP:
		return modbus.NewRTUOverTCP(bus.Address, bus.Timeout)
	case config.BusModbusRTU:
		return modbus.NewRTU(modbus.RTUConfig{Port: sp.Port, Baud: sp.Baud, DataBits: sp.DataBits, Parity: sp.Parity, StopBits: sp.StopBits, Timeout: bus.Timeout, Silence: sp.Silence})
	case config.BusModbusASCII:
		return modbus.NewASCII(modbus.ASCIIConfig{Port: sp.Port, Baud: sp.Baud, DataBits: sp.DataBits, Parity: sp.Parity, StopBits: sp.StopBits, Timeout: bus.Timeout})
	case config.BusSerialLine:
		return serialline.New(serialLineConfig(bus, devices))
	}
	return nil, fmt.Errorf("kind %q is not supported", bus.Kind)
}

// serialLineConfig turns a serial_line bus and the fields of its devices'
// type into the adapter's configuration.
func serialLineConfig(bus *config.Bus, devices []*config.Device) serialline.Config {
	l, sp := bus.Line, bus.Serial
	cfg := serialline.Config{
		Port: sp.Port, Baud: sp.Baud, DataBits: sp.DataBits, Parity: sp.Parity, StopBits: sp.StopBits, Address: bus.Address,
		Framing: serialline.Framing{Delimiter: l.Delimiter, Length: l.Length, Start: l.Start, MaxLength: l.MaxLength},
		Parser:  serialline.Parser{Regexp: l.Regexp, Separator: l.Separator, DecimalComma: l.DecimalComma},
		Request: l.Request, Timeout: bus.Timeout, MaxAge: l.MaxAge,
	}
	for _, d := range devices {
		if d.Bus != bus {
			continue
		}
		for _, f := range d.Type.Fields {
			sf := serialline.Field{Name: f.Name, Column: f.Column, Type: serialline.Number}
			if f.Text {
				sf.Type, sf.Length = serialline.Text, f.Length
			}
			cfg.Fields = append(cfg.Fields, sf)
		}
		break // config checked that every device on the line has this type
	}
	return cfg
}
