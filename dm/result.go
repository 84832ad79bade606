package dm

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"fieldbridge/adapters"
)

// maxPayload is the platform's message limit (protocol.md §2.8): a result
// event must fit in it.
const maxPayload = 131072

// maxErrorText keeps a result's error readable and its event small.
const maxErrorText = 1024

// Result is what became of one command: the `command` event of issue 10,
// {"d":{"command","reqId","ok","error","written":{...},"readback":{...}},"ts","seq"}.
type Result struct {
	Command  string
	ReqID    string // copied from the payload's top-level "reqId", if any
	OK       bool
	Error    string
	Written  []NamedValue // what was written, in order
	Readback []NamedValue // what was read back after writing
	Time     time.Time    // when the command was finished
	// Class names the outcome in a word, for counting: "ok" or one of the
	// Class* values. It is not part of the event.
	Class string
}

// Outcome classes of a Result, a small fixed set so that counting by class
// keeps the number of metric series bounded.
const (
	ClassOK             = "ok"
	ClassRejected       = "rejected"        // refused before anything was written (unknown command, bad payload or value)
	ClassTooLarge       = "too_large"       // payload over MaxInbound
	ClassBusy           = "busy"            // no room in the device's queue
	ClassDeviceDown     = "device_down"     // the device's last poll found it unreachable; nothing sent
	ClassException      = "exception"       // the device answered with a Modbus exception
	ClassUnknownOutcome = "unknown_outcome" // a write timed out or got a bad reply: it may have been applied
	ClassNotExecuted    = "not_executed"    // the bridge stopped before the command ran
	ClassFailed         = "failed"          // any other failure
)

// classify names the outcome of err for a command that got as far as
// planning (planned is false when the planner refused it).
func classify(err error, planned bool) string {
	var ex *adapters.ExceptionError
	switch {
	case err == nil:
		return ClassOK
	case errors.Is(err, ErrUnknownCommand) || !planned:
		return ClassRejected
	case errors.Is(err, adapters.ErrDeviceDown):
		return ClassDeviceDown
	case errors.As(err, &ex):
		return ClassException
	case errors.Is(err, adapters.ErrUnknownOutcome):
		return ClassUnknownOutcome
	}
	return ClassFailed
}

// NamedValue is a point (or "send") and its value: bool, int64, uint64,
// float64, string, or nil.
type NamedValue struct {
	Name  string
	Value any
}

// resultBody is the "d" object. Written and readback are objects keyed by
// point name; json.Marshal sorts their keys, so the bytes are stable.
type resultBody struct {
	Command  string         `json:"command"`
	ReqID    string         `json:"reqId,omitempty"`
	OK       bool           `json:"ok"`
	Error    string         `json:"error,omitempty"`
	Written  map[string]any `json:"written,omitempty"`
	Readback map[string]any `json:"readback,omitempty"`
}

type resultEvent struct {
	D   resultBody `json:"d"`
	TS  string     `json:"ts"`
	Seq uint64     `json:"seq"`
}

// Payload returns the result's event payload with seq (assigned by the
// buffer). It is never larger than the platform's limit: a result whose
// values would not fit is sent without them, saying so.
func (r Result) Payload(seq uint64) ([]byte, error) {
	body := resultBody{Command: r.Command, ReqID: r.ReqID, OK: r.OK, Error: r.Error,
		Written: asMap(r.Written), Readback: asMap(r.Readback)}
	if len(body.Error) > maxErrorText {
		body.Error = body.Error[:maxErrorText] + "..."
	}
	ev := resultEvent{D: body, TS: r.Time.UTC().Format("2006-01-02T15:04:05.000Z07:00"), Seq: seq}
	p, err := json.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("dm: result of %q: %w", r.Command, err)
	}
	if len(p) > maxPayload {
		ev.D.Written, ev.D.Readback = nil, nil
		ev.D.Error = fmt.Sprintf("%s (written and readback values left out: %d bytes, over the platform's limit)", ev.D.Error, len(p))
		if len(ev.D.Command) > 1024 {
			ev.D.Command = ev.D.Command[:1024]
		}
		if len(ev.D.ReqID) > 1024 {
			ev.D.ReqID = ev.D.ReqID[:1024]
		}
		return json.Marshal(ev)
	}
	return p, nil
}

func asMap(vs []NamedValue) map[string]any {
	if len(vs) == 0 {
		return nil
	}
	m := make(map[string]any, len(vs))
	for _, v := range vs {
		m[v.Name] = v.Value
	}
	return m
}
