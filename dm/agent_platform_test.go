package dm_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"fieldbridge/adapters"
	"fieldbridge/dm"
	"fieldbridge/internal/testwait"
	"fieldbridge/platform"
)

func elevation(v float64) *float64 { return &v }

// meter is a field device with every kind of action mapped.
func meter(id string, cmds dm.CommandRunner) dm.Device {
	return dm.Device{Type: meterType, ID: id, Name: id,
		DeviceInfo: map[string]string{"serialNumber": "SN-" + id, "manufacturer": "MeterCo", "model": "MC-3P", "fwVersion": "1.0"},
		Metadata:   json.RawMessage(`{"site":"plant-2","busCount":2}`),
		Location:   &dm.Location{Latitude: 52.37, Longitude: 4.89, Elevation: elevation(2)},
		Reboot:     &dm.Action{Command: "reboot"},
		Firmware:   &dm.Firmware{Install: dm.Action{Exec: []string{"true"}}},
		Custom:     map[string]map[string]*dm.Action{bundle: {"rescan": {Command: "rescan"}}},
	}
}

func TestManageOnConnect(t *testing.T) {
	forms(t, func(t *testing.T, gateway bool) {
		cmds := &commands{}
		r := startRig(t, gateway, []dm.Device{meter("m1", cmds), meter("m2", cmds)}, func(c *dm.Config) {
			c.Commands, c.Lifetime = cmds, 24*time.Hour
		})
		for _, id := range []string{"m1", "m2"} {
			st := r.waitManaged(t, meterType, id)
			wantSupports := map[string]bool{"deviceActions": true, "firmwareActions": true, bundle: true}
			if fmt.Sprint(st.Supports) != fmt.Sprint(wantSupports) {
				t.Errorf("%s supports %v, want %v", id, st.Supports, wantSupports)
			}
			if st.DeviceInfo["serialNumber"] != "SN-"+id || st.DeviceInfo["model"] != "MC-3P" {
				t.Errorf("%s deviceInfo %v", id, st.DeviceInfo)
			}
			if string(st.Metadata) != `{"site":"plant-2","busCount":2}` {
				t.Errorf("%s metadata %s", id, st.Metadata)
			}
			if st.Lifetime != 24*time.Hour {
				t.Errorf("%s lifetime %v", id, st.Lifetime)
			}
			testwait.For(t, waitLong, id+"'s location", func() bool {
				st, _ := r.p.Managed(meterType, id)
				return string(st.Location) == `{"elevation":2,"latitude":52.37,"longitude":4.89}`
			})
		}
		if gateway {
			st := r.waitManaged(t, gwType, gwID)
			if st.DeviceInfo["deviceClass"] != "gateway" || !strings.HasPrefix(st.ManagedBy, "g:") {
				t.Errorf("gateway: %+v", st)
			}
			if m := r.pubs[gwID].find("/mgmt/manage"); len(m) == 0 || !strings.HasPrefix(m[0].Topic, "iotdevice-1/type/") {
				t.Errorf("gateway form uses qualified topics: %v", m)
			}
		} else if m := r.pubs["m1"].find("mgmt/manage"); len(m) == 0 || m[0].Topic != "iotdevice-1/mgmt/manage" {
			t.Errorf("device form uses relative topics: %v", m)
		}

		r.stop()
		for _, id := range []string{"m1", "m2"} {
			if _, managed := r.p.Managed(meterType, id); managed {
				t.Errorf("%s still managed after a clean shutdown", id)
			}
		}
	})
}

