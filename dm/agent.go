package dm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"fieldbridge/adapters"
)

// Defaults applied by NewAgent to zero Config fields.
const (
	DefaultRenewBefore      = 2 * time.Minute // as the Python SDK: Manage again 120 s before the lifetime ends
	DefaultResponseTimeout  = 30 * time.Second
	DefaultRetryMin         = time.Second
	DefaultRetryMax         = 5 * time.Minute
	DefaultQueueSize        = 8
	DefaultActionTimeout    = 30 * time.Second
	DefaultMaxFirmwareBytes = 64 << 20
	DefaultDownloadTimeout  = 10 * time.Minute
	DefaultFaultHold        = time.Minute
	// MinLifetime is the platform's smallest non-zero Manage lifetime (protocol.md §7.5.1).
	MinLifetime = time.Hour
	// maxPendingLogs bounds the log entries waiting to be posted per device;
	// the oldest are dropped (and counted in the next one) beyond it.
	maxPendingLogs = 32
	// unmanageTimeout bounds the Unmanage requests sent on shutdown.
	unmanageTimeout = 3 * time.Second
)

// Publisher sends one DM message (an iotdevice-1 topic) over the MQTT
// connection of a managed device, or of the gateway that manages it.
// Publish returns at once; the channel (buffered) receives exactly one
// value: nil when the broker acknowledged the message, an error otherwise
// (including when ctx ends first). Publish must not modify payload and may
// keep it until the result is sent. It is called from several goroutines at
// once. *uplink.Client satisfies it.
type Publisher interface {
	Publish(ctx context.Context, topic string, payload []byte) <-chan error
}

// CommandRunner runs a named command of a field device (the commands its
// device type defines), with payload as the command's JSON parameters. A
// nil error means the device accepted the writes. Errors wrap the adapters
// sentinels (adapters.ErrNotConnected, adapters.ErrTimeout, ...) when the
// bus failed. RunCommand must return when ctx ends. It is called from one
// goroutine per device at once; payload is not retained.
type CommandRunner interface {
	RunCommand(ctx context.Context, device, command string, payload []byte) error
}

// Config configures an Agent.
type Config struct {
	// Devices are the managed devices: field devices and, in gateway mode,
	// the gateway itself. Type and ID must be unique.
	Devices []Device

	// Lifetime is the Manage lifetime: 0 means the platform never marks the
	// devices dormant, else at least MinLifetime. The agent sends Manage
	// again RenewBefore the lifetime ends.
	Lifetime    time.Duration
	RenewBefore time.Duration // default DefaultRenewBefore; less than Lifetime

	// ResponseTimeout bounds the wait for the platform's answer to one of
	// the agent's requests (Manage, location, diagnostics).
	ResponseTimeout time.Duration
	// RetryMin and RetryMax bound the jittered, doubling wait before a
	// failed request (rc ≠ 200, no answer, not connected) is sent again.
	RetryMin, RetryMax time.Duration

	// QueueSize is how many platform requests may wait per device; a
	// request beyond it is answered with rc 409 (retry later).
	QueueSize int

	// FaultHold is how long an error code stays posted after the poll that
	// last showed its fault, so that an intermittent fault (a CRC error now
	// and then) does not clear and post the code on every poll.
	FaultHold time.Duration

	// Commands runs the commands reboot, factory reset and custom actions
	// are mapped to. Required when any Action has a Command.
	Commands CommandRunner

	// StagingDir is where firmware images are downloaded to. Required
	// when any device has Firmware.
	StagingDir string
	// MaxFirmwareBytes bounds a firmware image; a larger one fails the
	// download with updateStatus 2 (out of memory).
	MaxFirmwareBytes int64
	// DownloadTimeout bounds one firmware download.
	DownloadTimeout time.Duration
	// AllowHTTP allows http:// firmware URIs (tests); normally only https.
	AllowHTTP bool
	// HTTPClient downloads firmware; nil means a client with system roots.
	HTTPClient *http.Client

	// Answered, when set, learns of every answer to a platform request:
	// its kind (RequestKind) and rc. It is called on the agent's
	// goroutines and must not block (the bridge counts them for metrics).
	Answered func(kind string, rc int)
}

