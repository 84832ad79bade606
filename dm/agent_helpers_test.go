package dm_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"fieldbridge/dm"
	"fieldbridge/internal/testwait"
	"fieldbridge/platform"
	"fieldbridge/uplink"
)

const (
	testOrg   = "ab12cd"
	gwType    = "edge-gw"
	gwID      = "gw-01"
	meterType = "meter"
	waitLong  = 10 * time.Second
	bundle    = "acme-modbus-v1"
)

// requestHandler is the interface the MQTT router (dm.Mux) calls the agent
// through; declared here so that the tests check the agent satisfies it.
type requestHandler interface {
	HandleRequest(ctx context.Context, deviceType, deviceID, rest string, payload []byte)
}

var _ requestHandler = (*dm.Agent)(nil)

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// sent is one message the agent published.
type sent struct {
	Topic   string
	Payload []byte
}

// tee passes the agent's publishes to a real link and records them, so a
// test can see responses and notifies (the platform consumes them, R4).
type tee struct {
	link dm.Publisher
	mu   sync.Mutex
	msgs []sent
}

func (p *tee) Publish(ctx context.Context, topic string, payload []byte) <-chan error {
	p.mu.Lock()
	p.msgs = append(p.msgs, sent{topic, append([]byte(nil), payload...)})
	p.mu.Unlock()
	return p.link.Publish(ctx, topic, payload)
}

// find returns the recorded messages on topics ending in suffix.
func (p *tee) find(suffix string) []sent {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []sent
	for _, m := range p.msgs {
		if strings.HasSuffix(m.Topic, suffix) {
			out = append(out, m)
		}
	}
	return out
}

// notifies returns the values of field in the recorded notifies, in order.
func (p *tee) notifies(field string) []json.RawMessage {
	var out []json.RawMessage
	for _, m := range p.find("/notify") {
		var n struct {
			D struct {
				Fields []struct {
					Field string
					Value json.RawMessage
				}
			}
		}
		if json.Unmarshal(m.Payload, &n) != nil {
			continue
		}
		for _, f := range n.D.Fields {
			if f.Field == field {
				out = append(out, f.Value)
			}
		}
	}
	return out
}

// agentRig is an agent managing field devices against the local platform, in
// device form (a connection per device) or gateway form (one gateway
// connection, the gateway managed too).
type agentRig struct {
	p       *platform.Platform
	agent   *dm.Agent
	gateway bool
	pubs    map[string]*tee // by device id
	cancel  context.CancelFunc
	done    chan struct{}
}

