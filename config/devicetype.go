package config

import (
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"

	"fieldbridge/adapters"
	"fieldbridge/mapping"
)

func (c *checker) deviceType(t *deviceTypeBlock) *DeviceType {
	c.checkID(t.Name, t.NameRange, "device type")
	dt := &DeviceType{DeviceType: &mapping.DeviceType{Name: t.Name}, Simulate: map[string]Simulation{}}
	pointBlocks := map[string]*pointBlock{}
	for i := range t.Points {
		pb := &t.Points[i]
		if pointBlocks[pb.Name] != nil {
			c.errorf(pb.NameRange, "Duplicate point", "Device type %q already has a point named %q.", t.Name, pb.Name)
			continue
		}
		pointBlocks[pb.Name] = pb
		var p mapping.Point
		var ok bool
		if pb.FieldRange.Filename != "" || pb.ColumnRange.Filename != "" {
			p, ok = c.fieldPoint(pb, dt)
		} else {
			p, ok = c.point(pb)
		}
		if !ok {
			continue
		}
		dt.Points = append(dt.Points, p)
		if pb.Simulate != nil {
			dt.Simulate[p.Name] = c.simulation(pb.Simulate, p)
		}
	}
	for i := range t.Unreadable {
		dt.Unreadable = append(dt.Unreadable, c.unreadable(&t.Unreadable[i]))
	}
	if i, hole := dt.UnreadablePoint(); i >= 0 {
		b := pointBlocks[dt.Points[i].Name]
		c.errorf(at(b.AddressRange, b.DefRange), "Point in an unreadable range", "Point %q lies in %s %d+%d, which this device type marks unreadable.", dt.Points[i].Name, hole.Table, hole.Address, hole.Count)
	}
	for _, o := range dt.Overlaps() {
		b := pointBlocks[dt.Points[o.B].Name]
		c.errorf(at(b.AddressRange, b.DefRange), "Overlapping points disagree", "%s Give them separate addresses, or read the registers the same way.", dt.OverlapError(o))
	}
	names := make([]string, 0, len(dt.Points))
	for _, p := range dt.Points {
		names = append(names, p.Name)
	}
	seen := map[string]bool{}
	for i := range t.Events {
		eb := &t.Events[i]
		if seen[eb.Name] {
			c.errorf(eb.NameRange, "Duplicate event", "Device type %q already has an event named %q.", t.Name, eb.Name)
			continue
		}
		seen[eb.Name] = true
		dt.Events = append(dt.Events, c.event(eb, pointBlocks, names))
	}
	if len(t.Events) == 0 && len(dt.Points) > 0 {
		// Without event blocks every point goes out in one event per poll.
		dt.Events = []mapping.Event{{Name: DefaultEventName, Points: names}}
	}
	c.commands(t, dt, pointBlocks, names)
	dt.Management = c.typeManagement(t.Management, dt)
	return dt
}

// fieldPoint builds a point that reads a field of a serial-line frame. Its
// place in the register image follows from the fields before it (see
// Field); its type is float64 for a number or string for a text.
func (c *checker) fieldPoint(pb *pointBlock, dt *DeviceType) (mapping.Point, bool) {
	for _, r := range []hcl.Range{pb.TableRange, pb.AddressRange} {
		if r.Filename != "" {
			c.errorf(r, "Address on a serial-line field", "A point with field or column takes its value from the frame; remove table and address.")
			return mapping.Point{}, false
		}
	}
	f := Field{Point: pb.Name, Name: pb.Name}
	if pb.Field != nil {
		f.Name = *pb.Field
	}
	if pb.Column != nil {
		f.Column = *pb.Column
		if f.Column < 1 {
			c.errorf(pb.ColumnRange, "Invalid column", "Columns count from 1.")
		}
	}
	p := mapping.Point{Name: pb.Name, Table: adapters.HoldingRegister, Type: mapping.TypeFloat64, Bit: -1, Scale: 1, Decimals: -1}
	if pb.Type != nil && *pb.Type == "string" {
		p.Type, f.Text, f.Length = mapping.TypeString, true, defaultTextRegisters
		if pb.Length != nil {
			f.Length = *pb.Length
		}
	} else if pb.Type != nil && *pb.Type != "float64" {
		c.errorf(pb.TypeRange, "Invalid type for a field", "A serial-line field is a number (type float64, the default) or text (type = \"string\").")
		return p, false
	}
	for _, prev := range dt.Fields {
		if prev.Text {
			p.Address += uint16(prev.Length)
		} else {
			p.Address += uint16(mapping.TypeFloat64.Registers())
		}
	}
	if f.Text {
		p.Length = f.Length
	}
	pb2 := *pb // type and length are settled above
	pb2.Type, pb2.Length = nil, nil
	p, ok := c.applyPoint(p, &pb2)
	if ok {
		dt.Fields = append(dt.Fields, f)
	}
	return p, ok
}