// Device is one managed device.
type Device struct {
	Type, ID string // the platform identity
	// Name is the field device name the CommandRunner knows; "" for a
	// device without commands (the gateway itself).
	Name string
	// Gateway selects the gateway form: qualified topics
	// iotdevice-1/type/<Type>/id/<ID>/... on the gateway's connection.
	Gateway bool
	// Link is the connection the device's DM messages go out on.
	Link Publisher

	DeviceInfo map[string]string // deviceInfo attributes (serialNumber, model, fwVersion, ...)
	Metadata   json.RawMessage   // a JSON object, or nil
	Location   *Location         // nil: the agent sends no location

	// Reboot and FactoryReset are nil when the device cannot do them
	// (rc 501); the Manage request claims deviceActions when either is set.
	Reboot, FactoryReset *Action
	// Firmware is nil when firmware actions are not supported (rc 501).
	Firmware *Firmware
	// Custom maps bundle ID → action ID → action (protocol.md §8); every
	// bundle is claimed in Manage's supports.
	Custom map[string]map[string]*Action
}

// Location is a device's position (protocol.md §7.5.3).
type Location struct {
	Latitude  float64  `json:"latitude"`
	Longitude float64  `json:"longitude"`
	Elevation *float64 `json:"elevation,omitempty"`
	Accuracy  *float64 `json:"accuracy,omitempty"`
}

// Action is what a device-management action does: run a command of the
// device (through Config.Commands, with the payload {"d": {...}} of a
// command message: empty for reboot and factory reset, the parameters of a
// custom action), or a hook program, or the command and then the hook. Exec is an argument vector run without a shell; the
// placeholders {type}, {id}, {device}, {file}, {version} and {name} in its
// elements are replaced (file, version and name: the firmware image).
type Action struct {
	Command string
	Exec    []string
	Timeout time.Duration // default DefaultActionTimeout
}

// Firmware says how a device's firmware is installed: the image is
// downloaded by the agent, then Install runs (usually a vendor flashing
// tool with {file}).
type Firmware struct {
	// Install installs a downloaded, verified image: its Command (a
	// register sequence, given {"d":{"version","name","uri","verifier",
	// "file"}}) and then its hook, which can take the image as {file}.
	Install Action
}

// Errors of NewAgent.
var (
	// ErrInvalidConfig means Config is not usable; the message says why.
	ErrInvalidConfig = errors.New("invalid device-management config")
)

// Agent is the bridge's device-management agent: it manages every
// configured device with the platform and answers the platform's requests
// for them. Create it with NewAgent, run it with Run; its methods are safe
// for concurrent use.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	devices map[deviceKey]*device
	byName  map[string]*device
	order   []*device

	mu      sync.Mutex
	waiters map[string]*waiter // the agent's own requests, by reqId
	jobs    sync.WaitGroup     // firmware downloads and installs in the background
}

type deviceKey struct{ typ, id string }

type waiter struct {
	dev *device
	ch  chan response // capacity 1
}

// NewAgent validates cfg and builds an agent. It does no I/O and starts no
// goroutines.
func NewAgent(cfg Config, logger *slog.Logger) (*Agent, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg = withDefaults(cfg)
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	a := &Agent{cfg: cfg, log: logger, devices: map[deviceKey]*device{}, byName: map[string]*device{}, waiters: map[string]*waiter{}}
	for i := range cfg.Devices {
		d := newDevice(&cfg.Devices[i], cfg.QueueSize)
		a.devices[deviceKey{d.cfg.Type, d.cfg.ID}] = d
		if d.cfg.Name != "" {
			a.byName[d.cfg.Name] = d
		}
		a.order = append(a.order, d)
	}
	return a, nil
}

