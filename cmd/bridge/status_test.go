package main

import (
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"fieldbridge/internal/testwait"
)

// resettingDevice accepts Modbus TCP connections, reads the request and
// resets the connection, like a device whose Modbus server crashes on every
// request. It returns its address and the count of connections it reset.
func resettingDevice(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var resets atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Read(make([]byte, 260))
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
			resets.Add(1)
		}
	}()
	return ln.Addr().String(), &resets
}

// TestDownDeviceRetriedPublishesOneDown runs the bridge against the local
// platform with boiler-9 behind a device that resets every connection (each
// retry from a new local port). However often it is retried, the platform
// gets exactly one status event for it: down, with an error text that does
// not name the local address.
func TestDownDeviceRetriedPublishesOneDown(t *testing.T) {
	r := startSimulation(t)
	addr, resets := resettingDevice(t)
	for _, b := range r.cfg.Buses {
		if b.Name == "b2" {
			b.Address = addr
		}
	}
	sub := r.startPlatform(t)
	b, err := newBridge(r.cfg, bridgeOptions{Broker: "tcp://" + r.plat.Addr(), InMemoryBuffer: true, Drain: 10 * time.Second}, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	// Three cycles of boiler-9 have been handled once the fourth attempt
	// reaches the device; the drain window then delivers their events.
	testwait.For(t, 30*time.Second, "4 attempts to read boiler-9", func() bool { return resets.Load() >= 4 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("bridge.Run = %v", err)
	}

	// The platform acknowledges a publish before it hands it to its
	// subscribers: wait for the first status, then take what is there.
	var statuses []payload
	take := func() {
		for {
			select {
			case m := <-sub.C:
				if m.Topic == "iot-2/type/boiler/id/boiler-9/evt/status/fmt/json" {
					statuses = append(statuses, decode(t, m.Payload))
				}
			default:
				return
			}
		}
	}
	testwait.For(t, 10*time.Second, "boiler-9's status event", func() bool { take(); return len(statuses) > 0 })
	take()
	if len(statuses) != 1 || statuses[0].D["status"] != "down" {
		t.Fatalf("boiler-9 retried %d times: status events %v, want exactly one down", resets.Load(), statuses)
	}
	if msg, _ := statuses[0].D["error"].(string); msg == "" || strings.Contains(msg, "->") {
		t.Errorf("down status error %q: want a text without the local address", msg)
	}
}
