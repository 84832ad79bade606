package serialline_test

import (
	"fmt"

	"fieldbridge/adapters/serialline"
)

// A scale prints "ST,GS,+0012.500,kg": the fields become holding registers
// of a virtual device, where a device type's points find them.
func ExampleLayout() {
	cfg := serialline.Config{
		Port:    "/dev/ttyUSB1",
		Framing: serialline.Framing{Delimiter: "\r\n"},
		Parser:  serialline.Parser{Separator: ","},
		Fields: []serialline.Field{
			{Name: "status", Column: 1, Type: serialline.Text, Length: 1},
			{Name: "weight", Column: 3},
			{Name: "unit", Column: 4, Type: serialline.Text, Length: 1},
		},
	}
	if _, err := serialline.New(cfg); err != nil {
		fmt.Println(err)
		return
	}
	slots, _ := cfg.Layout()
	for _, s := range slots {
		fmt.Printf("%-6s %-6s holding %d+%d\n", s.Name, s.Type, s.Address, s.Count)
	}
	// Output:
	// status text   holding 0+1
	// weight number holding 1+4
	// unit   text   holding 5+1
}
