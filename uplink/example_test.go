package uplink_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"fieldbridge/uplink"
)

func Example_identity() {
	meter := uplink.Identity{Org: "ab12cd", Type: "power-meter", ID: "meter-7"}
	gw := uplink.Identity{Org: "ab12cd", Type: "edge-gw", ID: "gw-01"}

	// Device mode: the meter connects itself and publishes relative topics.
	fmt.Println(uplink.DeviceClientID(meter))
	fmt.Println(uplink.DeviceEventTopic("reading", "json"))
	fmt.Println(uplink.DeviceCommandTopic("+", "+"))

	// Gateway mode: one connection speaks for the meter with qualified topics.
	fmt.Println(uplink.GatewayClientID(gw))
	fmt.Println(uplink.GatewayEventTopic(meter, "reading", "json"))
	fmt.Println(uplink.GatewayNotifyTopic(gw))

	fmt.Println(uplink.Host(meter.Org, ""))
	fmt.Println(uplink.ValidateID("meter 7") != nil)
	// Output:
	// d:ab12cd:power-meter:meter-7
	// iot-2/evt/reading/fmt/json
	// iot-2/cmd/+/fmt/+
	// g:ab12cd:edge-gw:gw-01
	// iot-2/type/power-meter/id/meter-7/evt/reading/fmt/json
	// iot-2/type/edge-gw/id/gw-01/notify
	// ab12cd.messaging.internetofthings.ibmcloud.com
	// true
}

// A device-mode connection: run it, publish, and delete the event from the
// buffer only on a nil result.
func ExampleClient_Publish() {
	id := uplink.Identity{Org: "ab12cd", Type: "power-meter", ID: "meter-7"}
	tlsCfg, err := uplink.NewTLSConfig("", "", "", false) // system roots, TLS 1.2+
	if err != nil {
		panic(err)
	}
	c, err := uplink.New(uplink.Config{
		Broker:       "ssl://" + uplink.Host(id.Org, "") + ":8883",
		ClientID:     uplink.DeviceClientID(id),
		Username:     uplink.TokenAuthUsername,
		Password:     "the device token",
		TLS:          tlsCfg,
		QoS:          1,
		CleanSession: false,
	}, slog.Default())
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = c.Run(ctx) }()

	res := c.Publish(ctx, uplink.DeviceEventTopic("reading", "json"), []byte(`{"d":{"kWh":18234.5}}`))
	switch err := <-res; {
	case err == nil:
		// acknowledged on the connection it was sent on: delete it from the buffer
	case errors.Is(err, uplink.ErrNotConnected), errors.Is(err, uplink.ErrConnectionLost):
		// keep it; send it again after the reconnect
	default:
		// keep it, and look at err
	}
}
