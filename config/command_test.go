package config

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"fieldbridge/mapping"
)

// TestCommandsDecode loads commands of both kinds and checks what the
// mapping gets: writes in order with paths or literals, readback, timeout,
// send templates, and the bus's write_multiple option.
func TestCommandsDecode(t *testing.T) {
	src := `
platform { org = "ab12cd" }
bus "line1" {
  modbus_tcp { address = "127.0.0.1:502" }
  write_multiple = true
}
bus "scale" {
  serial_line {
    port      = "/dev/ttyUSB0"
    delimiter = "\r\n"
    separator = ","
  }
}
device_type "drive" {
  point "speed" {
    table = "holding"
    address = 0
    type = "int16"
    writable = true
    scale = 0.1
  }
  point "run" {
    table = "coil"
    address = 0
    type = "bool"
    writable = true
  }
  point "mode" {
    table = "holding"
    address = 1
    type = "uint16"
    writable = true
    enum = { 0 = "off", 2 = "auto" }
  }
  command "start" {
    write "speed" { value = "$.d.rpm" }
    write "run" { value = true }
    write "mode" { value = "auto" }
    write "speed" { value = -1.5 }
    readback = true
    timeout = "2s"
  }
  command "stop" {
    write "run" { value = false }
  }
}
device_type "scale" {
  point "weight" { column = 1 }
  command "tare" { send = "T {$.d.ch}\r\n" }
}
device "d1" {
  type = "drive"
  bus = "line1"
  token = "token-d1-secret"
}
device "s1" {
  type = "scale"
  bus = "scale"
  token = "token-s1-secret"
}
`
	cfg, diags := Parse("commands.hcl", []byte(src), testEnv)
	if diags.HasErrors() {
		t.Fatalf("diagnostics: %v", diags)
	}
	if !cfg.Buses[0].WriteMultiple || cfg.Buses[1].WriteMultiple {
		t.Errorf("write_multiple = %v, %v; want true, false", cfg.Buses[0].WriteMultiple, cfg.Buses[1].WriteMultiple)
	}
	want := []mapping.Command{
		{Name: "start", Readback: true, Timeout: 2 * time.Second, Writes: []mapping.Write{
			{Point: "speed", Path: "$.d.rpm"},
			{Point: "run", Literal: mapping.Value{Kind: mapping.KindBool, B: true}},
			{Point: "mode", Literal: mapping.Value{Kind: mapping.KindString, S: "auto"}},
			{Point: "speed", Literal: mapping.Value{Kind: mapping.KindFloat, F: -1.5}},
		}},
		{Name: "stop", Timeout: mapping.DefaultCommandTimeout, Writes: []mapping.Write{
			{Point: "run", Literal: mapping.Value{Kind: mapping.KindBool}},
		}},
	}
	if diff := cmp.Diff(want, cfg.DeviceTypes[0].Commands); diff != "" {
		t.Errorf("drive commands (-want +got):\n%s", diff)
	}
	wantText := []mapping.Command{{Name: "tare", Send: "T {$.d.ch}\r\n", Timeout: mapping.DefaultCommandTimeout}}
	if diff := cmp.Diff(wantText, cfg.DeviceTypes[1].Commands); diff != "" {
		t.Errorf("scale commands (-want +got):\n%s", diff)
	}
}
