package buffer

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// slowPublisher acknowledges each publish after a delay, like a distant
// broker.
type slowPublisher struct{ delay time.Duration }

func (p slowPublisher) Publish(ctx context.Context, _ string, _ []byte) <-chan error {
	ch := make(chan error, 1)
	go func() {
		t := time.NewTimer(p.delay)
		defer t.Stop()
		select {
		case <-t.C:
			ch <- nil
		case <-ctx.Done():
			ch <- ctx.Err()
		}
	}()
	return ch
}

func TestForwardLogsDrainProgress(t *testing.T) {
	var logs captureLogger
	cfg := Config{InMemory: true, InFlight: 4, progressEvery: 20 * time.Millisecond}
	s, err := Open(cfg, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mustAppend(t, s, "d", 600, 10)
	forwardUntil(t, s, "d", slowPublisher{delay: time.Millisecond}, "drained",
		func() bool { return strings.Contains(logs.String(), "buffer backlog drained") })
	out := logs.String()
	for _, want := range []string{
		`level=DEBUG msg="buffer backlog draining" queue=d events_left=600`,
		`rate_per_second=`,
		`eta_seconds=`,
		`msg="buffer backlog drained" queue=d events_sent=600`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q; log:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "draining"); n > 200 {
		t.Errorf("%d progress lines: progress must not be logged per event", n)
	}
}
