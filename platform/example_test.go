package platform_test

import (
	"fmt"
	"log"

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
