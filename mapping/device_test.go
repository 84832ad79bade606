package mapping

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"fieldbridge/adapters"
)

func meterType() *DeviceType {
	return &DeviceType{
		Name: "power-meter",
		Points: []Point{
			{Name: "voltage", Table: adapters.InputRegister, Address: 0, Type: TypeFloat32, Order: OrderCDAB, Bit: -1, Scale: 1, Decimals: -1},
			{Name: "energy", Table: adapters.InputRegister, Address: 2, Type: TypeUint32, Bit: -1, Scale: 0.1, Decimals: -1},
			{Name: "breaker", Table: adapters.DiscreteInput, Address: 0, Type: TypeBool, Bit: -1, Scale: 1, Decimals: -1},
			{Name: "alarm", Table: adapters.HoldingRegister, Address: 10, Type: TypeBool, Bit: 3, Scale: 1, Decimals: -1},
			{Name: "setpoint", Table: adapters.HoldingRegister, Address: 100, Type: TypeInt16, Bit: -1, Scale: 1, Decimals: -1},
		},
		Events: []Event{
			{Name: "reading", Points: []string{"voltage", "energy", "breaker"}},
			{Name: "alarm", Points: []string{"alarm", "setpoint"}, OnChange: true, MaxSilence: time.Minute},
		},
	}
}

// reading builds a poll cycle for the meter's plan with the given values.
func meterReading(t time.Time, setpoint uint16, alarmBits uint16) adapters.Reading {
	return adapters.Reading{Device: "m1", Time: t, Blocks: []adapters.Block{
		{Range: adapters.Range{Unit: 1, Table: adapters.DiscreteInput, Address: 0, Count: 1}, Bits: []bool{true}},
		// 230.5 as float32 CDAB, then 12345 as uint32 (1234.5 kWh after scale 0.1)
		{Range: adapters.Range{Unit: 1, Table: adapters.InputRegister, Address: 0, Count: 4}, Registers: []uint16{0x8000, 0x4366, 0, 12345}},
		{Range: adapters.Range{Unit: 1, Table: adapters.HoldingRegister, Address: 10, Count: 1}, Registers: []uint16{alarmBits}},
		{Range: adapters.Range{Unit: 1, Table: adapters.HoldingRegister, Address: 100, Count: 1}, Registers: []uint16{setpoint}},
	}}
}

func TestDevicePlan(t *testing.T) {
	d, err := NewDevice("m1", meterType(), 1, PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := []adapters.Range{
		{Unit: 1, Table: adapters.DiscreteInput, Address: 0, Count: 1},
		{Unit: 1, Table: adapters.InputRegister, Address: 0, Count: 4},
		{Unit: 1, Table: adapters.HoldingRegister, Address: 10, Count: 1},
		{Unit: 1, Table: adapters.HoldingRegister, Address: 100, Count: 1},
	}
	if diff := cmp.Diff(want, d.Plan()); diff != "" {
		t.Errorf("plan (-want +got):\n%s", diff)
	}
}

func payloads(t *testing.T, outs []Output) []string {
	t.Helper()
	var got []string
	for i, o := range outs {
		p := o.AppendPayload(nil, uint64(i+1))
		if !json.Valid(p) {
			t.Fatalf("payload is not valid JSON: %s", p)
		}
		got = append(got, o.Event+" "+string(p))
	}
	return got
}

func TestDeviceProcess(t *testing.T) {
	d, err := NewDevice("m1", meterType(), 1, PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 24, 10, 15, 30, 120e6, time.UTC)

	got := payloads(t, d.Process(meterReading(t0, 500, 0x0008)))
	want := []string{
		`status {"d":{"status":"up"},"ts":"2026-11-24T10:15:30.120Z","seq":1}`,
		`reading {"d":{"voltage":230.5,"energy":1234.5,"breaker":true},"ts":"2026-11-24T10:15:30.120Z","seq":2}`,
		`alarm {"d":{"alarm":true,"setpoint":500},"ts":"2026-11-24T10:15:30.120Z","seq":3}`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("first cycle (-want +got):\n%s", diff)
	}

	// Unchanged: reading goes out every poll, alarm (on change) does not.
	got = payloads(t, d.Process(meterReading(t0.Add(5*time.Second), 500, 0x0008)))
	if len(got) != 1 || got[0][:8] != "reading " {
		t.Fatalf("second cycle = %q, want only the reading event", got)
	}
	// Changed bit: alarm goes out.
	got = payloads(t, d.Process(meterReading(t0.Add(10*time.Second), 500, 0x0000)))
	if len(got) != 2 || got[1] != `alarm {"d":{"alarm":false,"setpoint":500},"ts":"2026-11-24T10:15:40.120Z","seq":2}` {
		t.Fatalf("third cycle = %q", got)
	}
	// Heartbeat: after max_silence the alarm event goes out unchanged.
	got = payloads(t, d.Process(meterReading(t0.Add(71*time.Second), 500, 0x0000)))
	if len(got) != 2 {
		t.Fatalf("heartbeat cycle = %q, want reading and alarm", got)
	}
}

func TestDeviceStatusTransitions(t *testing.T) {
	d, _ := NewDevice("m1", meterType(), 1, PlanOptions{})
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	down := meterReading(t0, 1, 0)
	timeout := fmt.Errorf("read unit 1: %w", adapters.ErrTimeout)
	for i := range down.Blocks {
		down.Blocks[i].Err = timeout
	}
	got := payloads(t, d.Process(down))
	want := []string{`status {"d":{"status":"down","error":"read unit 1: device did not answer in time"},"ts":"2026-01-01T00:00:00.000Z","seq":1}`}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("down (-want +got):\n%s", diff)
	}
	if got := d.Process(down); len(got) != 0 {
		t.Fatalf("still down: %d outputs, want none (status only on transitions)", len(got))
	}
	// An exception on one range: device is up, the events with failed points are held back.
	partial := meterReading(t0.Add(time.Second), 1, 0)
	partial.Blocks[3].Err = &adapters.ExceptionError{Function: 3, Code: adapters.ExIllegalAddress}
	got = payloads(t, d.Process(partial))
	want = []string{
		`status {"d":{"status":"up","error":"device refused a read: modbus exception 2 (illegal data address) on function 3","failed_points":["setpoint"]},"ts":"2026-01-01T00:00:01.000Z","seq":1}`,
		`reading {"d":{"voltage":230.5,"energy":1234.5,"breaker":true},"ts":"2026-01-01T00:00:01.000Z","seq":2}`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("partial (-want +got):\n%s", diff)
	}
	got = payloads(t, d.Process(meterReading(t0.Add(2*time.Second), 1, 0)))
	if len(got) != 3 || got[0] != `status {"d":{"status":"up"},"ts":"2026-01-01T00:00:02.000Z","seq":1}` {
		t.Fatalf("recovered = %q", got)
	}
}

