package dm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"fieldbridge/adapters"
)

// Error codes the agent posts to diag.errorCodes for field faults
// (protocol.md §7.5.4 leaves the numbers to the device). A code is posted
// while the fault lasts and cleared when it is gone.
const (
	// ErrorCodeUnreachable: the device did not answer at all (timeout, bus
	// or connection down) in the last poll.
	ErrorCodeUnreachable = 1
	// ErrorCodeBadFrame: replies were corrupt or mismatched (CRC, framing).
	ErrorCodeBadFrame = 2
	// ErrorCodeException is added to a Modbus exception code (101 illegal
	// function, 102 illegal data address, 106 device busy, ...).
	ErrorCodeException = 100
)

// Severities of diag.log entries.
const (
	logInfo    = 0
	logWarning = 1
	logError   = 2
)

// device is the run-time state of one managed device.
type device struct {
	cfg       *Device
	queue     chan request  // platform requests for the worker
	connected chan struct{} // capacity 1: the connection came up
	changed   chan struct{} // capacity 1: diagnostics, logs or manage are due

	mu         sync.Mutex
	online     bool // Connected was called: sending makes sense
	managed    bool // the last Manage got rc 200
	needManage bool
	renewAt    time.Time // when Manage is due again (lifetime > 0)
	needLoc    bool
	faults     []int             // current error codes, sorted
	faultSeen  map[int]time.Time // when each fault was last seen
	posted     []int             // error codes the platform has
	postedOK   bool              // posted is known (a clear went through since start)
	down       bool
	downReason string
	logs       []logEntry // waiting to be posted
	lostLogs   int
	observed   map[string]bool
	info       map[string]string
	metadata   json.RawMessage
	location   *Location
	fw         firmwareState
	fwBusy     bool // a download or install is running
}

type logEntry struct {
	Message   string `json:"message"`
	Timestamp string `json:"timestamp"`
	Severity  int    `json:"severity"`
}

func newDevice(cfg *Device, queueSize int) *device {
	return &device{
		cfg:       cfg,
		queue:     make(chan request, queueSize),
		connected: make(chan struct{}, 1),
		changed:   make(chan struct{}, 1),
		observed:  map[string]bool{},
		info:      maps.Clone(cfg.DeviceInfo),
		metadata:  cfg.Metadata,
		location:  cfg.Location,
		needLoc:   cfg.Location != nil,
	}
}

func (d *device) signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// topic returns the device's iotdevice-1 topic for rest, in device or
// gateway form.
func (d *device) topic(rest string) string {
	if d.cfg.Gateway {
		return "iotdevice-1/type/" + d.cfg.Type + "/id/" + d.cfg.ID + "/" + rest
	}
	return "iotdevice-1/" + rest
}

// addLog queues a diag.log entry; d.mu must be held.
func (d *device) addLog(severity int, msg string) {
	if len(d.logs) >= maxPendingLogs {
		d.logs = d.logs[1:]
		d.lostLogs++
	}
	d.logs = append(d.logs, logEntry{Message: msg, Timestamp: time.Now().UTC().Format(time.RFC3339), Severity: severity})
}

// log queues a diag.log entry and wakes the manager.
func (d *device) log(severity int, msg string) {
	d.mu.Lock()
	d.addLog(severity, msg)
	d.mu.Unlock()
	d.signal(d.changed)
}

// faultCodes derives the error codes of one poll: unreachable when every
// range failed with a transport error, bad frame for corrupt replies, and
// one code per Modbus exception.
func faultCodes(blocks []adapters.Block) (codes []int, down bool, reason string) {
	down = len(blocks) > 0
	set := map[int]bool{}
	for _, b := range blocks {
		if b.Err == nil {
			down = false
			continue
		}
		var ex *adapters.ExceptionError
		switch {
		case errors.As(b.Err, &ex):
			set[ErrorCodeException+int(ex.Code)] = true
			down = false
		case errors.Is(b.Err, adapters.ErrBadFrame):
			set[ErrorCodeBadFrame] = true
		case !adapters.IsTransport(b.Err):
			down = false
		}
		if reason == "" {
			reason = b.Err.Error()
		}
	}
	if down {
		set = map[int]bool{ErrorCodeUnreachable: true}
	}
	return slices.Sorted(maps.Keys(set)), down, reason
}