func TestActionsThroughThePlatform(t *testing.T) {
	forms(t, func(t *testing.T, gateway bool) {
		cmds := &commands{}
		r := startRig(t, gateway, []dm.Device{meter("m1", cmds)}, func(c *dm.Config) { c.Commands = cmds })
		r.waitManaged(t, meterType, "m1")
		pub := r.pubs["m1"]
		if gateway {
			pub = r.pubs[gwID]
		}
		manages := len(pub.find("/mgmt/manage"))

		if rc := r.action(t, "m1", "device/reboot", nil); rc != 202 {
			t.Errorf("reboot: rc %d, want 202", rc)
		}
		// The reboot completes with a new Manage (rule D6).
		testwait.For(t, waitLong, "Manage after the reboot", func() bool { return len(pub.find("/mgmt/manage")) > manages })
		testwait.For(t, waitLong, "the platform to see the reboot completed", func() bool {
			st, _ := r.p.Managed(meterType, "m1")
			return st.PendingAction == ""
		})
		if rc := r.action(t, "m1", "device/factoryReset", nil); rc != 501 {
			t.Errorf("factory reset (not mapped): rc %d, want 501", rc)
		}
		if rc := r.action(t, "m1", bundle+"/rescan", map[string]string{"port": "rs485-1"}); rc != 200 {
			t.Errorf("custom action: rc %d, want 200", rc)
		}
		if rc := r.action(t, "m1", bundle+"/other", nil); rc != 501 {
			t.Errorf("unmapped custom action: rc %d, want 501", rc)
		}
		// Nothing staged: the download has no URI; nothing downloaded: no update.
		if rc := r.action(t, "m1", "firmware/download", nil); rc != 400 {
			t.Errorf("firmware download without a uri: rc %d, want 400", rc)
		}
		if rc := r.action(t, "m1", "firmware/update", nil); rc != 400 {
			t.Errorf("firmware update without a download: rc %d, want 400", rc)
		}
		want := []string{`m1/reboot {"d":{}}`, `m1/rescan {"d":{"port":"rs485-1"}}`}
		if got := cmds.list(); !slices.Equal(got, want) {
			t.Errorf("commands %q, want %q", got, want)
		}
		if gateway {
			for _, m := range pub.find("/response") {
				if !strings.HasPrefix(m.Topic, "iotdevice-1/type/meter/id/m1/") {
					t.Errorf("gateway form answered on %s", m.Topic)
				}
			}
		}
	})
}

// TestBusDownThroughThePlatform: a device whose bus is down answers a
// reboot with rc 500 at once, its diagnostics carry the fault while it
// lasts, and a log entry says what happened.
func TestBusDownThroughThePlatform(t *testing.T) {
	forms(t, func(t *testing.T, gateway bool) {
		cmds := &commands{fail: fmt.Errorf("write: %w", adapters.ErrNotConnected)}
		r := startRig(t, gateway, []dm.Device{meter("m1", cmds), meter("m2", cmds)}, func(c *dm.Config) { c.Commands = cmds })
		r.waitManaged(t, meterType, "m1")
		r.waitManaged(t, meterType, "m2")

		down := adapters.Reading{Device: "m1", Blocks: []adapters.Block{{Err: adapters.ErrTimeout}, {Err: adapters.ErrTimeout}}}
		r.agent.NoteReading(down)
		errorCodes := func(want ...int) {
			t.Helper()
			testwait.For(t, waitLong, fmt.Sprintf("error codes %v", want), func() bool {
				st, _ := r.p.Managed(meterType, "m1")
				return slices.Equal(st.ErrorCodes, want)
			})
		}
		errorCodes(dm.ErrorCodeUnreachable)
		testwait.For(t, waitLong, "a log entry about it", func() bool {
			st, _ := r.p.Managed(meterType, "m1")
			return slices.ContainsFunc(st.Logs, func(l platform.DiagLog) bool {
				return l.Severity == 2 && strings.Contains(l.Message, "unreachable")
			})
		})
		ctx, cancel := context.WithTimeout(context.Background(), waitLong)
		defer cancel()
		if rc, err := r.p.DeviceAction(ctx, meterType, "m1", "device/reboot", nil); err != nil || rc != 500 {
			t.Errorf("reboot with the bus down: rc %d %v, want 500", rc, err)
		}
		if rc := r.action(t, "m2", bundle+"/rescan", nil); rc != 500 {
			t.Errorf("custom action whose command fails on the bus: rc %d, want 500", rc)
		}

		// A Modbus exception and corrupt frames replace "unreachable".
		r.agent.NoteReading(adapters.Reading{Device: "m1", Blocks: []adapters.Block{
			{Err: &adapters.ExceptionError{Function: 3, Code: adapters.ExIllegalAddress}}, {Err: adapters.ErrBadFrame}}})
		errorCodes(dm.ErrorCodeBadFrame, dm.ErrorCodeException+int(adapters.ExIllegalAddress))
		r.agent.NoteReading(adapters.Reading{Device: "m1", Blocks: []adapters.Block{{}, {}}})
		errorCodes()
		if st, _ := r.p.Managed(meterType, "m2"); len(st.ErrorCodes) != 0 {
			t.Errorf("m2 got m1's error codes: %v", st.ErrorCodes)
		}
	})
}

