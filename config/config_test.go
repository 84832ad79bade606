package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"fieldbridge/adapters"
	"fieldbridge/mapping"
)

var update = flag.Bool("update", false, "rewrite the diagnostics golden files")

// testEnv has no environment variables and no files, so results do not
// depend on the machine.
var testEnv = Environment{
	LookupEnv: func(string) (string, bool) { return "", false },
	ReadFile:  func(p string) ([]byte, error) { return nil, errors.New("open " + p + ": no such file or directory") },
}

func TestExampleLoadsClean(t *testing.T) {
	cfg, diags := Load("../config.example.hcl")
	if len(diags) > 0 {
		var buf bytes.Buffer
		Render(&buf, cfg.Files, diags)
		t.Fatalf("config.example.hcl has diagnostics:\n%s", buf.String())
	}
	if len(cfg.Devices) != 1 || cfg.Devices[0].Type.Name != "power-meter" {
		t.Fatalf("devices = %+v", cfg.Devices)
	}
}

// TestInvalidGolden loads every testdata/invalid/*.hcl and compares the
// rendered diagnostics with its .golden file. Run with -update to rewrite.
func TestInvalidGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/invalid/*.hcl")
	if len(files) == 0 {
		t.Fatal("no test files")
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			src, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			cfg, diags := Parse(filepath.Base(path), src, testEnv)
			if !diags.HasErrors() {
				t.Fatalf("Parse(%s) reported no error", path)
			}
			var buf bytes.Buffer
			Render(&buf, cfg.Files, diags)
			golden := strings.TrimSuffix(path, ".hcl") + ".golden"
			if *update {
				if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), buf.String()); diff != "" {
				t.Errorf("diagnostics of %s differ from %s (-want +got); run go test ./config -update if the change is intended:\n%s", path, golden, diff)
			}
		})
	}
}

func TestEnvAndDefaults(t *testing.T) {
	src := `
platform { org = "ab12cd" }
bus "b" {
  modbus_tcp { address = "127.0.0.1:1502" }
}
device_type "t" {
  point "p" {
    table   = "holding"
    address = 3
    type    = "int32"
    byte_order = "CDAB"
    scale   = 0.5
  }
}
device "d1" {
  type  = "t"
  bus   = "b"
  token = env("D1_TOKEN")
}
device "d2" {
  type       = "t"
  bus        = "b"
  unit       = 9
  poll       = "250ms"
  token_file = "d2.token"
}
`
	env := Environment{
		LookupEnv: func(n string) (string, bool) {
			return map[string]string{"D1_TOKEN": "tok-from-env"}[n], n == "D1_TOKEN"
		},
		ReadFile: func(p string) ([]byte, error) {
			if p != filepath.Join("/etc/bridge", "d2.token") {
				return nil, errors.New("unexpected path " + p)
			}
			return []byte("  tok-from-file\n"), nil
		},
	}
	cfg, diags := Parse("/etc/bridge/bridge.hcl", []byte(src), env)
	if diags.HasErrors() {
		t.Fatalf("diagnostics: %v", diags)
	}
	p := cfg.Platform
	if p.Mode != ModeDevice || !p.TLS || p.Port != 8883 || p.QoS != 1 || p.CleanSession || p.KeepAlive != time.Minute || p.Domain != DefaultDomain {
		t.Errorf("platform defaults = %+v", p)
	}
	if b := cfg.Buffer; b.MaxBytes != 256<<20 || b.OnFull != "drop_oldest" || b.Sync != time.Second || b.InFlight != 64 || b.MinFree != 64<<20 {
		t.Errorf("buffer defaults = %+v", b)
	}
	d1, d2 := cfg.Devices[0], cfg.Devices[1]
	if d1.Token != "tok-from-env" || d1.Unit != 1 || d1.Poll != DefaultPoll {
		t.Errorf("d1 = %+v", d1)
	}
	if d2.Token != "tok-from-file" || d2.Unit != 9 || d2.Poll != 250*time.Millisecond {
		t.Errorf("d2 = %+v", d2)
	}
	pt := cfg.DeviceTypes[0].Points[0]
	want := mapping.Point{Name: "p", Table: adapters.HoldingRegister, Address: 3, Type: mapping.TypeInt32, Order: mapping.OrderCDAB, Bit: -1, Scale: 0.5, Decimals: -1}
	if diff := cmp.Diff(want, pt); diff != "" {
		t.Errorf("point (-want +got):\n%s", diff)
	}
	ev := cfg.DeviceTypes[0].Events
	if len(ev) != 1 || ev[0].Name != DefaultEventName || len(ev[0].Points) != 1 {
		t.Errorf("default event = %+v", ev)
	}
}

func TestQuickstartNeedsNoToken(t *testing.T) {
	src := `
platform { org = "quickstart" }
bus "b" {
  modbus_tcp { address = "127.0.0.1:1502" }
}
device_type "t" {
  point "p" {
    table   = "holding"
    address = 0
    type    = "uint16"
  }
}
device "d1" {
  type = "t"
  bus  = "b"
}
`
	cfg, diags := Parse("q.hcl", []byte(src), testEnv)
	if diags.HasErrors() {
		t.Fatalf("diagnostics: %v", diags)
	}
	if p := cfg.Platform; p.Mode != ModeQuickstart || p.TLS || p.Port != 1883 || p.QoS != 0 {
		t.Errorf("quickstart platform = %+v", p)
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{
		{"256MiB", 256 << 20}, {"2GB", 2e9}, {"1048576", 1 << 20}, {"1.5KiB", 1536}, {"64 MiB", 64 << 20},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "lots", "-1MiB", "MiB"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) succeeded", bad)
		}
	}
}

// TestDeviceMapsGolden loads maps written the way device manuals describe
// registers, feeds each device the registers in registers.json and compares
// the events with events.golden. Run with -update to rewrite.
func TestDeviceMapsGolden(t *testing.T) {
	dirs, _ := filepath.Glob("testdata/maps/*")
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			cfg, diags := Load(filepath.Join(dir, "config.hcl"))
			if diags.HasErrors() {
				t.Fatalf("config: %v", diags)
			}
			raw, err := os.ReadFile(filepath.Join(dir, "registers.json"))
			if err != nil {
				t.Fatal(err)
			}
			var tables map[string]map[string][]uint16
			if err := json.Unmarshal(raw, &tables); err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			at := time.Date(2026, 11, 24, 10, 15, 30, 120e6, time.UTC)
			for _, d := range cfg.Devices {
				dev, err := mapping.NewDevice(d.Name, d.Type.DeviceType, d.Unit, d.Plan)
				if err != nil {
					t.Fatal(err)
				}
				r := adapters.Reading{Device: d.Name, Time: at}
				for _, rng := range dev.Plan() {
					r.Blocks = append(r.Blocks, blockFrom(t, tables, rng))
				}
				for i, o := range dev.Process(r) {
					fmt.Fprintf(&out, "%s %s\n", o.Event, o.AppendPayload(nil, uint64(i+1)))
				}
			}
			golden := filepath.Join(dir, "events.golden")
			if *update {
				if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./config -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), out.String()); diff != "" {
				t.Errorf("events differ from %s (-want +got); run go test ./config -update if intended:\n%s", golden, diff)
			}
		})
	}
}

// blockFrom fills a planned range from the test's register image; addresses
// not listed read as zero.
func blockFrom(t *testing.T, tables map[string]map[string][]uint16, r adapters.Range) adapters.Block {
	t.Helper()
	image := make([]uint16, 65536+125)
	for start, vals := range tables[r.Table.String()] {
		a, err := strconv.Atoi(start)
		if err != nil {
			t.Fatal(err)
		}
		copy(image[a:], vals)
	}
	b := adapters.Block{Range: r}
	if r.Table.IsBit() {
		for _, v := range image[r.Address:r.End()] {
			b.Bits = append(b.Bits, v != 0)
		}
	} else {
		b.Registers = append(b.Registers, image[r.Address:r.End()]...)
	}
	return b
}

func TestSerialBuses(t *testing.T) {
	src := `
platform { org = "ab12cd" }
bus "rs485" {
  modbus_rtu {
    port    = "/dev/ttyUSB0"
    baud    = 9600
    parity  = "none"
    silence = "5ms"
  }
}
bus "gw" {
  modbus_rtu_tcp { address = "10.0.0.7:4001" }
}
bus "scale" {
  serial_line {
    port      = "/dev/ttyUSB1"
    delimiter = "\r\n"
    separator = ","
    request   = "W\r"
  }
}
device_type "scale" {
  point "status" {
    column = 1
    type   = "string"
    length = 2
  }
  point "weight" {
    column = 2
    unit   = "kg"
    scale  = 1000
  }
  point "tare" {
    column = 3
  }
}
device "s1" {
  type  = "scale"
  bus   = "scale"
  token = "secret-token"
}
`
	cfg, diags := Parse("serial.hcl", []byte(src), testEnv)
	if diags.HasErrors() {
		t.Fatalf("diagnostics: %v", diags)
	}
	rtu := cfg.Buses[0]
	if rtu.Kind != BusModbusRTU || rtu.Serial.Port != "/dev/ttyUSB0" || rtu.Serial.Baud != 9600 || rtu.Serial.Parity != "none" || rtu.Serial.Silence != 5*time.Millisecond {
		t.Errorf("rtu bus = %+v", rtu)
	}
	if gw := cfg.Buses[1]; gw.Kind != BusModbusRTUTCP || gw.Address != "10.0.0.7:4001" {
		t.Errorf("rtu over tcp bus = %+v", gw)
	}
	line := cfg.Buses[2]
	if line.Kind != BusSerialLine || line.Line.Separator != "," || line.Line.Request != "W\r" || line.Line.Delimiter != "\r\n" {
		t.Errorf("serial_line bus = %+v %+v", line, line.Line)
	}
	typ := cfg.DeviceTypes[0]
	wantFields := []Field{{Point: "status", Name: "status", Column: 1, Text: true, Length: 2}, {Point: "weight", Name: "weight", Column: 2}, {Point: "tare", Name: "tare", Column: 3}}
	if diff := cmp.Diff(wantFields, typ.Fields); diff != "" {
		t.Errorf("fields (-want +got):\n%s", diff)
	}
	var addrs []uint16
	for _, p := range typ.Points {
		addrs = append(addrs, p.Address)
	}
	if diff := cmp.Diff([]uint16{0, 2, 6}, addrs); diff != "" {
		t.Errorf("register image addresses (-want +got):\n%s", diff)
	}
	if typ.Points[0].Type != mapping.TypeString || typ.Points[1].Type != mapping.TypeFloat64 || typ.Points[1].Scale != 1000 {
		t.Errorf("points = %+v", typ.Points)
	}
}

// TestBufferMinFree: min_free takes a size (small partitions set it below
// the 64MiB default); TestInvalidGolden covers the refusals.
func TestBufferMinFree(t *testing.T) {
	for src, want := range map[string]int64{
		`buffer { min_free = "16MiB" }`: 16 << 20,
		`buffer { min_free = "1GB" }`:   1e9,
		`buffer { dir = "/tmp/b" }`:     DefaultMinFree,
	} {
		cfg, diags := Parse("b.hcl", []byte(`platform { org = "quickstart" }`+"\n"+src), testEnv)
		if diags.HasErrors() {
			t.Fatalf("%s: diagnostics: %v", src, diags)
		}
		if cfg.Buffer.MinFree != want {
			t.Errorf("%s: MinFree = %d, want %d", src, cfg.Buffer.MinFree, want)
		}
	}
}

// TestTokenRulesFromEnvAndFile checks the platform's token rule on tokens
// that come from the environment and from files, and that the diagnostic
// never shows the token.
func TestTokenRulesFromEnvAndFile(t *testing.T) {
	const head = `
platform { org = "ab12cd" }
bus "b" {
  modbus_tcp { address = "127.0.0.1:1502" }
}
device_type "t" {
  point "p" {
    table   = "holding"
    address = 0
    type    = "uint16"
  }
}
`
	secret := map[string]string{
		"SHORT":           "abc1234",
		"GOOD":            "meter-7-token",
		"/etc/bridge/bad": "meter$7$token\n",
		"/etc/bridge/ok":  "  meter-7-token\n",
		"/etc/bridge/big": strings.Repeat("x", 37),
	}
	env := Environment{
		LookupEnv: func(n string) (string, bool) { v, ok := secret[n]; return v, ok },
		ReadFile: func(p string) ([]byte, error) {
			if v, ok := secret[p]; ok {
				return []byte(v), nil
			}
			return nil, errors.New("open " + p + ": no such file or directory")
		},
	}
	tests := []struct {
		token string // the device's token attribute
		want  string // the diagnostic's summary, "" for none
	}{
		{`token = env("SHORT")`, "Token length"},
		{`token = env("GOOD")`, ""},
		{`token_file = "bad"`, "Token character"},
		{`token_file = "big"`, "Token length"},
		{`token_file = "ok"`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.token, func(t *testing.T) {
			src := head + "device \"d\" {\n  type = \"t\"\n  bus = \"b\"\n  " + tt.token + "\n}\n"
			_, diags := Parse("/etc/bridge/bridge.hcl", []byte(src), env)
			var got []string
			for _, d := range diags {
				got = append(got, d.Summary)
				for _, v := range secret {
					if strings.Contains(d.Detail, strings.TrimSpace(v)) {
						t.Errorf("diagnostic %q shows the token", d.Detail)
					}
				}
			}
			var want []string
			if tt.want != "" {
				want = []string{tt.want}
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Parse with %s: diagnostics (-want +got):\n%s", tt.token, diff)
			}
		})
	}
}
