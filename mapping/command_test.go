package mapping

import (
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"fieldbridge/adapters"
)

func ptr(f float64) *float64 { return &f }

// TestEncodeWriteRoundTrip is the property of issue 10: for every data type
// × byte order, with and without scale/offset, EncodeWrite then decoding
// the written registers returns the value. Values are drawn at random from
// what the type represents exactly; the seed is fixed so failures repeat.
func TestEncodeWriteRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(10, 10))
	for typ := TypeBool; typ <= TypeBCD32; typ++ {
		for order := OrderABCD; order <= OrderDCBA; order++ {
			for _, scaled := range []bool{false, true} {
				if scaled && (typ == TypeBool || typ == TypeString) {
					continue
				}
				p := Point{Name: "p", Table: adapters.HoldingRegister, Address: 7, Type: typ, Order: order, Bit: -1, Scale: 1, Decimals: -1, Writable: true}
				if typ == TypeString {
					p.Length = 5
				}
				if scaled {
					p.Scale, p.Offset = 0.5, -20 // exact in binary, so no rounding noise
				}
				for range 200 {
					want := randomValue(rng, p)
					w, err := p.EncodeWrite(want)
					if err != nil {
						t.Fatalf("%v %s scaled=%v: EncodeWrite(%v): %v", typ, order.Name(typ), scaled, want, err)
					}
					if len(w.Registers) != p.Registers() || w.Mask != 0 || w.Table != p.Table || w.Address != p.Address {
						t.Fatalf("%v %s: write %+v does not fit the point", typ, order.Name(typ), w)
					}
					got, err := p.Decode(adapters.Block{Range: p.ReadRange(1), Registers: w.Registers})
					if err != nil {
						t.Fatalf("%v %s: decode %v: %v", typ, order.Name(typ), w.Registers, err)
					}
					if !sameValue(got, want) {
						t.Fatalf("%v %s scaled=%v: wrote %v, reads back %v (registers %04X)", typ, order.Name(typ), scaled, want, got, w.Registers)
					}
				}
			}
		}
	}
}

// randomValue draws a value the point represents exactly.
func randomValue(rng *rand.Rand, p Point) Value {
	var raw Value
	switch p.Type {
	case TypeBool:
		return Value{Kind: KindBool, B: rng.IntN(2) == 1}
	case TypeString:
		n := rng.IntN(2*p.Length + 1)
		b := make([]byte, n)
		for i := range b {
			b[i] = byte('!' + rng.IntN(94)) // printable, no trailing space or NUL to trim
		}
		return Value{Kind: KindString, S: string(b)}
	case TypeInt16:
		raw = Value{Kind: KindInt, I: int64(int16(rng.Uint32()))}
	case TypeInt32:
		raw = Value{Kind: KindInt, I: int64(int32(rng.Uint32()))}
	case TypeInt64:
		raw = Value{Kind: KindInt, I: int64(rng.Uint64())}
	case TypeUint16:
		raw = Value{Kind: KindUint, U: uint64(uint16(rng.Uint32()))}
	case TypeUint32:
		raw = Value{Kind: KindUint, U: uint64(rng.Uint32())}
	case TypeUint64:
		raw = Value{Kind: KindUint, U: rng.Uint64()}
	case TypeBCD16:
		raw = Value{Kind: KindUint, U: rng.Uint64N(10000)}
	case TypeBCD32:
		raw = Value{Kind: KindUint, U: rng.Uint64N(100000000)}
	case TypeFloat32:
		raw = Value{Kind: KindFloat, F: float64(math.Float32frombits(rng.Uint32()&^0x7F800000 | 0x3F800000))} // finite
	case TypeFloat64:
		raw = Value{Kind: KindFloat, F: math.Float64frombits(rng.Uint64()&^(0x7FF<<52) | 0x3FF<<52)}
	}
	if !p.Scaled() {
		return raw
	}
	// Keep scaled raw values within 2^50 so raw*0.5-20 stays exact.
	f, _ := raw.Float()
	if math.Abs(f) > 1<<50 {
		f = math.Mod(f, 1<<50)
	}
	if p.Type == TypeFloat32 {
		f = float64(float32(f))
	}
	return Value{Kind: KindFloat, F: f*p.Scale + p.Offset}
}

