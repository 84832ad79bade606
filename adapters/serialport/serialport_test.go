package serialport

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

func TestCheckAndCharTime(t *testing.T) {
	modbus := Settings{Baud: 19200, DataBits: 8, Parity: ParityEven, StopBits: 1}
	tests := []struct {
		in       Settings
		wantErr  bool
		wantChar time.Duration
	}{
		{Settings{}, false, 11 * time.Second / 19200},                                           // 8E1: 11 bits
		{Settings{Baud: 9600, Parity: ParityNone, StopBits: 2}, false, 11 * time.Second / 9600}, // 8N2
		{Settings{Baud: 9600, DataBits: 7, Parity: ParityOdd}, false, 10 * time.Second / 9600},  // 7O1
		{Settings{Baud: 10}, true, 0}, {Settings{DataBits: 9}, true, 0}, {Settings{Parity: "mark"}, true, 0}, {Settings{StopBits: 3}, true, 0},
	}
	for _, tt := range tests {
		got, err := tt.in.Check(modbus)
		if (err != nil) != tt.wantErr {
			t.Errorf("Check(%+v) error = %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if err == nil && got.CharTime() != tt.wantChar {
			t.Errorf("CharTime(%+v) = %v, want %v", got, got.CharTime(), tt.wantChar)
		}
	}
}

func TestIsTimeout(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	a.SetReadDeadline(time.Now())
	_, err := a.Read(make([]byte, 1))
	if !IsTimeout(err) || !IsTimeout(os.ErrDeadlineExceeded) || IsTimeout(errors.New("other")) {
		t.Errorf("IsTimeout misjudges: pipe deadline %v", err)
	}
}

func TestOpenMissingPort(t *testing.T) {
	s, _ := Settings{Path: "/dev/fieldbridge-no-such-port"}.Check(Settings{Baud: 9600, DataBits: 8, Parity: ParityNone})
	if _, err := s.Open(); err == nil {
		t.Error("Open of a missing port succeeded")
	}
}
