package testwait

import (
	"errors"
	"testing"
	"time"
)

func TestForAndNoError(t *testing.T) {
	start := time.Now()
	For(t, time.Second, "a condition that turns true", func() bool { return time.Since(start) > 10*time.Millisecond })
	n := 0
	NoError(t, time.Second, func() error {
		if n++; n < 3 {
			return errors.New("not yet")
		}
		return nil
	})
}
