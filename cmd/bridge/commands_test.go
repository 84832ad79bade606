package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"fieldbridge/adapters"
	"fieldbridge/config"
	"fieldbridge/internal/mqtttest"
	"fieldbridge/platform"
	"fieldbridge/simulator"
)

// bank returns the simulated unit of a device on a Modbus TCP bus.
func (r *rig) bank(t *testing.T, bus string, unit byte) *simulator.Bank {
	t.Helper()
	for _, s := range r.sims.servers {
		if s.bus == bus {
			return s.server.Unit(unit)
		}
	}
	t.Fatalf("no simulator for bus %s", bus)
	return nil
}

// writesAt returns the simulator's writes at one address.
func writesAt(b *simulator.Bank, table adapters.Table, addr uint16) []simulator.Write {
	var out []simulator.Write
	for _, w := range b.Writes() {
		if w.Table == table && w.Address == addr {
			out = append(out, w)
		}
	}
	return out
}

// resultWaiter reads command events from a channel of (topic, payload).
type resultWaiter struct {
	t     *testing.T
	topic string
	c     <-chan [2][]byte
}

func (w resultWaiter) next() payload {
	w.t.Helper()
	timeout := time.After(15 * time.Second)
	for {
		select {
		case m := <-w.c:
			if string(m[0]) == w.topic {
				return decode(w.t, m[1])
			}
		case <-timeout:
			w.t.Fatalf("no command result on %s", w.topic)
		}
	}
}

func platformMessages(sub *platform.Subscription) <-chan [2][]byte {
	c := make(chan [2][]byte, 1000)
	go func() {
		for m := range sub.C {
			select {
			case c <- [2][]byte{[]byte(m.Topic), m.Payload}:
			default:
			}
		}
	}()
	return c
}

// TestCommandsAgainstPlatform: in device and gateway mode, commands sent by
// the local platform are written on the simulator and answered with one
// result each; bad ones are answered with an error and write nothing; a
// redelivered reqId is not written twice; the gateway answers its own.
func TestCommandsAgainstPlatform(t *testing.T) {
	for _, mode := range []string{config.ModeDevice, config.ModeGateway} {
		t.Run(mode, func(t *testing.T) {
			r := startSimulation(t)
			r.cfg.Devices = r.cfg.Devices[:1] // m1
			if mode == config.ModeGateway {
				r.useGateway()
			}
			sub := r.startPlatform(t)
			msgs := platformMessages(sub)
			r.runBridge(t, "tcp://"+r.plat.Addr())
			results := resultWaiter{t, "iot-2/type/meter/id/m1/evt/command/fmt/json", msgs}
			bank := r.bank(t, "b1", 1)
			send := func(command, body string) {
				t.Helper()
				// The first command may come before the bridge subscribed;
				// its durable session keeps it (QoS 1).
				if err := r.plat.SendCommand("meter", "m1", command, "json", []byte(body)); err != nil {
					t.Fatal(err)
				}
			}
			testwaitReading(t, msgs)

			send("set_limit", `{"d":{"value":77},"reqId":"r1"}`)
			res := results.next()
			if res.D["ok"] != true || res.D["reqId"] != "r1" || !sameJSON(res.D["written"], `{"limit":77}`) || !sameJSON(res.D["readback"], `{"limit":77}`) {
				t.Errorf("set_limit result = %v", res.D)
			}
			if w := writesAt(bank, adapters.HoldingRegister, 10); len(w) != 1 || w[0].Registers[0] != 77 || w[0].Function != simulator.FuncWriteSingleRegister {
				t.Errorf("simulator writes at 10: %+v", w)
			}

			send("set_limit", `{"d":{"value":77},"reqId":"r1"}`) // a redelivery
			send("set_limit", `{"d":{"value":501},"reqId":"r2"}`)
			res = results.next()
			if res.D["ok"] != false || res.D["reqId"] != "r2" || !strings.Contains(res.D["error"].(string), "outside") {
				t.Errorf("out-of-range result = %v", res.D)
			}
			send("fly", `{"reqId":"r3"}`)
			res = results.next()
			if res.D["ok"] != false || !strings.Contains(res.D["error"].(string), `unknown command "fly"`) {
				t.Errorf("unknown command result = %v", res.D)
			}
			send("ack", `not json`)
			res = results.next()
			if res.D["ok"] != false || !strings.Contains(res.D["error"].(string), "not a JSON object") {
				t.Errorf("bad JSON result = %v", res.D)
			}
			if w := writesAt(bank, adapters.HoldingRegister, 10); len(w) != 1 {
				t.Errorf("register 10 written %d times, want once (duplicate or refused commands written): %+v", len(w), w)
			}
			if w := writesAt(bank, adapters.HoldingRegister, 11); len(w) != 0 {
				t.Errorf("a refused command wrote: %+v", w)
			}

			if mode == config.ModeGateway {
				if err := r.plat.SendCommand("edge-gw", "gw-1", "ping", "json", []byte(`{"reqId":"g1"}`)); err != nil {
					t.Fatal(err)
				}
				res := resultWaiter{t, "iot-2/type/edge-gw/id/gw-1/evt/command/fmt/json", msgs}.next()
				if res.D["ok"] != true || res.D["command"] != "ping" || res.D["reqId"] != "g1" {
					t.Errorf("gateway ping result = %v", res.D)
				}
			}
			if v := r.plat.Violations(); len(v) > 0 {
				t.Errorf("platform violations: %+v", v)
			}
		})
	}
}

