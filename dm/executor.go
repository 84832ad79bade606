package dm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"fieldbridge/adapters"
)

// Errors the Executor reports in results (and RunCommand returns). Test
// for them with errors.Is.
var (
	// ErrUnknownCommand means the target has no command of that name.
	ErrUnknownCommand = errors.New("unknown command")
	// ErrBusy means the device's command queue was full; the command was
	// refused without being looked at.
	ErrBusy = errors.New("too many commands waiting for this device")
	// ErrTooLarge means the command's payload is over MaxInbound.
	ErrTooLarge = errors.New("command payload over the 128 KiB limit")
	// ErrUnknownDevice means no device of that type and id is configured.
	ErrUnknownDevice = errors.New("no such device")
)

// Planner turns a device's named command and its payload into the writes
// to run. An error means nothing may be written (unknown command, bad
// JSON, a value out of range, a point that is not writable); its text is
// what the sender reads. cmd/bridge implements it with the mapping.
type Planner interface {
	PlanCommand(device, command string, payload []byte) (Plan, error)
}

// Plan is a command ready to run: the writes, in order, and what to read
// back afterwards.
type Plan struct {
	Writes []adapters.WriteRequest
	// Written[i] is what Writes[i] stores, for the result.
	Written []NamedValue
	// Readback lists ranges to read after the writes; DecodeReadback turns
	// the blocks read (in the same order) into values for the result.
	Readback       []adapters.Range
	DecodeReadback func([]adapters.Block) ([]NamedValue, error)
	// Timeout bounds the writes and the readback together; 0 is 5s.
	Timeout time.Duration
}

// FieldIO runs writes and reads on the bus that owns the device: the bus
// loop (*adapters.Loop satisfies it), so writes go ahead of polls and are
// never retried. It is safe for concurrent use.
type FieldIO interface {
	Write(ctx context.Context, w adapters.WriteRequest) error
	Read(ctx context.Context, device string, r adapters.Range) (adapters.Block, error)
}

// ResultPublisher hands a command's result on for publishing (cmd/bridge:
// into the buffer, on a queue of its own per device, so that results never
// wait behind a backlog of readings). It must not block for long.
type ResultPublisher interface {
	PublishResult(device string, r Result) error
}

// ExecutorConfig configures an Executor.
type ExecutorConfig struct {
	// Devices maps each device id the Executor serves to its device type.
	// Each gets its own queue, and its own worker while commands wait, so
	// one slow device never delays another's commands.
	Devices map[string]string
	// Gateway, when set, is the gateway's own id (gateway mode; it must be
	// in Devices too). Its commands are answered by the Executor itself:
	// "ping" succeeds, anything else is an unknown command.
	Gateway string

	Planner Planner
	Field   FieldIO
	Results ResultPublisher

	// QueueLength is how many commands may wait per device; default 16.
	// Beyond it commands are refused at once with ErrBusy.
	QueueLength int
	// MaxQueuedBytes bounds the payload bytes waiting in all queues
	// together (a flood of large payloads to many devices must not eat a
	// small box's memory); default 8 MiB. Beyond it commands are refused
	// with ErrBusy.
	MaxQueuedBytes int64
	// RememberIDs is how many reqIds are remembered per device to drop
	// redelivered duplicates; default 1024.
	RememberIDs int
	// LogEvery logs one line per this many refused commands; default 100.
	LogEvery uint64
	// Now replaces time.Now in tests.
	Now func() time.Time
}

// Executor runs commands: one bounded queue per device, a result for every
// command, duplicate reqIds dropped. A device's commands run one after the
// other on a worker goroutine that exists only while the device has
// commands waiting: an idle device costs no goroutine (at 500 devices, one
// parked worker each was a third of the bridge's goroutines). HandleCommand
// and RunCommand are safe for concurrent use.
type Executor struct {
	cfg     ExecutorConfig
	logger  *slog.Logger
	devices map[string]*deviceQueue

	mu      sync.Mutex      // guards ctx, stopped and every deviceQueue.working
	ctx     context.Context // Run's; nil before Run
	stopped bool            // Run's ctx ended: no worker starts any more
	workers sync.WaitGroup

	accepted, refused, duplicates, done atomic.Uint64
	queuedBytes                         atomic.Int64
}