// TestEncodeWriteBitOfRegister: a bool point on one bit of a register
// becomes a mask and value; applying it to any register changes that bit
// and no other, and decoding gives the value back, in both byte orders.
func TestEncodeWriteBitOfRegister(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, order := range []ByteOrder{OrderABCD, OrderBADC} {
		for bit := range 16 {
			p := Point{Name: "b", Table: adapters.HoldingRegister, Address: 3, Type: TypeBool, Order: order, Bit: bit, Scale: 1, Writable: true}
			for _, on := range []bool{false, true} {
				w, err := p.EncodeWrite(Value{Kind: KindBool, B: on})
				if err != nil {
					t.Fatal(err)
				}
				if w.Mask == 0 || w.Mask&(w.Mask-1) != 0 || len(w.Registers) != 1 || w.Registers[0]&^w.Mask != 0 {
					t.Fatalf("bit %d %s: write %+v is not one bit", bit, order.Name(TypeBool), w)
				}
				old := uint16(rng.Uint32())
				reg := old&^w.Mask | w.Registers[0]&w.Mask
				got, err := p.Decode(adapters.Block{Range: p.ReadRange(1), Registers: []uint16{reg}})
				if err != nil || got.B != on {
					t.Errorf("bit %d %s: set %v, reads %v (%v)", bit, order.Name(TypeBool), on, got, err)
				}
				if reg&^w.Mask != old&^w.Mask {
					t.Errorf("bit %d: other bits changed: %04X -> %04X", bit, old, reg)
				}
			}
		}
	}
}

func TestCheckWrite(t *testing.T) {
	speed := Point{Name: "speed", Table: adapters.HoldingRegister, Type: TypeInt16, Bit: -1, Scale: 1, Writable: true, Min: ptr(-10), Max: ptr(100)}
	mode := Point{Name: "mode", Table: adapters.HoldingRegister, Type: TypeUint16, Bit: -1, Scale: 1, Writable: true, Enum: map[int64]string{0: "off", 2: "auto"}}
	name := Point{Name: "name", Table: adapters.HoldingRegister, Type: TypeString, Length: 2, Bit: -1, Scale: 1, Writable: true}
	coil := Point{Name: "run", Table: adapters.Coil, Type: TypeBool, Bit: -1, Scale: 1, Writable: true}
	ro := speed
	ro.Writable = false
	cases := []struct {
		name string
		p    Point
		v    Value
		want Value
		err  error
	}{
		{"in range", speed, Value{Kind: KindInt, I: 100}, Value{Kind: KindInt, I: 100}, nil},
		{"above max", speed, Value{Kind: KindInt, I: 101}, Value{}, ErrBadValue},
		{"below min", speed, Value{Kind: KindFloat, F: -10.5}, Value{}, ErrBadValue},
		{"string for number", speed, Value{Kind: KindString, S: "5"}, Value{}, ErrBadValue},
		{"bool for number", speed, Value{Kind: KindBool, B: true}, Value{}, ErrBadValue},
		{"NaN", speed, Value{Kind: KindFloat, F: math.NaN()}, Value{}, ErrBadValue},
		{"not writable", ro, Value{Kind: KindInt, I: 1}, Value{}, ErrNotWritable},
		{"enum name", mode, Value{Kind: KindString, S: "auto"}, Value{Kind: KindInt, I: 2}, nil},
		{"enum number", mode, Value{Kind: KindInt, I: 0}, Value{Kind: KindInt, I: 0}, nil},
		{"enum unknown name", mode, Value{Kind: KindString, S: "manual"}, Value{}, ErrBadValue},
		{"enum unknown number", mode, Value{Kind: KindInt, I: 1}, Value{}, ErrBadValue},
		{"string fits", name, Value{Kind: KindString, S: "abcd"}, Value{Kind: KindString, S: "abcd"}, nil},
		{"string too long", name, Value{Kind: KindString, S: "abcde"}, Value{}, ErrBadValue},
		{"coil bool", coil, Value{Kind: KindBool, B: true}, Value{Kind: KindBool, B: true}, nil},
		{"coil number", coil, Value{Kind: KindInt, I: 1}, Value{}, ErrBadValue},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := c.p.CheckWrite(c.v)
			if !errors.Is(err, c.err) {
				t.Fatalf("CheckWrite(%v) error = %v, want %v", c.v, err, c.err)
			}
			if c.err == nil && got != c.want {
				t.Errorf("CheckWrite(%v) = %v, want %v", c.v, got, c.want)
			}
		})
	}
}