// startRig starts the platform, one link per connection and the agent for
// the devices (type meter) described by devs; edit may change the agent's
// config before it starts.
func startRig(t *testing.T, gateway bool, devs []dm.Device, edit func(*dm.Config), platformEdit ...func(*platform.Config)) *agentRig {
	t.Helper()
	pcfg := platform.Config{Org: testOrg, ExtensionBundles: []string{bundle}}
	for _, e := range platformEdit {
		e(&pcfg)
	}
	pcfg.Devices = append(pcfg.Devices, platform.Device{Type: gwType, ID: gwID, Token: "gw-token", Gateway: true})
	for _, d := range devs {
		pcfg.Devices = append(pcfg.Devices, platform.Device{Type: d.Type, ID: d.ID, Token: d.ID + "-token"})
	}
	// Info, not Debug: mochi's event loop logs at Debug after Close returned.
	p, err := platform.New(pcfg, slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	r := &agentRig{p: p, gateway: gateway, pubs: map[string]*tee{}, done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel

	var agent *dm.Agent // set below, before any link runs
	var links []*uplink.Client
	newLink := func(clientID, token string, subs []uplink.Subscription, route func(topic string) (typ, id, rest string, ok bool), connected func()) *uplink.Client {
		l, err := uplink.New(uplink.Config{
			Broker: "tcp://" + p.Addr(), ClientID: clientID, Username: uplink.TokenAuthUsername, Password: token,
			QoS: 1, MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, Subscriptions: subs,
			Handler: uplink.HandlerFunc(func(ctx context.Context, topic string, payload []byte) error {
				if typ, id, rest, ok := route(topic); ok {
					agent.HandleRequest(ctx, typ, id, rest, payload)
				}
				return nil
			}),
			OnStateChange: func(up bool, _ error) {
				if up {
					connected()
				}
			},
		}, testLogger(t).With("link", clientID))
		if err != nil {
			t.Fatal(err)
		}
		links = append(links, l)
		return l
	}

	cfg := dm.Config{RetryMin: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond, ResponseTimeout: 5 * time.Second, StagingDir: t.TempDir(), AllowHTTP: true,
		FaultHold: time.Nanosecond} // faults clear with the next good poll
	if gateway {
		var ids []string
		gw := &tee{}
		l := newLink(uplink.GatewayClientID(uplink.Identity{Org: testOrg, Type: gwType, ID: gwID}), "gw-token",
			[]uplink.Subscription{{Filter: "iotdm-1/type/+/id/+/#", QoS: 1}}, qualified,
			func() {
				for _, id := range ids {
					agent.Connected(typeOf(devs, id), id)
				}
			})
		gw.link = l
		r.pubs[gwID] = gw
		ids = append(ids, gwID)
		cfg.Devices = append(cfg.Devices, dm.Device{Type: gwType, ID: gwID, Gateway: true, Link: gw,
			DeviceInfo: map[string]string{"deviceClass": "gateway"}})
		for _, d := range devs {
			d.Gateway, d.Link = true, gw
			ids = append(ids, d.ID)
			cfg.Devices = append(cfg.Devices, d)
		}
	} else {
		for _, d := range devs {
			pub := &tee{}
			pub.link = newLink(uplink.DeviceClientID(uplink.Identity{Org: testOrg, Type: d.Type, ID: d.ID}), d.ID+"-token",
				[]uplink.Subscription{{Filter: "iotdm-1/#", QoS: 1}},
				func(topic string) (string, string, string, bool) {
					rest, ok := strings.CutPrefix(topic, "iotdm-1/")
					return d.Type, d.ID, rest, ok
				},
				func() { agent.Connected(d.Type, d.ID) })
			r.pubs[d.ID] = pub
			d.Link = pub
			cfg.Devices = append(cfg.Devices, d)
		}
	}
	if edit != nil {
		edit(&cfg)
	}
	agent, err = dm.NewAgent(cfg, testLogger(t).With("component", "dm"))
	if err != nil {
		t.Fatal(err)
	}
	r.agent = agent

	linkCtx, stopLinks := context.WithCancel(context.Background())
	var linksDone sync.WaitGroup
	for _, l := range links {
		linksDone.Add(1)
		go func() { defer linksDone.Done(); l.Run(linkCtx) }()
	}
	go func() {
		agent.Run(ctx)
		stopLinks() // the links outlive the agent, for its Unmanage
		linksDone.Wait()
		close(r.done)
	}()
	t.Cleanup(r.stop)
	return r
}

// stop stops the agent (it unmanages its devices) and then the links.
func (r *agentRig) stop() {
	r.cancel()
	<-r.done
}

func typeOf(devs []dm.Device, id string) string {
	for _, d := range devs {
		if d.ID == id {
			return d.Type
		}
	}
	return gwType
}

// qualified routes iotdm-1/type/<t>/id/<i>/<rest>.
func qualified(topic string) (typ, id, rest string, ok bool) {
	parts := strings.SplitN(topic, "/", 6)
	if len(parts) != 6 || parts[0] != "iotdm-1" || parts[1] != "type" || parts[3] != "id" {
		return "", "", "", false
	}
	return parts[2], parts[4], parts[5], true
}

// waitManaged waits until the platform has typ/id managed.
func (r *agentRig) waitManaged(t *testing.T, typ, id string) platform.DMState {
	t.Helper()
	var st platform.DMState
	testwait.For(t, waitLong, typ+"/"+id+" managed", func() bool {
		var ok bool
		st, ok = r.p.Managed(typ, id)
		return ok
	})
	return st
}

// action starts a DM action from the platform and returns the device's rc.
func (r *agentRig) action(t *testing.T, id, action string, params map[string]string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	rc, err := r.p.DeviceAction(ctx, meterType, id, action, params)
	if err != nil {
		t.Fatalf("DeviceAction %s on %s: %v", action, id, err)
	}
	return rc
}

// forms runs f in device form and in gateway form.
func forms(t *testing.T, f func(t *testing.T, gateway bool)) {
	for _, gateway := range []bool{false, true} {
		name := "device"
		if gateway {
			name = "gateway"
		}
		t.Run(name, func(t *testing.T) { f(t, gateway) })
	}
}

// commands is a CommandRunner that records the commands it runs and fails
// with err when set.
type commands struct {
	mu   sync.Mutex
	ran  []string // device/command payload
	fail error
}

func (c *commands) RunCommand(ctx context.Context, device, command string, payload []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail != nil {
		return c.fail
	}
	c.ran = append(c.ran, device+"/"+command+" "+string(payload))
	return nil
}

func (c *commands) list() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.ran...)
}
