package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.mqtt.golang/packets"

	"fieldbridge/config"
	"fieldbridge/internal/mqtttest"
	"fieldbridge/internal/testwait"
	"fieldbridge/platform"
	"fieldbridge/uplink"
)

// ackProxy is a TCP proxy between the bridge and Mosquitto that watches
// the MQTT packets going through it. It records, per device, every seq for
// which a PUBACK was written back to the bridge. That is what tells our
// losses from the broker's: the bridge may remove an event from its buffer
// only after a PUBACK for it, so a seq that left the buffer without one is
// ours; a seq that got its PUBACK and never reached the subscriber was lost
// by the broker (a SIGKILLed Mosquitto forgets what it held in memory).
//
// In device mode it also does what the platform does and Mosquitto does
// not: it rewrites a device's relative event topic (iot-2/evt/E/fmt/F) to
// the absolute one of the client id's device, so that the checker can
// tell the devices apart.
type ackProxy struct {
	t        *testing.T
	ln       net.Listener
	upstream string
	rewrite  bool // device-mode topics to absolute ones (for a plain broker)

	mu     sync.Mutex
	acked  map[string]map[uint64]bool // device -> seqs with a PUBACK sent to the bridge
	order  map[string][]uint64        // device -> seqs in the order of their first PUBACK
	conns  map[net.Conn]bool
	closed bool
	wg     sync.WaitGroup
}

// event is one (device, seq) carried by a PUBLISH.
type event struct {
	device string
	seq    uint64
}

func startAckProxy(t *testing.T, upstream string, rewrite bool) *ackProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &ackProxy{t: t, ln: ln, upstream: upstream, rewrite: rewrite, acked: map[string]map[uint64]bool{},
		order: map[string][]uint64{}, conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *ackProxy) url() string { return "tcp://" + p.ln.Addr().String() }

func (p *ackProxy) close() {
	_ = p.ln.Close()
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// track registers conns so that close can end them; it reports false once
// the proxy is closed.
func (p *ackProxy) track(conns ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	for _, c := range conns {
		p.conns[c] = true
	}
	return true
}

func (p *ackProxy) untrack(conns ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range conns {
		delete(p.conns, c)
	}
}

func (p *ackProxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		// While the broker is down the dial fails and the bridge sees its
		// connection closed, as it would see a refused one.
		broker, err := net.DialTimeout("tcp", p.upstream, time.Second)
		if err != nil {
			_ = client.Close()
			continue
		}
		if !p.track(client, broker) {
			_ = client.Close()
			_ = broker.Close()
			return
		}
		p.wg.Add(1)
		go p.relay(client, broker)
	}
}

// relay carries one connection both ways until either side ends, then
// closes both (a broker that died takes the bridge's connection with it).
func (p *ackProxy) relay(client, broker net.Conn) {
	defer p.wg.Done()
	defer p.untrack(client, broker)
	var mu sync.Mutex
	inflight := map[uint16]event{} // packet id -> the event it carries, on this connection
	var device *deviceID           // set by CONNECT in device mode
	done := make(chan struct{}, 2)
	end := func() {
		_ = client.Close()
		_ = broker.Close()
		done <- struct{}{}
	}
	go func() { // bridge -> broker
		defer end()
		r := bufio.NewReader(client)
		for {
			cp, err := packets.ReadPacket(r)
			if err != nil {
				return
			}
			switch pk := cp.(type) {
			case *packets.ConnectPacket:
				device = parseDeviceClientID(pk.ClientIdentifier)
			case *packets.PublishPacket:
				topic := pk.TopicName
				if device != nil && strings.HasPrefix(topic, "iot-2/evt/") {
					topic = "iot-2/type/" + device.typ + "/id/" + device.id + "/" + strings.TrimPrefix(topic, "iot-2/")
					if p.rewrite {
						pk.TopicName = topic
					}
				}
				if ev, ok := eventOf(topic, pk.Payload); ok && pk.Qos > 0 {
					mu.Lock()
					inflight[pk.MessageID] = ev
					mu.Unlock()
				}
			}
			if cp.Write(broker) != nil {
				return
			}
		}
	}()
	go func() { // broker -> bridge
		defer end()
		r := bufio.NewReader(broker)
		for {
			cp, err := packets.ReadPacket(r)
			if err != nil {
				return
			}
			if cp.Write(client) != nil {
				return
			}
			if pa, ok := cp.(*packets.PubackPacket); ok {
				mu.Lock()
				ev, known := inflight[pa.MessageID]
				delete(inflight, pa.MessageID)
				mu.Unlock()
				if known {
					p.noteAck(ev)
				}
			}
		}
	}()
	<-done
	<-done
}