func withDefaults(cfg Config) Config {
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&cfg.RenewBefore, DefaultRenewBefore)
	def(&cfg.ResponseTimeout, DefaultResponseTimeout)
	def(&cfg.RetryMin, DefaultRetryMin)
	def(&cfg.RetryMax, DefaultRetryMax)
	def(&cfg.DownloadTimeout, DefaultDownloadTimeout)
	def(&cfg.FaultHold, DefaultFaultHold)
	if cfg.QueueSize == 0 {
		cfg.QueueSize = DefaultQueueSize
	}
	if cfg.MaxFirmwareBytes == 0 {
		cfg.MaxFirmwareBytes = DefaultMaxFirmwareBytes
	}
	return cfg
}

func (cfg Config) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	switch {
	case cfg.Lifetime < 0 || (cfg.Lifetime > 0 && cfg.Lifetime < MinLifetime):
		return bad("lifetime %v: 0 or at least %v", cfg.Lifetime, MinLifetime)
	case cfg.Lifetime > 0 && cfg.RenewBefore >= cfg.Lifetime:
		return bad("renew %v before a lifetime of %v", cfg.RenewBefore, cfg.Lifetime)
	case cfg.RetryMin <= 0 || cfg.RetryMax < cfg.RetryMin:
		return bad("retry between %v and %v", cfg.RetryMin, cfg.RetryMax)
	case cfg.QueueSize < 1:
		return bad("queue size %d", cfg.QueueSize)
	case cfg.MaxFirmwareBytes < 1:
		return bad("max firmware bytes %d", cfg.MaxFirmwareBytes)
	}
	seen := map[deviceKey]bool{}
	for _, d := range cfg.Devices {
		k := deviceKey{d.Type, d.ID}
		switch {
		case d.Type == "" || d.ID == "":
			return bad("a device without type or id")
		case seen[k]:
			return bad("device %s/%s twice", d.Type, d.ID)
		case d.Link == nil:
			return bad("device %s/%s has no link", d.Type, d.ID)
		case d.Firmware != nil && cfg.StagingDir == "":
			return bad("device %s/%s has firmware actions but there is no staging directory", d.Type, d.ID)
		case d.Firmware != nil && len(d.Firmware.Install.Exec) == 0 && d.Firmware.Install.Command == "":
			return bad("device %s/%s: firmware install does nothing", d.Type, d.ID)
		}
		seen[k] = true
		for _, act := range d.actions() {
			if act.Command != "" && (cfg.Commands == nil || d.Name == "") {
				return bad("device %s/%s: command %q but no command runner or field device", d.Type, d.ID, act.Command)
			}
			if act.Command == "" && len(act.Exec) == 0 {
				return bad("device %s/%s: an action with neither command nor exec", d.Type, d.ID)
			}
		}
	}
	return nil
}

// actions lists every configured action of d.
func (d *Device) actions() []*Action {
	var out []*Action
	for _, a := range []*Action{d.Reboot, d.FactoryReset} {
		if a != nil {
			out = append(out, a)
		}
	}
	if d.Firmware != nil {
		out = append(out, &d.Firmware.Install)
	}
	for _, bundle := range d.Custom {
		for _, a := range bundle {
			out = append(out, a)
		}
	}
	return out
}

// Run manages every device and serves their requests until ctx ends. Each
// device has a manager goroutine (Manage, renewal, location, diagnostics,
// logs) and a worker that answers its requests one at a time, so a slow
// request of one device never delays another. Nothing is sent for a device
// before Connected was called for it. When ctx ends, Run waits for
// firmware jobs to stop, sends Unmanage for every managed device (bounded
// by a few seconds; the connections must still be up) and returns nil.
func (a *Agent) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, d := range a.order {
		wg.Add(2)
		go func() { defer wg.Done(); a.serve(ctx, d) }()
		go func() { defer wg.Done(); a.manage(ctx, d) }()
	}
	wg.Wait()
	a.jobs.Wait()
	return nil
}

