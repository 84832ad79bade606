package simulator_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"time"

	"fieldbridge/adapters"
	"fieldbridge/simulator"
)

// A simulated RTU slave on one end of a serial line (net.Pipe here; a pty
// or a port from OpenSerial in practice) answers a read of two holding
// registers.
func ExampleServer_ServeRTU() {
	s, err := simulator.New(simulator.Config{}, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()
	s.AddUnit(1).SetRegisters(adapters.HoldingRegister, 0, []uint16{0x0102, 0x0304})

	master, slave := net.Pipe()
	defer master.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.ServeRTU(ctx, slave) }()
	defer func() { cancel(); <-done }()

	// Unit 1, FC3, address 0, 2 registers, CRC.
	master.Write([]byte{0x01, 0x03, 0x00, 0x00, 0x00, 0x02, 0xC4, 0x0B})
	master.SetReadDeadline(time.Now().Add(5 * time.Second))
	reply := make([]byte, 9)
	if _, err := io.ReadFull(master, reply); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("% X\n", reply)
	// Output: 01 03 04 01 02 03 04 5B 3C
}

// A scale in push mode prints a line at once and then every interval.
func ExampleInstrument() {
	scale, err := simulator.NewInstrument(simulator.InstrumentConfig{
		Template: "ST,GS,{weight:%+09.3f},kg\r\n",
		Values:   map[string]simulator.Generator{"weight": simulator.Fixed(12.5)},
		Interval: time.Second,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%q\n", scale.Render(time.Now()))
	// Output: "ST,GS,+0012.500,kg\r\n"
}