// point builds a point of a device type. table, address and type are
// required there.
func (c *checker) point(pb *pointBlock) (mapping.Point, bool) {
	ok := true
	var missing []string
	for _, a := range []struct {
		name string
		set  bool
	}{{"table", pb.TableRange.Filename != ""}, {"address", pb.AddressRange.Filename != ""}, {"type", pb.TypeRange.Filename != ""}} {
		if !a.set {
			missing = append(missing, strconv.Quote(a.name))
		}
	}
	if len(missing) > 0 {
		c.errorf(pb.DefRange, "Missing required argument", "A point needs %s.", strings.Join(missing, ", "))
		ok = false
	}
	if !ok || pb.Table == nil || pb.Address == nil || pb.Type == nil {
		return mapping.Point{}, false // missing, or a value that did not decode (already reported)
	}
	return c.applyPoint(mapping.Point{Name: pb.Name, Bit: -1, Scale: 1, Decimals: -1}, pb)
}

// applyPoint sets on p every attribute pb gives and checks the result. A
// device type's point starts from the defaults; a device's override of a
// point starts from the type's point.
func (c *checker) applyPoint(p mapping.Point, pb *pointBlock) (mapping.Point, bool) {
	ok := true
	c.checkName(pb.Name, pb.NameRange, "point")
	if pb.Table != nil {
		if tbl, found := adapters.ParseTable(*pb.Table); found {
			p.Table = tbl
		} else {
			c.errorf(pb.TableRange, "Invalid table", "%q is not a Modbus table; use \"coil\", \"discrete\", \"input\" or \"holding\".%s",
				*pb.Table, didYouMean(*pb.Table, []string{"coil", "discrete", "input", "holding"}))
			ok = false
		}
	}
	if pb.Type != nil {
		if typ, found := mapping.ParseDataType(*pb.Type); found {
			p.Type = typ
		} else {
			c.errorf(pb.TypeRange, "Invalid type", "%q is not a data type; use one of %s.%s",
				*pb.Type, strings.Join(mapping.DataTypeNames(), ", "), didYouMean(*pb.Type, mapping.DataTypeNames()))
			ok = false
		}
	}
	if pb.Address != nil {
		if *pb.Address < 0 || *pb.Address > 65535 {
			c.errorf(pb.AddressRange, "Address out of range",
				"Addresses are zero-based protocol addresses from 0 to 65535. A register number like 40001 in a device manual means address 0 of the holding table.")
			ok = false
		} else {
			p.Address = uint16(*pb.Address)
		}
	}
	if pb.Bit != nil {
		p.Bit = *pb.Bit
		if p.Bit < 0 {
			c.errorf(pb.BitRange, "Bit index out of range", "A register has bits 0 to 15; got %d.", p.Bit)
			ok = false
		}
	}
	if pb.Length != nil {
		p.Length = *pb.Length
	}
	if pb.Scale != nil {
		p.Scale = *pb.Scale
	}
	if pb.Offset != nil {
		p.Offset = *pb.Offset
	}
	if pb.Decimals != nil {
		p.Decimals = *pb.Decimals
		if p.Decimals < 0 || p.Decimals > maxDecimals {
			c.errorf(pb.DecimalsRange, "Invalid decimals", "decimals rounds the value to 0 to %d places.", maxDecimals)
			ok = false
		}
	}
	if pb.Unit != nil {
		p.Unit = *pb.Unit
	}
	if pb.Writable != nil {
		p.Writable = *pb.Writable
	}
	if pb.Min != nil {
		p.Min = pb.Min
	}
	if pb.Max != nil {
		p.Max = pb.Max
	}
	if pb.Deadband != nil {
		p.Deadband = *pb.Deadband
	}
	if pb.DeadbandPercent != nil {
		p.DeadbandPercent = *pb.DeadbandPercent
	}
	if pb.Enum != nil {
		p.Enum = c.enumMap(pb.Enum, pb.EnumRange)
	}
	if !ok {
		return p, false
	}
	if pb.ByteOrder != nil {
		order, err := mapping.ParseByteOrder(*pb.ByteOrder, p.Type)
		if err != nil {
			c.errorf(pb.ByteOrderRange, "Invalid byte_order", "%v", err)
			ok = false
		}
		p.Order = order
	}
	for _, prob := range p.Check() {
		c.errorf(pointAttrRange(pb, prob.Attr), prob.Summary, "%s", prob.Detail)
		ok = false
	}
	return p, ok
}