func (p *ackProxy) noteAck(ev event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	seqs := p.acked[ev.device]
	if seqs == nil {
		seqs = map[uint64]bool{}
		p.acked[ev.device] = seqs
	}
	if !seqs[ev.seq] {
		seqs[ev.seq] = true
		p.order[ev.device] = append(p.order[ev.device], ev.seq)
	}
}

// ackedCount returns how many distinct seqs of device were acknowledged.
func (p *ackProxy) ackedCount(device string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.acked[device])
}

// unacked returns the seqs in 1..last of device that never got a PUBACK.
func (p *ackProxy) unacked(device string, last uint64) []uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []uint64
	for s := uint64(1); s <= last; s++ {
		if !p.acked[device][s] {
			out = append(out, s)
		}
	}
	return out
}

// firstAckOrder returns device's seqs in the order of their first PUBACK.
func (p *ackProxy) firstAckOrder(device string) []uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.order[device])
}

type deviceID struct{ typ, id string }

// parseDeviceClientID returns the device of a device-mode client id
// (d:org:type:id), nil for any other.
func parseDeviceClientID(clientID string) *deviceID {
	parts := strings.Split(clientID, ":")
	if len(parts) != 4 || parts[0] != "d" {
		return nil
	}
	return &deviceID{typ: parts[2], id: parts[3]}
}

// eventOf returns the device and seq of an absolute device event topic and
// its JSON payload.
func eventOf(topic string, payload []byte) (event, bool) {
	parts := strings.Split(topic, "/") // iot-2/type/T/id/D/evt/E/fmt/F
	if len(parts) != 9 || parts[5] != "evt" {
		return event{}, false
	}
	var v struct{ Seq uint64 }
	if json.Unmarshal(payload, &v) != nil || v.Seq == 0 {
		return event{}, false
	}
	return event{device: parts[4], seq: v.Seq}, true
}

// outagePlan is how many broker outages a run has and how long they last.
type outagePlan struct {
	outages        int
	minUp, maxUp   time.Duration
	minOff, maxOff time.Duration
	seed           uint64
}

// planOutages is a short plan for the normal suite; OUTAGE_SOAK=<n> runs n
// outages per case, OUTAGE_SEED=<n> repeats a run's random timings.
func planOutages(t *testing.T) outagePlan {
	p := outagePlan{outages: 2, minUp: 100 * time.Millisecond, maxUp: 400 * time.Millisecond,
		minOff: 50 * time.Millisecond, maxOff: 300 * time.Millisecond, seed: rand.Uint64()}
	if s := os.Getenv("OUTAGE_SOAK"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("OUTAGE_SOAK=%q: want a number of outages", s)
		}
		p.outages, p.maxUp, p.maxOff = n, time.Second, time.Second
	}
	if s := os.Getenv("OUTAGE_SEED"); s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("OUTAGE_SEED=%q: %v", s, err)
		}
		p.seed = seed
	}
	return p
}

func between(rng *rand.Rand, lo, hi time.Duration) time.Duration {
	return lo + time.Duration(rng.Int64N(int64(hi-lo)+1))
}

