package dm_test

import (
	"context"
	"errors"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"fieldbridge/adapters"
	"fieldbridge/dm"
	"fieldbridge/internal/testwait"
	"fieldbridge/simulator"
)

// TestCommandWritesAndReadsBack: a command is written on the simulator (it
// records the write) and read back; the result says both.
func TestCommandWritesAndReadsBack(t *testing.T) {
	r := newRig(t, dm.ExecutorConfig{})
	r.send("set_speed", `{"d":{"value":1450},"reqId":"a-1"}`)
	res := r.results.next(t)
	want := dm.Result{Command: "set_speed", ReqID: "a-1", OK: true, Class: dm.ClassOK,
		Written: []dm.NamedValue{{Name: "speed", Value: uint64(1450)}}, Readback: []dm.NamedValue{{Name: "speed", Value: uint64(1450)}}}
	if diff := cmp.Diff(want, res, cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".Time" }, cmp.Ignore())); diff != "" {
		t.Errorf("result (-want +got):\n%s", diff)
	}
	writes := r.bank.Writes()
	if len(writes) != 1 || writes[0].Function != simulator.FuncWriteSingleRegister || writes[0].Address != 10 || writes[0].Registers[0] != 1450 {
		t.Errorf("simulator saw %+v, want one FC6 of 1450 at 10", writes)
	}
	p, err := res.Payload(7)
	if err != nil || !strings.Contains(string(p), `"d":{"command":"set_speed","reqId":"a-1","ok":true,"written":{"speed":1450},"readback":{"speed":1450}}`) ||
		!strings.HasSuffix(string(p), `"seq":7}`) {
		t.Errorf("payload = %s, %v", p, err)
	}
}

// TestBadCommands: each bad command gets one result with a clear error, and
// nothing reaches the device.
func TestBadCommands(t *testing.T) {
	cases := []struct {
		name, command, payload string
		setup                  func(r *rig)
		wantErr                string
		wantClass              string // dm.ClassRejected when empty
	}{
		{name: "unknown command", command: "fly", payload: `{}`, wantErr: `unknown command "fly"`},
		{name: "bad JSON", command: "set_speed", payload: `{"d":{"value":`, wantErr: "bad command payload: not a JSON object"},
		{name: "missing value", command: "set_speed", payload: `{"d":{}}`, wantErr: "no value at $.d.value"},
		{name: "out of range", command: "set_speed", payload: `{"d":{"value":3001}}`, wantErr: `point "speed": 3001 is outside [0, 3000]`},
		{name: "wrong type", command: "set_speed", payload: `{"d":{"value":"fast"}}`, wantErr: `point "speed" takes a number`},
		{name: "second write bad", command: "start", payload: `{"d":{"value":-5}}`, wantErr: "outside [0, 3000]"},
		{name: "not writable", command: "set_temp", payload: `{"d":{"value":5}}`, wantErr: `point "temp": point is not writable`},
		{name: "modbus exception", command: "clear_alarm", payload: `{}`,
			setup:   func(r *rig) { r.bank.SetException(adapters.HoldingRegister, 30, 1, adapters.ExIllegalAddress) },
			wantErr: "modbus exception 2 (illegal data address)", wantClass: dm.ClassException},
		{name: "device down", command: "set_speed", payload: `{"d":{"value":5}}`,
			setup: func(r *rig) {
				r.srv.SetFaults(1, simulator.Faults{Silent: true})
				for rd := range r.cycles {
					if errors.Is(rd.Err(), adapters.ErrTimeout) {
						break
					}
				}
			},
			wantErr: "device is down", wantClass: dm.ClassDeviceDown},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t, dm.ExecutorConfig{})
			if c.setup != nil {
				c.setup(r)
			}
			r.send(c.command, c.payload)
			res := r.results.next(t)
			if res.OK || !strings.Contains(res.Error, c.wantErr) || res.Command != c.command {
				t.Errorf("result = %+v, want an error with %q", res, c.wantErr)
			}
			if len(res.Written) != 0 || len(r.bank.Writes()) != 0 {
				t.Errorf("written %v; simulator saw %v; want nothing", res.Written, r.bank.Writes())
			}
			want := c.wantClass
			if want == "" {
				want = dm.ClassRejected
			}
			if res.Class != want {
				t.Errorf("class = %q, want %q", res.Class, want)
			}
		})
	}
}

// TestDuplicateReqIDNotWrittenTwice: a QoS 1 redelivery carries the same
// reqId; the device sees one write and the sender one result.
func TestDuplicateReqIDNotWrittenTwice(t *testing.T) {
	r := newRig(t, dm.ExecutorConfig{})
	for range 3 {
		r.send("set_speed", `{"d":{"value":100},"reqId":"same"}`)
	}
	r.send("set_speed", `{"d":{"value":200},"reqId":"other"}`)
	first, second := r.results.next(t), r.results.next(t)
	if first.ReqID != "same" || second.ReqID != "other" || !first.OK || !second.OK {
		t.Fatalf("results %+v, %+v", first, second)
	}
	if n := len(r.bank.Writes()); n != 2 {
		t.Errorf("simulator saw %d writes, want 2: %+v", n, r.bank.Writes())
	}
	if st := r.exec.Stats(); st.Duplicates != 2 || st.Done != 2 {
		t.Errorf("stats = %+v, want 2 duplicates and 2 done", st)
	}
	select {
	case extra := <-r.results.c:
		t.Errorf("an extra result: %+v", extra)
	default:
	}
}