func commandType() *DeviceType {
	return &DeviceType{
		Name: "drive",
		Points: []Point{
			{Name: "speed", Table: adapters.HoldingRegister, Address: 10, Type: TypeInt32, Order: OrderCDAB, Bit: -1, Scale: 0.1, Decimals: -1, Writable: true, Min: ptr(0), Max: ptr(1500)},
			{Name: "run", Table: adapters.Coil, Address: 2, Type: TypeBool, Bit: -1, Scale: 1, Decimals: -1, Writable: true},
			{Name: "alarm_ack", Table: adapters.HoldingRegister, Address: 20, Type: TypeBool, Bit: 4, Scale: 1, Decimals: -1, Writable: true},
			{Name: "mode", Table: adapters.HoldingRegister, Address: 21, Type: TypeUint16, Bit: -1, Scale: 1, Decimals: -1, Writable: true, Enum: map[int64]string{0: "off", 2: "auto"}},
			{Name: "temp", Table: adapters.InputRegister, Address: 0, Type: TypeInt16, Bit: -1, Scale: 1, Decimals: -1},
		},
		Commands: []Command{
			{Name: "start", Readback: true, Writes: []Write{
				{Point: "speed", Path: "$.d.rpm"},
				{Point: "mode", Literal: Value{Kind: KindString, S: "auto"}},
				{Point: "run", Literal: Value{Kind: KindBool, B: true}},
				{Point: "alarm_ack", Path: "$.d.ack"},
			}},
			{Name: "set_mode", Writes: []Write{{Point: "mode", Path: "$.d.value"}}},
			{Name: "text", Send: "SP {$.d.value} {$.d.unit}\r\n"},
		},
	}
}

func TestPlanCommand(t *testing.T) {
	dt := commandType()
	plan, err := dt.PlanCommand("d1", 3, "start", []byte(`{"d":{"rpm":1234.5,"ack":true},"reqId":"r1"}`))
	if err != nil {
		t.Fatal(err)
	}
	wantWrites := []adapters.WriteRequest{
		{Device: "d1", Unit: 3, Table: adapters.HoldingRegister, Address: 10, Registers: []uint16{12345, 0}},
		{Device: "d1", Unit: 3, Table: adapters.HoldingRegister, Address: 21, Registers: []uint16{2}},
		{Device: "d1", Unit: 3, Table: adapters.Coil, Address: 2, Bits: []bool{true}},
		{Device: "d1", Unit: 3, Table: adapters.HoldingRegister, Address: 20, Registers: []uint16{1 << 4}, Mask: 1 << 4},
	}
	if diff := cmp.Diff(wantWrites, plan.Writes); diff != "" {
		t.Errorf("writes (-want +got):\n%s", diff)
	}
	var written []string
	for _, f := range plan.Written {
		written = append(written, f.Name+"="+f.Value.String())
	}
	if got, want := strings.Join(written, " "), `speed=1234.5 mode="auto" run=true alarm_ack=true`; got != want {
		t.Errorf("written = %s, want %s", got, want)
	}
	if len(plan.Readback) != 4 || plan.Readback[0] != (adapters.Range{Unit: 3, Table: adapters.HoldingRegister, Address: 10, Count: 2}) {
		t.Errorf("readback = %v", plan.Readback)
	}
	blocks := []adapters.Block{
		{Range: plan.Readback[0], Registers: []uint16{12345, 0}},
		{Range: plan.Readback[1], Registers: []uint16{2}},
		{Range: plan.Readback[2], Bits: []bool{true}},
		{Range: plan.Readback[3], Registers: []uint16{0xFFFF}},
	}
	back, err := plan.DecodeReadback(blocks)
	if err != nil || len(back) != 4 || back[1].Value.S != "auto" || !back[3].Value.B {
		t.Errorf("DecodeReadback = %v, %v", back, err)
	}

	text, err := dt.PlanCommand("d1", 1, "text", []byte(`{"d":{"value":12.50,"unit":"kg"}}`))
	if err != nil || len(text.Writes) != 1 || string(text.Writes[0].Text) != "SP 12.50 kg\r\n" {
		t.Errorf("text plan = %+v, %v", text, err)
	}
}