// testwaitReading waits until the bridge published a reading, so that it
// is connected and subscribed.
func testwaitReading(t *testing.T, msgs <-chan [2][]byte) {
	t.Helper()
	timeout := time.After(15 * time.Second)
	for {
		select {
		case m := <-msgs:
			if strings.HasSuffix(string(m[0]), "/evt/reading/fmt/json") {
				return
			}
		case <-timeout:
			t.Fatal("no reading from the bridge")
		}
	}
}

func sameJSON(got any, want string) bool {
	var w any
	if json.Unmarshal([]byte(want), &w) != nil {
		return false
	}
	a, _ := json.Marshal(got)
	b, _ := json.Marshal(w)
	return string(a) == string(b)
}

// TestCommandsAgainstMosquitto: the same round trip through a third-party
// broker, in device mode (relative topics) and gateway mode (qualified
// topics), with a read-modify-write of a bit while the device is polled
// and an inbound message over 128 KiB refused with a result.
func TestCommandsAgainstMosquitto(t *testing.T) {
	for _, mode := range []string{config.ModeDevice, config.ModeGateway} {
		t.Run(mode, func(t *testing.T) {
			addr := mqtttest.StartMosquitto(t)
			r := startSimulation(t)
			r.cfg.Devices = r.cfg.Devices[:1] // m1
			cmdTopic := func(c string) string { return "iot-2/cmd/" + c + "/fmt/json" }
			resultTopic := "iot-2/evt/command/fmt/json"
			if mode == config.ModeGateway {
				r.useGateway()
				cmdTopic = func(c string) string { return "iot-2/type/meter/id/m1/cmd/" + c + "/fmt/json" }
				resultTopic = "iot-2/type/meter/id/m1/evt/command/fmt/json"
			}
			msgs := make(chan [2][]byte, 1000)
			opts := mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("app").SetAutoReconnect(false)
			app := mqtt.NewClient(opts)
			if tok := app.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
				t.Fatalf("connect: %v", tok.Error())
			}
			t.Cleanup(func() { app.Disconnect(100) })
			if tok := app.Subscribe("#", 1, func(_ mqtt.Client, m mqtt.Message) {
				select {
				case msgs <- [2][]byte{[]byte(m.Topic()), m.Payload()}:
				default:
				}
			}); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
				t.Fatalf("subscribe: %v", tok.Error())
			}
			r.runBridge(t, "tcp://"+addr)
			testwaitReading(t, msgs)
			bank := r.bank(t, "b1", 1)
			if err := bank.SetRegisters(adapters.HoldingRegister, 11, []uint16{0x8001}); err != nil {
				t.Fatal(err)
			}
			publish := func(topic string, body []byte) {
				t.Helper()
				if tok := app.Publish(topic, 1, false, body); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
					t.Fatalf("publish: %v", tok.Error())
				}
			}
			results := resultWaiter{t, resultTopic, msgs}

			publish(cmdTopic("ack"), []byte(`{"reqId":"a1"}`))
			res := results.next()
			if res.D["ok"] != true || res.D["reqId"] != "a1" || !sameJSON(res.D["written"], `{"alarm_ack":true}`) {
				t.Errorf("ack result = %v", res.D)
			}
			if got, _ := bank.Registers(adapters.HoldingRegister, 11, 1); got[0] != 0x8009 {
				t.Errorf("register 11 = %04X, want 8009 (bit 3 set, others kept)", got[0])
			}

			big := []byte(`{"d":{"value":1,"pad":"` + strings.Repeat("x", 140000) + `"},"reqId":"big"}`)
			publish(cmdTopic("set_limit"), big)
			res = results.next()
			if res.D["ok"] != false || !strings.Contains(res.D["error"].(string), "128 KiB") {
				t.Errorf("oversize result = %v", res.D)
			}
			publish(cmdTopic("set_limit"), []byte(`{"d":{"value":5},"reqId":"s1"}`))
			res = results.next()
			if res.D["ok"] != true || res.D["reqId"] != "s1" {
				t.Errorf("set_limit result = %v", res.D)
			}
			if w := writesAt(bank, adapters.HoldingRegister, 10); len(w) != 1 || w[0].Registers[0] != 5 {
				t.Errorf("writes at 10: %+v (the oversize command must write nothing)", w)
			}
		})
	}
}

// TestPlatformSendWait: `bridge platform send -wait` prints the round trip.
func TestPlatformSendWait(t *testing.T) {
	r := startSimulation(t)
	r.cfg.Devices = r.cfg.Devices[:1] // m1
	sub := r.startPlatform(t)
	if err := r.plat.RegisterAPIKey(platform.APIKey{Key: "a-test01-cli0000001", Token: "app-token-1"}); err != nil {
		t.Fatal(err)
	}
	r.runBridge(t, "tcp://"+r.plat.Addr())
	testwaitReading(t, platformMessages(sub))
	var out, errs strings.Builder
	code := run(context.Background(), func() {}, []string{"platform", "send", "-broker", "tcp://" + r.plat.Addr(), "-org", "test01",
		"-key", "a-test01-cli0000001", "-token", "app-token-1", "-type", "meter", "-id", "m1", "-command", "set_limit",
		"-payload", `{"d":{"value":321}}`, "-wait"}, &out, &errs)
	if code != exitOK {
		t.Fatalf("platform send -wait: exit %d: %s\n%s", code, errs.String(), out.String())
	}
	if !strings.Contains(out.String(), `"written":{"limit":321}`) || !strings.Contains(out.String(), `"readback":{"limit":321}`) || !strings.Contains(out.String(), `"reqId":"cli-`) {
		t.Errorf("output:\n%s", out.String())
	}
	if w := writesAt(r.bank(t, "b1", 1), adapters.HoldingRegister, 10); len(w) != 1 || w[0].Registers[0] != 321 {
		t.Errorf("simulator writes: %+v", w)
	}
}
