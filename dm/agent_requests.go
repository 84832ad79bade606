package dm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"fieldbridge/adapters"
)

// deviceInfoAttributes are the deviceInfo attributes of the device model
// (protocol.md §7.9).
var deviceInfoAttributes = []string{"serialNumber", "manufacturer", "model", "deviceClass", "description", "fwVersion", "hwVersion", "descriptiveLocation"}

// serve is a device's worker: it answers the device's platform requests
// one at a time, in order.
func (a *Agent) serve(ctx context.Context, d *device) {
	for {
		select {
		case <-ctx.Done():
			return
		case req := <-d.queue:
			r := a.handle(ctx, d, req)
			a.log.Debug("dm request answered", "device", d.cfg.ID, "request", req.rest, "rc", r.RC)
			if r.RC >= RCBadRequest {
				a.log.Warn("dm request failed", "device", d.cfg.ID, "request", req.rest, "rc", r.RC, "reason", r.Message)
			}
			a.noteAnswer(req.rest, r.RC)
			a.answer(ctx, d, req.reqID, r)
			if r.then != nil {
				a.jobs.Add(1)
				go func() {
					defer a.jobs.Done()
					r.then(ctx)
				}()
			}
		}
	}
}

func (a *Agent) handle(ctx context.Context, d *device, req request) response {
	switch req.rest {
	case restObserve:
		return a.observe(d, req.fields)
	case restCancel:
		return a.cancel(d, req.fields)
	case restUpdate:
		return a.update(d, req.fields)
	case restReboot:
		return a.deviceAction(ctx, d, "reboot", d.cfg.Reboot)
	case restFactoryReset:
		return a.deviceAction(ctx, d, "factory reset", d.cfg.FactoryReset)
	case restFwDownload:
		return a.startDownload(ctx, d)
	case restFwUpdate:
		return a.startInstall(ctx, d)
	}
	bundle, action, _ := customAction(req.rest)
	return a.custom(ctx, d, bundle, action, req.fields)
}

// attribute returns the current value of a device-model attribute the
// agent can observe, or false when it does not know it.
func (d *device) attribute(name string) (any, bool) {
	if strings.HasPrefix(name, "mgmt.firmware") && d.cfg.Firmware == nil {
		return nil, false
	}
	switch {
	case name == "mgmt.firmware":
		return d.fw.value(), true
	case name == "mgmt.firmware.state":
		return d.fw.State, true
	case name == "mgmt.firmware.updateStatus":
		return d.fw.UpdateStatus, true
	case strings.HasPrefix(name, "mgmt.firmware."):
		v, ok := d.fw.attribute(strings.TrimPrefix(name, "mgmt.firmware."))
		return v, ok
	case name == "deviceInfo":
		return maps.Clone(d.info), true
	case strings.HasPrefix(name, "deviceInfo."):
		attr := strings.TrimPrefix(name, "deviceInfo.")
		return d.info[attr], slices.Contains(deviceInfoAttributes, attr)
	case name == "metadata":
		if d.metadata == nil {
			return json.RawMessage("{}"), true
		}
		return d.metadata, true
	case name == "location":
		if d.location == nil {
			return struct{}{}, true
		}
		return *d.location, true
	}
	return nil, false
}

type valueField struct {
	Field string `json:"field"`
	Value any    `json:"value,omitempty"`
}

// observe answers rc 200 with the current values and notifies every later
// change, or rc 404 listing the unknown attributes (protocol.md §7.6.1).
func (a *Agent) observe(d *device, fields []field) response {
	d.mu.Lock()
	defer d.mu.Unlock()
	var known, unknown []valueField
	for _, f := range fields {
		if v, ok := d.attribute(f.Field); ok {
			known = append(known, valueField{f.Field, v})
		} else {
			unknown = append(unknown, valueField{Field: f.Field})
		}
	}
	if len(unknown) > 0 {
		return withFields(response{RC: RCNotFound, Message: "unknown attribute"}, unknown)
	}
	for _, f := range known {
		d.observed[f.Field] = true
	}
	return withFields(response{RC: RCOK}, known)
}

// cancel stops notifications for the fields (protocol.md §7.6.2).
func (a *Agent) cancel(d *device, fields []field) response {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, f := range fields {
		delete(d.observed, f.Field)
	}
	return response{RC: RCOK}
}

