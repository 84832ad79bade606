package uplink

import (
	"errors"
	"testing"
	"time"
)

// doneToken is a completed paho token.
type doneToken struct{ err error }

func (doneToken) Wait() bool                     { return true }
func (doneToken) WaitTimeout(time.Duration) bool { return true }
func (doneToken) Done() <-chan struct{} {
	ch := make(chan struct{})
	close(ch)
	return ch
}
func (t doneToken) Error() error { return t.err }

// TestTokenResultEpoch: a token is an acknowledgement only when it
// completed without error while its connection was still the latest one.
func TestTokenResultEpoch(t *testing.T) {
	tests := []struct {
		name         string
		sessionEpoch uint64
		clientEpoch  uint64
		tokenErr     error
		want         error
	}{
		{"acked on the current connection", 3, 3, nil, nil},
		{"completed after a reconnect", 3, 4, nil, ErrConnectionLost},
		{"token error", 3, 3, errors.New("write: broken pipe"), ErrConnectionLost},
		{"token error after a reconnect", 3, 4, errors.New("connection lost before Publish completed"), ErrConnectionLost},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &Client{}
			c.epoch.Store(tt.clientEpoch)
			s := &session{epoch: tt.sessionEpoch}
			got := c.tokenResult(s, doneToken{tt.tokenErr})
			if tt.want == nil && got != nil || tt.want != nil && !errors.Is(got, tt.want) {
				t.Errorf("tokenResult = %v, want %v", got, tt.want)
			}
		})
	}
}
