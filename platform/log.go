package platform

import (
	"context"
	"log/slog"
)

// mochiHandler adapts mochi's logging onto ours. mochi logs routine events
// ("added hook", "attached listener", every refused connection with an empty
// message) at Info and Warn; the platform logs the events users care about
// itself, so mochi's records below Error are demoted to Debug. Empty messages
// get a constant one and mochi's "error" attribute is renamed to our "err".
type mochiHandler struct{ h slog.Handler }

func newMochiLogger(l *slog.Logger) *slog.Logger {
	return slog.New(mochiHandler{h: l.Handler().WithAttrs([]slog.Attr{slog.String("component", "mqtt_server")})})
}

func demote(l slog.Level) slog.Level {
	if l < slog.LevelError {
		return slog.LevelDebug
	}
	return l
}

func (m mochiHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return m.h.Enabled(ctx, demote(l))
}

func (m mochiHandler) Handle(ctx context.Context, r slog.Record) error {
	msg := r.Message
	if msg == "" {
		msg = "mqtt server event"
	}
	nr := slog.NewRecord(r.Time, demote(r.Level), msg, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "error" {
			a.Key = "err"
		}
		nr.AddAttrs(a)
		return true
	})
	return m.h.Handle(ctx, nr)
}

func (m mochiHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return mochiHandler{h: m.h.WithAttrs(as)}
}

func (m mochiHandler) WithGroup(name string) slog.Handler {
	return mochiHandler{h: m.h.WithGroup(name)}
}
