package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"fieldbridge/dm"
	"fieldbridge/internal/testwait"
	"fieldbridge/platform"
)

// managedConfig is testConfig with device management: meters reboot
// through a hook that leaves a file in dir, and m1 has a location.
func managedConfig(t *testing.T, dir string) string {
	t.Helper()
	src := strings.Replace(testConfig, "bus \"b1\" {", `management {
  lifetime    = "1h"
  staging_dir = "`+dir+`/staging"
  allow_http  = true
}
bus "b1" {`, 1)
	src = strings.Replace(src, "device_type \"meter\" {", `device_type "meter" {
  management {
    device_info = { manufacturer = "MeterCo" }
    device_info_points = { fw_version = "fw_code" }
    reboot {
      exec = ["touch", "`+dir+`/{id}.rebooted"]
    }
    factory_reset {
      command = "ack"
    }
    firmware {
      exec = ["cp", "{file}", "`+dir+`/{id}-{version}.bin"]
    }
    custom_action "acme-meter-v1" "setLimit" {
      command = "set_limit"
    }
  }
  point "fw_code" {
    table   = "holding"
    address = 20
    type    = "uint16"
    simulate {
      mode  = "fixed"
      value = 302
    }
  }`, 1)
	src = strings.Replace(src, "device \"m1\" {", `device "m1" {
  management {
    device_info = { serial_number = "M1-0001" }
    metadata    = { site = "plant-2" }
    location {
      latitude  = 52.37
      longitude = 4.89
    }
  }`, 1)
	return src
}

// startManaged parses managedConfig and starts the simulators, the platform
// and the bridge (device or gateway mode).
// stop stops the bridge and returns Run's result; it may be called again.
func startManaged(t *testing.T, gateway bool) (r *rig, dir string, stop func() error) {
	t.Helper()
	dir = t.TempDir()
	r = startSimulationOf(t, managedConfig(t, dir))
	if gateway {
		r.useGateway()
	}
	p, err := platform.New(platform.Config{Org: r.cfg.Platform.Org, Devices: r.registry(), ExtensionBundles: []string{"acme-meter-v1"}}, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	r.plat = p
	r.cfg.Metrics.Listen = "127.0.0.1:0"
	b, err := newBridge(r.cfg, bridgeOptions{Broker: "tcp://" + r.plat.Addr(), InMemoryBuffer: true, Drain: 100 * time.Millisecond}, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	r.b = b
	return r, dir, runInBackground(t, b)
}

// TestManagedDevices: with a management block every device is managed on
// connect (with its type's and its own deviceInfo, metadata, location), a
// reboot runs the type's hook and is answered 202, a factory reset mapped
// to a command of the type writes to the device and is answered 202, a
// firmware download and install run the type's hook on the image, and a
// clean stop unmanages every device.
func TestManagedDevices(t *testing.T) {
	for _, gateway := range []bool{false, true} {
		name := map[bool]string{false: "device", true: "gateway"}[gateway]
		t.Run(name, func(t *testing.T) {
			r, dir, stopBridge := startManaged(t, gateway)
			p := r.plat
			for _, d := range r.cfg.Devices {
				testwait.For(t, waitTimeout, d.Name+" managed", func() bool { _, ok := p.Managed(d.Type.Name, d.Name); return ok })
			}
			st, _ := p.Managed("meter", "m1")
			if st.DeviceInfo["serialNumber"] != "M1-0001" || st.DeviceInfo["manufacturer"] != "MeterCo" ||
				string(st.Metadata) != `{"site":"plant-2"}` || !st.Supports["deviceActions"] || !st.Supports["firmwareActions"] || st.Lifetime != time.Hour {
				t.Errorf("m1 as the platform sees it: %+v", st)
			}
			testwait.For(t, waitTimeout, "m1's location", func() bool { st, _ := p.Managed("meter", "m1"); return st.Location != nil })
			testwait.For(t, waitTimeout, "the firmware version read from m2's registers", func() bool {
				st, _ := p.Managed("meter", "m2")
				return st.DeviceInfo["fwVersion"] == "302" && st.DeviceInfo["manufacturer"] == "MeterCo"
			})
			if st, _ := p.Managed("boiler", "boiler-9"); st.Supports["deviceActions"] {
				t.Errorf("boiler-9 maps no actions but claims deviceActions: %+v", st.Supports)
			}
			if gateway {
				testwait.For(t, waitTimeout, "the gateway managed", func() bool {
					st, ok := p.Managed("edge-gw", "gw-1")
					return ok && st.DeviceInfo["deviceClass"] == "gateway"
				})
			}

			ctx, stop := context.WithTimeout(context.Background(), waitTimeout)
			defer stop()
			if rc, err := p.DeviceAction(ctx, "meter", "m2", "device/reboot", nil); err != nil || rc != 202 {
				t.Errorf("reboot m2: rc %d %v, want 202", rc, err)
			}
			if _, err := os.Stat(filepath.Join(dir, "m2.rebooted")); err != nil {
				t.Errorf("the reboot hook did not run for m2: %v", err)
			}
			if rc, err := p.DeviceAction(ctx, "meter", "m1", "device/factoryReset", nil); err != nil || rc != 202 {
				t.Errorf("factory reset m1: rc %d %v, want 202", rc, err)
			}
			// The factory reset is the type's command "ack": a write the device saw.
			if w := r.sims.writes("m1"); len(w) != 1 || w[0].Address != 11 {
				t.Errorf("the simulator saw %+v, want the ack command's write of holding 11", w)
			}
			// A custom action runs the command of the same name's mapping, its
			// parameters as the command's d.
			if rc, err := p.DeviceAction(ctx, "meter", "m2", "acme-meter-v1/setLimit", map[string]string{"value": "120"}); err != nil || rc != 200 {
				t.Errorf("custom action setLimit on m2: rc %d %v, want 200", rc, err)
			}
			if w := r.sims.writes("m2"); len(w) != 1 || w[0].Address != 10 || fmt.Sprint(w[0].Registers) != "[120]" {
				t.Errorf("the simulator saw %+v, want 120 written to holding 10", w)
			}
			if rc, err := p.DeviceAction(ctx, "meter", "m2", "acme-meter-v1/setLimit", map[string]string{"value": "900"}); err != nil || rc != 500 {
				t.Errorf("custom action setLimit over the point's max: rc %d %v, want 500", rc, err)
			}
			if _, err := p.DeviceAction(ctx, "boiler", "boiler-9", "device/reboot", nil); err == nil {
				t.Error("the platform sent a reboot to a device that does not support it")
			}

			image := []byte("meter firmware 3.3")
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write(image) }))
			defer srv.Close()
			sum := sha256.Sum256(image)
			dl, err := p.FirmwareDownload(ctx, "meter", "m1", platform.FirmwareSpec{URI: srv.URL + "/fw.bin", Verifier: hex.EncodeToString(sum[:]), Version: "3.3"})
			if err != nil || !dl.Succeeded {
				t.Fatalf("firmware download: %+v %v", dl, err)
			}
			if up, err := p.FirmwareUpdate(ctx, "meter", "m1", platform.FirmwareSpec{}); err != nil || !up.Succeeded {
				t.Fatalf("firmware update: %+v %v", up, err)
			}
			if b, err := os.ReadFile(filepath.Join(dir, "m1-3.3.bin")); err != nil || string(b) != string(image) {
				t.Errorf("the install hook got %q %v", b, err)
			}

			if err := stopBridge(); err != nil {
				t.Errorf("Run = %v", err)
			}
			for _, d := range r.cfg.Devices {
				if _, ok := p.Managed(d.Type.Name, d.Name); ok {
					t.Errorf("%s still managed after a clean stop", d.Name)
				}
			}
			if v := p.Violations(); len(v) > 0 {
				t.Errorf("platform violations: %+v", v)
			}
		})
	}
}