// TestOversizeRefused: a payload over 128 KiB is answered at once and not
// looked at further; nothing is written.
func TestOversizeRefused(t *testing.T) {
	r := newRig(t, dm.ExecutorConfig{})
	big := `{"d":{"value":1,"pad":"` + strings.Repeat("x", dm.MaxInbound) + `"},"reqId":"big"}`
	r.send("set_speed", big)
	res := r.results.next(t)
	if res.OK || !strings.Contains(res.Error, "over the 128 KiB limit") || res.ReqID != "" {
		t.Errorf("result = %+v", res)
	}
	if len(r.bank.Writes()) != 0 {
		t.Errorf("writes: %v", r.bank.Writes())
	}
}

// TestFloodIsBoundedAndAnswered: far more commands than the queue holds
// arrive at once; HandleCommand never blocks, each command gets exactly one
// result (done or busy), and the refusals are counted.
func TestFloodIsBoundedAndAnswered(t *testing.T) {
	r := newRig(t, dm.ExecutorConfig{QueueLength: 4})
	const n = 500
	for i := range n {
		r.send("set_speed", `{"d":{"value":`+strconv.Itoa(i)+`},"reqId":"r`+strconv.Itoa(i)+`"}`)
	}
	seen := map[string]bool{}
	busy := 0
	for range n {
		res := r.results.next(t)
		if seen[res.ReqID] {
			t.Fatalf("two results for %s", res.ReqID)
		}
		seen[res.ReqID] = true
		if !res.OK {
			if !strings.Contains(res.Error, "too many commands waiting") {
				t.Fatalf("unexpected error: %+v", res)
			}
			busy++
		}
	}
	st := r.exec.Stats()
	if busy == 0 || uint64(busy) != st.Refused || st.Accepted+st.Refused != n || st.Done != st.Accepted {
		t.Errorf("busy %d, stats %+v", busy, st)
	}
	if got := len(r.bank.Writes()); uint64(got) != st.Done {
		t.Errorf("simulator saw %d writes for %d commands done", got, st.Done)
	}
}

// TestBitCommandKeepsOtherBits: a command that sets one bit of a register
// leaves the other bits as the device had them.
func TestBitCommandKeepsOtherBits(t *testing.T) {
	r := newRig(t, dm.ExecutorConfig{})
	if err := r.bank.SetRegisters(adapters.HoldingRegister, 20, []uint16{0xA0A1}); err != nil {
		t.Fatal(err)
	}
	r.send("flag", `{"d":{"on":true}}`)
	if res := r.results.next(t); !res.OK {
		t.Fatalf("result %+v", res)
	}
	got, _ := r.bank.Registers(adapters.HoldingRegister, 20, 1)
	if got[0] != 0xA0A5 {
		t.Errorf("register 20 = %04X, want A0A5", got[0])
	}
}

// TestRunCommand: the synchronous form for the device-management agent
// writes, returns nil, and publishes no result; its errors are the
// planner's and the bus's.
func TestRunCommand(t *testing.T) {
	r := newRig(t, dm.ExecutorConfig{})
	ctx := context.Background()
	if err := r.exec.RunCommand(ctx, "p1", "start", []byte(`{"d":{"value":10}}`)); err != nil {
		t.Fatal(err)
	}
	if n := len(r.bank.Writes()); n != 2 {
		t.Errorf("%d writes, want 2", n)
	}
	if err := r.exec.RunCommand(ctx, "p1", "fly", nil); err == nil || !strings.Contains(err.Error(), "unknown command") {
		t.Errorf("unknown command: %v", err)
	}
	if err := r.exec.RunCommand(ctx, "nobody", "start", nil); !errors.Is(err, dm.ErrUnknownDevice) {
		t.Errorf("unknown device: %v", err)
	}
	select {
	case res := <-r.results.c:
		t.Errorf("RunCommand published %+v", res)
	case <-time.After(50 * time.Millisecond):
	}
}

// TestGatewayCommands: commands for the gateway itself are answered.
func TestGatewayCommands(t *testing.T) {
	r := newRig(t, dm.ExecutorConfig{Devices: map[string]string{"p1": "pump", "gw": "edge-gw"}, Gateway: "gw"})
	r.exec.HandleCommand(context.Background(), dm.Command{DeviceType: "edge-gw", DeviceID: "gw", Name: "ping", Payload: []byte(`{"reqId":"p"}`)})
	r.exec.HandleCommand(context.Background(), dm.Command{DeviceType: "edge-gw", DeviceID: "gw", Name: "reboot", Payload: []byte(`{}`)})
	ping, other := r.results.next(t), r.results.next(t)
	if !ping.OK || ping.ReqID != "p" || other.OK || !strings.Contains(other.Error, `unknown command "reboot" for the gateway`) {
		t.Errorf("results %+v, %+v", ping, other)
	}
}