func withFields(r response, fields []valueField) response {
	b, _ := json.Marshal(struct {
		Fields []valueField `json:"fields"`
	}{fields}) // cannot fail: values are decoded JSON and plain types
	r.D = b
	return r
}

// update applies a device/update (protocol.md §7.6.3): location, metadata,
// deviceInfo and the staged mgmt.firmware. Every field is checked before
// anything changes: an unknown attribute is rc 404 (listed), a bad value rc
// 400; else rc 204.
func (a *Agent) update(d *device, fields []field) response {
	d.mu.Lock()
	defer d.mu.Unlock()
	var unknown []valueField
	var apply []func()
	for _, f := range fields {
		fn, err := d.updater(f)
		switch {
		case errors.Is(err, errUnknownAttribute):
			unknown = append(unknown, valueField{Field: f.Field})
		case err != nil:
			return response{RC: RCBadRequest, Message: err.Error()}
		default:
			apply = append(apply, fn)
		}
	}
	if len(unknown) > 0 {
		return withFields(response{RC: RCNotFound, Message: "unknown attribute"}, unknown)
	}
	for _, fn := range apply {
		fn()
	}
	return response{RC: RCChanged}
}

var errUnknownAttribute = errors.New("unknown attribute")

// updater checks one device/update field and returns the change it makes;
// d.mu is held.
func (d *device) updater(f field) (func(), error) {
	strict := func(v any) error {
		dec := json.NewDecoder(strings.NewReader(string(f.Value)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(v); err != nil {
			return fmt.Errorf("%s: %v", f.Field, err)
		}
		return nil
	}
	switch {
	case f.Field == "location":
		var loc struct {
			Location
			MeasuredDateTime string `json:"measuredDateTime"`
			UpdatedDateTime  string `json:"updatedDateTime"`
		}
		if err := strict(&loc); err != nil {
			return nil, err
		}
		return func() { l := loc.Location; d.location = &l }, nil
	case f.Field == "metadata":
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(f.Value, &obj); err != nil || obj == nil {
			return nil, errors.New("metadata must be a JSON object")
		}
		return func() { d.metadata = f.Value }, nil
	case f.Field == "deviceInfo":
		var info map[string]string
		if err := strict(&info); err != nil || info == nil {
			return nil, errors.New("deviceInfo must be an object of strings")
		}
		for k := range info {
			if !slices.Contains(deviceInfoAttributes, k) {
				return nil, fmt.Errorf("unknown deviceInfo attribute %q", short(k))
			}
		}
		return func() { d.info = info }, nil
	case strings.HasPrefix(f.Field, "deviceInfo."):
		attr := strings.TrimPrefix(f.Field, "deviceInfo.")
		if !slices.Contains(deviceInfoAttributes, attr) {
			return nil, errUnknownAttribute
		}
		var s string
		if err := json.Unmarshal(f.Value, &s); err != nil {
			return nil, fmt.Errorf("%s must be a string", f.Field)
		}
		return func() {
			if d.info == nil {
				d.info = map[string]string{}
			}
			d.info[attr] = s
		}, nil
	case f.Field == "mgmt.firmware":
		if d.cfg.Firmware == nil {
			return nil, errUnknownAttribute
		}
		var st firmwareState
		if err := strict(&st); err != nil {
			return nil, err
		}
		if err := checkVerifier(st.Verifier); err != nil {
			return nil, err
		}
		if d.fwBusy {
			return nil, errors.New("a firmware download or install is running")
		}
		return func() { d.fw.stage(st) }, nil
	}
	return nil, errUnknownAttribute
}

// deviceAction runs reboot or factory reset (protocol.md §7.6.4): rc 501
// when the device type maps none, rc 500 when it fails (a device known to
// be unreachable fails at once when the action needs its bus), else rc 202
// and, since the action completes with a new Manage, Manage is sent again.
func (a *Agent) deviceAction(ctx context.Context, d *device, what string, act *Action) response {
	if act == nil {
		return response{RC: RCNotSupported, Message: what + " is not supported by this device"}
	}
	if err := a.run(ctx, d, act, nil, nil); err != nil {
		d.log(logError, what+" failed: "+err.Error())
		return response{RC: RCInternal, Message: err.Error()}
	}
	return response{RC: RCAccepted, then: func(context.Context) {
		// The platform completes the action when Manage arrives (rule D6).
		d.mu.Lock()
		d.needManage = true
		d.addLog(logInfo, what+" done")
		d.mu.Unlock()
		d.signal(d.changed)
	}}
}

// custom runs a custom action (protocol.md §8): its parameters become the
// command's payload {"d": {name: value, ...}} (see paramValue). rc 200 when done, 500 when it failed, 501 when
// the device has no such action.
func (a *Agent) custom(ctx context.Context, d *device, bundle, action string, fields []field) response {
	act := d.cfg.Custom[bundle][action]
	if act == nil {
		return response{RC: RCNotSupported, Message: fmt.Sprintf("action %s/%s is not supported by this device", short(bundle), short(action))}
	}
	params := map[string]json.RawMessage{}
	for _, f := range fields {
		if f.Value != nil {
			params[f.Field] = paramValue(f.Value)
		}
	}
	// The shape of a command message ({"d": {...}}), so that one command
	// definition serves iot-2 commands and custom actions alike.
	payload, _ := json.Marshal(map[string]any{"d": params}) // cannot fail: compact raw JSON
	if err := a.run(ctx, d, act, payload, nil); err != nil {
		d.log(logError, fmt.Sprintf("action %s/%s failed: %v", bundle, action, err))
		return response{RC: RCInternal, Message: err.Error()}
	}
	d.log(logInfo, fmt.Sprintf("action %s/%s done", bundle, action))
	return response{RC: RCOK}
}

// paramValue turns a custom action's parameter into the command's value.
// The platform sends parameters as strings (protocol.md §8, checked by the
// bundle's regular expressions); one that reads as a JSON number or boolean
// is passed as that, so that a command whose write takes "$.d.value" as a
// number serves a custom action too. Other values pass unchanged.
func paramValue(v json.RawMessage) json.RawMessage {
	var s string
	if json.Unmarshal(v, &s) != nil {
		return v
	}
	if s == "true" || s == "false" {
		return json.RawMessage(s)
	}
	var n json.Number
	if dec := json.NewDecoder(strings.NewReader(s)); dec.Decode(&n) == nil && !dec.More() && n.String() == s {
		return json.RawMessage(s)
	}
	return v
}

// errUnreachable is a command refused because the device is down.
var errUnreachable = errors.New("device unreachable")

// run carries out an action: the command (through Config.Commands), then
// the hook, within the action's timeout. A device known to be down fails
// at once when the action has a command.
func (a *Agent) run(ctx context.Context, d *device, act *Action, payload []byte, vars map[string]string) error {
	timeout := act.Timeout
	if timeout <= 0 {
		timeout = DefaultActionTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if act.Command != "" {
		d.mu.Lock()
		down, reason := d.down, d.downReason
		d.mu.Unlock()
		if down {
			return fmt.Errorf("%w: %s", errUnreachable, reason)
		}
		if payload == nil {
			payload = []byte(`{"d":{}}`)
		}
		if err := a.cfg.Commands.RunCommand(ctx, d.cfg.Name, act.Command, payload); err != nil {
			if adapters.IsTransport(err) {
				return fmt.Errorf("command %s: %w: %v", act.Command, errUnreachable, err)
			}
			return fmt.Errorf("command %s: %v", act.Command, err)
		}
	}
	if len(act.Exec) > 0 {
		all := map[string]string{"type": d.cfg.Type, "id": d.cfg.ID, "device": d.cfg.Name}
		maps.Copy(all, vars)
		return runHook(ctx, act.Exec, all)
	}
	return nil
}

// notify sends the observed attributes among names whose values changed;
// d.mu must not be held.
func (a *Agent) notify(ctx context.Context, d *device, names ...string) {
	d.mu.Lock()
	var fields []valueField
	for _, n := range names {
		if d.observed[n] {
			v, _ := d.attribute(n)
			fields = append(fields, valueField{n, v})
		}
	}
	d.mu.Unlock()
	if len(fields) == 0 {
		return
	}
	b, _ := json.Marshal(struct {
		D struct {
			Fields []valueField `json:"fields"`
		} `json:"d"`
	}{D: struct {
		Fields []valueField `json:"fields"`
	}{fields}})
	select {
	case err := <-d.cfg.Link.Publish(ctx, d.topic("notify"), b):
		if err != nil {
			a.log.Warn("dm notify not sent", "device", d.cfg.ID, "err", err)
		}
	case <-ctx.Done():
	}
}