func TestDroppedEventsAreReported(t *testing.T) {
	d, _ := NewDevice("m1", meterType(), 1, PlanOptions{})
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	d.Process(meterReading(t0, 1, 0))
	d.NoteDropped(42)
	outs := d.Process(meterReading(t0.Add(time.Second), 1, 0))
	if len(outs) == 0 || outs[0].Event != StatusEvent {
		t.Fatalf("no status event after drops: %+v", outs)
	}
	want := `{"d":{"status":"up","dropped_events":42},"ts":"2026-01-01T00:00:01.000Z","seq":9}`
	if got := string(outs[0].AppendPayload(nil, 9)); got != want {
		t.Errorf("status = %s, want %s", got, want)
	}
	if outs := d.Process(meterReading(t0.Add(2*time.Second), 1, 0)); len(outs) > 0 && outs[0].Event == StatusEvent {
		t.Errorf("status repeated without a change")
	}
	// While the disk is full the count grows every poll: one status per
	// droppedReportEvery carries it, unless the health changes too.
	var reported []uint64
	for s := 3; s <= 3+150; s++ {
		d.NoteDropped(42 + uint64(s))
		for _, o := range d.Process(meterReading(t0.Add(time.Duration(s)*time.Second), 1, 0)) {
			if o.Event == StatusEvent {
				reported = append(reported, o.Status.Dropped)
			}
		}
	}
	if want := []uint64{42 + 61, 42 + 121}; !slices.Equal(reported, want) {
		t.Errorf("drop counts reported %v, want %v (one per minute)", reported, want)
	}
	// Space is back: the first cycle without new drops reports the total.
	outs = d.Process(meterReading(t0.Add(154*time.Second), 1, 0))
	if len(outs) == 0 || outs[0].Status == nil || outs[0].Status.Dropped != 42+153 {
		t.Errorf("drops settled: %+v, want a status carrying %d", outs, 42+153)
	}
	down := meterReading(t0.Add(155*time.Second), 1, 0)
	for i := range down.Blocks {
		down.Blocks[i].Err = adapters.ErrTimeout
	}
	d.NoteDropped(500)
	if outs := d.Process(down); len(outs) != 1 || outs[0].Status == nil || outs[0].Status.Up || outs[0].Status.Dropped != 500 {
		t.Errorf("going down with a new drop count: %+v, want one down status carrying 500", outs)
	}
}

func TestEventInterval(t *testing.T) {
	typ := meterType()
	typ.Events = []Event{{Name: "reading", Points: []string{"voltage"}, Interval: 10 * time.Second}}
	d, _ := NewDevice("m1", typ, 1, PlanOptions{})
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var sent []int
	for s := 0; s <= 30; s += 5 {
		for _, o := range d.Process(meterReading(t0.Add(time.Duration(s)*time.Second), 0, 0)) {
			if o.Event == "reading" {
				sent = append(sent, s)
			}
		}
	}
	if diff := cmp.Diff([]int{0, 10, 20, 30}, sent); diff != "" {
		t.Errorf("seconds with an event (-want +got):\n%s", diff)
	}
}