// manageRequest is d of a Manage request (protocol.md §7.5.1).
type manageRequest struct {
	Lifetime   int64             `json:"lifetime"`
	Supports   map[string]bool   `json:"supports"`
	DeviceInfo map[string]string `json:"deviceInfo,omitempty"`
	Metadata   json.RawMessage   `json:"metadata,omitempty"`
}

func (a *Agent) manageRequest(d *device) manageRequest {
	c := d.cfg
	m := manageRequest{
		Lifetime: int64(a.cfg.Lifetime / time.Second),
		Supports: map[string]bool{
			"deviceActions":   c.Reboot != nil || c.FactoryReset != nil,
			"firmwareActions": c.Firmware != nil,
		},
	}
	for bundle := range c.Custom {
		m.Supports[bundle] = true
	}
	d.mu.Lock()
	m.DeviceInfo, m.Metadata = maps.Clone(d.info), d.metadata
	d.mu.Unlock()
	return m
}

// manage is a device's manager goroutine: it sends Manage when the
// connection comes up and before the lifetime ends, then the location,
// error codes and log entries that are due; a failed request is retried
// with a growing, jittered wait. When ctx ends it sends Unmanage.
func (a *Agent) manage(ctx context.Context, d *device) {
	retry := newBackoff(a.cfg.RetryMin, a.cfg.RetryMax)
	var (
		wait  *time.Timer // retry or renewal
		waitC <-chan time.Time
	)
	stopWait := func() {
		if wait != nil {
			wait.Stop()
		}
		waitC = nil
	}
	defer stopWait()
	for {
		select {
		case <-ctx.Done():
			a.unmanage(ctx, d)
			return
		case <-d.connected:
			d.mu.Lock()
			d.online, d.needManage = true, true
			d.mu.Unlock()
			retry.reset()
			stopWait()
		case <-d.changed:
			if waitC != nil && !retry.idle() {
				continue // a retry is pending; it sends what changed too
			}
		case <-waitC:
			waitC = nil
			d.mu.Lock()
			if d.managed && !d.renewAt.IsZero() && !time.Now().Before(d.renewAt) {
				d.needManage = true // the lifetime is running out
			}
			d.mu.Unlock()
		}
		err := a.sync(ctx, d)
		stopWait()
		switch {
		case ctx.Err() != nil:
		case err != nil:
			delay := retry.next()
			a.log.Warn("dm request failed; retrying", "device", d.cfg.ID, "err", err, "retry_in", delay)
			wait = time.NewTimer(delay)
			waitC = wait.C
		default:
			retry.reset()
			d.mu.Lock()
			renewAt := d.renewAt
			d.mu.Unlock()
			if !renewAt.IsZero() {
				wait = time.NewTimer(time.Until(renewAt))
				waitC = wait.C
			}
		}
	}
}

// sync sends what is due for d, in order: Manage, location, error codes,
// log entries. It stops at the first failure.
func (a *Agent) sync(ctx context.Context, d *device) error {
	d.mu.Lock()
	online, needManage, needLoc := d.online, d.needManage, d.needLoc
	if online {
		d.needManage = false // a request for another Manage while this one is out stays
	}
	d.mu.Unlock()
	if !online {
		return nil
	}
	if needManage {
		if err := a.call(ctx, d, "mgmt/manage", a.manageRequest(d)); err != nil {
			d.mu.Lock()
			d.needManage = true
			d.mu.Unlock()
			return fmt.Errorf("manage: %w", err)
		}
		d.mu.Lock()
		d.managed = true
		if a.cfg.Lifetime > 0 {
			d.renewAt = time.Now().Add(a.cfg.Lifetime - a.cfg.RenewBefore)
		}
		d.mu.Unlock()
		a.log.Info("device managed", "device", d.cfg.ID, "type", d.cfg.Type, "lifetime", a.cfg.Lifetime)
	}
	if needLoc {
		d.mu.Lock()
		loc := d.location
		d.mu.Unlock()
		if err := a.call(ctx, d, "device/update/location", loc); err != nil {
			return fmt.Errorf("location: %w", err)
		}
		d.mu.Lock()
		d.needLoc = d.location != loc
		d.mu.Unlock()
	}
	if err := a.syncErrorCodes(ctx, d); err != nil {
		return err
	}
	return a.syncLogs(ctx, d)
}

