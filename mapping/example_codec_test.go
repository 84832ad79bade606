package mapping_test

import (
	"errors"
	"fmt"

	"fieldbridge/mapping"
)

// A power meter's manual lists the L1 voltage as a float32 in input
// registers 0 and 1, "low word first": byte order CDAB. The same type and
// order read the value and would write it back.
func ExampleDecode() {
	typ, _ := mapping.ParseDataType("float32")
	order, err := mapping.ParseByteOrder("CDAB", typ)
	if err != nil {
		fmt.Println(err)
		return
	}
	regs := []uint16{0x8000, 0x4366} // as read with function code 4
	v, err := mapping.Decode(typ, order, regs)
	if err != nil {
		fmt.Println(err)
		return
	}
	volts, _ := v.Float()
	fmt.Println(volts, "V")

	back := make([]uint16, typ.Registers())
	_ = mapping.Encode(typ, order, v, back)
	fmt.Printf("%#04x\n", back)
	// Output:
	// 230.5 V
	// [0x8000 0x4366]
}

// Writing a setpoint checks the range of the type before anything goes on
// the bus.
func ExampleEncode() {
	dst := make([]uint16, mapping.TypeInt32.Registers())
	err := mapping.Encode(mapping.TypeInt32, mapping.OrderCDAB, mapping.Value{Kind: mapping.KindInt, I: -2}, dst)
	fmt.Printf("%#04x %v\n", dst, err)

	// A device name in three registers, first character in the low byte.
	name := make([]uint16, 3)
	err = mapping.Encode(mapping.TypeString, mapping.OrderBADC, mapping.Value{Kind: mapping.KindString, S: "AB1"}, name)
	fmt.Printf("%#04x %v\n", name, err)

	err = mapping.Encode(mapping.TypeUint16, mapping.OrderABCD, mapping.Value{Kind: mapping.KindInt, I: -1}, make([]uint16, 1))
	fmt.Println(errors.Is(err, mapping.ErrOutOfRange), err)
	// Output:
	// [0xfffe 0xffff] <nil>
	// [0x4241 0x0031 0x0000] <nil>
	// true encode uint16: want an integer from 0 to 65535, got int -1: value out of range
}

// The names of a byte order depend on the width of the type, and the error
// for a wrong one lists the valid names.
func ExampleParseByteOrder() {
	o, _ := mapping.ParseByteOrder("GHEFCDAB", mapping.TypeFloat64)
	fmt.Println(o.Name(mapping.TypeFloat64), o.Name(mapping.TypeFloat32), o == mapping.OrderCDAB)

	_, err := mapping.ParseByteOrder("CDAB", mapping.TypeInt16)
	fmt.Println(err)
	// Output:
	// GHEFCDAB CDAB true
	// byte order "CDAB" does not apply to int16: it is one register wide, so there is no word order; int16 takes "AB" or "BA"
}

// Bit 3 of a drive's status word says "fault".
func ExampleDecodeBit() {
	status := uint16(0x0009)
	fmt.Println(mapping.DecodeBit(status, 3), mapping.DecodeBit(status, 2))
	fmt.Printf("%#04x\n", mapping.SetBit(status, 3, false))
	// Output:
	// true false
	// 0x0001
}
