package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"strconv"
	"text/tabwriter"
	"time"

	"fieldbridge/adapters"
	"fieldbridge/adapters/modbus"
	"fieldbridge/mapping"
)

// cmdProbe reads a register range once and prints every interpretation, so
// a user can find a device's types, byte orders and address base by eye.
func cmdProbe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("probe", stderr)
	addr := fs.String("tcp", "", "Modbus TCP device or gateway, host:port")
	rtu := fs.String("rtu", "", "Modbus RTU serial port, e.g. /dev/ttyUSB0 (instead of -tcp)")
	baud := fs.Int("baud", 19200, "RTU: baud rate")
	parity := fs.String("parity", "even", "RTU: none, even or odd")
	stopBits := fs.Int("stop-bits", 1, "RTU: 1 or 2")
	unit := fs.Uint("unit", 1, "unit id")
	table := fs.String("table", "holding", "coil, discrete, input or holding")
	start := fs.Uint("address", 0, "first zero-based address to read")
	count := fs.Uint("count", 10, "registers (or bits) to read")
	timeout := fs.Duration("timeout", time.Second, "request timeout")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	tbl, ok := adapters.ParseTable(*table)
	switch {
	case (*addr == "") == (*rtu == ""):
		return fmt.Errorf("give -tcp host:port or -rtu PORT: %w", errConfig)
	case !ok:
		return fmt.Errorf("-table %q: use coil, discrete, input or holding: %w", *table, errConfig)
	case *unit > 255:
		return fmt.Errorf("-unit %d: a unit id is 0 to 255: %w", *unit, errConfig)
	case *count < 1 || int(*count) > tbl.MaxRead()-1 || *start+*count > 65536:
		return fmt.Errorf("-count %d: 1 to %d from a start below 65536: %w", *count, tbl.MaxRead()-1, errConfig)
	}
	var bus interface {
		adapters.Bus
		Close() error
	}
	var err error
	where := *addr
	if *rtu != "" {
		where = *rtu
		bus, err = modbus.NewRTU(modbus.RTUConfig{Port: *rtu, Baud: *baud, Parity: *parity, StopBits: *stopBits, Timeout: *timeout})
	} else {
		bus, err = modbus.NewTCP(modbus.TCPConfig{Address: *addr, Timeout: *timeout})
	}
	if err != nil {
		return fmt.Errorf("%v: %w", err, errConfig)
	}
	defer bus.Close()

	// One register before the asked start shows what a 1-based manual means.
	first := int(*start)
	if first > 0 {
		first--
	}
	r := adapters.Range{Unit: uint8(*unit), Table: tbl, Address: uint16(first), Count: uint16(int(*start) + int(*count) - first)}
	b, err := bus.ReadRange(ctx, r)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: read %s\n", where, r)
	if tbl.IsBit() {
		printBits(stdout, first, b.Bits)
		return nil
	}
	printInterpretations(stdout, first, int(*start), b.Registers)
	return nil
}

func printBits(w io.Writer, first int, bits []bool) {
	for i, on := range bits {
		v := 0
		if on {
			v = 1
		}
		fmt.Fprintf(w, "  %5d  %d\n", first+i, v)
	}
}

// printInterpretations prints one line per interpretation. A star marks
// floats that look like measurements; "asked" marks the requested start.
func printInterpretations(w io.Writer, first, asked int, regs []uint16) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "address\t1-based\twidth\torder\thex\tint\tuint\tfloat\t\t")
	for _, in := range mapping.Interpret(regs) {
		addr := first + in.Offset
		order := in.Order.Name(map[int]mapping.DataType{1: mapping.TypeUint16, 2: mapping.TypeUint32, 4: mapping.TypeUint64}[in.Registers])
		float, mark := "", ""
		if !math.IsNaN(in.Float) {
			float = strconv.FormatFloat(in.Float, 'g', 8, 64)
			if in.Plausible {
				mark = "*"
			}
		}
		note := ""
		if addr == asked && in.Order == mapping.OrderABCD && in.Registers == 1 {
			note = "<- asked"
		}
		fmt.Fprintf(tw, "%d\t%d\t%d\t%s\t%0*x\t%d\t%d\t%s\t%s\t%s\n", addr, addr+1, 16*in.Registers, order, 4*in.Registers, in.Raw, in.Int, in.Uint, float, mark, note)
	}
	tw.Flush()
	fmt.Fprintf(w, "\ntext (two characters per register, high byte first): %q\n", mapping.ASCII(regs))
	fmt.Fprintln(w, "* a finite float of a size devices report. A manual that numbers registers from 1 (or 40001) means address = number - 1.")
}
