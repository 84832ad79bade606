package mapping

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"fieldbridge/adapters"
)

// MaxCommandPayload is the largest command payload PlanCommand decodes.
const MaxCommandPayload = 128 << 10

// CommandPlan is a command turned into bus operations: the writes, in
// order, and the ranges to read back afterwards.
type CommandPlan struct {
	Command string
	Writes  []adapters.WriteRequest
	// Written says, per write, what the device will hold: the value decoded
	// back from the encoded registers (so a rounded scaled value shows as
	// written, not as sent). A text request is reported as "send".
	Written  []Field
	Readback []adapters.Range // one per written point, empty unless the command asks for it
	Timeout  time.Duration

	readPoints []*Point // the point each Readback range reads
}

// PlanCommand turns a command of the device type with its JSON payload into
// a CommandPlan for the device on unit. Nothing is planned unless every
// value is valid: errors wrap ErrUnknownCommand, ErrBadPayload,
// ErrNotWritable or ErrBadValue and mean nothing may be written.
func (t *DeviceType) PlanCommand(device string, unit uint8, name string, payload []byte) (CommandPlan, error) {
	plan, err := t.planCommand(device, unit, name, payload)
	if err != nil {
		return CommandPlan{Command: name, Timeout: plan.Timeout}, err // nothing of a refused command is written
	}
	return plan, nil
}

func (t *DeviceType) planCommand(device string, unit uint8, name string, payload []byte) (CommandPlan, error) {
	plan := CommandPlan{Command: name}
	cmd := t.Command(name)
	if cmd == nil {
		known := "it has none"
		if len(t.Commands) > 0 {
			known = "it has " + strings.Join(t.CommandNames(), ", ")
		}
		return plan, fmt.Errorf("%w %q for device type %q (%s)", ErrUnknownCommand, name, t.Name, known)
	}
	plan.Timeout = cmd.Timeout
	if plan.Timeout <= 0 {
		plan.Timeout = DefaultCommandTimeout
	}
	doc, err := DecodeCommandPayload(payload)
	if err != nil {
		return plan, err
	}
	if cmd.Send != "" {
		text, err := renderSend(cmd.Send, doc)
		if err != nil {
			return plan, err
		}
		plan.Writes = []adapters.WriteRequest{{Device: device, Unit: unit, Text: []byte(text)}}
		plan.Written = []Field{{Name: "send", Value: Value{Kind: KindString, S: text}}}
		return plan, nil
	}
	readback := map[string]int{} // point name -> index in plan.Readback
	for _, w := range cmd.Writes {
		idx := t.PointIndex(w.Point)
		if idx < 0 {
			return plan, fmt.Errorf("command %q writes unknown point %q: %w", name, w.Point, ErrBadValue)
		}
		p := &t.Points[idx]
		v := w.Literal
		if w.Path != "" {
			if v, err = doc.Value(w.Path); err != nil {
				return plan, err
			}
		}
		req, err := p.EncodeWrite(v)
		if err != nil {
			return plan, err
		}
		req.Device, req.Unit = device, unit
		shown, err := p.DecodeWrite(req)
		if err != nil {
			return plan, fmt.Errorf("point %q: %v: %w", p.Name, err, ErrBadValue)
		}
		plan.Writes = append(plan.Writes, req)
		plan.Written = append(plan.Written, Field{Name: p.Name, Value: shown, Point: p})
		if _, dup := readback[p.Name]; cmd.Readback && !dup {
			readback[p.Name] = len(plan.Readback)
			plan.Readback = append(plan.Readback, p.ReadRange(unit))
			plan.readPoints = append(plan.readPoints, p)
		}
	}
	return plan, nil
}

// DecodeReadback decodes the blocks read for plan.Readback, in that order.
func (plan CommandPlan) DecodeReadback(blocks []adapters.Block) ([]Field, error) {
	if len(blocks) != len(plan.readPoints) {
		return nil, fmt.Errorf("readback: %d blocks for %d points", len(blocks), len(plan.readPoints))
	}
	out := make([]Field, len(blocks))
	for i, b := range blocks {
		p := plan.readPoints[i]
		v, err := p.Decode(b)
		if err != nil {
			return nil, fmt.Errorf("read back %q: %w", p.Name, err)
		}
		out[i] = Field{Name: p.Name, Value: v, Point: p}
	}
	return out, nil
}

