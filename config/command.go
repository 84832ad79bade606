package config

import (
	"math/big"

	"github.com/zclconf/go-cty/cty"

	"fieldbridge/mapping"
)

// commands checks the command blocks of a device type and adds them to dt.
// pointBlocks holds every point block by name, also those that failed their
// own checks, so that a write naming one is not reported a second time.
func (c *checker) commands(t *deviceTypeBlock, dt *DeviceType, pointBlocks map[string]*pointBlock, names []string) {
	seen := map[string]bool{}
	for i := range t.Commands {
		cb := &t.Commands[i]
		c.checkID(cb.Name, cb.NameRange, "command id")
		if seen[cb.Name] {
			c.errorf(cb.NameRange, "Duplicate command", "Device type %q already has a command named %q.", t.Name, cb.Name)
			continue
		}
		seen[cb.Name] = true
		cmd := mapping.Command{Name: cb.Name, Timeout: mapping.DefaultCommandTimeout}
		serial := len(dt.Fields) > 0
		switch {
		case len(cb.Writes) == 0 && cb.Send == nil:
			c.errorf(cb.DefRange, "Command without action", "Add write \"<point>\" { value = ... } blocks (Modbus) or send = \"...\" (serial-line instruments).")
		case len(cb.Writes) > 0 && cb.Send != nil:
			c.errorf(cb.SendRange, "Command with writes and send", "A command either writes points or sends a text request; make two commands.")
		case cb.Send != nil && !serial:
			c.errorf(cb.SendRange, "send is for serial-line instruments", "Device type %q reads Modbus registers; write its points with write \"<point>\" { value = ... } blocks.", t.Name)
		case len(cb.Writes) > 0 && serial:
			c.errorf(cb.Writes[0].DefRange, "Writes on a serial-line instrument", "Device type %q reads frame fields, which cannot be written; send a text request with send = \"...\".", t.Name)
		}
		if cb.Send != nil {
			cmd.Send = *cb.Send
			if _, err := mapping.ParseTemplate(cmd.Send); err != nil {
				c.errorf(cb.SendRange, "Invalid send template", "%v. Placeholders are JSON paths into the payload, like {$.d.value}; write {{ and }} for literal braces.", err)
			}
		}
		for j := range cb.Writes {
			if w, ok := c.write(&cb.Writes[j], dt, pointBlocks, names); ok {
				cmd.Writes = append(cmd.Writes, w)
			}
		}
		if cb.Readback != nil {
			cmd.Readback = *cb.Readback
			if cmd.Readback && cb.Send != nil {
				c.errorf(cb.ReadbackRange, "readback needs writes", "A text request writes no point that could be read back; remove readback.")
			}
		}
		if cb.Timeout != nil {
			cmd.Timeout = c.duration(*cb.Timeout, cb.TimeoutRange, "timeout")
			if cmd.Timeout <= 0 {
				c.errorf(cb.TimeoutRange, "Invalid timeout", "timeout must be longer than zero.")
			}
		}
		dt.Commands = append(dt.Commands, cmd)
	}
}

// write checks one write block: the point exists and is writable, and the
// value is a valid JSON path or a literal the point accepts.
func (c *checker) write(wb *writeBlock, dt *DeviceType, pointBlocks map[string]*pointBlock, names []string) (mapping.Write, bool) {
	w := mapping.Write{Point: wb.Point}
	idx := dt.PointIndex(wb.Point)
	if idx < 0 {
		if pointBlocks[wb.Point] == nil {
			c.errorf(wb.PointRange, "Unknown point", "Device type %q has no point %q to write.%s", dt.Name, wb.Point, didYouMean(wb.Point, names))
		}
		return w, false
	}
	p := dt.Points[idx]
	if !p.Writable {
		c.errorf(wb.PointRange, "Point is not writable", "Point %q is not marked writable = true; only writable points can be written by a command.", p.Name)
		return w, false
	}
	v := wb.Value
	if v.IsNull() || !v.IsKnown() {
		c.errorf(wb.ValueRange, "Missing value", "value is a JSON path into the payload (\"$.d.value\") or a literal bool, number or string.")
		return w, false
	}
	var lit mapping.Value
	switch v.Type() {
	case cty.String:
		s := v.AsString()
		if mapping.IsPath(s) {
			if _, err := mapping.ParsePath(s); err != nil {
				c.errorf(wb.ValueRange, "Invalid JSON path", "%v. A path names object keys from the payload's top: \"$.d.value\".", err)
				return w, false
			}
			w.Path = s
			return w, true
		}
		lit = mapping.Value{Kind: mapping.KindString, S: s}
	case cty.Bool:
		lit = mapping.Value{Kind: mapping.KindBool, B: v.True()}
	case cty.Number:
		lit = numberValue(v.AsBigFloat())
	default:
		c.errorf(wb.ValueRange, "Invalid value", "value is a JSON path into the payload (\"$.d.value\") or a literal bool, number or string, not a %s.", v.Type().FriendlyName())
		return w, false
	}
	if _, err := p.EncodeWrite(lit); err != nil {
		c.errorf(wb.ValueRange, "Invalid value for the point", "The literal is refused: %v.", err)
		return w, false
	}
	w.Literal = lit
	return w, true
}

// numberValue keeps integers exact and everything else as a float.
func numberValue(f *big.Float) mapping.Value {
	if f.IsInt() {
		if i, acc := f.Int64(); acc == big.Exact {
			return mapping.Value{Kind: mapping.KindInt, I: i}
		}
		if u, acc := f.Uint64(); acc == big.Exact {
			return mapping.Value{Kind: mapping.KindUint, U: u}
		}
	}
	x, _ := f.Float64()
	return mapping.Value{Kind: mapping.KindFloat, F: x}
}
