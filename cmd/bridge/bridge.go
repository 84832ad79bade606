package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"fieldbridge/adapters"
	"fieldbridge/adapters/modbus"
	"fieldbridge/buffer"
	"fieldbridge/config"
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
}

// fieldDevice is one configured device at run time.
type fieldDevice struct {
	name  string
	rules *mapping.Device
	topic func(event string) string
	link  *uplink.Client
}

// newBridge builds every component from cfg. It does no network I/O: an
// offline device or broker at start-up must not keep the bridge from
// starting. Opening the buffer is the only disk I/O.
func newBridge(cfg *config.Config, opts bridgeOptions, logger *slog.Logger) (*bridge, error) {
	b := &bridge{cfg: cfg, opts: opts, logger: logger, devices: map[string]*fieldDevice{}}
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

	var gatewayLink *uplink.Client
	if cfg.Platform.Mode == config.ModeGateway {
		gw := cfg.Platform.Gateway
		lc := linkBase
		id := uplink.Identity{Org: cfg.Platform.Org, Type: gw.Type, ID: gw.ID}
		lc.ClientID, lc.Username, lc.Password = uplink.GatewayClientID(id), "use-token-auth", gw.Token
		lc.MaxInflight = min(cfg.Buffer.InFlight*len(cfg.Devices), platformGatewayInflight)
		lc.Subscriptions = []uplink.Subscription{{Filter: "iot-2/type/+/id/+/cmd/+/fmt/+", QoS: 1}}
		lc.Handler = b.commandHandler()
		link, err := b.newLink(lc, "gateway", gw.ID)
		if err != nil {
			return nil, err
		}
		gatewayLink = link
	}

	for _, d := range cfg.Devices {
		rules, err := mapping.NewDevice(d.Name, d.Type.DeviceType, d.Unit, d.Plan)
		if err != nil {
			return nil, fmt.Errorf("device %s: %w", d.Name, err)
		}
		fd := &fieldDevice{name: d.Name, rules: rules}
		id := uplink.Identity{Org: cfg.Platform.Org, Type: d.Type.Name, ID: d.Name}
		switch cfg.Platform.Mode {
		case config.ModeGateway:
			fd.link = gatewayLink
			fd.topic = func(event string) string { return uplink.GatewayEventTopic(id, event, "json") }
		default:
			lc := linkBase
			lc.ClientID = uplink.DeviceClientID(id)
			if cfg.Platform.Mode == config.ModeDevice {
				lc.Username, lc.Password = "use-token-auth", d.Token
				lc.Subscriptions = []uplink.Subscription{{Filter: "iot-2/cmd/+/fmt/+", QoS: 1}}
				lc.Handler = b.commandHandler()
			}
			fd.link, err = b.newLink(lc, "device", d.Name)
			if err != nil {
				return nil, err
			}
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

	store, err := buffer.Open(bufferConfig(cfg, opts), logger.With("component", "buffer"))
	if err != nil {
		return nil, fmt.Errorf("open buffer: %w", err)
	}
	b.store = store
	return b, nil
}

func (b *bridge) newLink(lc uplink.Config, class, name string) (*uplink.Client, error) {
	logger := b.logger.With("component", "uplink", class, name)
	lc.OnStateChange = func(connected bool, err error) {
		switch {
		case connected:
			logger.Info("uplink connected", "broker", lc.Broker)
		case err == nil:
			logger.Info("uplink disconnected")
		default:
			logger.Warn("uplink down", "err", err)
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
	var conn adapters.Bus
	switch bus.Kind {
	case config.BusModbusTCP:
		tcp, err := modbus.NewTCP(modbus.TCPConfig{Address: bus.Address, Timeout: bus.Timeout, ConnectPause: bus.ConnectPause})
		if err != nil {
			return nil, fmt.Errorf("bus %s: %w", bus.Name, err)
		}
		conn = tcp
	default:
		return nil, fmt.Errorf("bus %s: kind %q is not supported", bus.Name, bus.Kind)
	}
	logger := b.logger.With("component", "bus", "bus", bus.Name)
	return adapters.NewLoop(conn, adapters.LoopConfig{
		Bus:     bus.Name,
		Devices: devs,
		Handler: adapters.ReadingHandlerFunc(b.handleReading),
		Pause:   bus.Pause,
	}, logger), nil
}

// handleReading runs on a bus loop's goroutine: decode, decide which events
// are due, and append them to the buffer, which assigns each its seq.
func (b *bridge) handleReading(ctx context.Context, r adapters.Reading) {
	d := b.devices[r.Device]
	d.rules.NoteDropped(b.store.QueueStats(d.name).Dropped)
	for _, out := range d.rules.Process(r) {
		seq, err := b.store.Append(d.name, d.topic(out.Event), func(seq uint64) ([]byte, error) {
			p := out.AppendPayload(make([]byte, 0, 256), seq)
			if len(p) > mapping.MaxPayload {
				return nil, fmt.Errorf("event %s is %d bytes, over the platform's limit of %d: %w", out.Event, len(p), mapping.MaxPayload, buffer.ErrTooLarge)
			}
			return p, nil
		})
		if err != nil {
			b.logger.Error("event not buffered", "device", d.name, "event", out.Event, "err", err)
			continue
		}
		b.logger.Debug("event buffered", "device", d.name, "event", out.Event, "seq", seq)
	}
}

// commandHandler receives commands. Commands and device management come in
// a later issue; until then they are logged and refused.
func (b *bridge) commandHandler() uplink.Handler {
	return uplink.HandlerFunc(func(ctx context.Context, topic string, payload []byte) error {
		b.logger.Warn("command ignored: commands are not supported yet", "topic", topic, "bytes", len(payload))
		return nil
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

	var links, forwarders, pollers sync.WaitGroup
	errs := make(chan error, len(b.links)+len(b.devices)+len(b.loops))
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
	for _, d := range b.devices {
		goRun(&forwarders, "forward "+d.name, func() error { return b.store.Forward(fwdCtx, d.name, d.link) })
	}
	for _, l := range b.loops {
		goRun(&pollers, "bus", func() error { return l.Run(ctx) })
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