// TestQueuedBytesBounded: large payloads to a slow device stop being
// queued once the byte budget is used; the rest are refused as busy.
func TestQueuedBytesBounded(t *testing.T) {
	r := newRig(t, dm.ExecutorConfig{MaxQueuedBytes: 20000, QueueLength: 100})
	r.srv.SetFaults(1, simulator.Faults{Delay: 50 * time.Millisecond}) // each write takes a while
	pad := strings.Repeat("x", 5000)
	const n = 20
	for i := range n {
		r.send("set_speed", `{"d":{"value":`+strconv.Itoa(i)+`,"pad":"`+pad+`"},"reqId":"b`+strconv.Itoa(i)+`"}`)
	}
	busy := 0
	for range n {
		if res := r.results.next(t); !res.OK {
			if !strings.Contains(res.Error, "bytes of commands already waiting") {
				t.Fatalf("unexpected error: %+v", res)
			}
			busy++
		}
	}
	// About 20000/5030 commands fit; the first may already run.
	if busy < n-6 || busy > n-3 {
		t.Errorf("%d of %d refused as busy, want all but the 3 to 6 that fit the budget", busy, n)
	}
}

// gatedField is a FieldIO whose writes wait for the test to open the gate;
// it records how many writes ran at once, per device and in all.
type gatedField struct {
	gate chan struct{}

	mu                 sync.Mutex
	running            map[uint8]int
	maxPerUnit, maxAll int
	all                int
}

func (f *gatedField) Write(ctx context.Context, w adapters.WriteRequest) error {
	f.mu.Lock()
	f.running[w.Unit]++
	f.all++
	f.maxPerUnit = max(f.maxPerUnit, f.running[w.Unit])
	f.maxAll = max(f.maxAll, f.all)
	f.mu.Unlock()
	select {
	case <-f.gate:
	case <-ctx.Done():
	}
	f.mu.Lock()
	f.running[w.Unit]--
	f.all--
	f.mu.Unlock()
	return ctx.Err()
}

func (f *gatedField) Read(context.Context, string, adapters.Range) (adapters.Block, error) {
	return adapters.Block{}, errors.New("no reads here")
}

// unitPlanner plans every command as one register write to the device's
// unit (device "d<N>" is unit N).
type unitPlanner struct{}

func (unitPlanner) PlanCommand(device, command string, payload []byte) (dm.Plan, error) {
	unit, _ := strconv.Atoi(strings.TrimPrefix(device, "d"))
	return dm.Plan{Writes: []adapters.WriteRequest{{Unit: uint8(unit), Table: adapters.HoldingRegister, Address: 1, Registers: []uint16{1}}}}, nil
}

// TestWorkersOnlyWhileCommandsWait: 200 idle devices cost no goroutine;
// commands for a few devices start a worker each, which runs that device's
// commands one at a time (devices in parallel) and goes away once they are
// done; a command after that starts one again.
func TestWorkersOnlyWhileCommandsWait(t *testing.T) {
	devices := map[string]string{}
	for i := 1; i <= 200; i++ {
		devices["d"+strconv.Itoa(i)] = "pump"
	}
	field := &gatedField{gate: make(chan struct{}), running: map[uint8]int{}}
	res := newResults()
	exec, err := dm.NewExecutor(dm.ExecutorConfig{Devices: devices, Planner: unitPlanner{}, Field: field, Results: res}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	base := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); exec.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	time.Sleep(50 * time.Millisecond) // let Run start (it must start nothing)
	if n := runtime.NumGoroutine() - base; n > 1 {
		t.Fatalf("Run with 200 idle devices started %d goroutines, want only its own", n)
	}

	send := func(device string, i int) {
		exec.HandleCommand(context.Background(), dm.Command{DeviceType: "pump", DeviceID: device, Name: "go", Format: "json",
			Payload: []byte(`{"reqId":"` + device + "-" + strconv.Itoa(i) + `"}`)})
	}
	for i := range 5 {
		for _, d := range []string{"d1", "d2", "d3"} {
			send(d, i)
		}
	}
	testwait.For(t, 5*time.Second, "three devices writing at once", func() bool {
		field.mu.Lock()
		defer field.mu.Unlock()
		return field.all == 3
	})
	close(field.gate) // let every write through from now on
	for range 15 {
		if r := res.next(t); !r.OK {
			t.Fatalf("result %+v", r)
		}
	}
	field.mu.Lock()
	perUnit, all := field.maxPerUnit, field.maxAll
	field.mu.Unlock()
	if perUnit != 1 || all != 3 {
		t.Errorf("at most %d commands of one device ran at once (want 1), %d in all (want 3)", perUnit, all)
	}
	testwait.For(t, 5*time.Second, "the workers to end once their commands are done", func() bool {
		return runtime.NumGoroutine()-base <= 1
	})
	send("d7", 0)
	if r := res.next(t); !r.OK || r.ReqID != "d7-0" {
		t.Errorf("a command after the workers ended: %+v", r)
	}
}
