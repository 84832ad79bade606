package simulator_test

import (
	"encoding/binary"
	"fmt"
	"time"

	"fieldbridge/adapters"
	"fieldbridge/simulator"

	"github.com/goburrow/modbus"
)

// A test starts a simulated device on a free loopback port, sets its
// registers, and points a client at it.
func Example() {
	s, err := simulator.NewServer(simulator.Config{}, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()

	meter := s.AddUnit(7)
	if err := meter.SetRegisters(adapters.InputRegister, 0, []uint16{2314}); err != nil {
		fmt.Println(err)
		return
	}

	h := modbus.NewTCPClientHandler(s.Addr())
	h.SlaveId = 7
	h.Timeout = 5 * time.Second
	defer h.Close()
	regs, err := modbus.NewClient(h).ReadInputRegisters(0, 1)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("voltage:", float64(binary.BigEndian.Uint16(regs))/10)
	fmt.Println("requests:", s.Requests(7, simulator.FuncReadInputRegisters))
	// Output:
	// voltage: 231.4
	// requests: 1
}

// Generators compute a value per tick; the owner encodes it into a bank (in
// the bridge, with the mapping codec; here as a plain uint16).
func ExampleGenerator() {
	bank := simulator.NewBank(simulator.BankConfig{})
	level := simulator.Sine(50, 4*time.Second, 100)
	count := simulator.Counter(0, 1, 0)

	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for tick := range 5 {
		now := start.Add(time.Duration(tick) * time.Second)
		regs := []uint16{uint16(level.Next(now)), uint16(count.Next(now))}
		if err := bank.SetRegisters(adapters.HoldingRegister, 0, regs); err != nil {
			fmt.Println(err)
			return
		}
		got, _ := bank.Registers(adapters.HoldingRegister, 0, 2)
		fmt.Println(got)
	}
	// Output:
	// [100 0]
	// [150 1]
	// [100 2]
	// [50 3]
	// [100 4]
}
