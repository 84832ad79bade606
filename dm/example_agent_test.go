package dm_test

import (
	"context"
	"fmt"
	"sync"
	"time"

	"fieldbridge/dm"
)

// printer is a Publisher that prints what the agent publishes.
type printer struct {
	once *sync.Once
	done chan struct{}
}

func (p printer) Publish(_ context.Context, topic string, payload []byte) <-chan error {
	fmt.Println(topic, string(payload))
	ch := make(chan error, 1)
	ch <- nil
	p.once.Do(func() { close(p.done) })
	return ch
}

// An agent answers the platform's reboot request for a field device whose
// type maps reboot to a hook: rc 202 on the device's response topic.
func ExampleAgent_HandleRequest() {
	out := printer{once: new(sync.Once), done: make(chan struct{})}
	agent, err := dm.NewAgent(dm.Config{Devices: []dm.Device{{
		Type: "power-meter", ID: "meter-7", Name: "meter-7", Link: out,
		Reboot: &dm.Action{Exec: []string{"true"}, Timeout: 5 * time.Second},
	}}}, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- agent.Run(ctx) }()

	agent.HandleRequest(ctx, "power-meter", "meter-7", "mgmt/initiate/device/reboot", []byte(`{"reqId":"b3891238"}`))
	<-out.done
	cancel()
	<-done
	// Output:
	// iotdevice-1/response {"rc":202,"reqId":"b3891238"}
}