// TestBrokerRestartsLoseNothing restarts a real Mosquitto again and again
// after short outages (50 ms to 300 ms; OUTAGE_SOAK for up to 1 s) while
// three devices are polled every 10 to 50 ms, in device and in gateway
// mode, with the broker killed (SIGKILL: it forgets what it held in
// memory) or stopped (SIGTERM: it saves its sessions). The bridge talks to
// the broker through ackProxy, which records every PUBACK the bridge got.
//
// What is ours, checked in every case: after the final drain every seq
// 1..N of every device got a PUBACK (the bridge removed nothing it was not
// acknowledged for), the buffer is empty, and the seqs were first
// acknowledged in order. What is the broker's: with SIGTERM the durable
// checker must receive every seq (duplicates allowed); with SIGKILL the
// seqs the broker acknowledged and then forgot are counted and logged.
func TestBrokerRestartsLoseNothing(t *testing.T) {
	plan := planOutages(t)
	t.Logf("outages per case: %d; OUTAGE_SEED=%d repeats these timings", plan.outages, plan.seed)
	for _, mode := range []string{config.ModeDevice, config.ModeGateway} {
		for _, kill := range []bool{true, false} {
			name := mode + "/" + map[bool]string{true: "sigkill", false: "sigterm"}[kill]
			t.Run(name, func(t *testing.T) {
				t.Parallel() // each case has its own broker, proxy and simulators
				testBrokerRestarts(t, mode, kill, plan)
			})
		}
	}
}

func testBrokerRestarts(t *testing.T, mode string, kill bool, plan outagePlan) {
	rng := rand.New(rand.NewPCG(plan.seed, uint64(len(mode))*2+map[bool]uint64{true: 1}[kill]))
	broker := mqtttest.NewPersistentMosquitto(t)
	proxy := startAckProxy(t, broker.Addr(), true)
	r := startSimulation(t)
	if mode == config.ModeGateway {
		r.useGateway()
	}
	for _, d := range r.cfg.Devices {
		d.Poll = between(rng, 10*time.Millisecond, 50*time.Millisecond)
	}
	rec := startChecker(t, broker.URL())

	b, stop := runRestartBridge(t, r.cfg, proxy.url())
	defer stop() // a failed wait ends the test early

	// ackedPast waits until every device has more than n acknowledged seqs
	// beyond marks (the uplink of every device is up and sending).
	ackedPast := func(what string, marks map[string]int, n int) {
		t.Helper()
		testwait.For(t, waitTimeout, what, func() bool {
			for _, d := range r.cfg.Devices {
				if proxy.ackedCount(d.Name) <= marks[d.Name]+n {
					return false
				}
			}
			return true
		})
	}
	marks := func() map[string]int {
		m := map[string]int{}
		for _, d := range r.cfg.Devices {
			m[d.Name] = proxy.ackedCount(d.Name)
		}
		return m
	}

	ackedPast("events before the first outage", nil, 5)
	var down time.Duration
	subacks := rec.subacks.Load()
	for range plan.outages {
		time.Sleep(between(rng, plan.minUp, plan.maxUp)) // the broker is up: events flow
		off := between(rng, plan.minOff, plan.maxOff)
		subacks = rec.subacks.Load()
		if kill {
			broker.Kill()
		} else {
			broker.Stop()
		}
		time.Sleep(off)
		broker.Start()
		down += off
	}
	if kill {
		// The killed broker forgot the checker's session: what the bridge
		// publishes before the checker subscribes again is the broker's
		// loss, so the events counted below start after that SUBACK and the
		// last seq must reach the checker.
		testwait.For(t, waitTimeout, "the checker subscribed again", func() bool { return rec.subacks.Load() > subacks })
	}
	ackedPast("events after the last outage", marks(), 5)
	// Pollers stop first; the drain window sends what is buffered.
	if err := stop(); err != nil {
		t.Fatalf("bridge.Run = %v", err)
	}

	brokerLost := 0
	for _, d := range r.cfg.Devices {
		last := checkBridgeSide(t, b, proxy, d.Name)

		// The broker's side, seen by the durable checker.
		testwait.For(t, waitTimeout, "the last seq of "+d.Name+" at the checker", func() bool {
			return !slices.Contains(missingAt(rec, d.Name, last), last)
		})
		lost := missingAt(rec, d.Name, last)
		if kill {
			// A SIGKILLed broker forgets every message it had not yet
			// handed to the checker, whenever it acknowledged it.
			brokerLost += len(lost)
			if len(lost) > 0 {
				t.Logf("%s: %d seqs acknowledged by the SIGKILLed broker never reached the checker (the broker's loss): %v",
					d.Name, len(lost), lost[:min(len(lost), 20)])
			}
			continue
		}
		// Stopped with SIGTERM, a persistent Mosquitto saves the checker's
		// session and what is queued for it: nothing may be missing.
		if len(lost) > 0 {
			t.Errorf("%s: %d seqs acknowledged by the broker (SIGTERM, persistent) never reached the durable checker: %v",
				d.Name, len(lost), lost[:min(len(lost), 20)])
		}
	}
	t.Logf("%d outages, %v down in all; %d events lost by the broker", plan.outages, down.Round(time.Millisecond), brokerLost)
}