// Connected tells the agent that the connection of device typ/id is up
// (again): the device sends Manage at once, then what else is due. Call
// it on every connect, for every device on that connection. It never
// blocks.
func (a *Agent) Connected(typ, id string) {
	if d := a.devices[deviceKey{typ, id}]; d != nil {
		d.signal(d.connected)
	}
}

// HandleRequest takes one message the platform sent on an iotdm-1 topic
// for device typ/id; rest is the topic after iotdm-1/ (device form) or
// iotdm-1/type/<typ>/id/<id>/ (gateway form). The platform's answers to the
// agent's own requests (rest "response") are matched by reqId; requests are
// decoded, checked and queued for the device's worker. It never blocks:
// a malformed request is answered with rc 400 at once, and a request for a
// device whose queue is full with rc 409. payload is not retained.
func (a *Agent) HandleRequest(ctx context.Context, typ, id, rest string, payload []byte) {
	d := a.devices[deviceKey{typ, id}]
	if d == nil {
		a.log.Warn("dm request for an unmanaged device ignored", "type", typ, "id", id, "request", short(rest))
		return
	}
	if rest == restResponse {
		a.resolve(d, payload)
		return
	}
	req, rc, msg := decodeRequest(rest, payload)
	if rc != 0 {
		a.log.Warn("dm request refused", "device", d.cfg.ID, "request", short(rest), "rc", rc, "reason", msg)
		a.noteAnswer(rest, rc)
		a.answerNow(ctx, d, req.reqID, response{RC: rc, Message: msg})
		return
	}
	select {
	case d.queue <- req:
	default:
		a.log.Warn("dm request refused: queue full", "device", d.cfg.ID, "request", rest)
		a.noteAnswer(rest, RCConflict)
		a.answerNow(ctx, d, req.reqID, response{RC: RCConflict, Message: "busy with earlier requests; retry later"})
	}
}

// noteAnswer tells Config.Answered of an answer to a request on rest. It
// runs before the answer is sent, so that the count is there when the
// platform has the answer.
func (a *Agent) noteAnswer(rest string, rc int) {
	if a.cfg.Answered != nil {
		a.cfg.Answered(RequestKind(rest), rc)
	}
}

// RequestKind names a platform request by its topic rest in one word, from
// a fixed set (so that counting by kind stays bounded): observe, cancel,
// update, reboot, factory_reset, firmware_download, firmware_update, custom,
// or unknown.
func RequestKind(rest string) string {
	switch {
	case rest == restObserve, rest == restCancel:
		return rest
	case rest == restUpdate:
		return "update"
	case rest == restReboot:
		return "reboot"
	case rest == restFactoryReset:
		return "factory_reset"
	case rest == restFwDownload:
		return "firmware_download"
	case rest == restFwUpdate:
		return "firmware_update"
	case strings.HasPrefix(rest, restCustomPrefix):
		return "custom"
	}
	return "unknown"
}

// resolve hands the platform's answer to the agent request waiting for it.
func (a *Agent) resolve(d *device, payload []byte) {
	r, err := decodeResponse(payload)
	a.mu.Lock()
	w := a.waiters[r.ReqID]
	if w != nil && w.dev == d {
		delete(a.waiters, r.ReqID)
	}
	a.mu.Unlock()
	switch {
	case w == nil || w.dev != d:
		a.log.Debug("dm response without a request", "device", d.cfg.ID, "req_id", short(r.ReqID))
	case err != nil:
		w.ch <- response{RC: RCInternal, Message: err.Error(), ReqID: r.ReqID}
	default:
		w.ch <- r
	}
}

// answer publishes the agent's response to a platform request on the
// device's iotdevice-1/response topic and waits for the broker's
// acknowledgement. A request without a reqId gets no answer unless it is
// an error (a malformed request is answered anyway, to help whoever sent it).
func (a *Agent) answer(ctx context.Context, d *device, reqID string, r response) {
	if reqID == "" && r.RC < RCBadRequest {
		return
	}
	r.ReqID = reqID
	b, _ := json.Marshal(r) // cannot fail
	select {
	case err := <-d.cfg.Link.Publish(ctx, d.topic(restResponse), b):
		if err != nil {
			a.log.Warn("dm response not sent", "device", d.cfg.ID, "req_id", reqID, "rc", r.RC, "err", err)
		}
	case <-ctx.Done():
	}
}

