package platform_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"fieldbridge/platform"
)

// An application's view of a command: SendCommand publishes it on the
// qualified topic, which is what Subscribe sees (a connected device
// subscribed to iot-2/cmd/+/fmt/+ would get it on iot-2/cmd/setSpeed/fmt/json).
func Example() {
	p, err := platform.New(platform.Config{
		Org:     "ab12cd",
		Addr:    "127.0.0.1:0",
		Devices: []platform.Device{{Type: "pump", ID: "P-17", Token: "pump-17-token"}},
	}, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()
	if err := p.Start(); err != nil {
		log.Fatal(err)
	}

	sub, err := p.Subscribe("iot-2/type/+/id/+/cmd/+/fmt/+")
	if err != nil {
		log.Fatal(err)
	}
	if err := p.SendCommand("pump", "P-17", "setSpeed", "json", []byte(`{"rpm":1450}`)); err != nil {
		log.Fatal(err)
	}
	m := <-sub.C
	fmt.Println(m.Topic, string(m.Payload), m.ClientID)
	// Output: iot-2/type/pump/id/P-17/cmd/setSpeed/fmt/json {"rpm":1450} a:ab12cd:platform
}

// The topic an application outside the process (for example a command-line
// client connected as a:<org>:<appId> with an API key) publishes a command on.
func ExampleCommandTopic() {
	topic, err := platform.CommandTopic("pump", "P-17", "setSpeed", "json")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(topic)
	// Output: iot-2/type/pump/id/P-17/cmd/setSpeed/fmt/json
}

// How a DM agent's test drives the platform (compiled, not run: it needs a
// device agent connected as d:ab12cd:pump:P-17 or through a gateway that
// has sent Manage with firmwareActions).
func ExamplePlatform_FirmwareDownload() {
	now := time.Now()
	p, err := platform.New(platform.Config{
		Org:     "ab12cd",
		Devices: []platform.Device{{Type: "pump", ID: "P-17", Token: "pump-17-token"}},
		Bundles: []platform.Bundle{{ID: "acme-modbus-v1", Actions: map[string]platform.BundleAction{
			"rescanBus": {Parameters: []platform.BundleParameter{{Name: "port", Value: "^rs485-[0-9]$", Required: true}}},
		}}},
		Now: func() time.Time { return now }, // a test clock: advance now to let a Manage lifetime pass (dormancy)
	}, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()
	if err := p.Start(); err != nil {
		log.Fatal(err)
	}
	// ... start the agent, wait until p.Managed("pump", "P-17") reports true ...
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := p.FirmwareDownload(ctx, "pump", "P-17", platform.FirmwareSpec{
		URI: "https://127.0.0.1:8443/fw.bin", Verifier: "9f2c...", Name: "fw", Version: "3.3.0"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(r.UpdateRC, r.ObserveRC, r.InitiateRC, r.Transitions, r.CancelRC, r.Succeeded)
	// e.g. 204 200 202 [{1 0} {2 0}] 200 true
	rc, err := p.DeviceAction(ctx, "pump", "P-17", "acme-modbus-v1/rescanBus", map[string]string{"port": "rs485-1"})
	fmt.Println(rc, err)
	st, managed := p.Managed("pump", "P-17")
	fmt.Println(managed, st.ManagedBy, st.Firmware.State, st.PendingAction, p.Violations())
}
