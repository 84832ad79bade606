package platform

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Errors returned by the platform. Callers check them with errors.Is.
var (
	// ErrInvalidConfig means New rejected its Config; the error lists every problem.
	ErrInvalidConfig = errors.New("platform: invalid config")
	// ErrInvalidRegistry means a registry line, Device or APIKey is malformed.
	ErrInvalidRegistry = errors.New("platform: invalid registry entry")
	// ErrClosed is returned by methods called after Close.
	ErrClosed = errors.New("platform: closed")
	// ErrInvalidTopic means a topic, filter or topic level given to the API is not valid.
	ErrInvalidTopic = errors.New("platform: invalid topic")
	// ErrPayloadTooLarge means a payload exceeds MaxPayload.
	ErrPayloadTooLarge = errors.New("platform: payload too large")
	// ErrUnknownDevice means the device is not registered.
	ErrUnknownDevice = errors.New("platform: unknown device")
	// ErrQuickstart means the operation does not exist in quickstart mode.
	ErrQuickstart = errors.New("platform: not available in quickstart mode")
	// ErrInvalidAction means DeviceAction got an unknown or malformed action
	// or parameters.
	ErrInvalidAction = errors.New("platform: invalid device management action")
	// ErrNotManaged means the device has not sent Manage, or has unmanaged
	// or gone dormant since (rule D2).
	ErrNotManaged = errors.New("platform: device is not managed")
	// ErrUnsupportedAction means the device did not advertise the capability
	// the action needs in its Manage request (rule D2).
	ErrUnsupportedAction = errors.New("platform: action not supported by the device")
)

// platformClientID is the origin (Message.ClientID) of the messages the
// platform generates itself: mon, notify and iotdm-1. No client can connect
// with it (rule C3).
const platformClientID = "platform"

// QuickstartOrg is the org that selects quickstart mode (protocol.md §2.11).
const QuickstartOrg = "quickstart"

// maxPacketSize is mochi's backstop against huge packets, checked before a
// packet is read into memory: the largest payload plus the largest topic and
// room for MQTT 5 properties. Rule P2 itself is enforced on the payload.
const maxPacketSize = MaxPayload + 65535 + 8192

// ForbiddenSubscribe selects what the platform does with a SUBSCRIBE filter
// the client may not use (rule S3; undocumented by the platform).
type ForbiddenSubscribe int

const (
	// SubscribeDisconnect closes the connection (the default).
	SubscribeDisconnect ForbiddenSubscribe = iota
	// SubscribeFailure answers SUBACK 0x80 for that filter and keeps the connection.
	SubscribeFailure
)

// Config configures a Platform. The zero value of every field except Org is
// usable.
type Config struct {
	// Org is the organisation the platform serves; client IDs must name it.
	// QuickstartOrg selects quickstart mode.
	Org string
	// Addr is the TCP listen address; "" means "127.0.0.1:0" (a free port, see Addr).
	Addr string
	// WSAddr, if set, adds a WebSocket listener (any path, subprotocol mqtt).
	WSAddr string
	// TLSCertFile and TLSKeyFile, if both set, make both listeners TLS 1.2+.
	// Not allowed in quickstart mode.
	TLSCertFile, TLSKeyFile string

	// Devices and APIKeys are the initial registry (see LoadRegistry).
	Devices []Device
	APIKeys []APIKey

	// AppID is the application ID of SendCommand, which publishes as
	// a:<Org>:<AppID>; "" means "platform".
	AppID string
	// OnForbiddenSubscribe is rule S3's action.
	OnForbiddenSubscribe ForbiddenSubscribe
	// QuickstartEventInterval, if positive, drops quickstart events that
	// follow the previous accepted one from the same connection sooner than
	// this (protocol.md §2.11 allows 1 per second).
	QuickstartEventInterval time.Duration
	// SubscriptionBuffer is the channel capacity of each Subscription; 0
	// means 1024.
	SubscriptionBuffer int
	// MaxViolations bounds the list Violations returns; 0 means 1000.
	MaxViolations int

	// QueueLimit is how many QoS ≥ 1 messages each subscription of an
	// offline client with a durable session keeps (rule Q1); when it is
	// full the oldest is dropped. 0 means 50.
	QueueLimit int
	// QueueMaxAge drops queued messages older than this; 0 means 48h, at
	// most 7 days.
	QueueMaxAge time.Duration
	// ExtensionBundles are the bundle IDs of the device-management extension
	// packages the platform knows (protocol.md §8); a Manage request claiming
	// support for any other bundle gets rc 403 (rule D1).
	ExtensionBundles []string
	// Bundles declares extension packages with their actions and parameters
	// (protocol.md §8): a Manage may claim support for them, and
	// DeviceAction checks a custom action against its definition and fills
	// in default values. A bundle listed only in ExtensionBundles takes any
	// action and parameters.
	Bundles []Bundle

	// Now, if set, is the platform's clock: dormancy (rule D7), queue ages
	// and the times in mon and notify messages. Tests advance it to let a
	// Manage lifetime pass without waiting; nil means time.Now.
	Now func() time.Time
}