// missingAt returns the seqs in 1..last of device the checker has not
// received.
func missingAt(rec *receiver, device string, last uint64) []uint64 {
	got := map[uint64]bool{}
	for _, s := range rec.firsts(device) {
		got[s] = true
	}
	var out []uint64
	for s := uint64(1); s <= last; s++ {
		if !got[s] {
			out = append(out, s)
		}
	}
	return out
}

// outOfOrder describes the first place where order decreases.
func outOfOrder(order []uint64) string {
	for i := 1; i < len(order); i++ {
		if order[i] < order[i-1] {
			return fmt.Sprintf("%d after %d (at position %d of %d)", order[i], order[i-1], i, len(order))
		}
	}
	return "in order"
}

// TestPlatformRestartsLoseNothing is TestBrokerRestartsLoseNothing against
// the local platform (mochi, in this process): it is closed and a new one
// started on the same port after each short outage, in device and gateway
// mode. Its in-process subscriptions see every event it accepted, so here
// every seq must also have arrived.
func TestPlatformRestartsLoseNothing(t *testing.T) {
	plan := planOutages(t)
	t.Logf("outages per case: %d; OUTAGE_SEED=%d repeats these timings", plan.outages, plan.seed)
	for _, mode := range []string{config.ModeDevice, config.ModeGateway} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			testPlatformRestarts(t, mode, plan)
		})
	}
}

