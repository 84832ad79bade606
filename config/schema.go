package config

import (
	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

// The HCL shape of the configuration. Optional attributes are pointers so
// that "not set" differs from a zero value; *_range fields give diagnostics
// the exact place of a value.

type fileBlock struct {
	Management *managementBlock `hcl:"management,block"`

	Platform    *platformBlock    `hcl:"platform,block"`
	Buffer      *bufferBlock      `hcl:"buffer,block"`
	Metrics     *metricsBlock     `hcl:"metrics,block"`
	Buses       []busBlock        `hcl:"bus,block"`
	DeviceTypes []deviceTypeBlock `hcl:"device_type,block"`
	Devices     []deviceBlock     `hcl:"device,block"`
}

type platformBlock struct {
	DefRange hcl.Range `hcl:",def_range"`

	Org       string    `hcl:"org"`
	OrgRange  hcl.Range `hcl:"org,attr_value_range"`
	Mode      *string   `hcl:"mode,optional"`
	ModeRange hcl.Range `hcl:"mode,attr_value_range"`
	Domain    *string   `hcl:"domain,optional"`
	Host      *string   `hcl:"host,optional"`
	Port      *int      `hcl:"port,optional"`
	PortRange hcl.Range `hcl:"port,attr_value_range"`
	TLS       *bool     `hcl:"tls,optional"`
	TLSRange  hcl.Range `hcl:"tls,attr_value_range"`

	Transport          *string   `hcl:"transport,optional"`
	TransportRange     hcl.Range `hcl:"transport,attr_value_range"`
	CAFile             *string   `hcl:"ca_file,optional"`
	ClientCert         *string   `hcl:"client_cert,optional"`
	ClientKey          *string   `hcl:"client_key,optional"`
	ClientKeyRange     hcl.Range `hcl:"client_key,attr_value_range"`
	InsecureSkipVerify *bool     `hcl:"insecure_skip_verify,optional"`

	QoS            *int      `hcl:"qos,optional"`
	QoSRange       hcl.Range `hcl:"qos,attr_value_range"`
	KeepAlive      *string   `hcl:"keepalive,optional"`
	KeepAliveRange hcl.Range `hcl:"keepalive,attr_value_range"`
	CleanSession   *bool     `hcl:"clean_session,optional"`

	Gateway *gatewayBlock `hcl:"gateway,block"`
}

type gatewayBlock struct {
	DefRange  hcl.Range `hcl:",def_range"`
	Type      string    `hcl:"type"`
	TypeRange hcl.Range `hcl:"type,attr_value_range"`
	ID        string    `hcl:"id"`
	IDRange   hcl.Range `hcl:"id,attr_value_range"`
	Rate      *float64  `hcl:"rate,optional"`
	RateRange hcl.Range `hcl:"rate,attr_value_range"`
	// A token inline (usually env(...)) or in a file.
	Token          *string   `hcl:"token,optional"`
	TokenRange     hcl.Range `hcl:"token,attr_value_range"`
	TokenFile      *string   `hcl:"token_file,optional"`
	TokenFileRange hcl.Range `hcl:"token_file,attr_value_range"`
}

// metricsBlock turns on the metrics and health listener.
type metricsBlock struct {
	DefRange    hcl.Range `hcl:",def_range"`
	Listen      string    `hcl:"listen"`
	ListenRange hcl.Range `hcl:"listen,attr_value_range"`
}

type bufferBlock struct {
	DefRange      hcl.Range `hcl:",def_range"`
	Dir           *string   `hcl:"dir,optional"`
	MaxBytes      *string   `hcl:"max_bytes,optional"`
	MaxBytesRange hcl.Range `hcl:"max_bytes,attr_value_range"`
	MaxAge        *string   `hcl:"max_age,optional"`
	MaxAgeRange   hcl.Range `hcl:"max_age,attr_value_range"`
	OnFull        *string   `hcl:"on_full,optional"`
	OnFullRange   hcl.Range `hcl:"on_full,attr_value_range"`
	Sync          *string   `hcl:"sync,optional"`
	SyncRange     hcl.Range `hcl:"sync,attr_value_range"`
	InFlight      *int      `hcl:"in_flight,optional"`
	InFlightRange hcl.Range `hcl:"in_flight,attr_value_range"`
	Rate          *float64  `hcl:"rate,optional"`
	RateRange     hcl.Range `hcl:"rate,attr_value_range"`
	MinFree       *string   `hcl:"min_free,optional"`
	MinFreeRange  hcl.Range `hcl:"min_free,attr_value_range"`
}

type busBlock struct {
	Name      string    `hcl:"name,label"`
	NameRange hcl.Range `hcl:"name,label_range"`
	DefRange  hcl.Range `hcl:",def_range"`

	ModbusTCP    *modbusTCPBlock  `hcl:"modbus_tcp,block"`
	ModbusRTU    *serialPortBlock `hcl:"modbus_rtu,block"`
	ModbusASCII  *serialPortBlock `hcl:"modbus_ascii,block"`
	ModbusRTUTCP *modbusTCPBlock  `hcl:"modbus_rtu_tcp,block"`
	SerialLine   *serialLineBlock `hcl:"serial_line,block"`

	Pause             *string   `hcl:"pause,optional"`
	PauseRange        hcl.Range `hcl:"pause,attr_value_range"`
	MaxGap            *int      `hcl:"max_gap,optional"`
	MaxGapRange       hcl.Range `hcl:"max_gap,attr_value_range"`
	MaxRegisters      *int      `hcl:"max_registers,optional"`
	MaxRegistersRange hcl.Range `hcl:"max_registers,attr_value_range"`
	// WriteMultiple always uses FC15/FC16, even for one coil or register.
	WriteMultiple      *bool     `hcl:"write_multiple,optional"`
	WriteMultipleRange hcl.Range `hcl:"write_multiple,attr_value_range"`
}

type modbusTCPBlock struct {
	DefRange     hcl.Range `hcl:",def_range"`
	Address      string    `hcl:"address"`
	AddressRange hcl.Range `hcl:"address,attr_value_range"`
	Timeout      *string   `hcl:"timeout,optional"`
	TimeoutRange hcl.Range `hcl:"timeout,attr_value_range"`
	ConnectPause *string   `hcl:"connect_pause,optional"`
	PauseRange   hcl.Range `hcl:"connect_pause,attr_value_range"`
}

// serialPortBlock is a serial line's settings (modbus_rtu, modbus_ascii).
type serialPortBlock struct {
	DefRange      hcl.Range `hcl:",def_range"`
	Port          string    `hcl:"port"`
	PortRange     hcl.Range `hcl:"port,attr_value_range"`
	Baud          *int      `hcl:"baud,optional"`
	BaudRange     hcl.Range `hcl:"baud,attr_value_range"`
	DataBits      *int      `hcl:"data_bits,optional"`
	DataBitsRange hcl.Range `hcl:"data_bits,attr_value_range"`
	Parity        *string   `hcl:"parity,optional"`
	ParityRange   hcl.Range `hcl:"parity,attr_value_range"`
	StopBits      *int      `hcl:"stop_bits,optional"`
	StopBitsRange hcl.Range `hcl:"stop_bits,attr_value_range"`
	Timeout       *string   `hcl:"timeout,optional"`
	TimeoutRange  hcl.Range `hcl:"timeout,attr_value_range"`
	Silence       *string   `hcl:"silence,optional"`
	SilenceRange  hcl.Range `hcl:"silence,attr_value_range"`
}

// serialLineBlock is a text instrument's line: where it is, how frames are
// cut and how fields are parsed.
type serialLineBlock struct {
	DefRange      hcl.Range `hcl:",def_range"`
	Port          *string   `hcl:"port,optional"`
	PortRange     hcl.Range `hcl:"port,attr_value_range"`
	Address       *string   `hcl:"address,optional"`
	AddressRange  hcl.Range `hcl:"address,attr_value_range"`
	Baud          *int      `hcl:"baud,optional"`
	BaudRange     hcl.Range `hcl:"baud,attr_value_range"`
	DataBits      *int      `hcl:"data_bits,optional"`
	DataBitsRange hcl.Range `hcl:"data_bits,attr_value_range"`
	Parity        *string   `hcl:"parity,optional"`
	ParityRange   hcl.Range `hcl:"parity,attr_value_range"`
	StopBits      *int      `hcl:"stop_bits,optional"`
	StopBitsRange hcl.Range `hcl:"stop_bits,attr_value_range"`

	Delimiter      *string   `hcl:"delimiter,optional"`
	DelimiterRange hcl.Range `hcl:"delimiter,attr_value_range"`
	Length         *int      `hcl:"length,optional"`
	LengthRange    hcl.Range `hcl:"length,attr_value_range"`
	Start          *string   `hcl:"start,optional"`
	MaxLength      *int      `hcl:"max_length,optional"`

	Regexp         *string   `hcl:"regexp,optional"`
	RegexpRange    hcl.Range `hcl:"regexp,attr_value_range"`
	Separator      *string   `hcl:"separator,optional"`
	SeparatorRange hcl.Range `hcl:"separator,attr_value_range"`
	DecimalComma   *bool     `hcl:"decimal_comma,optional"`

	Request      *string   `hcl:"request,optional"`
	Timeout      *string   `hcl:"timeout,optional"`
	TimeoutRange hcl.Range `hcl:"timeout,attr_value_range"`
	MaxAge       *string   `hcl:"max_age,optional"`
	MaxAgeRange  hcl.Range `hcl:"max_age,attr_value_range"`
	// Template is the line `bridge simulate` prints for this instrument,
	// with {field} or {field:%fmt} placeholders.
	Template *string `hcl:"simulate_template,optional"`
}

type deviceTypeBlock struct {
	Management *typeManagementBlock `hcl:"management,block"`

	Name       string            `hcl:"name,label"`
	NameRange  hcl.Range         `hcl:"name,label_range"`
	DefRange   hcl.Range         `hcl:",def_range"`
	Points     []pointBlock      `hcl:"point,block"`
	Events     []eventBlock      `hcl:"event,block"`
	Unreadable []unreadableBlock `hcl:"unreadable,block"`
	Commands   []commandBlock    `hcl:"command,block"`
}

// commandBlock is a command of a device type: writes in order, or a text
// request for a serial-line instrument.
type commandBlock struct {
	Name      string    `hcl:"name,label"`
	NameRange hcl.Range `hcl:"name,label_range"`
	DefRange  hcl.Range `hcl:",def_range"`

	Writes        []writeBlock `hcl:"write,block"`
	Send          *string      `hcl:"send,optional"`
	SendRange     hcl.Range    `hcl:"send,attr_value_range"`
	Readback      *bool        `hcl:"readback,optional"`
	ReadbackRange hcl.Range    `hcl:"readback,attr_value_range"`
	Timeout       *string      `hcl:"timeout,optional"`
	TimeoutRange  hcl.Range    `hcl:"timeout,attr_value_range"`
}

// writeBlock is one point a command writes; value is a JSON path into the
// payload ("$.d.value") or a literal bool, number or string.
type writeBlock struct {
	Point      string    `hcl:"point,label"`
	PointRange hcl.Range `hcl:"point,label_range"`
	DefRange   hcl.Range `hcl:",def_range"`
	Value      cty.Value `hcl:"value"`
	ValueRange hcl.Range `hcl:"value,attr_value_range"`
}

type pointBlock struct {
	Name      string    `hcl:"name,label"`
	NameRange hcl.Range `hcl:"name,label_range"`
	DefRange  hcl.Range `hcl:",def_range"`

	// table, address and type are required in a device_type and optional
	// in a device's override of a point; the checker enforces that.
	Table          *string   `hcl:"table,optional"`
	TableRange     hcl.Range `hcl:"table,attr_value_range"`
	Address        *int      `hcl:"address,optional"`
	AddressRange   hcl.Range `hcl:"address,attr_value_range"`
	Type           *string   `hcl:"type,optional"`
	TypeRange      hcl.Range `hcl:"type,attr_value_range"`
	ByteOrder      *string   `hcl:"byte_order,optional"`
	ByteOrderRange hcl.Range `hcl:"byte_order,attr_value_range"`
	Bit            *int      `hcl:"bit,optional"`
	BitRange       hcl.Range `hcl:"bit,attr_value_range"`
	Length         *int      `hcl:"length,optional"`
	LengthRange    hcl.Range `hcl:"length,attr_value_range"`
	Scale          *float64  `hcl:"scale,optional"`
	ScaleRange     hcl.Range `hcl:"scale,attr_value_range"`
	Offset         *float64  `hcl:"offset,optional"`
	Decimals       *int      `hcl:"decimals,optional"`
	DecimalsRange  hcl.Range `hcl:"decimals,attr_value_range"`
	Unit           *string   `hcl:"unit,optional"`
	Writable       *bool     `hcl:"writable,optional"`
	WritableRange  hcl.Range `hcl:"writable,attr_value_range"`
	Min            *float64  `hcl:"min,optional"`
	MinRange       hcl.Range `hcl:"min,attr_value_range"`
	Max            *float64  `hcl:"max,optional"`

	Deadband             *float64          `hcl:"deadband,optional"`
	DeadbandRange        hcl.Range         `hcl:"deadband,attr_value_range"`
	DeadbandPercent      *float64          `hcl:"deadband_percent,optional"`
	DeadbandPercentRange hcl.Range         `hcl:"deadband_percent,attr_value_range"`
	Enum                 map[string]string `hcl:"enum,optional"`
	EnumRange            hcl.Range         `hcl:"enum,attr_value_range"`

	// Field and Column take a point's value from a serial_line frame.
	Field       *string   `hcl:"field,optional"`
	FieldRange  hcl.Range `hcl:"field,attr_value_range"`
	Column      *int      `hcl:"column,optional"`
	ColumnRange hcl.Range `hcl:"column,attr_value_range"`

	Simulate *simulateBlock `hcl:"simulate,block"`
}

type unreadableBlock struct {
	DefRange     hcl.Range `hcl:",def_range"`
	Table        string    `hcl:"table"`
	TableRange   hcl.Range `hcl:"table,attr_value_range"`
	Address      int       `hcl:"address"`
	AddressRange hcl.Range `hcl:"address,attr_value_range"`
	Count        int       `hcl:"count"`
	CountRange   hcl.Range `hcl:"count,attr_value_range"`
}

type simulateBlock struct {
	DefRange    hcl.Range `hcl:",def_range"`
	Mode        string    `hcl:"mode"`
	ModeRange   hcl.Range `hcl:"mode,attr_value_range"`
	Value       *float64  `hcl:"value,optional"`
	Min         *float64  `hcl:"min,optional"`
	MinRange    hcl.Range `hcl:"min,attr_value_range"`
	Max         *float64  `hcl:"max,optional"`
	Step        *float64  `hcl:"step,optional"`
	Period      *string   `hcl:"period,optional"`
	PeriodRange hcl.Range `hcl:"period,attr_value_range"`
}

type eventBlock struct {
	Name      string    `hcl:"name,label"`
	NameRange hcl.Range `hcl:"name,label_range"`
	DefRange  hcl.Range `hcl:",def_range"`

	Points          []string  `hcl:"points"`
	PointsRange     hcl.Range `hcl:"points,attr_value_range"`
	Interval        *string   `hcl:"interval,optional"`
	IntervalRange   hcl.Range `hcl:"interval,attr_value_range"`
	OnChange        *bool     `hcl:"on_change,optional"`
	MaxSilence      *string   `hcl:"max_silence,optional"`
	MaxSilenceRange hcl.Range `hcl:"max_silence,attr_value_range"`
}

type deviceBlock struct {
	Management *deviceManagementBlock `hcl:"management,block"`

	Name      string    `hcl:"name,label"`
	NameRange hcl.Range `hcl:"name,label_range"`
	DefRange  hcl.Range `hcl:",def_range"`

	Type      string    `hcl:"type"`
	TypeRange hcl.Range `hcl:"type,attr_value_range"`
	Bus       string    `hcl:"bus"`
	BusRange  hcl.Range `hcl:"bus,attr_value_range"`
	Unit      *int      `hcl:"unit,optional"`
	UnitRange hcl.Range `hcl:"unit,attr_value_range"`
	Poll      *string   `hcl:"poll,optional"`
	PollRange hcl.Range `hcl:"poll,attr_value_range"`

	MaxGap            *int      `hcl:"max_gap,optional"`
	MaxGapRange       hcl.Range `hcl:"max_gap,attr_value_range"`
	MaxRegisters      *int      `hcl:"max_registers,optional"`
	MaxRegistersRange hcl.Range `hcl:"max_registers,attr_value_range"`

	// Points overrides single attributes of the device type's points.
	Points []pointBlock `hcl:"point,block"`
	// A token inline (usually env(...)) or in a file.
	Token          *string   `hcl:"token,optional"`
	TokenRange     hcl.Range `hcl:"token,attr_value_range"`
	TokenFile      *string   `hcl:"token_file,optional"`
	TokenFileRange hcl.Range `hcl:"token_file,attr_value_range"`
}