// Platform is the strict local platform: an MQTT broker enforcing the
// platform's rules plus the application-side API. Its methods are safe for
// concurrent use.
type Platform struct {
	cfg        Config
	log        *slog.Logger
	quickstart bool
	policy     policy
	reg        *registry
	rec        *recorder
	srv        *mqtt.Server
	app        *mqtt.Client // inline client SendCommand publishes as
	sys        *mqtt.Client // inline client of the platform's own messages (mon, notify, iotdm-1)
	queue      *offlineQueue
	dm         *dmServer
	now        func() time.Time // the clock of queue ages, dormancy and message times; tests replace it
	subID      atomic.Int64

	mu    sync.Mutex
	state int // stateNew, stateStarted, stateClosed
	tcp   *listener
	ws    *listener
	subs  map[*Subscription]struct{}
	done  chan struct{}
}

const (
	stateNew = iota
	stateStarted
	stateClosed
)

// New validates cfg and builds a platform. It does no I/O and starts no
// goroutines; Start listens. logger may be nil.
func New(cfg Config, logger *slog.Logger) (*Platform, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.AppID == "" {
		cfg.AppID = "platform"
	}
	if cfg.SubscriptionBuffer == 0 {
		cfg.SubscriptionBuffer = 1024
	}
	if cfg.MaxViolations == 0 {
		cfg.MaxViolations = defaultMaxViolations
	}
	if cfg.QueueLimit == 0 {
		cfg.QueueLimit = defaultQueueLimit
	}
	if cfg.QueueMaxAge == 0 {
		cfg.QueueMaxAge = defaultQueueMaxAge
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}

	p := &Platform{
		cfg:        cfg,
		log:        logger,
		quickstart: cfg.Org == QuickstartOrg,
		reg:        newRegistry(),
		rec:        &recorder{max: cfg.MaxViolations},
		subs:       map[*Subscription]struct{}{},
		done:       make(chan struct{}),
		queue:      newOfflineQueue(cfg.QueueLimit, cfg.QueueMaxAge),
		now:        time.Now,
	}
	if cfg.Now != nil {
		p.now = cfg.Now
	}
	p.dm = newDMServer(p, cfg.ExtensionBundles, cfg.Bundles)
	p.policy = policy{quickstart: p.quickstart, devices: p.reg}
	for _, d := range cfg.Devices {
		p.reg.putDevice(d)
	}
	for _, k := range cfg.APIKeys {
		p.reg.putAPIKey(k)
	}

	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumPacketSize = maxPacketSize
	caps.TopicAliasMaximum = 0 // inbound aliases would hide topics from the rules
	// mochi would otherwise drop every in-flight and retained message older
	// than 24 h, retained mon messages included; queued messages age out in
	// offlineQueue (QueueMaxAge). MQTT 5 message expiry still applies.
	caps.MaximumMessageExpiryInterval = 0
	p.srv = mqtt.New(&mqtt.Options{
		Capabilities:           caps,
		Logger:                 newMochiLogger(logger),
		InlineClient:           true,
		SysTopicResendInterval: 3600,
	})
	if err := p.srv.AddHook(newHook(p), nil); err != nil {
		return nil, fmt.Errorf("add platform hook: %w", err)
	}
	p.app = p.srv.NewClient(nil, mqtt.LocalListener, "a:"+cfg.Org+":"+cfg.AppID, true)
	p.sys = p.srv.NewClient(nil, mqtt.LocalListener, platformClientID, true)
	if !p.quickstart {
		// The DM server consumes every iotdevice-1 message (rule R4).
		if err := p.srv.Subscribe(prefixDMDevice+"/#", dmSubscriptionID, p.dm.handle); err != nil {
			return nil, fmt.Errorf("subscribe dm server: %w", err)
		}
	}
	return p, nil
}