// syncErrorCodes makes the platform's diag.errorCodes equal the current
// faults: it clears them and adds each current code (the protocol can only
// clear all). Codes that did not change cause no traffic.
func (a *Agent) syncErrorCodes(ctx context.Context, d *device) error {
	d.mu.Lock()
	codes, posted, known := d.faults, d.posted, d.postedOK
	d.mu.Unlock()
	if known && slices.Equal(codes, posted) {
		return nil
	}
	if !known || len(posted) > 0 {
		if err := a.call(ctx, d, "clear/diag/errorCodes", nil); err != nil {
			return fmt.Errorf("clear error codes: %w", err)
		}
		d.mu.Lock()
		d.posted, d.postedOK = nil, true
		d.mu.Unlock()
	}
	for _, code := range codes {
		if err := a.call(ctx, d, "add/diag/errorCodes", map[string]int{"errorCode": code}); err != nil {
			return fmt.Errorf("add error code %d: %w", code, err)
		}
		d.mu.Lock()
		d.posted = append(d.posted, code)
		d.mu.Unlock()
	}
	if len(codes) > 0 {
		a.log.Info("device error codes posted", "device", d.cfg.ID, "codes", codes)
	}
	return nil
}

func (a *Agent) syncLogs(ctx context.Context, d *device) error {
	for {
		d.mu.Lock()
		if len(d.logs) == 0 {
			d.mu.Unlock()
			return nil
		}
		e := d.logs[0]
		if d.lostLogs > 0 {
			e.Message = fmt.Sprintf("%s (%d earlier entries dropped)", e.Message, d.lostLogs)
		}
		d.mu.Unlock()
		if err := a.call(ctx, d, "add/diag/log", e); err != nil {
			return fmt.Errorf("add log: %w", err)
		}
		d.mu.Lock()
		d.logs, d.lostLogs = d.logs[1:], 0
		d.mu.Unlock()
	}
}

// unmanage sends Unmanage for a managed device on shutdown, bounded by
// unmanageTimeout.
func (a *Agent) unmanage(ctx context.Context, d *device) {
	d.mu.Lock()
	managed := d.managed
	d.managed = false
	d.mu.Unlock()
	if !managed {
		return
	}
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), unmanageTimeout)
	defer cancel()
	if err := a.call(uctx, d, "mgmt/unmanage", nil); err != nil {
		a.log.Warn("device not unmanaged", "device", d.cfg.ID, "err", err)
		return
	}
	a.log.Info("device unmanaged", "device", d.cfg.ID)
}

// errRC is a platform answer other than 200.
type errRC struct {
	rc  int
	msg string
}

func (e *errRC) Error() string { return fmt.Sprintf("platform answered rc %d %s", e.rc, e.msg) }

// call sends one of the agent's requests (iotdevice-1/<rest> with a fresh
// reqId and d) and waits for the platform's answer. Anything but rc 200 is
// an error.
func (a *Agent) call(ctx context.Context, d *device, rest string, body any) error {
	reqID := newReqID()
	msg := struct {
		D     any    `json:"d,omitempty"`
		ReqID string `json:"reqId"`
	}{body, reqID}
	if v, ok := body.(*Location); ok && v == nil {
		msg.D = nil
	}
	payload, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	w := &waiter{dev: d, ch: make(chan response, 1)}
	a.mu.Lock()
	a.waiters[reqID] = w
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		delete(a.waiters, reqID)
		a.mu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(ctx, a.cfg.ResponseTimeout)
	defer cancel()
	select {
	case err := <-d.cfg.Link.Publish(ctx, d.topic(rest), payload):
		if err != nil {
			return err
		}
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case r := <-w.ch:
		if r.RC != RCOK {
			return &errRC{r.RC, r.Message}
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("no answer: %w", ctx.Err())
	}
}

// backoff is a doubling, jittered wait between min and max.
type backoff struct {
	min, max, cur time.Duration
}

func newBackoff(min, max time.Duration) *backoff { return &backoff{min: min, max: max} }

func (b *backoff) reset()     { b.cur = 0 }
func (b *backoff) idle() bool { return b.cur == 0 }

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(b.cur*2, b.max)
	}
	// Full jitter in the upper half, so that many devices that failed
	// together do not retry together.
	return b.cur/2 + rand.N(b.cur/2+1)
}