// enumMap reads enum = { 0 = "off", 1 = "on" }.
func (c *checker) enumMap(m map[string]string, rng hcl.Range) map[int64]string {
	out := make(map[int64]string, len(m))
	for k, v := range m {
		n, err := strconv.ParseInt(k, 10, 64)
		if err != nil {
			c.errorf(rng, "Invalid enum", "enum keys are the integer values the device reports; %q is not an integer.", k)
			continue
		}
		out[n] = v
	}
	return out
}

// pointAttrRange finds the source range of the attribute a mapping.Problem names.
func pointAttrRange(pb *pointBlock, attr string) hcl.Range {
	ranges := map[string]hcl.Range{
		"table": pb.TableRange, "type": pb.TypeRange, "address": pb.AddressRange, "bit": pb.BitRange,
		"length": pb.LengthRange, "scale": pb.ScaleRange, "writable": pb.WritableRange, "min": pb.MinRange,
		"byte_order": pb.ByteOrderRange, "decimals": pb.DecimalsRange, "enum": pb.EnumRange,
		"deadband": at(pb.DeadbandRange, pb.DeadbandPercentRange),
	}
	if attr == "type" && pb.TypeRange.Filename != "" {
		// "type does not fit the table" reads best pointing at the type.
		return pb.TypeRange
	}
	return at(ranges[attr], pb.DefRange)
}

func (c *checker) event(eb *eventBlock, points map[string]*pointBlock, names []string) mapping.Event {
	ev := mapping.Event{Name: eb.Name, Points: eb.Points}
	c.checkID(eb.Name, eb.NameRange, "event id")
	if eb.Name == mapping.StatusEvent {
		c.errorf(eb.NameRange, "Reserved event name", "The bridge publishes %q events itself (device up/down); choose another name.", mapping.StatusEvent)
	}
	if len(eb.Points) == 0 {
		c.errorf(eb.PointsRange, "Event without points", "List the points this event carries: points = [\"a\", \"b\"].")
	}
	dup := map[string]bool{}
	for _, name := range eb.Points {
		switch {
		case points[name] == nil:
			c.errorf(eb.PointsRange, "Unknown point", "Event %q names point %q, which this device type does not define.%s", eb.Name, name, didYouMean(name, names))
		case dup[name]:
			c.errorf(eb.PointsRange, "Point listed twice", "Event %q lists point %q twice.", eb.Name, name)
		}
		dup[name] = true
	}
	if eb.Interval != nil {
		ev.Interval = c.duration(*eb.Interval, eb.IntervalRange, "interval")
	}
	if eb.OnChange != nil {
		ev.OnChange = *eb.OnChange
	}
	if eb.MaxSilence != nil {
		ev.MaxSilence = c.duration(*eb.MaxSilence, eb.MaxSilenceRange, "max_silence")
		if !ev.OnChange {
			c.warnf(eb.MaxSilenceRange, "max_silence without on_change", "max_silence only matters when on_change = true; without it the event goes out every interval anyway.")
		}
	}
	return ev
}

func (c *checker) simulation(sb *simulateBlock, p mapping.Point) Simulation {
	s := Simulation{Mode: c.enum(sb.Mode, sb.ModeRange, "mode", []string{SimFixed, SimCounter, SimSine, SimRandomWalk}), Period: defaultSimPeriod, Step: 1}
	if sb.Value != nil {
		s.Value = *sb.Value
	}
	s.Min, s.Max = s.Value, s.Value+100
	if sb.Min != nil {
		s.Min = *sb.Min
	}
	if sb.Max != nil {
		s.Max = *sb.Max
	}
	if sb.Step != nil {
		s.Step = *sb.Step
	}
	if sb.Period != nil {
		s.Period = c.duration(*sb.Period, sb.PeriodRange, "period")
		if s.Period <= 0 {
			c.errorf(sb.PeriodRange, "Invalid period", "period must be longer than zero.")
		}
	}
	if s.Min > s.Max {
		c.errorf(at(sb.MinRange, sb.DefRange), "min is greater than max", "Swap the bounds.")
	}
	if (p.Type == mapping.TypeString) && s.Mode != SimFixed {
		c.errorf(sb.ModeRange, "Cannot animate a string", "A string point can only be simulated with mode = %q.", SimFixed)
	}
	return s
}

func (c *checker) unreadable(u *unreadableBlock) adapters.Range {
	r := adapters.Range{}
	if t, ok := adapters.ParseTable(u.Table); ok {
		r.Table = t
	} else {
		c.errorf(u.TableRange, "Invalid table", "%q is not a Modbus table; use \"coil\", \"discrete\", \"input\" or \"holding\".", u.Table)
	}
	if u.Address < 0 || u.Address > 65535 || u.Count < 1 || u.Address+u.Count > 65536 {
		c.errorf(u.CountRange, "Invalid unreadable range", "address and count must describe addresses from 0 to 65535.")
		return r
	}
	r.Address, r.Count = uint16(u.Address), uint16(u.Count)
	return r
}