// ExecutorStats counts what the Executor did since it was built.
type ExecutorStats struct {
	Accepted   uint64 // queued for execution
	Refused    uint64 // answered at once: busy, too large, unknown device
	Duplicates uint64 // dropped as redeliveries of a reqId already taken
	Done       uint64 // executed and answered
}

type deviceQueue struct {
	name, typ string
	jobs      chan *job // pointers: a device keeps its queue for the bridge's life, commands are rare
	working   bool      // a worker runs for this queue (Executor.mu)

	mu   sync.Mutex
	seen map[string]bool // reqIds taken
	ring []string        // the same ids, oldest first, to forget in order
}

type job struct {
	command, reqID string
	payload        []byte
}

// NewExecutor checks cfg and returns an Executor. It starts nothing; Run does.
func NewExecutor(cfg ExecutorConfig, logger *slog.Logger) (*Executor, error) {
	if cfg.Planner == nil || cfg.Field == nil || cfg.Results == nil {
		return nil, errors.New("dm: ExecutorConfig needs Planner, Field and Results")
	}
	if cfg.Gateway != "" && cfg.Devices[cfg.Gateway] == "" {
		return nil, errors.New("dm: ExecutorConfig.Gateway must be one of Devices")
	}
	if cfg.QueueLength <= 0 {
		cfg.QueueLength = 16
	}
	if cfg.MaxQueuedBytes <= 0 {
		cfg.MaxQueuedBytes = 8 << 20
	}
	if cfg.RememberIDs <= 0 {
		cfg.RememberIDs = 1024
	}
	if cfg.LogEvery == 0 {
		cfg.LogEvery = 100
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	e := &Executor{cfg: cfg, logger: logger, devices: map[string]*deviceQueue{}}
	for name, typ := range cfg.Devices {
		e.devices[name] = &deviceQueue{name: name, typ: typ, jobs: make(chan *job, cfg.QueueLength), seen: map[string]bool{}}
	}
	return e, nil
}

// Run executes commands until ctx is done, and returns nil then (once the
// commands being executed have finished). Commands queued before Run start
// now. Commands still queued when ctx ends, or handed over after it, are
// not executed but answered with an error (they were acknowledged to the
// broker when HandleCommand returned, so they will not be redelivered).
func (e *Executor) Run(ctx context.Context) error {
	e.mu.Lock()
	e.ctx = ctx
	for _, q := range e.devices {
		e.startWorker(q)
	}
	e.mu.Unlock()
	<-ctx.Done()
	e.mu.Lock()
	e.stopped = true
	e.mu.Unlock()
	e.workers.Wait()
	for _, q := range e.devices {
		e.answerLeftovers(q)
	}
	return nil
}

// kick makes sure a worker runs q's waiting commands: it starts one unless
// one runs, Run has not started yet (Run starts it), or Run has ended (the
// commands are answered as not executed).
func (e *Executor) kick(q *deviceQueue) {
	e.mu.Lock()
	stopped := e.stopped
	if !stopped {
		e.startWorker(q)
	}
	e.mu.Unlock()
	if stopped {
		e.answerLeftovers(q)
	}
}

// startWorker starts q's worker if q has commands waiting and none runs.
// The caller holds e.mu.
func (e *Executor) startWorker(q *deviceQueue) {
	if e.ctx == nil || q.working || len(q.jobs) == 0 {
		return
	}
	q.working = true
	e.workers.Add(1)
	go e.work(e.ctx, q)
}

// Stats returns the counters.
func (e *Executor) Stats() ExecutorStats {
	return ExecutorStats{Accepted: e.accepted.Load(), Refused: e.refused.Load(), Duplicates: e.duplicates.Load(), Done: e.done.Load()}
}

// HandleCommand takes a command without blocking: it is queued for its
// device, or refused at once with a result (payload over MaxInbound, queue
// full), or dropped (a reqId already taken for this device; a device this
// Executor does not serve, which has no queue to answer on).
func (e *Executor) HandleCommand(ctx context.Context, c Command) {
	q := e.devices[c.DeviceID]
	if q == nil || q.typ != c.DeviceType {
		e.refuse(fmt.Errorf("%w: %s/%s", ErrUnknownDevice, c.DeviceType, c.DeviceID), "type", c.DeviceType, "device", c.DeviceID, "command", c.Name)
		return
	}
	if len(c.Payload) > MaxInbound {
		// Refused unread: not even the reqId is looked for in it.
		err := fmt.Errorf("%w: %d bytes", ErrTooLarge, len(c.Payload))
		e.refuse(err, "device", q.name, "command", c.Name)
		e.publish(q.name, Result{Command: c.Name, Error: err.Error(), Time: e.cfg.Now(), Class: ClassTooLarge})
		return
	}
	reqID := ReqID(c.Payload)
	if !q.take(reqID, e.cfg.RememberIDs) {
		e.duplicates.Add(1)
		e.logger.Debug("duplicate command dropped", "device", q.name, "command", c.Name, "req_id", reqID)
		return
	}
	size := int64(len(c.Payload))
	if e.queuedBytes.Add(size) > e.cfg.MaxQueuedBytes {
		e.queuedBytes.Add(-size)
		e.busy(q, c.Name, reqID, fmt.Errorf("%w: %d bytes of commands already waiting", ErrBusy, e.cfg.MaxQueuedBytes))
		return
	}
	select {
	case q.jobs <- &job{command: c.Name, reqID: reqID, payload: append([]byte(nil), c.Payload...)}:
		e.accepted.Add(1)
		e.kick(q)
	default:
		e.queuedBytes.Add(-size)
		e.busy(q, c.Name, reqID, fmt.Errorf("%w: %d already waiting", ErrBusy, cap(q.jobs)))
	}
}

// busy refuses a command that found no room.
func (e *Executor) busy(q *deviceQueue, command, reqID string, err error) {
	q.forget(reqID) // not acted on: a redelivery may run
	e.refuse(err, "device", q.name, "command", command)
	e.publish(q.name, Result{Command: command, ReqID: reqID, Error: err.Error(), Time: e.cfg.Now(), Class: ClassBusy})
}

// refuse counts a refusal and logs one line per LogEvery of them.
func (e *Executor) refuse(err error, attrs ...any) {
	n := e.refused.Add(1)
	if n%e.cfg.LogEvery == 1 || e.cfg.LogEvery == 1 {
		e.logger.Warn("commands refused", append(attrs, "err", err, "refused_total", n, "logged_every", e.cfg.LogEvery)...)
	}
}

func (e *Executor) publish(device string, r Result) {
	if err := e.cfg.Results.PublishResult(device, r); err != nil {
		e.logger.Error("command result not published", "device", device, "command", r.Command, "req_id", r.ReqID, "err", err)
	}
}

// work runs the device's waiting commands one after the other, and returns
// when none is left or ctx is done (Run answers what is left then).
func (e *Executor) work(ctx context.Context, q *deviceQueue) {
	defer e.workers.Done()
	for ctx.Err() == nil {
		select {
		case j := <-q.jobs:
			e.queuedBytes.Add(-int64(len(j.payload)))
			r := e.execute(ctx, q.name, j.command, j.payload)
			r.ReqID = j.reqID
			e.done.Add(1)
			e.publish(q.name, r.Result)
			continue
		default:
		}
		// Nothing waiting. Checked again under the lock, so that a command
		// queued just now either is seen here or finds no worker and
		// starts one (kick).
		e.mu.Lock()
		if len(q.jobs) == 0 {
			q.working = false
			e.mu.Unlock()
			return
		}
		e.mu.Unlock()
	}
	e.mu.Lock()
	q.working = false
	e.mu.Unlock()
}

// answerLeftovers answers the commands still queued at shutdown: they were
// acknowledged to the broker already, so they will not come again, and
// their senders must learn that nothing was written.
func (e *Executor) answerLeftovers(q *deviceQueue) {
	n := 0
	for {
		select {
		case j := <-q.jobs:
			e.queuedBytes.Add(-int64(len(j.payload)))
			n++
			e.publish(q.name, Result{Command: j.command, ReqID: j.reqID, Error: "not executed: the bridge stopped; nothing was written", Time: e.cfg.Now(), Class: ClassNotExecuted})
		default:
			if n > 0 {
				e.logger.Warn("commands not executed at shutdown", "device", q.name, "count", n)
			}
			return
		}
	}
}

// RunCommand plans and runs a command for device synchronously and returns
// nil when every write succeeded (and the readback, when asked for, was
// read). It publishes no result event: the caller (the device-management
// agent, for reboot, factory reset and custom actions) answers for itself.
// It neither queues nor checks reqIds.
func (e *Executor) RunCommand(ctx context.Context, device, command string, payload []byte) error {
	if e.devices[device] == nil {
		return fmt.Errorf("%w: %s", ErrUnknownDevice, device)
	}
	if len(payload) > MaxInbound {
		return fmt.Errorf("%w: %d bytes", ErrTooLarge, len(payload))
	}
	r := e.execute(ctx, device, command, payload)
	if !r.OK {
		return r.err
	}
	return nil
}

// outcome is a Result and the error behind it.
type outcome struct {
	Result
	err error
}

// execute runs one command and says what happened.
func (e *Executor) execute(ctx context.Context, device, command string, payload []byte) outcome {
	planned := false
	fail := func(r outcome, err error) outcome {
		r.OK, r.Error, r.err, r.Time = false, err.Error(), err, e.cfg.Now()
		r.Class = classify(err, planned)
		return r
	}
	r := outcome{Result: Result{Command: command, Class: ClassOK}}
	if device == e.cfg.Gateway {
		if command != "ping" {
			return fail(r, fmt.Errorf("%w %q for the gateway (it answers \"ping\")", ErrUnknownCommand, command))
		}
		r.OK, r.Time = true, e.cfg.Now()
		return r
	}
	plan, err := e.cfg.Planner.PlanCommand(device, command, payload)
	if err != nil {
		return fail(r, err)
	}
	planned = true
	timeout := plan.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for i, w := range plan.Writes {
		if err := e.cfg.Field.Write(ctx, w); err != nil {
			return fail(r, fmt.Errorf("write %d of %d (%s): %w", i+1, len(plan.Writes), nameOf(plan, i), err))
		}
		if i < len(plan.Written) {
			r.Written = append(r.Written, plan.Written[i])
		}
	}
	if len(plan.Readback) > 0 && plan.DecodeReadback != nil {
		blocks := make([]adapters.Block, len(plan.Readback))
		for i, rg := range plan.Readback {
			b, err := e.cfg.Field.Read(ctx, device, rg)
			if err != nil {
				return fail(r, fmt.Errorf("written, but the readback failed: %w", err))
			}
			b.Range = rg
			blocks[i] = b
		}
		back, err := plan.DecodeReadback(blocks)
		if err != nil {
			return fail(r, fmt.Errorf("written, but the readback failed: %w", err))
		}
		r.Readback = back
	}
	r.OK, r.Time = true, e.cfg.Now()
	return r
}

func nameOf(p Plan, i int) string {
	if i < len(p.Written) {
		return p.Written[i].Name
	}
	return p.Writes[i].String()
}

// ReqID returns the top-level "reqId" of a command payload when it is a
// string (or a number, as text), and "" otherwise, also for a payload that
// is not JSON.
func ReqID(payload []byte) string {
	var env struct {
		ReqID json.RawMessage `json:"reqId"`
	}
	if json.Unmarshal(payload, &env) != nil || len(env.ReqID) == 0 {
		return ""
	}
	var s string
	if json.Unmarshal(env.ReqID, &s) == nil {
		return s
	}
	var n json.Number
	if json.Unmarshal(env.ReqID, &n) == nil {
		return n.String()
	}
	return ""
}

// take records reqID and reports whether it was new. "" is always new (no
// id, nothing to compare).
func (q *deviceQueue) take(reqID string, remember int) bool {
	if reqID == "" {
		return true
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.seen[reqID] {
		return false
	}
	if len(q.ring) >= remember {
		delete(q.seen, q.ring[0])
		q.ring = q.ring[1:]
	}
	q.seen[reqID] = true
	q.ring = append(q.ring, reqID)
	return true
}

// forget drops reqID again (a command refused before it was acted on).
func (q *deviceQueue) forget(reqID string) {
	if reqID == "" {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.seen, reqID)
	if n := len(q.ring); n > 0 && q.ring[n-1] == reqID {
		q.ring = q.ring[:n-1]
	}
}
