package main

import (
	"log/slog"
	"testing"
	"time"
)

// TestDrainProgressObserve feeds measurements of a backlog that builds up,
// drains, pauses, drains again and empties, and checks the log lines and
// the numbers the metrics report at each step.
func TestDrainProgressObserve(t *testing.T) {
	logs := &logCapture{}
	d := newDrainProgress(100, slog.New(slog.NewJSONHandler(logs, nil)))
	t0 := time.Unix(1_800_000_000, 0)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * 10 * time.Second) }
	steps := []struct {
		name        string
		left        int64
		sent        uint64
		wantMsg     string
		wantActive  bool
		wantRate    float64
		wantETA     float64
		wantMessage map[string]float64
	}{
		{name: "first measurement", left: 10, sent: 0},
		{name: "outage: backlog grows, nothing sent", left: 5000, sent: 0},
		{name: "broker back: 2000 sent in 10 s", left: 3000, sent: 2000, wantMsg: "backlog draining", wantActive: true, wantRate: 200, wantETA: 15,
			wantMessage: map[string]float64{"events_left": 3000, "rate_per_second": 200, "eta_seconds": 15}},
		{name: "outage again", left: 3500, sent: 2000, wantMsg: "backlog drain paused",
			wantMessage: map[string]float64{"events_left": 3500}},
		{name: "drains again: 1000 in 10 s", left: 2500, sent: 3000, wantMsg: "backlog draining", wantActive: true, wantRate: 100, wantETA: 25,
			wantMessage: map[string]float64{"events_left": 2500, "rate_per_second": 100, "eta_seconds": 25}},
		{name: "below the threshold", left: 50, sent: 5500, wantMsg: "backlog drained",
			wantMessage: map[string]float64{"events_sent": 3500, "duration_seconds": 10}},
		{name: "normal traffic", left: 20, sent: 6000},
	}
	for i, st := range steps {
		before := len(logs.lines(""))
		d.observe(at(i), st.left, st.sent)
		lines := logs.lines("")[before:]
		active, rate, eta := d.current()
		if active != st.wantActive || rate != st.wantRate || eta != st.wantETA {
			t.Errorf("%s: current() = %v, %v, %v; want %v, %v, %v", st.name, active, rate, eta, st.wantActive, st.wantRate, st.wantETA)
		}
		if st.wantMsg == "" {
			if len(lines) != 0 {
				t.Errorf("%s: logged %v, want nothing", st.name, lines)
			}
			continue
		}
		if len(lines) != 1 || lines[0]["msg"] != st.wantMsg {
			t.Errorf("%s: logged %v, want one %q line", st.name, lines, st.wantMsg)
			continue
		}
		for k, v := range st.wantMessage {
			if lines[0][k] != v {
				t.Errorf("%s: %s = %v, want %v (line %v)", st.name, k, lines[0][k], v, lines[0])
			}
		}
	}
}
