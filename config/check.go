package config

import (
	"fmt"
	"maps"
	"net"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/agext/levenshtein"
	"github.com/hashicorp/hcl/v2"

	"fieldbridge/adapters"
	"fieldbridge/mapping"
)

// Defaults of settings that are not given.
const (
	DefaultDomain    = "internetofthings.ibmcloud.com"
	DefaultBufferDir = "/var/lib/bridge/buffer"
	DefaultMaxBytes  = 256 << 20
	DefaultMaxAge    = 72 * time.Hour
	DefaultSync      = time.Second
	DefaultInFlight  = 64
	// DefaultMinFree and MinMinFree are buffer.DefaultMinFree and
	// buffer.MinFreeFloor (config does not import buffer;
	// cmd/bridge checks that they agree).
	DefaultMinFree   = 64 << 20
	MinMinFree       = 16 << 20
	DefaultTimeout   = time.Second
	DefaultPoll      = 5 * time.Second
	DefaultKeepAlive = 60 * time.Second
	DefaultEventName = "reading"
	maxIDLength      = 36
	minTokenLength   = 8
	maxTokenLength   = 36
	tokenPunctuation = "_.!&@?*+()-" // besides A-Z a-z 0-9
	defaultSimPeriod = time.Minute
	maxDecimals      = 15
	maxUnitID        = 255
	// defaultTextRegisters is a text field's size when length is not given
	// (as adapters/serialline.DefaultTextRegs).
	defaultTextRegisters = 8
	defaultQoS           = 1
	quickstartOrgName    = "quickstart"
)

