package platform

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
)

// Values of mgmt.firmware.state (protocol.md §7.7).
const (
	FirmwareIdle        = 0
	FirmwareDownloading = 1
	FirmwareDownloaded  = 2
)

// Values of mgmt.firmware.updateStatus (protocol.md §7.7).
const (
	FirmwareSuccess            = 0
	FirmwareInProgress         = 1
	FirmwareOutOfMemory        = 2
	FirmwareConnectionLost     = 3
	FirmwareVerificationFailed = 4
	FirmwareUnsupportedImage   = 5
	FirmwareInvalidURI         = 6
)

// ErrBusy means a firmware action for the device is still running.
var ErrBusy = errors.New("platform: a firmware action is running for the device")

// Field is one entry of a DM message's d.fields: a device-model attribute
// (or a custom action's parameter) and its value, JSON. Value is nil in
// the requests of observe and cancel and in error responses that only name
// the failing attributes.
type Field struct {
	Field string          `json:"field"`
	Value json.RawMessage `json:"value,omitempty"`
}

// Response is a device's answer to a DM request (iotdevice-1/response).
type Response struct {
	RC      int
	Message string
	Fields  []Field // d.fields, if the device sent them
}

// decodeFields decodes a d.fields list; each entry needs a field name of 1
// to 255 characters and, if needValue, a value.
func decodeFields(raw json.RawMessage, needValue bool) ([]Field, error) {
	var list []map[string]json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, errors.New("d.fields must be a list of {field, value}")
	}
	fields := make([]Field, 0, len(list))
	for _, e := range list {
		var f Field
		if err := json.Unmarshal(e["field"], &f.Field); err != nil || f.Field == "" || len(f.Field) > maxBundleLen {
			return nil, errors.New("every d.fields entry needs a field name, a string of 1 to 255 characters")
		}
		for k := range e {
			if k != "field" && k != "value" {
				return nil, fmt.Errorf("unknown member %q in d.fields", short(k))
			}
		}
		if v, ok := e["value"]; ok {
			var buf bytes.Buffer
			if err := json.Compact(&buf, v); err != nil { // cannot fail: it decoded
				return nil, err
			}
			f.Value = buf.Bytes()
		} else if needValue {
			return nil, fmt.Errorf("d.fields entry %q has no value", short(f.Field))
		}
		fields = append(fields, f)
	}
	return fields, nil
}

// apply changes fw by one field of a notify, observe response or update:
// mgmt.firmware (an object of some of its members) or one of its members
// mgmt.firmware.<member>. Other fields leave fw alone. A value of the
// wrong type or out of range is an error and leaves fw unchanged.
func (fw *Firmware) apply(f Field) error {
	switch {
	case f.Field == "mgmt.firmware":
		var members map[string]json.RawMessage
		if err := json.Unmarshal(f.Value, &members); err != nil || members == nil {
			return errors.New("mgmt.firmware must be an object")
		}
		next := *fw
		for name, v := range members {
			if err := next.set(name, v); err != nil {
				return err
			}
		}
		*fw = next
		return nil
	case strings.HasPrefix(f.Field, "mgmt.firmware."):
		return fw.set(strings.TrimPrefix(f.Field, "mgmt.firmware."), f.Value)
	}
	return nil
}

// set sets one member of mgmt.firmware from its JSON value.
func (fw *Firmware) set(name string, v json.RawMessage) error {
	str := map[string]*string{"version": &fw.Version, "name": &fw.Name, "uri": &fw.URI,
		"verifier": &fw.Verifier, "updatedDateTime": &fw.UpdatedDateTime}
	if p, ok := str[name]; ok {
		if isNull(v) || json.Unmarshal(v, p) != nil {
			return fmt.Errorf("mgmt.firmware.%s must be a string", name)
		}
		return nil
	}
	limits := map[string]struct {
		p   *int
		max int
	}{"state": {&fw.State, FirmwareDownloaded}, "updateStatus": {&fw.UpdateStatus, FirmwareInvalidURI}}
	l, ok := limits[name]
	if !ok {
		return fmt.Errorf("unknown attribute mgmt.firmware.%s", short(name))
	}
	var f float64
	if isNull(v) || json.Unmarshal(v, &f) != nil || f != math.Trunc(f) || f < 0 || f > float64(l.max) {
		return fmt.Errorf("mgmt.firmware.%s must be an integer from 0 to %d", name, l.max)
	}
	*l.p = int(f)
	return nil
}