func (cfg Config) validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...)))
	}
	if err := checkIdent(cfg.Org); err != nil {
		bad("org %q: %v", cfg.Org, err)
	}
	if err := checkIdent(cfg.AppID); err != nil {
		bad("app id %q: %v", cfg.AppID, err)
	}
	if (cfg.TLSCertFile == "") != (cfg.TLSKeyFile == "") {
		bad("tls needs both a certificate and a key file")
	}
	if cfg.Org == QuickstartOrg && cfg.TLSCertFile != "" {
		bad("quickstart mode has no tls")
	}
	switch cfg.OnForbiddenSubscribe {
	case SubscribeDisconnect, SubscribeFailure:
	default:
		bad("unknown OnForbiddenSubscribe %d", cfg.OnForbiddenSubscribe)
	}
	if cfg.QuickstartEventInterval < 0 {
		bad("negative quickstart event interval")
	}
	if cfg.SubscriptionBuffer < 0 {
		bad("negative subscription buffer")
	}
	if cfg.MaxViolations < 0 {
		bad("negative max violations")
	}
	if cfg.QueueLimit < 0 {
		bad("negative queue limit")
	}
	if cfg.QueueMaxAge < 0 || cfg.QueueMaxAge > maxQueueMaxAge {
		bad("queue max age %s: want up to %s", cfg.QueueMaxAge, maxQueueMaxAge)
	}
	for _, b := range cfg.ExtensionBundles {
		if err := checkBundleIdent(b); err != nil {
			bad("extension bundle %q: %v", b, err)
		}
	}
	declared := map[string]bool{}
	for _, b := range cfg.Bundles {
		if err := b.validate(); err != nil {
			bad("extension bundle %q: %v", short(b.ID), err)
		}
		if declared[b.ID] {
			bad("extension bundle %q declared twice", b.ID)
		}
		declared[b.ID] = true
	}
	seen := map[deviceKey]bool{}
	for _, d := range cfg.Devices {
		if err := d.validate(); err != nil {
			bad("%v", err)
			continue
		}
		if k := (deviceKey{d.Type, d.ID}); seen[k] {
			bad("device %s/%s registered twice", d.Type, d.ID)
		} else {
			seen[k] = true
		}
	}
	for _, k := range cfg.APIKeys {
		if err := k.validate(cfg.Org); err != nil {
			bad("%v", err)
		}
	}
	return errors.Join(errs...)
}

// Start opens the listeners and starts serving; afterwards Addr returns the
// bound address. Start on a started platform does nothing; after Close it
// returns ErrClosed. A failed Start leaves the platform unstarted.
func (p *Platform) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch p.state {
	case stateStarted:
		return nil
	case stateClosed:
		return ErrClosed
	}
	var tlsCfg *tls.Config
	if p.cfg.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(p.cfg.TLSCertFile, p.cfg.TLSKeyFile)
		if err != nil {
			return fmt.Errorf("load tls key pair: %w", err)
		}
		tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	}
	tcp := newListener("tcp", p.cfg.Addr, false, tlsCfg)
	tcp.disconnect = p.disconnectClients
	if err := p.srv.AddListener(tcp); err != nil {
		return fmt.Errorf("listen on %s: %w", p.cfg.Addr, err)
	}
	var ws *listener
	if p.cfg.WSAddr != "" {
		ws = newListener("ws", p.cfg.WSAddr, true, tlsCfg)
		ws.disconnect = p.disconnectClients
		if err := p.srv.AddListener(ws); err != nil {
			p.srv.Listeners.Delete(tcp.ID())
			tcp.Close(func(string) {})
			return fmt.Errorf("listen on %s: %w", p.cfg.WSAddr, err)
		}
	}
	if err := p.srv.Serve(); err != nil { // only fails for listeners and hooks from mochi's own config
		return fmt.Errorf("serve mqtt: %w", err)
	}
	p.state, p.tcp, p.ws = stateStarted, tcp, ws
	attrs := []any{"org", p.cfg.Org, "addr", tcp.Address(), "tls", tlsCfg != nil, "quickstart", p.quickstart}
	if ws != nil {
		attrs = append(attrs, "ws_addr", ws.Address())
	}
	p.log.Info("platform started", attrs...)
	return nil
}

