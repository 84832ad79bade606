package main

import (
	"context"
	"testing"
	"time"
)

// TestCommandWhileOfflineArrivesAfterReconnect: an application sends a
// command while the bridge is stopped; the durable session (clean_session
// false, QoS 1 subscription) keeps it, and when the bridge connects again it
// receives it and answers with a command event.
func TestCommandWhileOfflineArrivesAfterReconnect(t *testing.T) {
	r := startSimulation(t)
	r.cfg.Devices = r.cfg.Devices[:1] // m1
	sub := r.startPlatform(t)

	runFor := func(until func() bool) {
		t.Helper()
		b, err := newBridge(r.cfg, bridgeOptions{Broker: "tcp://" + r.plat.Addr(), InMemoryBuffer: true, Drain: time.Second}, quietLogger())
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- b.Run(ctx) }()
		waitFor(t, "the bridge's events", until)
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	got := func(event string) func() bool {
		return func() bool {
			for {
				select {
				case m := <-sub.C:
					if m.Topic == "iot-2/type/meter/id/m1/evt/"+event+"/fmt/json" {
						return true
					}
				default:
					return false
				}
			}
		}
	}
	runFor(got("reading")) // connected once: the platform knows the durable session

	if err := r.plat.SendCommand("meter", "m1", "setSpeed", "json", []byte(`{"rpm":1450}`)); err != nil {
		t.Fatal(err)
	}
	var result payload
	runFor(func() bool {
		for {
			select {
			case m := <-sub.C:
				if m.Topic == "iot-2/type/meter/id/m1/evt/command/fmt/json" {
					result = decode(t, m.Payload)
					return true
				}
			default:
				return false
			}
		}
	})
	if result.D["command"] != "setSpeed" || result.D["ok"] != false || result.D["error"] != errNoCommands {
		t.Errorf("command result = %v", result.D)
	}
}