// TestManagementWhileBusDown: when the simulator goes away the devices on
// it get error code 1 (unreachable) and a log entry; a device on another
// bus is not affected.
func TestManagementWhileBusDown(t *testing.T) {
	r, _, _ := startManaged(t, false)
	p := r.plat
	testwait.For(t, waitTimeout, "m1 managed", func() bool { _, ok := p.Managed("meter", "m1"); return ok })
	for _, s := range r.sims.servers {
		if s.bus == "b1" {
			s.server.Close()
		}
	}
	testwait.For(t, waitTimeout, "error code unreachable on m1 and m2", func() bool {
		a, _ := p.Managed("meter", "m1")
		b, _ := p.Managed("meter", "m2")
		return slices.Equal(a.ErrorCodes, []int{dm.ErrorCodeUnreachable}) && slices.Equal(b.ErrorCodes, []int{dm.ErrorCodeUnreachable})
	})
	testwait.For(t, waitTimeout, "a log entry saying m1 is unreachable", func() bool {
		st, _ := p.Managed("meter", "m1")
		return slices.ContainsFunc(st.Logs, func(l platform.DiagLog) bool { return strings.Contains(l.Message, "unreachable") })
	})
	ctx, stop := context.WithTimeout(context.Background(), waitTimeout)
	defer stop()
	if rc, err := p.DeviceAction(ctx, "meter", "m1", "device/factoryReset", nil); err != nil || rc != 500 {
		t.Errorf("factory reset of a device whose bus is down: rc %d %v, want 500", rc, err)
	}
	if n := scrapeMetrics(t, r.b.metrics.addr()).must(t, "bridge_dm_requests_total", "request", "factory_reset", "result", "500"); n != 1 {
		t.Errorf("bridge_dm_requests_total{factory_reset,500} = %v, want 1", n)
	}
	if st, _ := p.Managed("boiler", "boiler-9"); len(st.ErrorCodes) != 0 {
		t.Errorf("boiler-9 on the other bus got error codes %v", st.ErrorCodes)
	}
}