// observes reports whether a notify of field concerns an observed
// attribute: the attribute itself, a part of it or the whole it is part of
// (a complex attribute is reported in one notify, protocol.md §7.5.5).
func observes(observed map[string]bool, field string) bool {
	for o := range observed {
		if o == field || strings.HasPrefix(field, o+".") || strings.HasPrefix(o, field+".") {
			return true
		}
	}
	return false
}

// notified records a valid notify (s.mu held): the values, the firmware
// state, and the firmware action waiting for it. A notify of an attribute
// the platform does not observe is accepted (no rc for it is documented)
// and recorded as rule N1.
func (s *dmServer) notified(key deviceKey, st *DMState, fields []Field, origin string) {
	if st.Attributes == nil {
		st.Attributes = map[string]json.RawMessage{}
	}
	for _, f := range fields {
		if !observes(st.Observed, f.Field) {
			s.p.record(Violation{ClientID: origin, Rule: "N1", Action: ActionRecorded, Code: 0,
				Detail: fmt.Sprintf("notify of %s/%s attribute %q, which the platform does not observe", key.typ, key.id, short(f.Field))})
		}
		st.Attributes[f.Field] = f.Value
		_ = st.Firmware.apply(f) // validated by decodeNotify
	}
	if ch := s.fwWatch[key]; ch != nil {
		n := firmwareNotice{status: FirmwareStatus{State: st.Firmware.State, UpdateStatus: st.Firmware.UpdateStatus}}
		n.hasState, n.hasUpdateStatus = firmwareMembers(fields)
		select {
		case ch <- n:
		default: // a device flooding notifies; the sequence sees the later ones
		}
	}
}

// firmwareNotice is one notify as a firmware action sees it: mgmt.firmware
// after it, and which of state and updateStatus it carried.
type firmwareNotice struct {
	status                    FirmwareStatus
	hasState, hasUpdateStatus bool
}

// firmwareMembers reports whether valid notify fields carry
// mgmt.firmware's state and updateStatus.
func firmwareMembers(fields []Field) (state, updateStatus bool) {
	for _, f := range fields {
		switch f.Field {
		case "mgmt.firmware":
			var m map[string]json.RawMessage
			_ = json.Unmarshal(f.Value, &m) // validated: an object
			_, s := m["state"]
			_, u := m["updateStatus"]
			state, updateStatus = state || s, updateStatus || u
		case "mgmt.firmware.state":
			state = true
		case "mgmt.firmware.updateStatus":
			updateStatus = true
		}
	}
	return state, updateStatus
}

// dmTarget checks that the platform may send a DM request to device
// typ/id (rule D2): registered, managed, and, unless capability is "", it
// advertised capability in its Manage.
func (p *Platform) dmTarget(typ, id, capability string) (deviceKey, error) {
	key := deviceKey{typ, id}
	if p.quickstart {
		return key, ErrQuickstart
	}
	if checkIdent(typ) != nil || checkIdent(id) != nil {
		return key, fmt.Errorf("%w: device %q/%q", ErrInvalidTopic, typ, id)
	}
	if _, ok := p.reg.device(typ, id); !ok {
		return key, fmt.Errorf("%w: %s/%s", ErrUnknownDevice, typ, id)
	}
	st, managed := p.dm.state(key)
	switch {
	case !managed:
		return key, fmt.Errorf("%w: %s/%s", ErrNotManaged, typ, id)
	case capability != "" && !st.Supports[capability]:
		return key, fmt.Errorf("%w: %s/%s did not advertise %s", ErrUnsupportedAction, typ, id, capability)
	}
	return key, nil
}

