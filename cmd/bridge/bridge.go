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
	// tuneLinks, when set, adjusts the settings every uplink starts from
	// (tests: a faster reconnect than a real deployment wants).
	tuneLinks func(*uplink.Config)
}

// bridge is the daemon: bus loops produce readings, the mapping turns them
// into events, the buffer keeps them, forwarders publish them over uplinks.
//
// The parts a reload applies by difference (buses, devices, their links and
// forwarders, the command wiring) are in the fieldView; the rest (platform,
// buffer, metrics, the gateway connection) lives as long as the bridge.
type bridge struct {
	cfg      *config.Config // as at start: platform, buffer and metrics never change
	opts     bridgeOptions
	logger   *slog.Logger
	store    *buffer.Store
	uplinks  *uplinkStates
	gateway  *gateway      // gateway mode only
	linkBase uplink.Config // what every device link shares

	field   atomic.Pointer[fieldView] // replaced whole by a reload
	dm      *dm.Agent                 // nil when device management is off
	dmInfo  map[string][]infoPoint    // device → points read into its deviceInfo
	metrics *bridgeMetrics

	reloadMu sync.Mutex // serialises reloads, and a reload with shutdown
	run      *runner    // set by Run under reloadMu; nil when not running
	draining map[string]*fieldDevice
}

// fieldView is what a reload replaces: read it whole with view, never
// change it in place.
type fieldView struct {
	cfg      *config.Config // the applied configuration (global parts as at start)
	devices  map[string]*fieldDevice
	buses    map[string]*busUnit
	loops    []*adapters.Loop
	links    []*uplink.Client          // the gateway's and every device's
	loopOf   map[string]*adapters.Loop // by device
	commands *commands                 // nil in quickstart mode
}

func (b *bridge) view() *fieldView { return b.field.Load() }

// fieldDevice is one configured device at run time.
type fieldDevice struct {
	name    string
	typ     string
	cfg     *config.Device
	rules   *mapping.Device // used only on its bus loop's goroutine
	topic   *eventTopics
	link    *uplink.Client
	ownLink bool             // the link is the device's own (not the gateway's)
	pub     buffer.Publisher // what its forwarder publishes through
	state   atomic.Int32     // stateUnknown, stateUp or stateDown
	mailbox *mailbox         // quickstart mode only
	run     *deviceRun       // shared by the versions of a device that keep its link

	agent     *dm.Agent   // its device management; nil when off
	info      []infoPoint // points read into its deviceInfo
	stopAgent func()      // set by startAgent
	agentDone sync.WaitGroup
}

// deviceRun is what a reload stops of a device: its forwarders, then its link.
type deviceRun struct {
	stopForward, stopLink context.CancelFunc
	forwarders, link      sync.WaitGroup
	results               onDemand // the forwarder of its command results
}