// TestLifetimeRenewal: with a lifetime the agent sends Manage again before
// it runs out, so the platform's dormancy time moves on.
func TestLifetimeRenewal(t *testing.T) {
	forms(t, func(t *testing.T, gateway bool) {
		r := startRig(t, gateway, []dm.Device{{Type: meterType, ID: "m1", Name: "m1"}}, func(c *dm.Config) {
			c.Lifetime, c.RenewBefore = time.Hour, time.Hour-100*time.Millisecond
		})
		first := r.waitManaged(t, meterType, "m1").DormantAt
		testwait.For(t, waitLong, "two renewals", func() bool {
			st, managed := r.p.Managed(meterType, "m1")
			return managed && st.DormantAt.Sub(first) >= 150*time.Millisecond
		})
	})
}

// TestManageRetriedWhenRefused: the platform refuses a Manage claiming a
// bundle it does not know (rc 403); the agent logs it and tries again with
// a growing wait, and manages the other devices meanwhile.
func TestManageRetriedWhenRefused(t *testing.T) {
	r := startRig(t, false, []dm.Device{
		{Type: meterType, ID: "m1", Name: "m1", Custom: map[string]map[string]*dm.Action{"unknown-bundle": {"x": {Exec: []string{"true"}}}}},
		{Type: meterType, ID: "m2", Name: "m2"},
	}, nil)
	r.waitManaged(t, meterType, "m2")
	testwait.For(t, waitLong, "three Manage attempts of m1", func() bool { return len(r.pubs["m1"].find("mgmt/manage")) >= 3 })
	if _, managed := r.p.Managed(meterType, "m1"); managed {
		t.Error("m1 managed although the platform refused it")
	}
}

// TestManageAgainAfterReconnect: a connection that comes back sends Manage
// again (the platform may have dropped the device meanwhile).
func TestManageAgainAfterReconnect(t *testing.T) {
	r := startRig(t, false, []dm.Device{{Type: meterType, ID: "m1", Name: "m1"}}, nil)
	r.waitManaged(t, meterType, "m1")
	n := len(r.pubs["m1"].find("mgmt/manage"))
	r.agent.Connected(meterType, "m1")
	testwait.For(t, waitLong, "Manage after the reconnect", func() bool { return len(r.pubs["m1"].find("mgmt/manage")) > n })
}

// clock is the platform's clock in tests that let a lifetime pass.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *clock) advance(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

// TestLifetimeKeepsTheDeviceManaged: the platform's clock runs past the
// Manage lifetime twice; the agent's renewals keep the device managed,
// while a device whose renewals stopped becomes dormant (rule D7).
func TestLifetimeKeepsTheDeviceManaged(t *testing.T) {
	forms(t, func(t *testing.T, gateway bool) {
		clk := &clock{now: time.Now()}
		r := startRig(t, gateway, []dm.Device{{Type: meterType, ID: "m1", Name: "m1"}}, func(c *dm.Config) {
			c.Lifetime, c.RenewBefore = time.Hour, time.Hour-50*time.Millisecond
		}, func(c *platform.Config) { c.Now = clk.Now })
		for range 2 {
			first := r.waitManaged(t, meterType, "m1").DormantAt
			clk.advance(50 * time.Minute)
			testwait.For(t, waitLong, "a renewal after the clock moved", func() bool {
				st, managed := r.p.Managed(meterType, "m1")
				return managed && st.DormantAt.Sub(first) >= 50*time.Minute
			})
			clk.advance(50 * time.Minute) // past the first lifetime, within the renewed one
			if st, managed := r.p.Managed(meterType, "m1"); !managed || st.Dormant {
				t.Fatalf("dormant although renewed: %+v", st)
			}
		}
		r.stop() // unmanages; a lifetime later nothing renews
		clk.advance(2 * time.Hour)
		if _, managed := r.p.Managed(meterType, "m1"); managed {
			t.Error("managed after Unmanage")
		}
	})
}