// idPattern is the platform's rule for type, device and event ids
// (protocol.md §1.2).
var idPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,36}$`)

// checker turns the decoded HCL into a Config, collecting diagnostics.
type checker struct {
	env     Environment
	baseDir string
	diags   hcl.Diagnostics
}

// errorf records an error at rng. An empty range means the attribute is
// missing, which the decoder already reported as a missing argument.
func (c *checker) errorf(rng hcl.Range, summary, detail string, args ...any) {
	if rng.Filename == "" {
		return
	}
	r := rng
	c.diags = append(c.diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: summary, Detail: fmt.Sprintf(detail, args...), Subject: &r})
}

func (c *checker) warnf(rng hcl.Range, summary, detail string, args ...any) {
	r := rng
	c.diags = append(c.diags, &hcl.Diagnostic{Severity: hcl.DiagWarning, Summary: summary, Detail: fmt.Sprintf(detail, args...), Subject: &r})
}

// at returns r when the attribute was given, else the enclosing block's range.
func at(r, block hcl.Range) hcl.Range {
	if r.Filename == "" {
		return block
	}
	return r
}

func (c *checker) build(raw *fileBlock, file *hcl.File) *Config {
	cfg := &Config{}
	start := hcl.Range{Filename: file.Body.MissingItemRange().Filename, Start: hcl.InitialPos, End: hcl.InitialPos}
	if raw.Platform == nil {
		c.errorf(start, "Missing platform block", "Add a platform { org = \"...\" } block that says where events go.")
	} else {
		cfg.Platform = c.platform(raw.Platform)
	}
	cfg.Buffer = c.buffer(raw.Buffer)
	cfg.Management = c.management(raw.Management, &cfg.Platform)
	cfg.Metrics = c.metrics(raw.Metrics)
	buses := map[string]*Bus{}
	for i := range raw.Buses {
		b := &raw.Buses[i]
		if prev, dup := buses[b.Name]; dup && prev != nil {
			c.errorf(b.NameRange, "Duplicate bus", "A bus named %q is already defined.", b.Name)
			continue
		}
		bus := c.bus(b)
		buses[b.Name] = bus
		cfg.Buses = append(cfg.Buses, bus)
	}
	types := map[string]*DeviceType{}
	for i := range raw.DeviceTypes {
		t := &raw.DeviceTypes[i]
		if _, dup := types[t.Name]; dup {
			c.errorf(t.NameRange, "Duplicate device type", "A device_type named %q is already defined.", t.Name)
			continue
		}
		dt := c.deviceType(t)
		types[t.Name] = dt
		cfg.DeviceTypes = append(cfg.DeviceTypes, dt)
	}
	seen := map[string]bool{}
	onUnit := map[busUnit]string{}     // the first device polling each unit of each bus
	lineType := map[*Bus]*DeviceType{} // a serial_line bus parses one kind of frame
	for i := range raw.Devices {
		d := &raw.Devices[i]
		if seen[d.Name] {
			c.errorf(d.NameRange, "Duplicate device", "A device named %q is already defined.", d.Name)
			continue
		}
		seen[d.Name] = true
		dev := c.device(d, &cfg.Platform, buses, types)
		if dev.Bus != nil && dev.Bus.Kind == BusSerialLine && dev.Type != nil {
			if first := lineType[dev.Bus]; first == nil {
				lineType[dev.Bus] = dev.Type
			} else if first.Name != dev.Type.Name || len(d.Points) > 0 {
				c.errorf(d.TypeRange, "One frame layout per serial line", "Every device on serial_line bus %q must be of type %q without point overrides: the bus parses one kind of frame.", dev.Bus.Name, first.Name)
			}
		}
		c.warnSharedUnit(onUnit, d, dev)
		cfg.Devices = append(cfg.Devices, dev)
	}
	for i := range raw.Devices {
		if d := &raw.Devices[i]; d.Management != nil && cfg.Management == nil {
			c.warnf(d.Management.DefRange, "Management without a management block", "Device management is off: add a top-level management { } block to switch it on.")
		}
	}
	if len(raw.Devices) == 0 {
		c.warnf(start, "No devices", "The configuration defines no device block, so the bridge has nothing to poll.")
	}
	return cfg
}

// warnSharedUnit warns when dev polls a unit that an earlier device on the
// same bus polls already (first holds those): two platform devices would
// report one field device, usually a copied block whose unit was not changed.
// It is a warning because splitting one field device into two platform
// devices can be intended.
func (c *checker) warnSharedUnit(first map[busUnit]string, d *deviceBlock, dev *Device) {
	if dev.Bus == nil || (d.Unit != nil && (*d.Unit < 0 || *d.Unit > maxUnitID)) {
		return
	}
	key := busUnit{dev.Bus.Name, dev.Unit}
	if name, dup := first[key]; dup {
		c.warnf(at(d.UnitRange, d.NameRange), "Two devices on one unit",
			"Devices %q and %q both poll unit %d on bus %q: they read the same field device. Is the unit id right?", name, d.Name, dev.Unit, dev.Bus.Name)
		return
	}
	first[key] = d.Name
}

// busUnit names one field device's address: a unit id on a bus.
type busUnit struct {
	bus  string
	unit uint8
}

func (c *checker) platform(p *platformBlock) Platform {
	out := Platform{
		Org:          p.Org,
		Mode:         ModeDevice,
		Domain:       DefaultDomain,
		Transport:    "tcp",
		QoS:          defaultQoS,
		KeepAlive:    DefaultKeepAlive,
		CleanSession: false,
		TLS:          true,
	}
	if p.Org == quickstartOrgName {
		out.Mode = ModeQuickstart
	}
	if p.Mode != nil {
		out.Mode = c.enum(*p.Mode, p.ModeRange, "mode", []string{ModeDevice, ModeGateway, ModeQuickstart})
	}
	if (p.Org == quickstartOrgName) != (out.Mode == ModeQuickstart) {
		c.errorf(at(p.ModeRange, p.OrgRange), "Quickstart needs org = \"quickstart\"",
			"Quickstart mode and the org \"quickstart\" go together: set both or neither.")
	}
	if p.Org != quickstartOrgName && !regexp.MustCompile(`^[a-z0-9]{1,36}$`).MatchString(p.Org) {
		c.errorf(p.OrgRange, "Invalid org", "An organisation id is the short lower-case id the platform assigned (for example \"ab12cd\"), or \"quickstart\".")
	}
	if p.Domain != nil {
		out.Domain = *p.Domain
	}
	if p.Host != nil {
		out.Host = *p.Host
	}
	if out.Mode == ModeQuickstart {
		out.TLS = false
		out.QoS = 0
	}
	if p.TLS != nil {
		out.TLS = *p.TLS
		if out.TLS && out.Mode == ModeQuickstart {
			c.errorf(p.TLSRange, "Quickstart has no TLS", "The quickstart service listens on plain TCP only; remove tls.")
		}
	}
	out.Port = 8883
	if !out.TLS {
		out.Port = 1883
	}
	if p.Transport != nil {
		out.Transport = c.enum(*p.Transport, p.TransportRange, "transport", []string{"tcp", "websocket"})
		if out.Transport == "websocket" {
			out.Port = 443
			if !out.TLS {
				out.Port = 80
			}
		}
	}
	if p.Port != nil {
		out.Port = *p.Port
		if out.Port < 1 || out.Port > 65535 {
			c.errorf(p.PortRange, "Invalid port", "A port is a number from 1 to 65535.")
		}
	}
	if p.CAFile != nil {
		out.CAFile = *p.CAFile
	}
	if p.ClientCert != nil {
		out.ClientCert = *p.ClientCert
	}
	if p.ClientKey != nil {
		out.ClientKey = *p.ClientKey
	}
	if (out.ClientCert == "") != (out.ClientKey == "") {
		c.errorf(at(p.ClientKeyRange, p.DefRange), "Client certificate needs its key", "Set both client_cert and client_key, or neither.")
	}
	if p.InsecureSkipVerify != nil {
		out.InsecureSkipVerify = *p.InsecureSkipVerify
	}
	if p.QoS != nil {
		out.QoS = *p.QoS
		switch {
		case out.QoS != 0 && out.QoS != 1:
			c.errorf(p.QoSRange, "Invalid qos", "qos is 0 (at most once) or 1 (at least once, through the buffer).")
		case out.QoS != 0 && out.Mode == ModeQuickstart:
			c.errorf(p.QoSRange, "Quickstart supports QoS 0 only", "Remove qos or set qos = 0.")
		}
	}
	if p.KeepAlive != nil {
		out.KeepAlive = c.duration(*p.KeepAlive, p.KeepAliveRange, "keepalive")
	}
	if p.CleanSession != nil {
		out.CleanSession = *p.CleanSession
	}
	switch {
	case out.Mode == ModeGateway && p.Gateway == nil:
		c.errorf(p.DefRange, "Missing gateway block", "Gateway mode connects as the gateway: add gateway { type = \"...\" id = \"...\" token = env(\"...\") }.")
	case out.Mode != ModeGateway && p.Gateway != nil:
		c.errorf(p.Gateway.DefRange, "Gateway block outside gateway mode", "Set mode = \"gateway\" or remove the gateway block.")
	case p.Gateway != nil:
		g := p.Gateway
		c.checkID(g.Type, g.TypeRange, "gateway type")
		c.checkDeviceID(g.ID, g.IDRange, "gateway id")
		out.Gateway = &Gateway{Type: g.Type, ID: g.ID, Token: c.token(g.Token, g.TokenRange, g.TokenFile, g.TokenFileRange, g.DefRange, true)}
		if g.Rate != nil {
			out.Gateway.Rate = *g.Rate
			if *g.Rate < 0 {
				c.errorf(g.RateRange, "Invalid rate", "rate is events per second over the gateway connection (the platform allows 100); 0 means unlimited.")
			}
		}
	}
	return out
}

func (c *checker) buffer(b *bufferBlock) Buffer {
	out := Buffer{Dir: DefaultBufferDir, MaxBytes: DefaultMaxBytes, MaxAge: DefaultMaxAge, OnFull: "drop_oldest", Sync: DefaultSync,
		InFlight: DefaultInFlight, MinFree: DefaultMinFree}
	if b == nil {
		return out
	}
	if b.Dir != nil {
		out.Dir = *b.Dir
	}
	if b.MaxBytes != nil {
		n, err := ParseSize(*b.MaxBytes)
		if err != nil || n < 1<<20 {
			c.errorf(b.MaxBytesRange, "Invalid max_bytes", "A size of at least 1MiB, like \"256MiB\" or \"2GB\".")
		}
		out.MaxBytes = n
	}
	if b.MaxAge != nil {
		out.MaxAge = c.duration(*b.MaxAge, b.MaxAgeRange, "max_age")
	}
	if b.OnFull != nil {
		out.OnFull = c.enum(*b.OnFull, b.OnFullRange, "on_full", []string{"drop_oldest", "drop_newest"})
	}
	if b.Sync != nil {
		if *b.Sync == "always" {
			out.Sync = 0
		} else {
			out.Sync = c.duration(*b.Sync, b.SyncRange, "sync")
		}
	}
	if b.InFlight != nil {
		out.InFlight = *b.InFlight
		if out.InFlight < 1 || out.InFlight > 1000 {
			c.errorf(b.InFlightRange, "Invalid in_flight", "in_flight is the number of unacknowledged events per connection, from 1 to 1000.")
		}
	}
	if b.Rate != nil {
		out.Rate = *b.Rate
		if out.Rate < 0 {
			c.errorf(b.RateRange, "Invalid rate", "rate is events per second per device; 0 means unlimited.")
		}
	}
	if b.MinFree != nil {
		n, err := ParseSize(*b.MinFree)
		if err != nil || n < MinMinFree {
			c.errorf(b.MinFreeRange, "Invalid min_free",
				"min_free is the free space the buffer leaves on its file system, at least 16MiB, like \"64MiB\".")
		}
		out.MinFree = n
	}
	return out
}

func (c *checker) metrics(m *metricsBlock) Metrics {
	if m == nil {
		return Metrics{}
	}
	host, port, err := net.SplitHostPort(m.Listen)
	n, perr := strconv.Atoi(port)
	switch {
	case err != nil || perr != nil || n < 0 || n > 65535:
		c.errorf(m.ListenRange, "Invalid metrics listen address",
			"listen is host:port with a port from 0 to 65535, for example \"127.0.0.1:9273\" (\":9273\" listens on every interface).")
	case host != "" && host != "localhost" && net.ParseIP(host) == nil:
		c.errorf(m.ListenRange, "Invalid metrics listen address",
			"The host must be an IP address of this box or \"localhost\" (or empty for every interface), for example \"127.0.0.1:9273\".")
	}
	return Metrics{Listen: m.Listen}
}

func (c *checker) bus(b *busBlock) *Bus {
	out := &Bus{Name: b.Name, Timeout: DefaultTimeout}
	c.checkName(b.Name, b.NameRange, "bus")
	var kinds []string
	for kind, set := range map[string]bool{BusModbusTCP: b.ModbusTCP != nil, BusModbusRTU: b.ModbusRTU != nil,
		BusModbusASCII: b.ModbusASCII != nil, BusModbusRTUTCP: b.ModbusRTUTCP != nil, BusSerialLine: b.SerialLine != nil} {
		if set {
			kinds = append(kinds, kind)
		}
	}
	switch {
	case len(kinds) == 0:
		c.errorf(b.DefRange, "Bus without a transport", "Add one transport block: modbus_tcp, modbus_rtu, modbus_rtu_tcp, modbus_ascii or serial_line.")
	case len(kinds) > 1:
		sort.Strings(kinds)
		c.errorf(b.NameRange, "Bus with several transports", "A bus is one line or endpoint; it has %s. Make a bus for each.", strings.Join(kinds, " and "))
	case b.ModbusTCP != nil, b.ModbusRTUTCP != nil:
		t, kind := b.ModbusTCP, BusModbusTCP
		if t == nil {
			t, kind = b.ModbusRTUTCP, BusModbusRTUTCP
		}
		out.Kind, out.Address = kind, t.Address
		c.hostPort(t.Address, t.AddressRange)
		if t.Timeout != nil {
			out.Timeout = c.duration(*t.Timeout, t.TimeoutRange, "timeout")
		}
		if t.ConnectPause != nil {
			out.ConnectPause = c.duration(*t.ConnectPause, t.PauseRange, "connect_pause")
		}
	case b.ModbusRTU != nil, b.ModbusASCII != nil:
		p, kind := b.ModbusRTU, BusModbusRTU
		if p == nil {
			p, kind = b.ModbusASCII, BusModbusASCII
		}
		out.Kind = kind
		out.Serial = c.serialPort(&p.Port, p.PortRange, p.Baud, p.BaudRange, p.DataBits, p.DataBitsRange, p.Parity, p.ParityRange, p.StopBits, p.StopBitsRange)
		if p.Timeout != nil {
			out.Timeout = c.duration(*p.Timeout, p.TimeoutRange, "timeout")
		}
		if p.Silence != nil {
			out.Serial.Silence = c.duration(*p.Silence, p.SilenceRange, "silence")
			if kind != BusModbusRTU {
				c.errorf(p.SilenceRange, "silence is for RTU", "Modbus ASCII frames end with CR LF, not with a silence; remove silence.")
			}
		}
	default:
		out.Kind = BusSerialLine
		out.Line = c.serialLine(b.SerialLine, out)
	}
	if b.Pause != nil {
		out.Pause = c.duration(*b.Pause, b.PauseRange, "pause")
	}
	if b.MaxGap != nil {
		out.Plan.MaxGap = c.maxGap(*b.MaxGap, b.MaxGapRange)
	}
	if b.MaxRegisters != nil {
		out.Plan.MaxRegisters = c.maxRegisters(*b.MaxRegisters, b.MaxRegistersRange)
	}
	if b.WriteMultiple != nil {
		out.WriteMultiple = *b.WriteMultiple
		if out.Kind == BusSerialLine {
			c.errorf(b.WriteMultipleRange, "write_multiple is for Modbus", "A serial_line bus sends text commands; remove write_multiple.")
		}
	}
	return out
}

func (c *checker) maxGap(n int, rng hcl.Range) int {
	if n < 0 || n > adapters.MaxReadRegisters {
		c.errorf(rng, "Invalid max_gap", "max_gap is the number of unused registers a request may read to join two points, 0 to %d.", adapters.MaxReadRegisters)
	}
	return n
}

func (c *checker) maxRegisters(n int, rng hcl.Range) int {
	if n < 1 || n > adapters.MaxReadRegisters {
		c.errorf(rng, "Invalid max_registers", "max_registers is 1 to %d registers per request.", adapters.MaxReadRegisters)
	}
	return n
}

// overridePoints returns a copy of the device type with the device's point
// blocks applied, checked like the type's own points.
func (c *checker) overridePoints(t *DeviceType, d *deviceBlock) *DeviceType {
	mt := *t.DeviceType
	mt.Points = append([]mapping.Point(nil), t.Points...)
	names := make([]string, len(mt.Points))
	for i, p := range mt.Points {
		names[i] = p.Name
	}
	for i := range d.Points {
		pb := &d.Points[i]
		idx := mt.PointIndex(pb.Name)
		if idx < 0 {
			c.errorf(pb.NameRange, "Unknown point", "Device type %q has no point %q to override.%s", t.Name, pb.Name, didYouMean(pb.Name, names))
			continue
		}
		if pb.Simulate != nil {
			c.errorf(pb.Simulate.DefRange, "Simulation in a device", "simulate belongs to the device_type's point.")
		}
		if p, ok := c.applyPoint(mt.Points[idx], pb); ok {
			mt.Points[idx] = p
		}
	}
	for _, o := range mt.Overlaps() {
		c.errorf(d.NameRange, "Overlapping points disagree", "%s (after this device's overrides)", mt.OverlapError(o))
	}
	return &DeviceType{DeviceType: &mt, Simulate: t.Simulate, Management: t.Management}
}

func (c *checker) device(d *deviceBlock, p *Platform, buses map[string]*Bus, types map[string]*DeviceType) *Device {
	out := &Device{Name: d.Name, Unit: 1, Poll: DefaultPoll}
	c.checkDeviceID(d.Name, d.NameRange, "device id")
	out.Type = types[d.Type]
	if out.Type == nil {
		c.errorf(d.TypeRange, "Unknown device type", "No device_type named %q is defined.%s", d.Type, didYouMean(d.Type, keys(types)))
	}
	out.Bus = buses[d.Bus]
	if out.Bus == nil {
		c.errorf(d.BusRange, "Unknown bus", "No bus named %q is defined.%s", d.Bus, didYouMean(d.Bus, keys(buses)))
	} else {
		out.Plan = out.Bus.Plan
	}
	if d.MaxGap != nil {
		out.Plan.MaxGap = c.maxGap(*d.MaxGap, d.MaxGapRange)
	}
	if d.MaxRegisters != nil {
		out.Plan.MaxRegisters = c.maxRegisters(*d.MaxRegisters, d.MaxRegistersRange)
	}
	if out.Type != nil && len(d.Points) > 0 {
		out.Type = c.overridePoints(out.Type, d)
	}
	if out.Type != nil && out.Bus != nil {
		switch line := out.Bus.Kind == BusSerialLine; {
		case line && len(out.Type.Fields) == 0:
			c.errorf(d.TypeRange, "Device type has no fields", "Bus %q is a serial_line; its devices' points read frame fields (field = \"name\" or column = N).", out.Bus.Name)
		case !line && len(out.Type.Fields) > 0:
			c.errorf(d.TypeRange, "Serial-line fields on a Modbus bus", "Device type %q reads frame fields, but bus %q speaks Modbus.", out.Type.Name, out.Bus.Name)
		}
	}
	if d.Unit != nil {
		if *d.Unit < 0 || *d.Unit > maxUnitID {
			c.errorf(d.UnitRange, "Invalid unit id", "A Modbus unit id is 0 to 255 (1 to 247 on serial lines).")
		} else {
			out.Unit = uint8(*d.Unit)
		}
	}
	if d.Poll != nil {
		out.Poll = c.duration(*d.Poll, d.PollRange, "poll")
		if out.Poll <= 0 {
			c.errorf(d.PollRange, "Invalid poll", "poll must be longer than zero.")
		}
	}
	out.Management = c.deviceManagement(d.Management)
	if out.Type != nil && out.Type.Management != nil && out.Type.Management.DeviceInfo != nil {
		info := maps.Clone(out.Type.Management.DeviceInfo)
		maps.Copy(info, out.Management.DeviceInfo)
		out.Management.DeviceInfo = info
	}
	needToken := p.Mode == ModeDevice
	out.Token = c.token(d.Token, d.TokenRange, d.TokenFile, d.TokenFileRange, d.DefRange, needToken)
	if !needToken && (d.Token != nil || d.TokenFile != nil) {
		c.warnf(at(d.TokenRange, d.TokenFileRange), "Device token unused", "In %s mode devices do not connect themselves; the token is ignored.", p.Mode)
	}
	return out
}

// token resolves token or token_file; one of them is required when need is set.
func (c *checker) token(tok *string, tokRange hcl.Range, file *string, fileRange, block hcl.Range, need bool) string {
	switch {
	case tok != nil && file != nil:
		c.errorf(fileRange, "Token given twice", "Use token or token_file, not both.")
	case tok != nil:
		if *tok == "" && need {
			c.errorf(tokRange, "Empty token", "The token is empty; is its environment variable set to an empty string?")
		} else if need {
			c.checkToken(*tok, tokRange)
		}
		return *tok
	case file != nil:
		t := c.readSecret(*file, fileRange)
		if t != "" && need {
			c.checkToken(t, fileRange)
		}
		return t
	case need:
		c.errorf(block, "Missing token", "Give the device's authentication token: token = env(\"NAME\") or token_file = \"/etc/bridge/NAME.token\".")
	}
	return ""
}

func (c *checker) enum(v string, rng hcl.Range, attr string, allowed []string) string {
	for _, a := range allowed {
		if v == a {
			return v
		}
	}
	c.errorf(rng, "Invalid "+attr, "%q is not one of %s.%s", v, quoteList(allowed), didYouMean(v, allowed))
	return v
}

func (c *checker) duration(v string, rng hcl.Range, attr string) time.Duration {
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		c.errorf(rng, "Invalid "+attr, "%q is not a duration; write it like \"500ms\", \"5s\", \"1m30s\" or \"72h\".", v)
		return 0
	}
	return d
}

// checkID applies the platform's character rules for ids.
func (c *checker) checkID(v string, rng hcl.Range, what string) {
	if !idPattern.MatchString(v) {
		c.errorf(rng, "Invalid "+what, "%q breaks the platform's rules: 1 to %d characters of A-Z a-z 0-9 . _ -", v, maxIDLength)
	}
}

// checkToken applies the platform's rule for authentication tokens
// (protocol.md §1.2): the platform refuses the connection of a device whose
// token breaks it, so it is an error here. The token itself is never shown.
func (c *checker) checkToken(tok string, rng hcl.Range) {
	if n := len(tok); n < minTokenLength || n > maxTokenLength {
		c.errorf(rng, "Token length", "The token has %d characters; the platform accepts %d to %d.", n, minTokenLength, maxTokenLength)
		return
	}
	for i := 0; i < len(tok); i++ {
		if !tokenChar(tok[i]) {
			c.errorf(rng, "Token character", "Character %d of the token is not one the platform accepts: A-Z a-z 0-9 and %s", i+1, strings.Join(strings.Split(tokenPunctuation, ""), " "))
			return
		}
	}
}

func tokenChar(b byte) bool {
	return 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || strings.IndexByte(tokenPunctuation, b) >= 0
}

// checkDeviceID applies checkID, and warns about a dot: the older platform
// pages allow it in device ids, the Maximo-era page does not (protocol.md
// §12.1), so such a device may be refused at registration.
func (c *checker) checkDeviceID(v string, rng hcl.Range, what string) {
	c.checkID(v, rng, what)
	if idPattern.MatchString(v) && strings.Contains(v, ".") {
		c.warnf(rng, "Dot in "+what, "%q: newer platform versions accept only A-Z a-z 0-9 - _ in device ids; a dot may be refused at registration.", v)
	}
}

// checkName applies lower_snake-ish rules to names that never leave the bridge.
func (c *checker) checkName(v string, rng hcl.Range, what string) {
	if !idPattern.MatchString(v) {
		c.errorf(rng, "Invalid "+what+" name", "%q: use 1 to %d characters of A-Z a-z 0-9 . _ -", v, maxIDLength)
	}
}

// didYouMean returns " Did you mean "x"?" when a close name exists.
func didYouMean(given string, options []string) string {
	best, bestDist := "", 3
	for _, o := range options {
		if d := levenshtein.Distance(given, o, nil); d < bestDist {
			best, bestDist = o, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" Did you mean %q?", best)
}

func quoteList(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (c *checker) hostPort(addr string, rng hcl.Range) {
	if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
		c.errorf(rng, "Invalid address", "An address is host:port, for example \"10.0.0.5:502\".")
	}
}

// serialPort checks the settings of a serial line; zero values keep the
// protocol's defaults.
func (c *checker) serialPort(port *string, portRange hcl.Range, baud *int, baudRange hcl.Range, dataBits *int, dataBitsRange hcl.Range,
	parity *string, parityRange hcl.Range, stopBits *int, stopBitsRange hcl.Range) SerialPort {
	var sp SerialPort
	if port != nil {
		sp.Port = *port
		if sp.Port == "" {
			c.errorf(portRange, "Empty port", "port is the serial device, for example \"/dev/ttyUSB0\" or \"/dev/serial/by-id/...\".")
		}
	}
	if baud != nil {
		sp.Baud = *baud
		if sp.Baud < 50 || sp.Baud > 4000000 {
			c.errorf(baudRange, "Invalid baud", "baud is the line speed, for example 9600, 19200 or 115200.")
		}
	}
	if dataBits != nil {
		sp.DataBits = *dataBits
		if sp.DataBits != 7 && sp.DataBits != 8 {
			c.errorf(dataBitsRange, "Invalid data_bits", "data_bits is 7 or 8.")
		}
	}
	if parity != nil {
		sp.Parity = c.enum(*parity, parityRange, "parity", []string{"none", "even", "odd"})
	}
	if stopBits != nil {
		sp.StopBits = *stopBits
		if sp.StopBits != 1 && sp.StopBits != 2 {
			c.errorf(stopBitsRange, "Invalid stop_bits", "stop_bits is 1 or 2.")
		}
	}
	return sp
}

func (c *checker) serialLine(l *serialLineBlock, out *Bus) *SerialLine {
	line := &SerialLine{}
	switch {
	case (l.Port == nil) == (l.Address == nil):
		c.errorf(l.DefRange, "Where is the instrument?", "Give either port (a serial device) or address (host:port of a serial device server).")
	case l.Address != nil:
		out.Address = *l.Address
		c.hostPort(out.Address, l.AddressRange)
	}
	out.Serial = c.serialPort(l.Port, l.PortRange, l.Baud, l.BaudRange, l.DataBits, l.DataBitsRange, l.Parity, l.ParityRange, l.StopBits, l.StopBitsRange)
	set := func(dst *string, v *string) {
		if v != nil {
			*dst = *v
		}
	}
	set(&line.Delimiter, l.Delimiter)
	set(&line.Start, l.Start)
	set(&line.Regexp, l.Regexp)
	set(&line.Separator, l.Separator)
	set(&line.Request, l.Request)
	set(&line.Template, l.Template)
	if l.Length != nil {
		line.Length = *l.Length
	}
	if l.MaxLength != nil {
		line.MaxLength = *l.MaxLength
	}
	if l.DecimalComma != nil {
		line.DecimalComma = *l.DecimalComma
	}
	if (line.Delimiter == "") == (line.Length <= 0) {
		c.errorf(at(l.DelimiterRange, at(l.LengthRange, l.DefRange)), "How are frames cut?", "Give delimiter (for example \"\\r\\n\") or length (bytes per frame after start), not both.")
	}
	if (line.Regexp == "") == (line.Separator == "") {
		c.errorf(at(l.RegexpRange, at(l.SeparatorRange, l.DefRange)), "How are fields parsed?", "Give regexp (named groups name the fields) or separator (fields are columns), not both.")
	}
	if line.Regexp != "" {
		if _, err := regexp.Compile(line.Regexp); err != nil {
			c.errorf(l.RegexpRange, "Invalid regexp", "%v", err)
		}
	}
	if l.Timeout != nil {
		out.Timeout = c.duration(*l.Timeout, l.TimeoutRange, "timeout")
	}
	if l.MaxAge != nil {
		line.MaxAge = c.duration(*l.MaxAge, l.MaxAgeRange, "max_age")
	}
	return line
}