// dmCall publishes a DM request on iotdm-1/type/T/id/D/<rest> to the
// device's manager (rule R3) with a fresh UUID reqId at QoS 1 and waits
// for the matching response, ctx or Close. build makes the payload;
// onReply, if not nil, applies the response to the device's state as it
// arrives, before the device's next message is handled.
func (p *Platform) dmCall(ctx context.Context, key deviceKey, rest string, build func(reqID string) []byte, onReply func(*DMState, Response)) (Response, error) {
	if p.closed() {
		return Response{}, ErrClosed
	}
	st, managed := p.dm.state(key)
	if !managed {
		return Response{}, fmt.Errorf("%w: %s/%s", ErrNotManaged, key.typ, key.id)
	}
	reqID := newUUID()
	w := &dmWaiter{key: key, target: st.ManagedBy, onReply: onReply, ch: make(chan dmReply, 1)}
	p.dm.mu.Lock()
	p.dm.waiters[reqID] = w
	p.dm.mu.Unlock()
	defer func() {
		p.dm.mu.Lock()
		delete(p.dm.waiters, reqID)
		p.dm.mu.Unlock()
	}()
	if err := p.dm.publish(key, rest, build(reqID), st.ManagedBy); err != nil {
		return Response{}, fmt.Errorf("route dm request %s: %v", rest, err)
	}
	p.log.Debug("dm request sent", "type", key.typ, "id", key.id, "request", rest, "req_id", reqID, "to", st.ManagedBy)
	select {
	case r := <-w.ch:
		if r.err != nil {
			return Response{}, fmt.Errorf("dm response to %s: %w", rest, r.err)
		}
		if !documentedRC(rest, r.resp.RC) {
			p.record(Violation{ClientID: st.ManagedBy, Rule: "D2", Action: ActionRecorded,
				Detail: fmt.Sprintf("rc %d is not a documented answer to %s (%s/%s)", r.resp.RC, rest, key.typ, key.id)})
		}
		return r.resp, nil
	case <-ctx.Done():
		return Response{}, ctx.Err()
	case <-p.done:
		return Response{}, ErrClosed
	}
}

// fieldsPayload is {"reqId": ..., "d": {"fields": fields}}; reqID "" is
// left out.
func fieldsPayload(reqID string, fields []Field) []byte {
	b, _ := json.Marshal(struct {
		ReqID string `json:"reqId,omitempty"`
		D     struct {
			Fields []Field `json:"fields"`
		} `json:"d"`
	}{ReqID: reqID, D: struct {
		Fields []Field `json:"fields"`
	}{fields}}) // cannot fail: values are valid JSON (checkFields)
	return b
}

// names turns attribute names into fields without values.
func names(attrs []string) []Field {
	fields := make([]Field, len(attrs))
	for i, a := range attrs {
		fields[i] = Field{Field: a}
	}
	return fields
}

// checkFields checks attribute names (1 to 255 characters, no white space)
// and, if needValue, that each has a valid JSON value.
func checkFields(fields []Field, needValue bool) error {
	if len(fields) == 0 {
		return fmt.Errorf("%w: no fields", ErrInvalidAction)
	}
	for _, f := range fields {
		if f.Field == "" || len(f.Field) > maxBundleLen || strings.ContainsAny(f.Field, " \t\r\n") {
			return fmt.Errorf("%w: field name %q", ErrInvalidAction, short(f.Field))
		}
		if needValue && !json.Valid(f.Value) {
			return fmt.Errorf("%w: value of %s is not JSON", ErrInvalidAction, f.Field)
		}
	}
	return nil
}

// Observe asks the managed device typ/id to report attrs (e.g.
// "mgmt.firmware") now and notify their changes (iotdm-1/observe,
// protocol.md §7.6.1). On rc 200 the attributes count as observed
// (DMState.Observed) and the values in the response are recorded.
func (p *Platform) Observe(ctx context.Context, typ, id string, attrs ...string) (Response, error) {
	fields := names(attrs)
	if err := checkFields(fields, false); err != nil {
		return Response{}, err
	}
	key, err := p.dmTarget(typ, id, "")
	if err != nil {
		return Response{}, err
	}
	return p.dmCall(ctx, key, "observe", func(reqID string) []byte { return fieldsPayload(reqID, fields) },
		func(st *DMState, resp Response) {
			if resp.RC != RCOK {
				return
			}
			if st.Observed == nil {
				st.Observed = map[string]bool{}
			}
			for _, a := range attrs {
				st.Observed[a] = true
			}
			for _, f := range resp.Fields {
				if f.Value == nil {
					continue
				}
				if st.Attributes == nil {
					st.Attributes = map[string]json.RawMessage{}
				}
				st.Attributes[f.Field] = f.Value
				if err := st.Firmware.apply(f); err != nil {
					p.log.Warn("observe response with a bad firmware value", "type", typ, "id", id, "err", err)
				}
			}
		})
}