// TestAttributesThroughThePlatform: device/update with and without reqId,
// observe with values and unknown attributes, cancel.
func TestAttributesThroughThePlatform(t *testing.T) {
	forms(t, func(t *testing.T, gateway bool) {
		r := startRig(t, gateway, []dm.Device{meter("m1", &commands{})}, func(c *dm.Config) { c.Commands = &commands{} })
		r.waitManaged(t, meterType, "m1")
		ctx, cancel := context.WithTimeout(context.Background(), waitLong)
		defer cancel()
		resp, err := r.p.UpdateAttributes(ctx, meterType, "m1", []platform.Field{{Field: "metadata", Value: json.RawMessage(`{"pollIntervalSec":30}`)}})
		if err != nil || resp.RC != 204 {
			t.Fatalf("update metadata: %+v %v", resp, err)
		}
		resp, _ = r.p.UpdateAttributes(ctx, meterType, "m1", []platform.Field{{Field: "colour", Value: json.RawMessage(`"red"`)}})
		if resp.RC != 404 || len(resp.Fields) != 1 || resp.Fields[0].Field != "colour" {
			t.Errorf("update of an unknown attribute: %+v, want 404 naming it", resp)
		}
		if err := r.p.PushAttributes(meterType, "m1", []platform.Field{{Field: "location", Value: json.RawMessage(`{"latitude":1.5,"longitude":2.5}`)}}); err != nil {
			t.Fatal(err)
		}
		testwait.For(t, waitLong, "the pushed location", func() bool {
			resp, err := r.p.Observe(ctx, meterType, "m1", "location", "metadata")
			return err == nil && resp.RC == 200 && len(resp.Fields) == 2 &&
				string(resp.Fields[0].Value) == `{"latitude":1.5,"longitude":2.5}` && string(resp.Fields[1].Value) == `{"pollIntervalSec":30}`
		})
		if resp, _ := r.p.Observe(ctx, meterType, "m1", "location", "colour"); resp.RC != 404 {
			t.Errorf("observe of an unknown attribute: %+v", resp)
		}
		if resp, _ := r.p.Cancel(ctx, meterType, "m1", "location"); resp.RC != 200 {
			t.Errorf("cancel: %+v", resp)
		}
		if st, _ := r.p.Managed(meterType, "m1"); st.Observed["location"] || !st.Observed["metadata"] {
			t.Errorf("observed after cancel: %v", st.Observed)
		}
	})
}

// TestFirmwareThroughThePlatform runs the platform's download and update
// sequences (rule D5) against the agent, with the image on an HTTP server.
func TestFirmwareThroughThePlatform(t *testing.T) {
	forms(t, func(t *testing.T, gateway bool) {
		image := []byte("meter firmware 2.0")
		srv := firmwareServer(t, image, false)
		installed := filepath.Join(t.TempDir(), "installed")
		dev := meter("m1", nil)
		dev.Reboot, dev.Custom = nil, nil
		dev.Firmware = &dm.Firmware{Install: dm.Action{Exec: []string{"cp", "{file}", installed}}}
		r := startRig(t, gateway, []dm.Device{dev}, nil)
		r.waitManaged(t, meterType, "m1")
		ctx, cancel := context.WithTimeout(context.Background(), waitLong)
		defer cancel()

		bad, err := r.p.FirmwareDownload(ctx, meterType, "m1", platform.FirmwareSpec{URI: srv.URL + "/fw.bin", Verifier: sha([]byte("other")), Version: "2.0"})
		if err != nil {
			t.Fatal(err)
		}
		want := platform.FirmwareResult{Action: "firmware/download", UpdateRC: 204, ObserveRC: 200, InitiateRC: 202, CancelRC: 200,
			Transitions: []platform.FirmwareStatus{{State: 1, UpdateStatus: 0}, {State: 0, UpdateStatus: 4}}}
		bad.Message = ""
		if diff := cmp.Diff(want, bad); diff != "" {
			t.Errorf("download with a bad verifier (-want +got):\n%s", diff)
		}

		spec := platform.FirmwareSpec{URI: srv.URL + "/fw.bin", Verifier: sha(image), Version: "2.0", Name: "mc-fw"}
		got, err := r.p.FirmwareDownload(ctx, meterType, "m1", spec)
		if err != nil {
			t.Fatal(err)
		}
		want.Transitions, want.Succeeded = []platform.FirmwareStatus{{State: 1, UpdateStatus: 0}, {State: 2, UpdateStatus: 0}}, true
		got.Message = ""
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("download (-want +got):\n%s", diff)
		}
		got, err = r.p.FirmwareUpdate(ctx, meterType, "m1", platform.FirmwareSpec{})
		if err != nil {
			t.Fatal(err)
		}
		want = platform.FirmwareResult{Action: "firmware/update", ObserveRC: 200, InitiateRC: 202, CancelRC: 200, Succeeded: true,
			Transitions: []platform.FirmwareStatus{{State: 2, UpdateStatus: 1}, {State: 0, UpdateStatus: 0}}}
		got.Message = ""
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("update (-want +got):\n%s", diff)
		}
		if b, err := os.ReadFile(installed); err != nil || string(b) != string(image) {
			t.Errorf("installed %q %v", b, err)
		}
		testwait.For(t, waitLong, "deviceInfo.fwVersion 2.0 on the platform", func() bool {
			st, _ := r.p.Managed(meterType, "m1")
			return st.DeviceInfo["fwVersion"] == "2.0"
		})
		got, _ = r.p.FirmwareUpdate(ctx, meterType, "m1", platform.FirmwareSpec{})
		if got.InitiateRC != 400 {
			t.Errorf("update with nothing downloaded: %+v, want rc 400", got)
		}
	})
}