// CommandPayload is a decoded command payload: a JSON object.
type CommandPayload struct {
	root map[string]any
}

// DecodeCommandPayload decodes a command payload. It must be one JSON
// object (an empty payload counts as {}) of at most MaxCommandPayload bytes.
// Numbers keep their exact text. Errors wrap ErrBadPayload.
func DecodeCommandPayload(payload []byte) (CommandPayload, error) {
	if len(payload) > MaxCommandPayload {
		return CommandPayload{}, fmt.Errorf("%w: %d bytes, over the limit of %d", ErrBadPayload, len(payload), MaxCommandPayload)
	}
	if len(bytes.TrimSpace(payload)) == 0 {
		return CommandPayload{root: map[string]any{}}, nil
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	var root map[string]any
	if err := dec.Decode(&root); err != nil {
		return CommandPayload{}, fmt.Errorf("%w: not a JSON object: %v", ErrBadPayload, err)
	}
	if root == nil {
		return CommandPayload{}, fmt.Errorf("%w: not a JSON object: null", ErrBadPayload)
	}
	if _, err := dec.Token(); err != io.EOF {
		return CommandPayload{}, fmt.Errorf("%w: data after the JSON object", ErrBadPayload)
	}
	return CommandPayload{root: root}, nil
}

// lookup finds the JSON value at path.
func (c CommandPayload) lookup(path string) (any, error) {
	keys, err := ParsePath(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadPayload, err)
	}
	var cur any = c.root
	for i, k := range keys {
		obj, ok := cur.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%w: %s is not an object", ErrBadPayload, "$."+strings.Join(keys[:i], "."))
		}
		if cur, ok = obj[k]; !ok {
			return nil, fmt.Errorf("%w: no value at %s", ErrBadPayload, path)
		}
	}
	return cur, nil
}

// Value returns the bool, number or string at path.
func (c CommandPayload) Value(path string) (Value, error) {
	x, err := c.lookup(path)
	if err != nil {
		return Value{}, err
	}
	switch x := x.(type) {
	case bool:
		return Value{Kind: KindBool, B: x}, nil
	case string:
		return Value{Kind: KindString, S: x}, nil
	case json.Number:
		return numberOf(string(x))
	case nil:
		return Value{}, fmt.Errorf("%w: %s is null", ErrBadPayload, path)
	}
	return Value{}, fmt.Errorf("%w: %s is an object or array, not a value", ErrBadPayload, path)
}

// numberOf keeps integers exact (int64 or uint64) and reads the rest as float64.
func numberOf(s string) (Value, error) {
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		return Value{Kind: KindInt, I: i}, nil
	}
	if u, err := strconv.ParseUint(s, 10, 64); err == nil {
		return Value{Kind: KindUint, U: u}, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) {
		return Value{}, fmt.Errorf("%w: number %s is out of range", ErrBadPayload, s)
	}
	return Value{Kind: KindFloat, F: f}, nil
}

// renderSend fills a send template with payload values: strings as they
// are, numbers as sent, bools as true/false.
func renderSend(tmpl string, doc CommandPayload) (string, error) {
	parts, err := ParseTemplate(tmpl)
	if err != nil {
		return "", err
	}
	var sb strings.Builder
	for _, p := range parts {
		if p.Path == nil {
			sb.WriteString(p.Text)
			continue
		}
		x, err := doc.lookup(p.Raw)
		if err != nil {
			return "", err
		}
		switch x := x.(type) {
		case string:
			if strings.ContainsAny(x, "\r\n") {
				return "", fmt.Errorf("%w: %s holds a line break, which would end the request early", ErrBadPayload, p.Raw)
			}
			sb.WriteString(x)
		case json.Number:
			sb.WriteString(string(x))
		case bool:
			sb.WriteString(strconv.FormatBool(x))
		default:
			return "", fmt.Errorf("%w: %s is not a string, number or bool", ErrBadPayload, p.Raw)
		}
	}
	return sb.String(), nil
}

// Interface returns the value as a plain Go value for encoding/json: bool,
// int64, uint64, float64 (nil for NaN and infinities) or string.
func (v Value) Interface() any {
	switch v.Kind {
	case KindBool:
		return v.B
	case KindInt:
		return v.I
	case KindUint:
		return v.U
	case KindFloat:
		if math.IsNaN(v.F) || math.IsInf(v.F, 0) {
			return nil
		}
		return v.F
	case KindString:
		return v.S
	}
	return nil
}
