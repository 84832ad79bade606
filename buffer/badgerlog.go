package buffer

import (
	"fmt"
	"log/slog"
	"strings"
)

// badgerLogger adapts Badger's printf logger onto slog. Only warnings and
// errors pass: Badger's info output is chatty and would wear flash.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any) {
	b.l.Error("badger error", "detail", strings.TrimSpace(fmt.Sprintf(f, a...)))
}

func (b badgerLogger) Warningf(f string, a ...any) {
	b.l.Warn("badger warning", "detail", strings.TrimSpace(fmt.Sprintf(f, a...)))
}

func (badgerLogger) Infof(string, ...any)  {}
func (badgerLogger) Debugf(string, ...any) {}
