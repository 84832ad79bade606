package config

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestManagement(t *testing.T) {
	src := `
platform {
  org  = "ab12cd"
  mode = "gateway"
  gateway {
    type  = "edge-gw"
    id    = "gw-01"
    token = "gateway-token-1"
  }
}
management {
  lifetime          = "24h"
  staging_dir       = "/tmp/fw"
  max_firmware_size = "8MiB"
}
bus "b" {
  modbus_tcp { address = "127.0.0.1:1502" }
}
device_type "meter" {
  management {
    device_info = { manufacturer = "MeterCo", model = "MC-3P" }
    device_info_points = { serial_number = "serial" }
    reboot {
      command = "restart"
    }
    factory_reset {
      command = "restart"
      exec    = ["/usr/local/bin/reset", "{device}"]
      timeout = "1m"
    }
    firmware {
      exec = ["/usr/local/bin/flash", "{device}", "{file}"]
    }
    custom_action "acme-modbus-v1" "rescan" {
      command = "rescan"
    }
  }
  point "p" {
    table   = "holding"
    address = 3
    type    = "int16"
  }
  point "run" {
    table    = "coil"
    address  = 0
    type     = "bool"
    writable = true
  }
  command "restart" {
    write "run" { value = false }
  }
  command "rescan" {
    write "run" { value = true }
  }
  point "serial" {
    table   = "holding"
    address = 10
    type    = "string"
    length  = 4
  }
}
device "m1" {
  type = "meter"
  bus  = "b"
  management {
    device_info = { serial_number = "M1-001", model = "MC-3P-X" }
    metadata    = { site = "plant-2", line = 3 }
    location {
      latitude  = 52.37
      longitude = 4.89
      elevation = 2
    }
  }
}
device "m2" {
  type = "meter"
  bus  = "b"
  point "p" { scale = 2 }
}
`
	cfg, diags := Parse("bridge.hcl", []byte(src), OS)
	if diags.HasErrors() {
		t.Fatalf("diagnostics: %v", diags)
	}
	want := &Management{Enabled: true, Lifetime: 24 * time.Hour, StagingDir: "/tmp/fw", MaxFirmwareBytes: 8 << 20, DownloadTimeout: DefaultDownloadTimeout}
	if diff := cmp.Diff(want, cfg.Management); diff != "" {
		t.Errorf("management (-want +got):\n%s", diff)
	}
	wantType := &TypeManagement{
		DeviceInfo:       map[string]string{"manufacturer": "MeterCo", "model": "MC-3P"},
		DeviceInfoPoints: map[string]string{"serialNumber": "serial"},
		Reboot:           &ManagementAction{Command: "restart", Timeout: DefaultActionTimeout},
		FactoryReset:     &ManagementAction{Command: "restart", Exec: []string{"/usr/local/bin/reset", "{device}"}, Timeout: time.Minute},
		Firmware:         &ManagementAction{Exec: []string{"/usr/local/bin/flash", "{device}", "{file}"}, Timeout: DefaultFirmwareTimeout},
		Custom:           map[string]map[string]*ManagementAction{"acme-modbus-v1": {"rescan": {Command: "rescan", Timeout: DefaultActionTimeout}}},
	}
	if diff := cmp.Diff(wantType, cfg.DeviceTypes[0].Management); diff != "" {
		t.Errorf("type management (-want +got):\n%s", diff)
	}
	m1 := cfg.Devices[0].Management
	elev := 2.0
	wantDev := DeviceManagement{
		DeviceInfo: map[string]string{"manufacturer": "MeterCo", "model": "MC-3P-X", "serialNumber": "M1-001"},
		Metadata:   []byte(`{"line":3,"site":"plant-2"}`),
		Location:   &Location{Latitude: 52.37, Longitude: 4.89, Elevation: &elev},
	}
	if diff := cmp.Diff(wantDev, m1); diff != "" {
		t.Errorf("device management (-want +got):\n%s", diff)
	}
	// A device with point overrides keeps its type's management.
	if m2 := cfg.Devices[1]; m2.Type.Management == nil || m2.Management.DeviceInfo["model"] != "MC-3P" {
		t.Errorf("m2 lost its type's management: %+v %+v", m2.Type.Management, m2.Management)
	}
}