func TestAppendValue(t *testing.T) {
	scaled := &Point{Type: TypeUint16, Scale: 0.1, Decimals: -1}
	tests := []struct {
		name string
		v    Value
		p    *Point
		want string
	}{
		{"noise from scaling is hidden", Value{Kind: KindFloat, F: 2314 * 0.1}, scaled, "231.4"},
		{"float32 shortest", Value{Kind: KindFloat, F: float64(float32(0.1))}, &Point{Type: TypeFloat32, Scale: 1, Decimals: -1}, "0.1"},
		{"decimals", Value{Kind: KindFloat, F: 1.0 / 3}, &Point{Type: TypeFloat64, Scale: 1, Decimals: 2}, "0.33"},
		{"NaN is null", Value{Kind: KindFloat, F: nan()}, &Point{Type: TypeFloat32, Scale: 1, Decimals: -1}, "null"},
		{"int", Value{Kind: KindInt, I: -5}, nil, "-5"},
		{"string escaped", Value{Kind: KindString, S: "a\"b\\\x01\xff"}, nil, `"a\"b\\\u0001` + "\ufffd" + `"`},
	}
	for _, tt := range tests {
		got := string(appendValue(nil, tt.v, tt.p))
		if got != tt.want {
			t.Errorf("%s: appendValue(%+v) = %s, want %s", tt.name, tt.v, got, tt.want)
		}
	}
}

func TestBitPointByteOrder(t *testing.T) {
	ab := Point{Name: "a", Table: adapters.HoldingRegister, Type: TypeBool, Bit: 0, Scale: 1, Decimals: -1}
	ba := ab
	ba.Order = OrderBADC
	b := &adapters.Block{Range: adapters.Range{Table: adapters.HoldingRegister, Count: 1}, Registers: []uint16{0x0100}}
	if v, _ := ab.decode(b); v.B {
		t.Errorf("AB: bit 0 of 0x0100 = true, want false")
	}
	if v, _ := ba.decode(b); !v.B {
		t.Errorf("BA: bit 0 of 0x0100 (low byte first) = false, want true")
	}
	if got := ba.SetRegisterBit(0, true); got != 0x0100 {
		t.Errorf("BA: SetRegisterBit(0, true) = %#04x, want 0x0100", got)
	}
}

func TestDeadbandAndEnum(t *testing.T) {
	typ := &DeviceType{
		Name: "drive",
		Points: []Point{
			{Name: "speed", Table: adapters.HoldingRegister, Address: 0, Type: TypeUint16, Bit: -1, Scale: 1, Decimals: -1, Deadband: 5},
			{Name: "load", Table: adapters.HoldingRegister, Address: 1, Type: TypeUint16, Bit: -1, Scale: 1, Decimals: -1, DeadbandPercent: 10},
			{Name: "state", Table: adapters.HoldingRegister, Address: 2, Type: TypeUint16, Bit: -1, Scale: 1, Decimals: -1, Enum: map[int64]string{0: "stopped", 1: "running"}},
		},
		Events: []Event{{Name: "drive", Points: []string{"speed", "load", "state"}, OnChange: true}},
	}
	d, err := NewDevice("d1", typ, 1, PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cycle := func(i int, speed, load, state uint16) []string {
		r := adapters.Reading{Device: "d1", Time: t0.Add(time.Duration(i) * time.Second), Blocks: []adapters.Block{
			{Range: d.Plan()[0], Registers: []uint16{speed, load, state}},
		}}
		var out []string
		for _, o := range d.Process(r) {
			if o.Event == "drive" {
				out = append(out, string(o.AppendPayload(nil, 0)))
			}
		}
		return out
	}
	steps := []struct {
		speed, load, state uint16
		sent               bool
	}{
		{1000, 100, 1, true},  // first
		{1004, 100, 1, false}, // inside the absolute deadband of 5
		{1006, 100, 1, true},  // 6 above the last value sent
		{1006, 109, 1, false}, // 9% of 100
		{1006, 111, 1, true},  // 11%
		{1006, 111, 0, true},  // state changed
		{1006, 111, 7, true},  // unknown enum value
	}
	for i, s := range steps {
		got := cycle(i, s.speed, s.load, s.state)
		if (len(got) == 1) != s.sent {
			t.Fatalf("step %d %+v: events %q, want sent=%v", i, s, got, s.sent)
		}
	}
	if got := cycle(99, 1006, 111, 0); len(got) != 1 || !strings.Contains(got[0], `"state":"stopped"`) {
		t.Errorf("enum name: %q", got)
	}
	if got := cycle(100, 1006, 111, 7); len(got) != 1 || !strings.Contains(got[0], `"state":"7"`) {
		t.Errorf("unknown enum value: %q", got)
	}
}

func TestPlanSkipsUnreadable(t *testing.T) {
	typ := &DeviceType{Name: "t", Points: []Point{
		{Name: "a", Table: adapters.HoldingRegister, Address: 0, Type: TypeUint16, Bit: -1, Scale: 1},
		{Name: "b", Table: adapters.HoldingRegister, Address: 4, Type: TypeUint16, Bit: -1, Scale: 1},
	}, Unreadable: []adapters.Range{{Table: adapters.HoldingRegister, Address: 2, Count: 1}}}
	d, err := NewDevice("d", typ, 1, PlanOptions{MaxGap: 10})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(d.Plan()); n != 2 {
		t.Errorf("plan %v reads across the unreadable register 2", d.Plan())
	}
}

func nan() float64 { var z float64; return z / z }

func BenchmarkPayload10Points(b *testing.B) {
	o := Output{Event: "reading", Time: time.Now()}
	p := &Point{Type: TypeUint16, Scale: 0.1, Decimals: -1}
	for i := range 10 {
		o.Fields = append(o.Fields, Field{Name: fmt.Sprintf("point_%d", i), Value: Value{Kind: KindFloat, F: float64(i) * 12.3}, Point: p})
	}
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = o.AppendPayload(buf[:0], 42)
	}
}