// busUnit is one bus at run time: its loop polls the devices on it.
type busUnit struct {
	cfg     *config.Bus
	devices []*config.Device
	fds     map[string]*fieldDevice // what the loop's handler uses, by device
	loop    *adapters.Loop
	stop    context.CancelFunc
	done    sync.WaitGroup
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
	b := &bridge{cfg: cfg, opts: opts, logger: logger, uplinks: newUplinkStates(logger.With("component", "uplink")), draining: map[string]*fieldDevice{}}
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
	b.linkBase = uplink.Config{
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
	if opts.tuneLinks != nil {
		opts.tuneLinks(&b.linkBase)
	}
	if cfg.Platform.TLS && opts.Broker == "" {
		tc, err := uplink.NewTLSConfig(cfg.Platform.CAFile, cfg.Platform.ClientCert, cfg.Platform.ClientKey, cfg.Platform.InsecureSkipVerify)
		if err != nil {
			return nil, err
		}
		if cfg.Platform.InsecureSkipVerify {
			logger.Warn("tls certificate verification is off (insecure_skip_verify); use only for testing")
		}
		b.linkBase.TLS = tc
	}

	if cfg.Platform.Mode == config.ModeGateway {
		gw := cfg.Platform.Gateway
		id := uplink.Identity{Org: cfg.Platform.Org, Type: gw.Type, ID: gw.ID}
		b.gateway = newGateway(id, gw.Rate, logger.With("component", "gateway"))
		lc := b.linkBase
		lc.ClientID, lc.Username, lc.Password = uplink.GatewayClientID(id), uplink.TokenAuthUsername, gw.Token
		lc.MaxInflight = gatewayInflight(cfg)
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
		if err := b.newGatewayAgent(); err != nil {
			return nil, err
		}
	}

	v, err := b.buildField(cfg, nil)
	if err != nil {
		return nil, err
	}
	b.field.Store(v)

	store, err := buffer.Open(bufferConfig(cfg, opts), logger.With("component", "buffer"))
	if err != nil {
		return nil, fmt.Errorf("open buffer: %w", err)
	}
	b.store = store
	b.metrics = newBridgeMetrics(b, logger)
	// Register every queue and lease its seqs in one write of the state
	// file, rather than one fsynced write per device during the first poll.
	var queues []string
	for _, d := range v.devices {
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

// buildField builds the devices, bus loops and command wiring of cfg,
// reusing from old (the running view, nil at start) every device and bus
// whose configuration is the same. It starts nothing, so a failure leaves
// the running bridge as it was.
func (b *bridge) buildField(cfg *config.Config, old *fieldView) (*fieldView, error) {
	v := &fieldView{cfg: cfg, devices: map[string]*fieldDevice{}, buses: map[string]*busUnit{}, loopOf: map[string]*adapters.Loop{}}
	if b.gateway != nil {
		v.links = append(v.links, b.gateway.link)
	}
	for _, d := range cfg.Devices {
		var prev *fieldDevice
		if old != nil {
			prev = old.devices[d.Name]
		}
		fd, err := b.buildDevice(cfg, d, prev)
		if err != nil {
			return nil, err
		}
		v.devices[d.Name] = fd
		if fd.ownLink {
			v.links = append(v.links, fd.link)
		}
	}
	for _, bus := range cfg.Buses {
		var prev *busUnit
		if old != nil {
			prev = old.buses[bus.Name]
		}
		u, err := b.buildBus(cfg, bus, v.devices, prev)
		if err != nil {
			return nil, err
		}
		if u != nil {
			v.buses[bus.Name] = u
			v.loops = append(v.loops, u.loop)
			for _, d := range u.devices {
				v.loopOf[d.Name] = u.loop
			}
		}
	}
	if err := b.wireCommands(v, old); err != nil {
		return nil, err
	}
	return v, nil
}

// buildDevice returns prev when d is configured exactly as before, prev's
// link with new rules when only what the bus loop uses changed, and a new
// device otherwise.
func (b *bridge) buildDevice(cfg *config.Config, d *config.Device, prev *fieldDevice) (*fieldDevice, error) {
	if prev != nil && sameDevice(prev.cfg, d) {
		return prev, nil
	}
	rules, err := mapping.NewDevice(d.Name, d.Type.DeviceType, d.Unit, d.Plan)
	if err != nil {
		return nil, fmt.Errorf("device %s: %w", d.Name, err)
	}
	fd := &fieldDevice{name: d.Name, typ: d.Type.Name, cfg: d, rules: rules}
	if prev != nil && sameIdentity(prev.cfg, d) {
		// Only what the bus loop uses changed: the connection and the
		// forwarders keep running.
		fd.link, fd.ownLink, fd.pub, fd.topic, fd.mailbox, fd.run = prev.link, prev.ownLink, prev.pub, prev.topic, prev.mailbox, prev.run
		fd.state.Store(prev.state.Load())
		return fd, b.newDeviceAgent(d, fd)
	}
	fd.run = &deviceRun{}
	id := uplink.Identity{Org: cfg.Platform.Org, Type: d.Type.Name, ID: d.Name}
	switch cfg.Platform.Mode {
	case config.ModeGateway:
		fd.link = b.gateway.link
		fd.pub = gatewayPublisher{g: b.gateway, device: d.Name}
		fd.topic = newEventTopics(func(event string) string { return uplink.GatewayEventTopic(id, event, "json") })
	default:
		lc := b.linkBase
		lc.ClientID = uplink.DeviceClientID(id)
		if cfg.Platform.Mode == config.ModeDevice {
			lc.Username, lc.Password = uplink.TokenAuthUsername, d.Token
			lc.Subscriptions = []uplink.Subscription{{Filter: "iot-2/cmd/+/fmt/+", QoS: 1}}
			lc.Handler = b.commandHandler(d.Name)
			b.manageLink(&lc, d.Type.Name, d.Name)
		} else {
			fd.mailbox = &mailbox{}
			b.logger.Info("quickstart: see the device's events on the dashboard", "device", d.Name, "url", quickstartDashboard+d.Name)
		}
		fd.ownLink = true
		fd.link, err = b.newLink(lc, "device", d.Name)
		if err != nil {
			return nil, err
		}
		fd.pub = fd.link
		fd.topic = newEventTopics(func(event string) string { return uplink.DeviceEventTopic(event, "json") })
	}
	return fd, b.newDeviceAgent(d, fd)
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
	return link, nil
}

// buildBus returns prev when the bus and its devices are configured
// exactly as before, else a new bus and loop; nil when no device uses it.
func (b *bridge) buildBus(cfg *config.Config, bus *config.Bus, devices map[string]*fieldDevice, prev *busUnit) (*busUnit, error) {
	var ds []*config.Device
	var devs []adapters.Device
	for _, d := range cfg.Devices {
		if d.Bus == bus {
			ds = append(ds, d)
			devs = append(devs, adapters.Device{Name: d.Name, Interval: d.Poll, Plan: devices[d.Name].rules.Plan()})
		}
	}
	if len(devs) == 0 {
		b.logger.Warn("bus has no devices", "bus", bus.Name)
		return nil, nil
	}
	fds := map[string]*fieldDevice{}
	for _, d := range ds {
		fds[d.Name] = devices[d.Name]
	}
	if prev != nil && sameBus(prev, bus, ds, fds) {
		return prev, nil
	}
	conn, err := openBus(bus, cfg.Devices)
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
		Handler: b.readingHandler(fds),
		Pause:   bus.Pause,
	}, logger)
	return &busUnit{cfg: bus, devices: ds, fds: fds, loop: loop}, nil
}

// readingHandler returns the handler of one bus loop; devices are the
// devices on that bus, fixed for the loop's life.
func (b *bridge) readingHandler(devices map[string]*fieldDevice) adapters.ReadingHandler {
	return adapters.ReadingHandlerFunc(func(ctx context.Context, r adapters.Reading) {
		b.handleReading(devices[r.Device], r)
	})
}

// handleReading runs on a bus loop's goroutine: decode, decide which events
// are due, and append them to the buffer, which assigns each its seq.
func (b *bridge) handleReading(d *fieldDevice, r adapters.Reading) {
	// dropped_events counts every event of the device the buffer could
	// not keep: dropped by policy or refused for lack of disk space.
	d.rules.NoteDropped(b.store.Lost(d.name))
	if d.agent != nil {
		noteManagement(d, r)
	}
	for _, out := range d.rules.Process(r) {
		if out.Status != nil {
			state := stateDown
			if out.Status.Up {
				state = stateUp
			}
			d.state.Store(state)
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
	enc := encoderPool.Get().(*payloadEncoder)
	defer encoderPool.Put(enc)
	enc.out = out
	seq, err := b.store.Enqueue(d.name, d.topic.of(out.Event), enc.build)
	enc.out = mapping.Output{} // the pool must not keep the mapping's scratch
	if err != nil {
		b.logger.Error("event not buffered", "device", d.name, "event", out.Event, "err", err)
		return
	}
	if b.logger.Enabled(context.Background(), slog.LevelDebug) { // the arguments alone allocate
		b.logger.Debug("event buffered", "device", d.name, "event", out.Event, "seq", seq)
	}
}

// payloadEncoder encodes one event's payload once the buffer has given it
// a seq. Pooled, with its build method value made once, so that encoding an
// event allocates nothing on the bus goroutine.
type payloadEncoder struct {
	out   mapping.Output
	buf   []byte
	build func(seq uint64) ([]byte, error) // enc.encode, bound once
}

func (enc *payloadEncoder) encode(seq uint64) ([]byte, error) {
	p := enc.out.AppendPayload(enc.buf[:0], seq)
	enc.buf = p
	if len(p) > mapping.MaxPayload {
		return nil, fmt.Errorf("event %s is %d bytes, over the platform's limit of %d: %w", enc.out.Event, len(p), mapping.MaxPayload, buffer.ErrTooLarge)
	}
	return p, nil
}

// encoderPool holds payload encoders (appendEvent runs on every bus
// goroutine and on command handlers at once).
var encoderPool = sync.Pool{New: func() any {
	enc := &payloadEncoder{buf: make([]byte, 0, 512)}
	enc.build = enc.encode
	return enc
}}

// eventTopics remembers the topic of each of a device's event names: the
// names are few and fixed, and building the topic string for every event
// was an allocation per event. Bus loop and command handlers use it at
// once: reads are lock-free, a new name copies the map.
type eventTopics struct {
	build  func(event string) string
	mu     sync.Mutex // serialises additions
	topics atomic.Pointer[map[string]string]
}

func newEventTopics(build func(event string) string) *eventTopics {
	t := &eventTopics{build: build}
	t.topics.Store(&map[string]string{})
	return t
}

// of returns the topic that event of the device is published on.
func (t *eventTopics) of(event string) string {
	if topic, ok := (*t.topics.Load())[event]; ok {
		return topic
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	old := *t.topics.Load()
	if topic, ok := old[event]; ok {
		return topic
	}
	topic := t.build(event)
	m := make(map[string]string, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[event] = topic
	t.topics.Store(&m)
	return topic
}

// gatewayHandler routes what the gateway connection receives: notify
// messages about rejected requests, and commands.
func (b *bridge) gatewayHandler() uplink.Handler {
	commands := b.commandHandler("")
	known := func(typ, id string) bool { d := b.view().devices[id]; return d != nil && d.typ == typ }
	return uplink.HandlerFunc(func(ctx context.Context, topic string, payload []byte) error {
		if topic == b.gateway.notify {
			b.gateway.handleNotify(payload, known)
			return nil
		}
		return commands.HandleMessage(ctx, topic, payload)
	})
}

// runner is what Run started: the contexts and groups that every
// goroutine, including those a reload starts later, belongs to.
type runner struct {
	pollCtx, fwdCtx, linkCtx   context.Context
	pollers, forwarders, links sync.WaitGroup
	errs                       chan error
	logger                     *slog.Logger
}

// spawn runs f in a goroutine counted in wg and in each of also. Its error
// stops the bridge unless its own ctx was cancelled (a reload stopping it).
func (r *runner) spawn(ctx context.Context, wg *sync.WaitGroup, what string, f func() error, also ...*sync.WaitGroup) {
	wg.Add(1)
	for _, w := range also {
		w.Add(1)
	}
	t := &spawned{r: r, ctx: ctx, wg: wg, also: also, what: what, f: f}
	go t.run()
}

// spawned is a goroutine spawn started. Its frame stays small (it is a
// method on the heap-allocated task, not a closure with its variables
// spilled to the stack): it sits under every long-lived goroutine of the
// bridge (two per device in device mode), and the GC shrinks a parked
// goroutine's stack only while less than a quarter of it is in use
// (used + 800 B < size/4; see uplink.Client.Run and buffer.Store.Forward).
type spawned struct {
	r    *runner
	ctx  context.Context
	wg   *sync.WaitGroup
	also []*sync.WaitGroup
	what string
	f    func() error
}

func (t *spawned) run() {
	defer t.done()
	if err := t.f(); err != nil {
		t.failed(err)
	}
}

func (t *spawned) done() {
	for _, w := range t.also {
		w.Done()
	}
	t.wg.Done()
}

// failed reports the goroutine's error: it stops the bridge unless the
// goroutine's own ctx was cancelled.
//
//go:noinline // its frame must not be part of run's (see spawned)
func (t *spawned) failed(err error) {
	if t.ctx.Err() != nil {
		return
	}
	select {
	case t.r.errs <- fmt.Errorf("%s: %w", t.what, err):
	default: // the bridge is stopping already
		t.r.logger.Error("component failed", "what", t.what, "err", err)
	}
}

// Run runs until ctx is done, then stops in order: pollers first (no new
// events), then the forwarders get the drain window to send what is
// buffered, then the uplinks disconnect, and the buffer closes last.
func (b *bridge) Run(ctx context.Context) error {
	linkCtx, stopLinks := context.WithCancel(context.WithoutCancel(ctx))
	fwdCtx, stopForward := context.WithCancel(context.WithoutCancel(ctx))
	pollCtx, stopPolling := context.WithCancel(ctx)
	defer stopLinks()
	defer stopForward()
	defer stopPolling()

	if err := b.metrics.listen(b.cfg.Metrics.Listen); err != nil {
		b.store.Close()
		return err
	}
	r := &runner{pollCtx: pollCtx, fwdCtx: fwdCtx, linkCtx: linkCtx, errs: make(chan error, 1), logger: b.logger}
	if g := b.gateway; g != nil {
		r.spawn(linkCtx, &r.links, "uplink", func() error { return g.link.Run(linkCtx) })
	}
	r.spawn(linkCtx, &r.links, "uplink summary", func() error { b.uplinks.summarize(linkCtx, b.opts.UplinkSummaryEvery); return nil })
	r.spawn(linkCtx, &r.links, "metrics", func() error { return b.metrics.serve(linkCtx) })
	r.spawn(linkCtx, &r.links, "drain progress", func() error { b.metrics.drain.run(linkCtx, b.opts.DrainProgressEvery, b.drainStats); return nil })
	if g := b.gateway; g != nil {
		r.spawn(fwdCtx, &r.forwarders, "forward gateway", func() error { return b.store.Forward(fwdCtx, g.queue, g.link) })
		r.spawn(pollCtx, &r.pollers, "gateway health", func() error { return b.runHealth(pollCtx) })
		if a := g.agent; a != nil { // stops with the pollers, while the uplinks still carry its Unmanage
			r.spawn(pollCtx, &r.pollers, "device management "+g.id.ID, func() error { return a.Run(pollCtx) })
		}
		g.results.start(fwdCtx, func(run func() error) { r.spawn(fwdCtx, &r.forwarders, "forward results gateway", run) },
			func(ctx context.Context) error { return b.store.ForwardUntilIdle(ctx, resultQueue(g.id.ID), g.link) })
	}
	b.reloadMu.Lock()
	v := b.view()
	for _, d := range v.devices {
		b.startDevice(r, d)
		b.startAgent(r, d)
	}
	for _, u := range v.buses {
		b.startBus(r, u)
	}
	b.startCommands(r, v.commands)
	b.run = r
	b.reloadMu.Unlock()

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-r.errs:
		b.logger.Error("component failed; stopping", "err", runErr)
	}
	if b.opts.OnStop != nil {
		b.opts.OnStop()
	}
	// A reload under way finishes first; none starts after this.
	b.reloadMu.Lock()
	b.run = nil
	b.reloadMu.Unlock()
	b.logger.Info("stopping", "drain", b.opts.Drain)
	stopPolling()
	r.pollers.Wait()
	b.drain()
	b.stopResultForwarders()
	stopForward()
	r.forwarders.Wait()
	stopLinks()
	r.links.Wait()
	if err := b.store.Close(); err != nil && runErr == nil {
		runErr = fmt.Errorf("close buffer: %w", err)
	}
	b.logger.Info("stopped")
	return runErr
}

// stopResultForwarders keeps the on-demand forwarders of command results
// from starting once the forwarders are being stopped and waited for.
func (b *bridge) stopResultForwarders() {
	if b.gateway != nil {
		b.gateway.results.stop()
	}
	b.reloadMu.Lock()
	defer b.reloadMu.Unlock()
	for _, d := range b.view().devices {
		d.run.results.stop()
	}
	for _, d := range b.draining {
		d.run.results.stop()
	}
}

// startDevice starts d's link (when it is its own) and forwarders.
func (b *bridge) startDevice(r *runner, d *fieldDevice) {
	fwdCtx, stopForward := context.WithCancel(r.fwdCtx)
	linkCtx, stopLink := context.WithCancel(r.linkCtx)
	d.run.stopForward, d.run.stopLink = stopForward, stopLink
	if d.ownLink {
		r.spawn(linkCtx, &r.links, "uplink "+d.name, func() error { return d.link.Run(linkCtx) }, &d.run.link)
	}
	if d.mailbox != nil {
		r.spawn(fwdCtx, &r.forwarders, "quickstart "+d.name, func() error { return b.runQuickstart(fwdCtx, d) }, &d.run.forwarders)
		return
	}
	r.spawn(fwdCtx, &r.forwarders, "forward "+d.name, func() error { return b.store.Forward(fwdCtx, d.name, d.pub) }, &d.run.forwarders)
	if b.cfg.Platform.Mode != config.ModeQuickstart {
		d.run.results.start(fwdCtx, func(run func() error) {
			r.spawn(fwdCtx, &r.forwarders, "forward results "+d.name, run, &d.run.forwarders)
		},
			func(ctx context.Context) error { return b.store.ForwardUntilIdle(ctx, resultQueue(d.name), d.pub) })
	}
}

// stopDevice stops d's forwarders, then its link, and waits for them.
// What they had not sent stays buffered.
func (b *bridge) stopDevice(d *fieldDevice) {
	d.run.results.stop()
	d.run.stopForward()
	d.run.forwarders.Wait()
	d.run.stopLink()
	d.run.link.Wait()
	if d.ownLink {
		b.uplinks.untrack("device " + d.name)
	}
}

// startBus starts u's loop.
func (b *bridge) startBus(r *runner, u *busUnit) {
	ctx, stop := context.WithCancel(r.pollCtx)
	u.stop = stop
	r.spawn(ctx, &r.pollers, "bus "+u.cfg.Name, func() error { return u.loop.Run(ctx) }, &u.done)
}

// stopBus stops u's loop and waits for it: no reading of its devices is
// handled after it returns.
func stopBus(u *busUnit) {
	u.stop()
	u.done.Wait()
}

// drain waits up to the drain window for the queues to empty.
func (b *bridge) drain() {
	deadline := time.Now().Add(b.opts.Drain)
	// The pollers have stopped, but their last events may still wait for
	// the buffer's writer; until they are committed the buffer does not
	// count them, and the drain would end with them left behind.
	if err := b.store.Flush(); err != nil {
		b.logger.Warn("buffer not flushed before the drain", "err", err)
	}
	for time.Now().Before(deadline) {
		left := b.store.Counters().Len // every 50 ms: no event ages, no database reads
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
	if cfg.Platform.Mode == config.ModeGateway {
		bc.ReadAhead = gatewayReadAhead(cfg)
	}
	return bc
}

// gatewayReadAhead is how many records the forwarders may hold read ahead
// in gateway mode: twice what the one connection takes on the wire (at
// most the platform's 1 000), so its window stays full while what is read
// beyond it does not wait in memory (a drain at 500 devices held the
// buffer's default of 8 192 records, ~1.5 KiB each with the uplink's
// request). Device mode keeps the default: 500 connections of 10 already
// take 5 000.
func gatewayReadAhead(cfg *config.Config) int {
	return min(max(2*gatewayInflight(cfg), 256), buffer.DefaultReadAhead)
}

// gatewayInflight is the gateway connection's window: every device's
// forward window and the gateway's own, within the platform's limit.
func gatewayInflight(cfg *config.Config) int {
	return min(cfg.Buffer.InFlight*(len(cfg.Devices)+1), platformGatewayInflight)
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