// Run starts the platform if needed, serves until ctx is done or Close is
// called, and closes it. It returns nil on a clean stop, unlike the usual
// ctx.Err(), or Start's error.
func (p *Platform) Run(ctx context.Context) error {
	if err := p.Start(); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case <-p.done:
	}
	return p.Close()
}

// Addr returns the bound "host:port" of the TCP listener, or "" before Start.
func (p *Platform) Addr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tcp == nil {
		return ""
	}
	return p.tcp.Address()
}

// WSAddr returns the bound "host:port" of the WebSocket listener, or "" if
// there is none or before Start.
func (p *Platform) WSAddr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ws == nil {
		return ""
	}
	return p.ws.Address()
}

// Close disconnects every client, closes the listeners and every
// Subscription (their channels are closed), and waits for the client
// goroutines. It is idempotent and always returns nil.
func (p *Platform) Close() error {
	p.mu.Lock()
	if p.state == stateClosed {
		p.mu.Unlock()
		return nil
	}
	started := p.state == stateStarted
	p.state = stateClosed
	close(p.done)
	subs := p.subs
	p.subs = nil
	p.mu.Unlock()

	_ = p.srv.Close() // always nil; waits for client goroutines
	for s := range subs {
		s.close()
	}
	if started {
		p.log.Info("platform stopped")
	}
	return nil
}

// disconnectClients sends every connected client of listener id a
// DISCONNECT (server shutting down; MQTT 5 only) and closes its connection,
// as mochi's closeListenerClients does but without its lock recursion (see
// listener.disconnect).
func (p *Platform) disconnectClients(id string) {
	for _, cl := range p.srv.Clients.GetAll() {
		if cl.Net.Listener == id && !cl.Net.Inline && !cl.Closed() {
			_ = p.srv.DisconnectClient(cl, packets.ErrServerShuttingDown) // returns the code
		}
	}
}

func (p *Platform) closed() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// SendCommand publishes a command to device typ/id as the application
// a:<Org>:<AppID> at QoS 1, on iot-2/type/<typ>/id/<id>/cmd/<command>/fmt/<format>.
// Subscribed devices receive it on iot-2/cmd/<command>/fmt/<format>. A nil
// error means the platform routed it; it does not mean a device received it
// (none may be connected). payload is copied.
func (p *Platform) SendCommand(typ, id, command, format string, payload []byte) error {
	if p.quickstart {
		return ErrQuickstart
	}
	topic, err := CommandTopic(typ, id, command, format)
	if err != nil {
		return err
	}
	if len(payload) > MaxPayload {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrPayloadTooLarge, len(payload), MaxPayload)
	}
	if _, ok := p.reg.device(typ, id); !ok {
		return fmt.Errorf("%w: %s/%s", ErrUnknownDevice, typ, id)
	}
	if p.closed() {
		return ErrClosed
	}
	err = p.srv.InjectPacket(p.app, packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
		TopicName:   topic,
		Payload:     bytes.Clone(payload),
		PacketID:    1, // required for QoS 1; the inline client is never acknowledged
	})
	if err != nil {
		return fmt.Errorf("route command %s: %v", topic, err)
	}
	p.rec.commands.Add(1)
	p.log.Debug("command sent", "topic", topic, "bytes", len(payload))
	return nil
}

// Register adds or replaces a device in the registry. Connected clients
// keep their connection.
func (p *Platform) Register(d Device) error {
	if err := d.validate(); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidRegistry, err)
	}
	p.reg.putDevice(d)
	p.log.Info("device registered", "type", d.Type, "id", d.ID, "gateway", d.Gateway, "role", d.Role.String())
	return nil
}

// Device returns the registered device or gateway typ/id, including devices
// registered automatically by a gateway (their token is random).
func (p *Platform) Device(typ, id string) (Device, bool) {
	return p.reg.device(typ, id)
}

// autoRegister registers device typ/id on behalf of the privileged gateway
// cl (protocol.md §5.3). Registration is immediate, so a gateway never has
// registrations pending. The device gets a random token: it is reached
// through the gateway and would need a real one to connect by itself.
func (p *Platform) autoRegister(cl *mqtt.Client, typ, id string) {
	if p.reg.addDevice(Device{Type: typ, ID: id, Token: randomToken()}) {
		p.rec.autoRegistered.Add(1)
		p.log.Info("device auto-registered", "type", typ, "id", id, "gateway", cl.ID)
	}
}