// Cancel stops observing attrs (iotdm-1/cancel, protocol.md §7.6.2); on
// rc 200 they no longer count as observed.
func (p *Platform) Cancel(ctx context.Context, typ, id string, attrs ...string) (Response, error) {
	fields := names(attrs)
	if err := checkFields(fields, false); err != nil {
		return Response{}, err
	}
	key, err := p.dmTarget(typ, id, "")
	if err != nil {
		return Response{}, err
	}
	return p.dmCall(ctx, key, "cancel", func(reqID string) []byte { return fieldsPayload(reqID, fields) },
		func(st *DMState, resp Response) {
			if resp.RC == RCOK {
				for _, a := range attrs {
					delete(st.Observed, a)
				}
			}
		})
}

// UpdateAttributes sets attributes of the managed device typ/id
// (iotdm-1/device/update with a reqId, protocol.md §7.6.3) and returns its
// answer: 204 when accepted, 404 listing unknown attributes. On 204 a
// mgmt.firmware value is recorded as staged (DMState.Firmware).
func (p *Platform) UpdateAttributes(ctx context.Context, typ, id string, fields []Field) (Response, error) {
	if err := checkFields(fields, true); err != nil {
		return Response{}, err
	}
	var fw Firmware
	for _, f := range fields {
		if err := fw.apply(f); err != nil {
			return Response{}, fmt.Errorf("%w: %v", ErrInvalidAction, err)
		}
	}
	key, err := p.dmTarget(typ, id, "")
	if err != nil {
		return Response{}, err
	}
	return p.dmCall(ctx, key, "device/update", func(reqID string) []byte { return fieldsPayload(reqID, fields) },
		func(st *DMState, resp Response) {
			if resp.RC == RCChanged {
				for _, f := range fields {
					_ = st.Firmware.apply(f) // checked above
				}
			}
		})
}

// PushAttributes sends iotdm-1/device/update without a reqId, as the
// platform does when a user changes a device's location or metadata: the
// device answers nothing (protocol.md §7.6.3). A nil error means the
// message was routed to the device's manager.
func (p *Platform) PushAttributes(typ, id string, fields []Field) error {
	if err := checkFields(fields, true); err != nil {
		return err
	}
	key, err := p.dmTarget(typ, id, "")
	if err != nil {
		return err
	}
	st, _ := p.dm.state(key)
	return p.dm.publish(key, "device/update", fieldsPayload("", fields), st.ManagedBy)
}

// documentedRC reports whether rc is a documented device answer to the
// request rest (protocol.md §7.6–§7.8, §8); 400 is allowed everywhere
// ("either side: malformed, out of range, wrong state").
func documentedRC(rest string, rc int) bool {
	allowed := map[string][]int{
		"observe":                            {RCOK, RCNotFound, RCInternal},
		"cancel":                             {RCOK, RCNotFound, RCInternal},
		"device/update":                      {RCChanged, RCNotFound, RCInternal},
		"mgmt/initiate/device/reboot":        {RCAccepted, RCInternal, RCNotSupported},
		"mgmt/initiate/device/factory_reset": {RCAccepted, RCInternal, RCNotSupported},
		"mgmt/initiate/firmware/download":    {RCAccepted, RCInternal, RCNotSupported},
		"mgmt/initiate/firmware/update":      {RCAccepted, RCInternal, RCNotSupported},
	}
	codes, ok := allowed[rest]
	if !ok { // mgmt/custom/<bundle>/<action>: 200 when done
		codes = []int{RCOK, RCInternal, RCNotSupported}
	}
	return rc == RCBadRequest || slices.Contains(codes, rc)
}