// TestPlanCommandRefusals: every bad command fails before anything is
// planned, with the error that says why.
func TestPlanCommandRefusals(t *testing.T) {
	dt := commandType()
	cases := []struct {
		name, command, payload string
		err                    error
	}{
		{"unknown command", "fly", `{}`, ErrUnknownCommand},
		{"not JSON", "start", `{"d":`, ErrBadPayload},
		{"array", "start", `[1,2]`, ErrBadPayload},
		{"null", "start", `null`, ErrBadPayload},
		{"trailing data", "start", `{"d":{"rpm":1,"ack":true}} {}`, ErrBadPayload},
		{"missing value", "start", `{"d":{"ack":true}}`, ErrBadPayload},
		{"d not an object", "start", `{"d":5}`, ErrBadPayload},
		{"object value", "start", `{"d":{"rpm":{"x":1},"ack":true}}`, ErrBadPayload},
		{"null value", "start", `{"d":{"rpm":null,"ack":true}}`, ErrBadPayload},
		{"above max", "start", `{"d":{"rpm":1500.1,"ack":true}}`, ErrBadValue},
		{"below min", "start", `{"d":{"rpm":-1,"ack":true}}`, ErrBadValue},
		{"wrong type", "start", `{"d":{"rpm":"fast","ack":true}}`, ErrBadValue},
		{"bool as number", "start", `{"d":{"rpm":10,"ack":1}}`, ErrBadValue},
		{"enum unknown", "set_mode", `{"d":{"value":"manual"}}`, ErrBadValue},
		{"huge number", "set_mode", `{"d":{"value":1e400}}`, ErrBadPayload},
		{"text line break", "text", `{"d":{"value":"1\r\nRESET","unit":"kg"}}`, ErrBadPayload},
		{"text object", "text", `{"d":{"value":[1],"unit":"kg"}}`, ErrBadPayload},
		{"too large", "start", `{"d":{"pad":"` + strings.Repeat("x", MaxCommandPayload) + `"}}`, ErrBadPayload},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			plan, err := dt.PlanCommand("d1", 1, c.command, []byte(c.payload))
			if !errors.Is(err, c.err) {
				t.Fatalf("PlanCommand(%s, %.60s) error = %v, want %v", c.command, c.payload, err, c.err)
			}
			if len(plan.Writes) != 0 {
				t.Errorf("a refused command planned writes: %v", plan.Writes)
			}
		})
	}
}

// FuzzCommandPayload: planning a command from any payload never panics,
// and a plan it returns holds only writes that fit their points' ranges
// and values that pass the points' checks.
func FuzzCommandPayload(f *testing.F) {
	f.Add("start", []byte(`{"d":{"rpm":1234.5,"ack":true},"reqId":"r1"}`))
	f.Add("set_mode", []byte(`{"d":{"value":"auto"}}`))
	f.Add("text", []byte(`{"d":{"value":1,"unit":"x"}}`))
	f.Add("start", []byte(`{"d":{"rpm":1e308,"ack":false}}`))
	f.Fuzz(func(t *testing.T, command string, payload []byte) {
		dt := commandType()
		plan, err := dt.PlanCommand("d", 1, command, payload)
		if err != nil {
			if len(plan.Writes) != 0 {
				t.Fatalf("error %v with writes %v", err, plan.Writes)
			}
			return
		}
		for i, w := range plan.Writes {
			if w.Text != nil {
				continue
			}
			p := plan.Written[i].Point
			if w.Count() != p.Registers() || w.Address != p.Address {
				t.Fatalf("write %v does not fit point %s", w, p.Name)
			}
			if _, err := p.CheckWrite(plan.Written[i].Value); err != nil {
				t.Fatalf("written value %v of %s fails its check: %v", plan.Written[i].Value, p.Name, err)
			}
		}
	})
}
