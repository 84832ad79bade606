package config

import (
	"time"

	"github.com/hashicorp/hcl/v2"

	"fieldbridge/mapping"
)

// Config is a loaded and checked configuration.
type Config struct {
	Platform    Platform
	Buffer      Buffer
	Metrics     Metrics
	Buses       []*Bus
	DeviceTypes []*DeviceType
	Devices     []*Device
	// Management is the global management block; nil when absent.
	Management *Management

	// Files holds the parsed sources, for rendering diagnostics.
	Files map[string]*hcl.File
}

// Platform modes.
const (
	ModeDevice     = "device"
	ModeGateway    = "gateway"
	ModeQuickstart = "quickstart"
)

// Platform says where and as whom the bridge connects.
type Platform struct {
	Org       string
	Mode      string // device | gateway | quickstart
	Domain    string
	Host      string // explicit host; default <org>.messaging.<domain>
	Port      int
	TLS       bool
	Transport string // tcp | websocket

	CAFile, ClientCert, ClientKey string
	InsecureSkipVerify            bool

	QoS          int
	KeepAlive    time.Duration
	CleanSession bool

	Gateway *Gateway // gateway mode only
}

// Gateway is the gateway identity of gateway mode.
type Gateway struct {
	Type, ID, Token string
	Rate            float64 // events per second over the gateway connection; 0 unlimited
}

// Metrics is the optional HTTP listener for /metrics (Prometheus text
// format), /healthz and /readyz. An empty Listen (no metrics block) turns
// it off.
type Metrics struct {
	Listen string // host:port
}

// Buffer is the store-and-forward buffer's settings.
type Buffer struct {
	Dir      string
	MaxBytes int64
	MaxAge   time.Duration
	OnFull   string        // drop_oldest | drop_newest
	Sync     time.Duration // 0 means sync every append ("always")
	InFlight int
	Rate     float64 // publishes per second per device; 0 unlimited
	// MinFree is the free space the buffer's file system must keep: new
	// events are refused (counted, reported) below it.
	MinFree int64
}

// Bus kinds.
const (
	BusModbusTCP    = "modbus_tcp"
	BusModbusRTU    = "modbus_rtu"
	BusModbusASCII  = "modbus_ascii"
	BusModbusRTUTCP = "modbus_rtu_tcp"
	BusSerialLine   = "serial_line"
)

// Bus is one physical bus and its transport settings.
type Bus struct {
	Name    string
	Kind    string
	Address string // modbus_tcp, modbus_rtu_tcp, serial_line over TCP: host:port
	Serial  SerialPort
	Line    *SerialLine // serial_line only
	Timeout time.Duration
	Pause   time.Duration // silence between requests
	// ConnectPause is a silence after each new connection.
	ConnectPause time.Duration
	Plan         mapping.PlanOptions
	// WriteMultiple makes Modbus writes use FC15/FC16 even for a single
	// coil or register, for devices that do not implement FC5/FC6.
	WriteMultiple bool
}

// SerialPort is a serial line's settings. Zero values take the protocol's
// defaults (RTU 19200 8E1, ASCII 19200 7E1, serial_line 9600 8N1).
type SerialPort struct {
	Port     string
	Baud     int
	DataBits int
	Parity   string
	StopBits int
	Silence  time.Duration // RTU: end-of-frame silence; 0 is 3.5 characters
}

// SerialLine is how a serial_line bus cuts and parses frames.
type SerialLine struct {
	Delimiter    string
	Length       int
	Start        string
	MaxLength    int
	Regexp       string
	Separator    string
	DecimalComma bool
	Request      string
	MaxAge       time.Duration
	Template     string // what bridge simulate prints
}

// DeviceType is a mapping.DeviceType plus what the simulator needs to
// animate its points and, for serial-line instruments, which frame field
// each point reads.
type DeviceType struct {
	*mapping.DeviceType
	Simulate map[string]Simulation // by point name
	Fields   []Field               // serial-line fields, in register-image order
	// Management maps device-management actions; nil when not given.
	Management *TypeManagement
}

// Field is a value in a serial-line frame and the point that reads it.
// Fields fill holding registers from address 0 in order: a number takes
// four registers (float64, ABCDEFGH), a text Length registers (two
// characters each). adapters/serialline builds the same image.
type Field struct {
	Point  string // the point's name
	Name   string // the regexp group or column name
	Column int    // with a separator: the column, from 1
	Text   bool
	Length int // text registers
}

// Simulation modes of a point in `bridge simulate`.
const (
	SimFixed      = "fixed"
	SimCounter    = "counter"
	SimSine       = "sine"
	SimRandomWalk = "random_walk"
)

// Simulation describes how the simulator changes a point's value, in
// engineering units (after scale and offset).
type Simulation struct {
	Mode     string
	Value    float64 // fixed value; start of counter and random walk
	Min, Max float64 // sine and random walk bounds
	Step     float64 // counter increment per second; random walk step per tick
	Period   time.Duration
}

// Device is one field device. Its Type is the device type with the
// device's point overrides applied (a copy when it has any).
type Device struct {
	Name  string // platform device id
	Type  *DeviceType
	Bus   *Bus
	Unit  uint8
	Token string
	Poll  time.Duration
	Plan  mapping.PlanOptions // the bus's, with the device's overrides
	// Management is the device's own management data (deviceInfo merged
	// over its type's).
	Management DeviceManagement
}