// TestProcessAllocations pins the steady-state cost of a poll cycle: once the
// status has gone out, decoding a reading and building its due events
// allocates nothing (the scratch is the device's, reused every call).
func TestProcessAllocations(t *testing.T) {
	d, err := NewDevice("m1", meterType(), 1, PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if outs := d.Process(meterReading(t0, 500, 0x0008)); len(outs) != 3 {
		t.Fatalf("first cycle gave %d events, want status, reading and alarm", len(outs))
	}
	// The readings are built beforehand: only Process is counted. The alarm
	// bit flips every cycle, so both events are due each time.
	readings := []adapters.Reading{meterReading(t0, 500, 0), meterReading(t0, 500, 0x0008)}
	i := 0
	var events int
	allocs := testing.AllocsPerRun(100, func() {
		i++
		r := readings[(i+1)%2]
		r.Time = t0.Add(time.Duration(i) * time.Second)
		events += len(d.Process(r))
	})
	if allocs != 0 {
		t.Errorf("Process allocates %.1f times per cycle, want 0", allocs)
	}
	if events != 101*2 {
		t.Errorf("got %d events in 101 cycles, want 2 per cycle (reading and alarm)", events)
	}
}

// TestProcessReusesItsResult documents the contract that makes Process
// allocation-free: its result is valid until the next call only.
func TestProcessReusesItsResult(t *testing.T) {
	d, _ := NewDevice("m1", meterType(), 1, PlanOptions{})
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	d.Process(meterReading(t0, 500, 0))
	first := d.Process(meterReading(t0.Add(time.Second), 500, 0))
	kept := slices.Clone(first[0].Fields)
	second := d.Process(meterReading(t0.Add(2*time.Second), 700, 0x0008))
	if &first[0].Fields[0] != &second[0].Fields[0] {
		t.Error("the second result does not reuse the first one's fields")
	}
	if kept[0].Value != second[0].Fields[0].Value || len(second) != 2 || second[1].Fields[1].Value.I != 700 {
		t.Errorf("second cycle = %+v, want the reading as before and the alarm with setpoint 700", second)
	}
}

// BenchmarkProcess is one steady-state poll cycle of a 20-point float32
// device with one event (the shape of BenchmarkPollPath's meters).
func BenchmarkProcess(b *testing.B) {
	typ := &DeviceType{Name: "meter"}
	var names []string
	for p := range 20 {
		name := fmt.Sprintf("p%d", p)
		typ.Points = append(typ.Points, Point{Name: name, Table: adapters.InputRegister, Address: uint16(2 * p), Type: TypeFloat32, Bit: -1, Scale: 1, Decimals: -1})
		names = append(names, name)
	}
	typ.Events = []Event{{Name: "reading", Points: names}}
	d, err := NewDevice("m1", typ, 1, PlanOptions{})
	if err != nil {
		b.Fatal(err)
	}
	r := adapters.Reading{Device: "m1", Time: time.Now()}
	for _, rg := range d.Plan() {
		r.Blocks = append(r.Blocks, adapters.Block{Range: rg, Registers: make([]uint16, rg.Count)})
	}
	payload := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		r.Time = r.Time.Add(time.Second)
		for _, o := range d.Process(r) {
			payload = o.AppendPayload(payload[:0], 1)
		}
	}
}