// TestDeviceInfoFromTheDevice: values the device reports about itself
// reach the platform's deviceInfo with a new Manage; unchanged values send
// nothing.
func TestDeviceInfoFromTheDevice(t *testing.T) {
	forms(t, func(t *testing.T, gateway bool) {
		r := startRig(t, gateway, []dm.Device{meter("m1", nil)}, func(c *dm.Config) { c.Commands = &commands{} })
		r.waitManaged(t, meterType, "m1")
		pub := r.pubs["m1"]
		if gateway {
			pub = r.pubs[gwID]
		}
		r.agent.SetDeviceInfo("m1", map[string]string{"serialNumber": "REG-7781", "fwVersion": "1.0"})
		testwait.For(t, waitLong, "the serial number read from the device", func() bool {
			st, _ := r.p.Managed(meterType, "m1")
			return st.DeviceInfo["serialNumber"] == "REG-7781" && st.DeviceInfo["model"] == "MC-3P"
		})
		n := len(pub.find("/mgmt/manage"))
		r.agent.SetDeviceInfo("m1", map[string]string{"serialNumber": "REG-7781"})
		r.agent.SetDeviceInfo("m1", map[string]string{"hwVersion": "rev C"})
		testwait.For(t, waitLong, "hwVersion", func() bool { st, _ := r.p.Managed(meterType, "m1"); return st.DeviceInfo["hwVersion"] == "rev C" })
		if got := len(pub.find("/mgmt/manage")); got != n+1 {
			t.Errorf("%d Manage requests for one change, want 1", got-n)
		}
	})
}

// TestIntermittentFaultStaysPosted: a fault seen now and then keeps its
// error code posted for FaultHold instead of clearing and posting it on
// every poll; it gets one log entry.
func TestIntermittentFaultStaysPosted(t *testing.T) {
	r := startRig(t, false, []dm.Device{{Type: meterType, ID: "m1", Name: "m1"}}, func(c *dm.Config) { c.FaultHold = time.Hour })
	r.waitManaged(t, meterType, "m1")
	bad := adapters.Reading{Device: "m1", Blocks: []adapters.Block{{}, {Err: fmt.Errorf("crc: %w", adapters.ErrBadFrame)}}}
	good := adapters.Reading{Device: "m1", Blocks: []adapters.Block{{}, {}}}
	for range 3 {
		r.agent.NoteReading(bad)
		r.agent.NoteReading(good)
	}
	testwait.For(t, waitLong, "error code 2 and its log entry", func() bool {
		st, _ := r.p.Managed(meterType, "m1")
		return slices.Equal(st.ErrorCodes, []int{dm.ErrorCodeBadFrame}) && len(st.Logs) == 1
	})
	r.agent.NoteReading(good)
	if st, _ := r.p.Managed(meterType, "m1"); !strings.Contains(st.Logs[0].Message, "corrupt replies") || st.Logs[0].Severity != 1 {
		t.Errorf("log entry %+v", st.Logs[0])
	}
	if n := len(r.pubs["m1"].find("add/diag/errorCodes")); n != 1 {
		t.Errorf("error code added %d times for one intermittent fault, want once", n)
	}
}