// randomToken returns a valid device token of 32 hex digits.
func randomToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails
	return hex.EncodeToString(b[:])
}

// publishPlatform publishes a message the platform generates (mon, notify,
// iotdm-1) as the inline client "platform". A retained message is stored
// first and published live without RETAIN, so that MQTT clients and
// Subscribe see RETAIN only on messages replayed when they subscribe.
func (p *Platform) publishPlatform(topic string, payload []byte, qos byte, retain bool) error {
	if retain {
		p.srv.Topics.RetainMessage(packets.Packet{
			FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos, Retain: true},
			TopicName:   topic,
			Payload:     payload,
			Origin:      platformClientID,
			Created:     p.now().Unix(),
		})
	}
	return p.srv.InjectPacket(p.sys, packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos},
		TopicName:   topic,
		Payload:     payload,
		PacketID:    uint16(qos), // non-zero for QoS > 0; the inline client is never acknowledged
	})
}

// clearRetained deletes the retained message of topic without publishing.
func (p *Platform) clearRetained(topic string) {
	p.srv.Topics.RetainMessage(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: topic})
}

// listenerInfo returns the port of the listener with mochi ID id and
// whether it is the WebSocket one.
func (p *Platform) listenerInfo(id string) (port int, ws bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	l := p.tcp
	if p.ws != nil && id == p.ws.ID() {
		l = p.ws
	}
	if l == nil {
		return 0, false
	}
	if _, ps, err := net.SplitHostPort(l.Address()); err == nil {
		port, _ = strconv.Atoi(ps)
	}
	return port, l.ws
}

// Unregister removes a device and reports whether it was registered.
// A connected client keeps its connection until it reconnects.
func (p *Platform) Unregister(typ, id string) bool {
	ok := p.reg.deleteDevice(typ, id)
	p.dm.forget(deviceKey{typ, id})
	if ok {
		p.log.Info("device unregistered", "type", typ, "id", id)
	}
	return ok
}

// RegisterAPIKey adds or replaces an application API key.
func (p *Platform) RegisterAPIKey(k APIKey) error {
	if err := k.validate(p.cfg.Org); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidRegistry, err)
	}
	p.reg.putAPIKey(k)
	return nil
}

// Violations returns the most recent rule enforcements, oldest first (at most
// Config.MaxViolations).
func (p *Platform) Violations() []Violation { return p.rec.snapshot() }

// Stats returns the platform's counters.
func (p *Platform) Stats() Stats {
	s := p.rec.stats()
	s.Queued = int64(p.queue.len())
	return s
}

// record stores and logs one enforcement.
func (p *Platform) record(v Violation) {
	v.Time = time.Now()
	v.ClientID = short(v.ClientID)
	p.rec.add(v)
	p.log.Warn("rule enforced", "client_id", v.ClientID, "rule", v.Rule, "action", string(v.Action),
		"code", v.Code, "detail", v.Detail)
}

// authenticate applies rules C4, C5 and C6 to a well-formed client ID of the
// served org.
func (p *Platform) authenticate(id identity, user, password string) decision {
	if p.quickstart {
		if id.class == ClassGateway || id.class == ClassSharedApp {
			return deny(disconnect, "C6", CodeNotAuthorized, "quickstart accepts only d: and a: clients, not %s", id.class)
		}
		return allowed
	}
	if id.isApp() {
		if !p.reg.checkAPIKey(user, password) {
			return deny(disconnect, "C5", CodeNotAuthorized, "unknown api key %q or wrong api token", short(user))
		}
		return allowed
	}
	d, ok := p.reg.device(id.typ, id.id)
	switch {
	case user != "use-token-auth":
		return deny(disconnect, "C4", CodeNotAuthorized, "user name must be use-token-auth")
	case !ok:
		return deny(disconnect, "C4", CodeNotAuthorized, "device %s/%s is not registered", id.typ, id.id)
	case d.Gateway && id.class == ClassDevice:
		return deny(disconnect, "C4", CodeNotAuthorized, "%s/%s is a gateway and must connect as g:", id.typ, id.id)
	case !d.Gateway && id.class == ClassGateway:
		return deny(disconnect, "C4", CodeNotAuthorized, "%s/%s is not a gateway", id.typ, id.id)
	case !tokenEqual(d.Token, password):
		return deny(disconnect, "C4", CodeNotAuthorized, "wrong token for %s/%s", id.typ, id.id)
	}
	return allowed
}
