package main

import (
	"encoding/json"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"fieldbridge/config"
	"fieldbridge/internal/mqtttest"

	"fieldbridge/internal/testwait"
)

// receiver is a durable MQTT subscriber that records, per device, every seq
// in the order it arrived (duplicates included).
type receiver struct {
	mu   sync.Mutex
	seqs map[string][]uint64
	// subacks counts the subscriptions the broker acknowledged (one per
	// connection of a checker): after a broker that lost its sessions comes
	// back, only events published after the next one can reach the checker.
	subacks atomic.Int32
}

func (r *receiver) handle(_ mqtt.Client, m mqtt.Message) { r.record(m.Topic(), m.Payload()) }

// record notes the seq of one event; it reports false for a topic that is
// not a device event's or a payload that is not JSON.
func (r *receiver) record(topic string, payload []byte) bool {
	// iot-2/type/T/id/D/evt/E/fmt/json
	parts := strings.Split(topic, "/")
	if len(parts) != 9 {
		return false
	}
	var p struct{ Seq uint64 }
	if json.Unmarshal(payload, &p) != nil {
		return false
	}
	r.mu.Lock()
	r.seqs[parts[4]] = append(r.seqs[parts[4]], p.Seq)
	r.mu.Unlock()
	return true
}

// total returns how many events arrived, duplicates included.
func (r *receiver) total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, s := range r.seqs {
		n += len(s)
	}
	return n
}

// firsts returns the seqs of a device in order of first arrival.
func (r *receiver) firsts(device string) []uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[uint64]bool{}
	var out []uint64
	for _, s := range r.seqs[device] {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// startChecker connects a durable subscriber ("checker", QoS 1, clean
// session off) to every device event on the broker at url.
func startChecker(t *testing.T, url string) *receiver {
	t.Helper()
	rec := &receiver{seqs: map[string][]uint64{}}
	subscribed := make(chan error, 1)
	opts := mqtt.NewClientOptions().AddBroker(url).SetClientID("checker").
		SetCleanSession(false).SetAutoReconnect(true).SetMaxReconnectInterval(200 * time.Millisecond).
		SetConnectTimeout(2 * time.Second). // an attempt caught by a dying broker is retried soon
		SetOnConnectHandler(func(c mqtt.Client) {
			tok := c.Subscribe("iot-2/type/+/id/+/evt/+/fmt/+", 1, rec.handle)
			go func() {
				tok.Wait()
				if tok.Error() == nil {
					rec.subacks.Add(1)
				}
				select {
				case subscribed <- tok.Error():
				default: // a later connection's: nobody waits for it
				}
			}()
		})
	sub := mqtt.NewClient(opts)
	if tok := sub.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscriber connect: %v", tok.Error())
	}
	t.Cleanup(func() { sub.Disconnect(100) })
	// Connected is not subscribed: events published before the SUBACK of
	// the first connection (no session yet) would never reach the checker.
	select {
	case err := <-subscribed:
		if err != nil {
			t.Fatalf("subscriber subscribe: %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("subscriber: no SUBACK")
	}
	return rec
}

// TestBrokerOutageUnderLoad stops a real Mosquitto for a while as three
// devices are polled every 10 ms, starts it again, and checks from a durable
// subscriber that every seq the bridge appended arrived, in order per device
// (duplicates allowed), with nothing lost in the outage.
func TestBrokerOutageUnderLoad(t *testing.T) {
	broker := mqtttest.NewPersistentMosquitto(t)
	r := startSimulation(t)
	r.cfg.Platform.Mode = config.ModeGateway
	r.cfg.Platform.Gateway = &config.Gateway{Type: "edge-gw", ID: "gw-1", Token: "gateway-token"}
	for _, d := range r.cfg.Devices {
		d.Poll = 10 * time.Millisecond
	}

	rec := startChecker(t, broker.URL())

	b, err := newBridge(r.cfg, bridgeOptions{Broker: broker.URL(), InMemoryBuffer: true, Drain: 20 * time.Second}, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	stop := runInBackground(t, b)

	testwait.For(t, waitTimeout, "events before the outage", func() bool { return len(rec.firsts("m1")) >= 20 })
	broker.Stop()
	outage := time.Now()
	testwait.For(t, waitTimeout, "events buffered during the outage", func() bool {
		return b.store.QueueStats("m1").Len >= 50 && time.Since(outage) > time.Second
	})
	broker.Start()
	testwait.For(t, waitTimeout, "events after the outage", func() bool {
		f := rec.firsts("m1") // once: a second call may see more
		return len(f) > 0 && f[len(f)-1] > b.store.QueueStats("m1").NextSeq-20
	})
	// Pollers stop first; the drain window sends what is buffered.
	if err := stop(); err != nil {
		t.Fatalf("bridge.Run = %v", err)
	}

	for _, d := range r.cfg.Devices {
		last := b.store.QueueStats(d.Name).NextSeq - 1
		testwait.For(t, waitTimeout, "every seq of "+d.Name, func() bool {
			f := rec.firsts(d.Name)
			return len(f) > 0 && f[len(f)-1] == last
		})
		got := rec.firsts(d.Name)
		for i, s := range got {
			if s != uint64(i+1) {
				t.Fatalf("%s: seq %d arrived where %d was due (first arrivals %v...)", d.Name, s, i+1, got[:min(len(got), i+5)])
			}
		}
		t.Logf("%s: %d events, %d deliveries (duplicates allowed)", d.Name, last, len(rec.seqs[d.Name]))
	}
}

// waitTimeout bounds every wait for something the bridge should do.
const waitTimeout = 30 * time.Second
