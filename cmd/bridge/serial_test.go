package main

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"fieldbridge/adapters/serialline"
	"fieldbridge/config"
	"fieldbridge/internal/serialtest"
	"fieldbridge/internal/testwait"
	"fieldbridge/simulator"
)

// serialConfig has a Modbus RTU line with two meters and a scale that
// answers queries with comma-separated text; BRIDGE_* are the bridge's ends
// of two pty pairs.
const serialConfig = `
platform {
  org = "test01"
  tls = false
}
bus "rs485" {
  modbus_rtu {
    port    = "BRIDGE_RTU"
    baud    = 19200
    timeout = "300ms"
  }
}
bus "scale" {
  serial_line {
    port      = "BRIDGE_SCALE"
    delimiter = "\r\n"
    separator = ","
    request   = "W{unit}\r\n"
    timeout   = "500ms"
  }
}
device_type "meter" {
  point "voltage" {
    table      = "input"
    address    = 0
    type       = "float32"
    byte_order = "CDAB"
    simulate {
      mode  = "fixed"
      value = 230.5
    }
  }
}
device_type "scale" {
  point "status" {
    column = 1
    type   = "string"
    length = 2
    simulate {
      mode = "fixed"
    }
  }
  point "weight_kg" {
    column = 2
    simulate {
      mode  = "fixed"
      value = 12.25
    }
  }
  command "tare" {
    send = "T{$.d.channel}\r\n"
  }
}
device "m1" {
  type  = "meter"
  bus   = "rs485"
  unit  = 1
  poll  = "200ms"
  token = "token-m1-secret"
}
device "m2" {
  type  = "meter"
  bus   = "rs485"
  unit  = 2
  poll  = "200ms"
  token = "token-m2-secret"
}
device "scale-1" {
  type  = "scale"
  bus   = "scale"
  unit  = 3
  poll  = "200ms"
  token = "token-s1-secret"
}
`

// TestSerialBusesEndToEnd: simulate serves the RTU slaves and the scale on
// one end of socat pty pairs, the bridge polls the other ends, and the
// local platform receives the events.
func TestSerialBusesEndToEnd(t *testing.T) {
	rtuBridge, rtuDevice := serialtest.Pair(t)
	scaleBridge, scaleDevice := serialtest.Pair(t)
	src := strings.NewReplacer("BRIDGE_RTU", rtuBridge, "BRIDGE_SCALE", scaleBridge).Replace(serialConfig)
	cfg, diags := config.Parse("serial.hcl", []byte(src), noEnv)
	if diags.HasErrors() {
		t.Fatalf("config: %v", diags)
	}
	devEnd := map[string]string{"rs485": rtuDevice, "scale": scaleDevice}
	sims, err := startSimulators(cfg, func(b *config.Bus) string { return devEnd[b.Name] }, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	simDone := make(chan error, 1)
	go func() { simDone <- sims.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-simDone })

	r := &rig{cfg: cfg, sims: sims}
	sub := r.startPlatform(t)
	r.runBridge(t, "tcp://"+r.plat.Addr())

	got := collect(t, sub.C, byTopic, map[string]int{
		"iot-2/type/meter/id/m1/evt/reading/fmt/json":      3,
		"iot-2/type/meter/id/m2/evt/reading/fmt/json":      3,
		"iot-2/type/scale/id/scale-1/evt/reading/fmt/json": 3,
	})
	for topic, want := range map[string]map[string]any{
		"iot-2/type/meter/id/m1/evt/reading/fmt/json":      {"voltage": 230.5},
		"iot-2/type/scale/id/scale-1/evt/reading/fmt/json": {"status": "0", "weight_kg": 12.25},
	} {
		if diff := cmp.Diff(want, decode(t, got[topic][0].Payload).D); diff != "" {
			t.Errorf("%s: d (-want +got):\n%s", topic, diff)
		}
	}

	// A command sends its text request to the instrument.
	if err := r.plat.SendCommand("scale", "scale-1", "tare", "json", []byte(`{"d":{"channel":2},"reqId":"t1"}`)); err != nil {
		t.Fatal(err)
	}
	res := collect(t, sub.C, byTopic, map[string]int{"iot-2/type/scale/id/scale-1/evt/command/fmt/json": 1})
	d := decode(t, res["iot-2/type/scale/id/scale-1/evt/command/fmt/json"][0].Payload).D
	if d["ok"] != true || d["reqId"] != "t1" || !sameJSON(d["written"], `{"send":"T2\r\n"}`) {
		t.Errorf("tare result = %v", d)
	}
	var in *simulator.Instrument
	for _, l := range sims.lines {
		if l.bus == "scale" {
			in = l.instrument
		}
	}
	testwait.For(t, waitTimeout, "the scale to receive the tare request", func() bool {
		return strings.Contains(string(in.Received()), "T2\r\n")
	})
}

// TestFieldLayoutMatchesAdapter pins the register image that config lays
// out for serial-line points to the one adapters/serialline builds.
func TestFieldLayoutMatchesAdapter(t *testing.T) {
	src := strings.NewReplacer("BRIDGE_RTU", "/dev/null", "BRIDGE_SCALE", "/dev/null").Replace(serialConfig)
	cfg, diags := config.Parse("serial.hcl", []byte(src), noEnv)
	if diags.HasErrors() {
		t.Fatalf("config: %v", diags)
	}
	var line *config.Bus
	for _, b := range cfg.Buses {
		if b.Kind == config.BusSerialLine {
			line = b
		}
	}
	slots := serialline.Layout(serialLineConfig(line, cfg.Devices).Fields)
	typ := cfg.Devices[2].Type
	for i, f := range typ.Fields {
		p := typ.Points[typ.PointIndex(f.Point)]
		if got, want := fmt.Sprintf("%s@%d+%d", f.Name, p.Address, p.Registers()), fmt.Sprintf("%s@%d+%d", slots[i].Name, slots[i].Address, slots[i].Count); got != want {
			t.Errorf("field %d: config lays out %s, the adapter %s", i, got, want)
		}
	}
}
