package serialline_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"fieldbridge/adapters"
	"fieldbridge/simulator"

	"fieldbridge/internal/testwait"
)

// TestSendText: a command's text request reaches the instrument on a pty,
// in push and in query mode, between reads; a register write is refused.
func TestSendText(t *testing.T) {
	for _, mode := range []string{"push", "query"} {
		t.Run(mode, func(t *testing.T) {
			ic := simulator.InstrumentConfig{
				Template: "ST,GS,{weight:%.1f},kg\r\n",
				Values:   map[string]simulator.Generator{"weight": simulator.Fixed(3)},
			}
			cfg := scaleConfig
			if mode == "push" {
				ic.Interval = 20 * time.Millisecond
			} else {
				ic.Request, cfg.Request = "P\r\n", "P\r\n"
			}
			in, err := simulator.NewInstrument(ic)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Port = instrumentOnPty(t, in)
			bus := newBus(t, cfg)
			ctx := context.Background()
			if err := bus.WriteRange(ctx, adapters.WriteRequest{Unit: 1, Text: []byte("T 2\r\n")}); err != nil {
				t.Fatalf("send: %v", err)
			}
			if _, err := bus.ReadRange(ctx, all); err != nil {
				t.Fatalf("read after a send: %v", err)
			}
			testwait.For(t, 5*time.Second, "the instrument to receive the request", func() bool {
				return strings.Contains(string(in.Received()), "T 2\r\n")
			})
			err = bus.WriteRange(ctx, adapters.WriteRequest{Unit: 1, Table: adapters.HoldingRegister, Registers: []uint16{1}})
			if !errors.Is(err, errors.ErrUnsupported) {
				t.Errorf("register write on a serial line: %v, want ErrUnsupported", err)
			}
		})
	}
}
