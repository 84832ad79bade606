package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"fieldbridge/internal/testwait"
)

// logCapture is a JSON slog destination the test can read while the bridge
// writes to it.
type logCapture struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logCapture) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logCapture) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// lines returns the log lines whose msg is msg (all lines for "").
func (l *logCapture) lines(msg string) []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(l.buf.Bytes()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) != nil {
			continue
		}
		if msg == "" || m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

func (l *logCapture) count(msg string, attr, value string) int {
	n := 0
	for _, m := range l.lines(msg) {
		if attr == "" || m[attr] == value {
			n++
		}
	}
	return n
}

// duplicateKeys returns the keys that appear more than once at the top
// level of one JSON log line.
func duplicateKeys(line []byte) []string {
	dec := json.NewDecoder(bytes.NewReader(line))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil
	}
	seen := map[string]bool{}
	var dups []string
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return dups
		}
		key, _ := t.(string)
		if seen[key] {
			dups = append(dups, key)
		}
		seen[key] = true
		var skip json.RawMessage
		if dec.Decode(&skip) != nil {
			return dups
		}
	}
	return dups
}

// freeAddr returns a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// TestLogNoiseWhileBrokerAndDeviceAreDown starts the bridge while the broker
// is not there yet and one bus has no device: each device connection fails
// several times, then the platform starts on the broker's address. The log
// must say "uplink down" once per device (not once per retry), summarize
// while links are down, never call the forwarders stalled because the
// uplink was not connected, and never carry a key twice in a JSON line.
func TestLogNoiseWhileBrokerAndDeviceAreDown(t *testing.T) {
	r := startSimulation(t)
	broker := freeAddr(t)
	for _, b := range r.cfg.Buses {
		if b.Name == "b2" {
			b.Address = freeAddr(t) // boiler-9 is down
		}
	}
	var logs logCapture
	b, err := newBridge(r.cfg, bridgeOptions{Broker: "tcp://" + broker, InMemoryBuffer: true, Drain: 100 * time.Millisecond, UplinkSummaryEvery: 300 * time.Millisecond}, logs.logger())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	stop := sync.OnceValue(func() error { cancel(); return <-done })
	defer stop()

	retried := func() bool {
		for _, d := range r.cfg.Devices {
			if logs.count("uplink connect failed", "device", d.Name) < 2 {
				return false
			}
		}
		return logs.count("device down", "", "") > 0
	}
	testwait.For(t, 15*time.Second, "every device connection to fail twice and boiler-9 to be down", retried)
	testwait.For(t, 15*time.Second, "a summary of the links that are down", func() bool { return logs.count("uplinks down", "", "") > 0 })

	r.startPlatformOn(t, broker, r.registry())
	testwait.For(t, 20*time.Second, "every uplink to be connected", func() bool {
		return logs.count("uplink connected", "", "") >= len(r.cfg.Devices)
	})
	if err := stop(); err != nil {
		t.Errorf("bridge.Run = %v", err)
	}

	for _, d := range r.cfg.Devices {
		if got := logs.count("uplink down", "device", d.Name); got != 1 {
			t.Errorf("%q logged %d times for %s, want once (failed attempts: %d)", "uplink down", got, d.Name, logs.count("uplink connect failed", "device", d.Name))
		}
		warns := 0
		for _, m := range logs.lines("") {
			if m["level"] == "WARN" && m["component"] == "uplink" && m["device"] == d.Name {
				warns++
			}
		}
		if warns != 1 {
			t.Errorf("%d uplink warnings for %s, want one (uplink down)", warns, d.Name)
		}
		if got := logs.count("uplink up", "device", d.Name); got != 1 {
			t.Errorf("%q logged %d times for %s, want once", "uplink up", got, d.Name)
		}
	}
	if got := logs.count("buffer forward stalled, will resend from the first unacknowledged event", "", ""); got != 0 {
		t.Errorf("the forwarders logged a stall %d times while the uplink was only not connected yet", got)
	}
	logs.mu.Lock()
	raw := append([]byte(nil), logs.buf.Bytes()...)
	logs.mu.Unlock()
	for _, line := range bytes.Split(raw, []byte("\n")) {
		if dups := duplicateKeys(line); len(dups) > 0 {
			t.Errorf("log line has keys %v twice: %s", dups, line)
		}
	}
	if t.Failed() {
		t.Logf("log:\n%s", raw[:min(len(raw), 20000)])
	}
}
