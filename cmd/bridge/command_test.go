package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"fieldbridge/config"
	"fieldbridge/platform"

	"fieldbridge/internal/testwait"
)

// TestCommandWhileOfflineArrivesAfterReconnect: an application sends a
// command while the bridge is stopped; the durable session (clean_session
// false, QoS 1 subscription) keeps it, and when the bridge connects again it
// receives it and answers with a command event.
func TestCommandWhileOfflineArrivesAfterReconnect(t *testing.T) {
	for _, mode := range []string{config.ModeDevice, config.ModeGateway} {
		t.Run(mode, func(t *testing.T) { testCommandWhileOffline(t, mode) })
	}
}

func testCommandWhileOffline(t *testing.T, mode string) {
	r := startSimulation(t)
	r.cfg.Devices = r.cfg.Devices[:1] // m1
	if mode == config.ModeGateway {
		r.useGateway()
	}
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
		testwait.For(t, waitTimeout, "the bridge's events", until)
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

	if err := r.plat.SendCommand("meter", "m1", "set_limit", "json", []byte(`{"d":{"value":123},"reqId":"offline-1"}`)); err != nil {
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
	if result.D["command"] != "set_limit" || result.D["ok"] != true || result.D["reqId"] != "offline-1" {
		t.Errorf("command result = %v", result.D)
	}
}

// TestPlatformSendCLI sends a command with `bridge platform send` as an
// application with an API key; the running bridge answers it.
func TestPlatformSendCLI(t *testing.T) {
	r := startSimulation(t)
	r.cfg.Devices = r.cfg.Devices[:1] // m1
	sub := r.startPlatform(t)
	if err := r.plat.RegisterAPIKey(platform.APIKey{Key: "a-test01-cli0000001", Token: "app-token-1"}); err != nil {
		t.Fatal(err)
	}
	r.runBridge(t, "tcp://"+r.plat.Addr())
	testwait.For(t, waitTimeout, "m1 connected", func() bool {
		select {
		case m := <-sub.C:
			return strings.HasSuffix(m.Topic, "/evt/reading/fmt/json")
		default:
			return false
		}
	})
	var out, errs strings.Builder
	code := run(context.Background(), func() {}, []string{"platform", "send", "-broker", "tcp://" + r.plat.Addr(), "-org", "test01",
		"-key", "a-test01-cli0000001", "-token", "app-token-1", "-type", "meter", "-id", "m1", "-command", "reset", "-payload", `{"now":true}`}, &out, &errs)
	if code != exitOK {
		t.Fatalf("platform send: exit %d: %s", code, errs.String())
	}
	testwait.For(t, waitTimeout, "the bridge's answer to the command", func() bool {
		for {
			select {
			case m := <-sub.C:
				if m.Topic == "iot-2/type/meter/id/m1/evt/command/fmt/json" && decode(t, m.Payload).D["command"] == "reset" {
					return true
				}
			default:
				return false
			}
		}
	})
}
