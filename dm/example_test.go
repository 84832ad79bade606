package dm_test

import (
	"context"
	"fmt"
	"time"

	"fieldbridge/dm"
)

type printCommands struct{}

func (printCommands) HandleCommand(_ context.Context, c dm.Command) {
	fmt.Printf("command %s for %s/%s: %s\n", c.Name, c.DeviceType, c.DeviceID, c.Payload)
}

type printRequests struct{}

func (printRequests) HandleRequest(_ context.Context, typ, id, rest string, payload []byte) {
	fmt.Printf("request %s for %s/%s: %s\n", rest, typ, id, payload)
}

// A gateway's Mux routes commands and device-management requests for the
// gateway itself and for the devices behind it.
func ExampleMux() {
	mux, err := dm.NewMux(dm.MuxConfig{SelfType: "edge-gw", SelfID: "gw-1", Commands: printCommands{}, Requests: printRequests{}}, nil)
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	mux.HandleMessage(ctx, "iot-2/type/pump/id/p1/cmd/set_speed/fmt/json", []byte(`{"d":{"value":1450}}`))
	mux.HandleMessage(ctx, "iot-2/type/edge-gw/id/gw-1/cmd/ping/fmt/json", []byte(`{}`))
	mux.HandleMessage(ctx, "iotdm-1/type/pump/id/p1/mgmt/initiate/device/reboot", []byte(`{"reqId":"r1"}`))
	// Output:
	// command set_speed for pump/p1: {"d":{"value":1450}}
	// command ping for edge-gw/gw-1: {}
	// request mgmt/initiate/device/reboot for pump/p1: {"reqId":"r1"}
}

// A Result is the payload of the command event.
func ExampleResult_Payload() {
	r := dm.Result{Command: "set_speed", ReqID: "42", OK: true, Time: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC),
		Written: []dm.NamedValue{{Name: "speed", Value: 1450}}}
	p, _ := r.Payload(7)
	fmt.Println(string(p))
	// Output:
	// {"d":{"command":"set_speed","reqId":"42","ok":true,"written":{"speed":1450}},"ts":"2026-12-01T10:00:00.000Z","seq":7}
}
