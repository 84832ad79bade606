package loadrig

import (
	"fmt"
	"strings"
)

// Modes of the bridge under test.
const (
	ModeDevice  = "device"
	ModeGateway = "gateway"
)

// gatewayID is the gateway identity of gateway mode.
const gatewayID = "gw-1"

// plant is the shape of the generated load: devices of one device type,
// each read with one request of points float32 input registers.
type plant struct {
	devices, points int
	busAddrs        []string // one Modbus TCP simulator endpoint per bus
	pollEvery       string   // duration string, e.g. "1s"
}

// deviceName is the name (platform device id) of device i.
func deviceName(i int) string { return fmt.Sprintf("m%d", i) }

// busOf and unitOf spread the devices round-robin over the buses; units
// start at 1 on each bus.
func (p plant) busOf(i int) int  { return i % len(p.busAddrs) }
func (p plant) unitOf(i int) int { return i/len(p.busAddrs) + 1 }

// bridgeConfig is the HCL for both `bridge simulate` and `bridge run`: the
// simulator serves the buses' addresses, the bridge polls them and
// publishes to the broker at brokerPort (plain TCP).
func bridgeConfig(p plant, mode string, brokerPort int, bufferDir, metricsAddr string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "platform {\n  org  = \"loadrig\"\n  mode = %q\n  host = \"127.0.0.1\"\n  port = %d\n  tls  = false\n", mode, brokerPort)
	if mode == ModeGateway {
		fmt.Fprintf(&b, "  gateway {\n    type  = \"edge-gw\"\n    id    = %q\n    token = \"rig-gateway-token\"\n  }\n", gatewayID)
	}
	b.WriteString("}\n")
	fmt.Fprintf(&b, "buffer {\n  dir = %q\n}\n", bufferDir)
	fmt.Fprintf(&b, "metrics {\n  listen = %q\n}\n", metricsAddr)
	// No event blocks: every poll sends one "reading" event with all points.
	b.WriteString("device_type \"meter\" {\n")
	for i := range p.points {
		fmt.Fprintf(&b, "  point \"p%d\" {\n    table   = \"input\"\n    address = %d\n    type    = \"float32\"\n  }\n", i, 2*i)
	}
	b.WriteString("}\n")
	for i, addr := range p.busAddrs {
		fmt.Fprintf(&b, "bus \"b%d\" {\n  modbus_tcp { address = %q }\n}\n", i, addr)
	}
	for i := range p.devices {
		fmt.Fprintf(&b, "device %q {\n  type = \"meter\"\n  bus  = \"b%d\"\n  unit = %d\n  poll = %q\n", deviceName(i), p.busOf(i), p.unitOf(i), p.pollEvery)
		if mode == ModeDevice {
			fmt.Fprintf(&b, "  token = \"rig-token-%d\"\n", i)
		}
		b.WriteString("}\n")
	}
	return b.String()
}

// telegrafTopicPrefix is where Telegraf publishes: telegrafTopicPrefix + device.
const telegrafTopicPrefix = "telegraf/"

// telegrafConfig is a Telegraf configuration doing the same work as the
// bridge: one inputs.modbus per device reading the same registers as
// float32 fields in one request, the agent gathering every pollEvery, and
// outputs.mqtt publishing one JSON message per device per poll at QoS 1
// (layout non-batch), flushed every pollEvery so messages leave as soon as
// the bridge's would. Timestamps in milliseconds (precision and JSON units)
// so that latency can be read from them.
func telegrafConfig(p plant, brokerPort int) string {
	var b strings.Builder
	batch := max(p.devices, 1000)
	fmt.Fprintf(&b, `[agent]
  interval = %q
  round_interval = false
  collection_jitter = "0s"
  flush_interval = %q
  flush_jitter = "0s"
  precision = "1ms"
  metric_batch_size = %d
  metric_buffer_limit = %d
  omit_hostname = true
  quiet = true

[[outputs.mqtt]]
  servers = ["127.0.0.1:%d"]
  topic = '%s{{ .Tag "name" }}'
  qos = 1
  keep_alive = 30
  client_id = "telegraf-loadrig"
  layout = "non-batch"
  data_format = "json"
  json_timestamp_units = "1ms"
`, p.pollEvery, p.pollEvery, batch, 10*batch, brokerPort, telegrafTopicPrefix)
	for i := range p.devices {
		fmt.Fprintf(&b, "\n[[inputs.modbus]]\n  name = %q\n  controller = \"tcp://%s\"\n  timeout = \"1s\"\n  configuration_type = \"request\"\n", deviceName(i), p.busAddrs[p.busOf(i)])
		fmt.Fprintf(&b, "  [[inputs.modbus.request]]\n    slave_id = %d\n    byte_order = \"ABCD\"\n    register = \"input\"\n    fields = [\n", p.unitOf(i))
		for j := range p.points {
			fmt.Fprintf(&b, "      { address = %d, name = \"p%d\", type = \"FLOAT32\" },\n", 2*j, j)
		}
		b.WriteString("    ]\n")
	}
	return b.String()
}