func testPlatformRestarts(t *testing.T, mode string, plan outagePlan) {
	rng := rand.New(rand.NewPCG(plan.seed, uint64(len(mode))))
	r := startSimulation(t)
	if mode == config.ModeGateway {
		r.useGateway()
	}
	for _, d := range r.cfg.Devices {
		d.Poll = between(rng, 10*time.Millisecond, 50*time.Millisecond)
	}
	rec := &receiver{seqs: map[string][]uint64{}}
	var feeders sync.WaitGroup
	defer feeders.Wait()
	addr := "127.0.0.1:0"
	start := func() *platform.Platform {
		t.Helper()
		var p *platform.Platform
		testwait.NoError(t, waitTimeout, func() error { // the old listener's port may linger a moment
			var err error
			if p, err = platform.New(platform.Config{Org: r.cfg.Platform.Org, Devices: r.registry(), Addr: addr}, quietLogger()); err != nil {
				return err
			}
			return p.Start()
		})
		sub, err := p.Subscribe("iot-2/type/+/id/+/evt/+/fmt/+")
		if err != nil {
			t.Fatal(err)
		}
		feeders.Add(1)
		go func() { // ends when Close closes the subscription
			defer feeders.Done()
			for m := range sub.C {
				rec.record(m.Topic, m.Payload)
			}
		}()
		addr = p.Addr()
		return p
	}
	plat := start()
	defer func() { plat.Close() }()
	proxy := startAckProxy(t, addr, false)

	b, stop := runRestartBridge(t, r.cfg, proxy.url())
	defer stop() // a failed wait ends the test early

	acked := func() map[string]int {
		m := map[string]int{}
		for _, d := range r.cfg.Devices {
			m[d.Name] = proxy.ackedCount(d.Name)
		}
		return m
	}
	ackedPast := func(what string, marks map[string]int) {
		t.Helper()
		testwait.For(t, waitTimeout, what, func() bool {
			for _, d := range r.cfg.Devices {
				if proxy.ackedCount(d.Name) <= marks[d.Name]+5 {
					return false
				}
			}
			return true
		})
	}
	ackedPast("events before the first outage", nil)
	for range plan.outages {
		time.Sleep(between(rng, plan.minUp, plan.maxUp))
		plat.Close()
		time.Sleep(between(rng, plan.minOff, plan.maxOff))
		plat = start()
	}
	ackedPast("events after the last outage", acked())
	if err := stop(); err != nil {
		t.Fatalf("bridge.Run = %v", err)
	}

	for _, d := range r.cfg.Devices {
		last := checkBridgeSide(t, b, proxy, d.Name)
		testwait.For(t, waitTimeout, "every seq of "+d.Name+" at the platform", func() bool {
			return len(missingAt(rec, d.Name, last)) == 0
		})
	}
}

// runRestartBridge runs a bridge for the restart tests against broker (the
// PUBACK-recording proxy) and returns it and runInBackground's stop.
func runRestartBridge(t *testing.T, cfg *config.Config, broker string) (b *bridge, stop func() error) {
	t.Helper()
	opts := bridgeOptions{Broker: broker, InMemoryBuffer: true, Drain: 20 * time.Second, tuneLinks: fastReconnect}
	b, err := newBridge(cfg, opts, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	return b, runInBackground(t, b)
}

// fastReconnect tunes the restart tests' uplinks. They reconnect within
// tens of milliseconds, so that many outages hit live connections with
// publishes in flight; a connection that lasted 50 ms counts as stable, or
// three restarts in a row would look like a client id takeover (5 minutes of
// LongBackoff). An attempt caught by a dying broker fails fast and is
// retried, and a writer caught in paho's Publish when the broker died (Run
// waits for it at exit) gives up within 2 s, not 30.
func fastReconnect(lc *uplink.Config) {
	lc.MinBackoff, lc.MaxBackoff, lc.StableAfter = 20*time.Millisecond, 200*time.Millisecond, 50*time.Millisecond
	lc.ConnectTimeout, lc.WriteTimeout = 2*time.Second, 2*time.Second
}

// checkBridgeSide checks what is the bridge's after a restart test's final
// drain, for one device: nothing dropped by policy, nothing left buffered,
// every seq got a PUBACK before it left the buffer, and the seqs were first
// acknowledged in order. It returns the device's last seq.
func checkBridgeSide(t *testing.T, b *bridge, proxy *ackProxy, device string) (last uint64) {
	t.Helper()
	st := b.store.QueueStats(device)
	last = st.NextSeq - 1
	if st.Dropped+st.Failed+st.Corrupt+st.Skipped != 0 {
		t.Fatalf("%s: the buffer dropped events by policy (%+v); this test needs them all", device, st)
	}
	if st.Len != 0 {
		t.Errorf("%s: %d events still buffered after the drain", device, st.Len)
	}
	if missing := proxy.unacked(device, last); len(missing) > 0 {
		t.Errorf("%s: LOST by the bridge: %d of seqs 1..%d left the buffer without a PUBACK: %v",
			device, len(missing), last, missing[:min(len(missing), 20)])
	}
	if order := proxy.firstAckOrder(device); !slices.IsSorted(order) {
		t.Errorf("%s: seqs first acknowledged out of order: %v", device, outOfOrder(order))
	}
	return last
}