// answerNow publishes an answer without waiting for the broker: it runs on
// the connection's dispatch goroutine, which must not wait for its own
// connection. An answer that is lost leaves the platform's request to time
// out, as for a device that is offline.
func (a *Agent) answerNow(ctx context.Context, d *device, reqID string, r response) {
	r.ReqID = reqID
	b, _ := json.Marshal(r) // cannot fail
	d.cfg.Link.Publish(ctx, d.topic(restResponse), b)
}

// NoteReading tells the agent how the last poll of a field device went,
// so that its diagnostics follow the faults: error codes are posted when a
// fault appears and cleared when it goes (see the ErrorCode constants), and
// going down or up is logged. It is cheap and never blocks; call it from
// the bus loop after every poll.
func (a *Agent) NoteReading(r adapters.Reading) {
	d := a.byName[r.Device]
	if d == nil {
		return
	}
	codes, down, reason := faultCodes(r.Blocks)
	now := time.Now()
	d.mu.Lock()
	if d.faultSeen == nil {
		d.faultSeen = map[int]time.Time{}
	}
	for _, c := range codes {
		d.faultSeen[c] = now
	}
	var active []int
	for c, seen := range d.faultSeen {
		if now.Sub(seen) < a.cfg.FaultHold {
			active = append(active, c)
		} else {
			delete(d.faultSeen, c)
		}
	}
	slices.Sort(active)
	changed := !slices.Equal(active, d.faults)
	if changed {
		logFaultChange(d, d.faults, active, reason)
	}
	d.faults = active
	wasDown := d.down
	d.down, d.downReason = down, reason
	if down != wasDown {
		if down {
			d.addLog(logError, "device unreachable: "+reason)
		} else {
			d.addLog(logInfo, "device reachable again")
		}
	}
	d.mu.Unlock()
	if changed || down != wasDown {
		d.signal(d.changed)
	}
}

// logFaultChange adds a log entry for each error code other than
// unreachable (which has its own entries) that appears or goes; d.mu is held.
func logFaultChange(d *device, before, after []int, reason string) {
	for _, c := range after {
		if c != ErrorCodeUnreachable && !slices.Contains(before, c) {
			d.addLog(logWarning, fmt.Sprintf("fault %d (%s): %s", c, faultName(c), reason))
		}
	}
	for _, c := range before {
		if c != ErrorCodeUnreachable && !slices.Contains(after, c) {
			d.addLog(logInfo, fmt.Sprintf("fault %d (%s) gone", c, faultName(c)))
		}
	}
}

func faultName(code int) string {
	switch {
	case code == ErrorCodeUnreachable:
		return "unreachable"
	case code == ErrorCodeBadFrame:
		return "corrupt replies"
	case code > ErrorCodeException:
		return fmt.Sprintf("Modbus exception %d", code-ErrorCodeException)
	}
	return "fault"
}

// SetDeviceInfo sets deviceInfo attributes of a field device from what it
// reports about itself (serial number, model, firmware version read from
// its registers). A change is sent to the platform with a new Manage; the
// same values again cost nothing, so it can be called after every poll. It
// never blocks; info is not retained.
func (a *Agent) SetDeviceInfo(device string, info map[string]string) {
	d := a.byName[device]
	if d == nil {
		return
	}
	d.mu.Lock()
	changed := false
	for k, v := range info {
		if d.info[k] != v {
			if d.info == nil {
				d.info = map[string]string{}
			}
			d.info[k], changed = v, true
		}
	}
	if changed {
		d.needManage = true
	}
	d.mu.Unlock()
	if changed {
		d.signal(d.changed)
	}
}
