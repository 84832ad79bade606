package config

import (
	"regexp"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	ctyjson "github.com/zclconf/go-cty/cty/json"
)

// Device management (the platform's Device Management Protocol): a global
// management block switches it on, device types map the actions, devices
// add what is theirs.

// Defaults of the management block.
const (
	DefaultStagingDir        = "/var/lib/bridge/firmware"
	DefaultMaxFirmwareSize   = 64 << 20
	DefaultDownloadTimeout   = 10 * time.Minute
	DefaultActionTimeout     = 30 * time.Second
	DefaultFirmwareTimeout   = 10 * time.Minute
	minManagementLifetime    = time.Hour
	minFirmwareSize          = 1 << 10
	maxLatitude, maxLongitde = 90, 180
)

// Management is the global management block: device management is on for
// every device when it is present and not disabled.
type Management struct {
	Enabled          bool
	Lifetime         time.Duration // 0: the platform never marks devices dormant
	StagingDir       string        // where firmware images are downloaded
	MaxFirmwareBytes int64
	DownloadTimeout  time.Duration
	AllowHTTP        bool // firmware over plain http (tests only)
}

// TypeManagement is what a device type maps device-management actions to.
type TypeManagement struct {
	// DeviceInfo holds deviceInfo attributes by their platform names
	// (serialNumber, manufacturer, ...).
	DeviceInfo map[string]string
	// DeviceInfoPoints names, by platform attribute name, the point whose
	// value (read every poll, as text) fills that deviceInfo attribute.
	DeviceInfoPoints map[string]string
	Reboot           *ManagementAction
	FactoryReset     *ManagementAction
	Firmware         *ManagementAction // installs a downloaded image
	// Custom maps extension bundle ID → action ID → action.
	Custom map[string]map[string]*ManagementAction
}

// ManagementAction runs a command of the device type, a hook program (an
// argument vector, no shell), or both in that order.
type ManagementAction struct {
	Command string
	Exec    []string
	Timeout time.Duration
}

// DeviceManagement is a device's own management data.
type DeviceManagement struct {
	DeviceInfo map[string]string // merged over the type's, platform names
	Metadata   []byte            // a JSON object, or nil
	Location   *Location
}

// Location is a device's fixed position.
type Location struct {
	Latitude, Longitude float64
	Elevation, Accuracy *float64
}

// deviceInfoNames maps the HCL names of deviceInfo attributes to the platform's.
var deviceInfoNames = map[string]string{
	"serial_number": "serialNumber", "manufacturer": "manufacturer", "model": "model", "device_class": "deviceClass",
	"description": "description", "fw_version": "fwVersion", "hw_version": "hwVersion", "descriptive_location": "descriptiveLocation",
}

// bundlePattern is the platform's rule for bundle and action IDs.
var bundlePattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,255}$`)

type managementBlock struct {
	DefRange             hcl.Range `hcl:",def_range"`
	Enabled              *bool     `hcl:"enabled,optional"`
	Lifetime             *string   `hcl:"lifetime,optional"`
	LifetimeRange        hcl.Range `hcl:"lifetime,attr_value_range"`
	StagingDir           *string   `hcl:"staging_dir,optional"`
	MaxFirmwareSize      *string   `hcl:"max_firmware_size,optional"`
	MaxFirmwareSizeRange hcl.Range `hcl:"max_firmware_size,attr_value_range"`
	DownloadTimeout      *string   `hcl:"download_timeout,optional"`
	DownloadTimeoutRange hcl.Range `hcl:"download_timeout,attr_value_range"`
	AllowHTTP            *bool     `hcl:"allow_http,optional"`
	AllowHTTPRange       hcl.Range `hcl:"allow_http,attr_value_range"`
}

type typeManagementBlock struct {
	DefRange        hcl.Range           `hcl:",def_range"`
	DeviceInfo      map[string]string   `hcl:"device_info,optional"`
	DeviceInfoRange hcl.Range           `hcl:"device_info,attr_value_range"`
	InfoPoints      map[string]string   `hcl:"device_info_points,optional"`
	InfoPointsRange hcl.Range           `hcl:"device_info_points,attr_value_range"`
	Reboot          *actionBlock        `hcl:"reboot,block"`
	FactoryReset    *actionBlock        `hcl:"factory_reset,block"`
	Firmware        *actionBlock        `hcl:"firmware,block"`
	Custom          []customActionBlock `hcl:"custom_action,block"`
}

type actionBlock struct {
	DefRange     hcl.Range `hcl:",def_range"`
	Command      *string   `hcl:"command,optional"`
	CommandRange hcl.Range `hcl:"command,attr_value_range"`
	Exec         []string  `hcl:"exec,optional"`
	ExecRange    hcl.Range `hcl:"exec,attr_value_range"`
	Timeout      *string   `hcl:"timeout,optional"`
	TimeoutRange hcl.Range `hcl:"timeout,attr_value_range"`
}

type customActionBlock struct {
	Bundle       string    `hcl:"bundle,label"`
	BundleRange  hcl.Range `hcl:"bundle,label_range"`
	Action       string    `hcl:"action,label"`
	ActionRange  hcl.Range `hcl:"action,label_range"`
	DefRange     hcl.Range `hcl:",def_range"`
	Command      *string   `hcl:"command,optional"`
	CommandRange hcl.Range `hcl:"command,attr_value_range"`
	Exec         []string  `hcl:"exec,optional"`
	ExecRange    hcl.Range `hcl:"exec,attr_value_range"`
	Timeout      *string   `hcl:"timeout,optional"`
	TimeoutRange hcl.Range `hcl:"timeout,attr_value_range"`
}

type deviceManagementBlock struct {
	DefRange        hcl.Range         `hcl:",def_range"`
	DeviceInfo      map[string]string `hcl:"device_info,optional"`
	DeviceInfoRange hcl.Range         `hcl:"device_info,attr_value_range"`
	Metadata        *cty.Value        `hcl:"metadata,optional"`
	MetadataRange   hcl.Range         `hcl:"metadata,attr_value_range"`
	Location        *locationBlock    `hcl:"location,block"`
}

type locationBlock struct {
	DefRange       hcl.Range `hcl:",def_range"`
	Latitude       float64   `hcl:"latitude"`
	LatitudeRange  hcl.Range `hcl:"latitude,attr_value_range"`
	Longitude      float64   `hcl:"longitude"`
	LongitudeRange hcl.Range `hcl:"longitude,attr_value_range"`
	Elevation      *float64  `hcl:"elevation,optional"`
	Accuracy       *float64  `hcl:"accuracy,optional"`
	AccuracyRange  hcl.Range `hcl:"accuracy,attr_value_range"`
}

// management checks the global block; nil when absent.
func (c *checker) management(b *managementBlock, p *Platform) *Management {
	if b == nil {
		return nil
	}
	out := &Management{Enabled: true, StagingDir: DefaultStagingDir, MaxFirmwareBytes: DefaultMaxFirmwareSize, DownloadTimeout: DefaultDownloadTimeout}
	if b.Enabled != nil {
		out.Enabled = *b.Enabled
	}
	if b.Lifetime != nil {
		out.Lifetime = c.duration(*b.Lifetime, b.LifetimeRange, "lifetime")
		if out.Lifetime > 0 && out.Lifetime < minManagementLifetime {
			c.errorf(b.LifetimeRange, "Invalid lifetime", "The platform accepts a lifetime of \"0s\" (never dormant) or at least \"1h\".")
		}
	}
	if b.StagingDir != nil {
		out.StagingDir = *b.StagingDir
	}
	if b.MaxFirmwareSize != nil {
		n, err := ParseSize(*b.MaxFirmwareSize)
		if err != nil || n < minFirmwareSize {
			c.errorf(b.MaxFirmwareSizeRange, "Invalid max_firmware_size", "A size of at least 1KiB, like \"64MiB\".")
		}
		out.MaxFirmwareBytes = n
	}
	if b.DownloadTimeout != nil {
		out.DownloadTimeout = c.positive(*b.DownloadTimeout, b.DownloadTimeoutRange, "download_timeout")
	}
	if b.AllowHTTP != nil {
		out.AllowHTTP = *b.AllowHTTP
		if out.AllowHTTP {
			c.warnf(b.AllowHTTPRange, "Firmware over plain HTTP", "allow_http lets anyone on the path replace a firmware image (the verifier still has to match); use it only for tests.")
		}
	}
	if out.Enabled && p.Mode == ModeQuickstart {
		c.errorf(b.DefRange, "No device management in quickstart", "The quickstart service has no device management; remove the management block or set enabled = false.")
	}
	return out
}

func (c *checker) positive(v string, rng hcl.Range, attr string) time.Duration {
	d := c.duration(v, rng, attr)
	if d <= 0 && rng.Filename != "" {
		c.errorf(rng, "Invalid "+attr, "%s must be longer than zero.", attr)
	}
	return d
}

// typeManagement checks a device type's management block; nil when absent.
// It runs after the type's points are built: device_info_points names them.
func (c *checker) typeManagement(b *typeManagementBlock, dt *DeviceType) *TypeManagement {
	if b == nil {
		return nil
	}
	out := &TypeManagement{DeviceInfo: c.deviceInfo(b.DeviceInfo, b.DeviceInfoRange)}
	if b.InfoPoints != nil {
		out.DeviceInfoPoints = c.deviceInfo(b.InfoPoints, b.InfoPointsRange)
		names := make([]string, len(dt.Points))
		for i, p := range dt.Points {
			names[i] = p.Name
		}
		for _, point := range out.DeviceInfoPoints {
			switch i := dt.PointIndex(point); {
			case i < 0:
				c.errorf(b.InfoPointsRange, "Unknown point", "Device type %q has no point %q.%s", dt.Name, point, didYouMean(point, names))
			case dt.Points[i].Table.IsBit():
				c.errorf(b.InfoPointsRange, "Bit point as device information", "Point %q is a single bit; deviceInfo attributes come from registers (a string or a number).", point)
			}
		}
	}
	out.Reboot = c.action(b.Reboot, dt, DefaultActionTimeout)
	out.FactoryReset = c.action(b.FactoryReset, dt, DefaultActionTimeout)
	out.Firmware = c.action(b.Firmware, dt, DefaultFirmwareTimeout)
	for i := range b.Custom {
		cb := &b.Custom[i]
		for _, id := range []struct {
			v   string
			rng hcl.Range
		}{{cb.Bundle, cb.BundleRange}, {cb.Action, cb.ActionRange}} {
			if !bundlePattern.MatchString(id.v) {
				c.errorf(id.rng, "Invalid custom action id", "%q: bundle and action ids are 1 to 255 characters of A-Z a-z 0-9 . _ -", id.v)
			}
		}
		if out.Custom[cb.Bundle][cb.Action] != nil {
			c.errorf(cb.ActionRange, "Duplicate custom action", "Action %q of bundle %q is already defined.", cb.Action, cb.Bundle)
			continue
		}
		act := c.action(&actionBlock{DefRange: cb.DefRange, Command: cb.Command, CommandRange: cb.CommandRange,
			Exec: cb.Exec, ExecRange: cb.ExecRange, Timeout: cb.Timeout, TimeoutRange: cb.TimeoutRange}, dt, DefaultActionTimeout)
		if out.Custom == nil {
			out.Custom = map[string]map[string]*ManagementAction{}
		}
		if out.Custom[cb.Bundle] == nil {
			out.Custom[cb.Bundle] = map[string]*ManagementAction{}
		}
		out.Custom[cb.Bundle][cb.Action] = act
	}
	return out
}

// action checks a reboot, factory_reset, firmware or custom_action block;
// its command must be one of the type's. A firmware install may be a
// command alone (a register sequence: the device fetches or applies the
// image itself), a hook (a program that takes the image file), or both.
func (c *checker) action(b *actionBlock, dt *DeviceType, timeout time.Duration) *ManagementAction {
	if b == nil {
		return nil
	}
	out := &ManagementAction{Exec: b.Exec, Timeout: timeout}
	if b.Command != nil {
		out.Command = *b.Command
		if dt.Command(out.Command) == nil {
			c.errorf(b.CommandRange, "Unknown command", "Device type %q has no command %q; define it with command %q { write ... } in the device type.%s",
				dt.Name, out.Command, out.Command, didYouMean(out.Command, dt.CommandNames()))
		}
	}
	switch {
	case b.Exec != nil && (len(b.Exec) == 0 || b.Exec[0] == ""):
		c.errorf(b.ExecRange, "Empty exec", "exec is the program and its arguments, like [\"/usr/local/bin/flash\", \"{device}\", \"{file}\"].")
	case b.Exec == nil && b.Command == nil:
		c.errorf(b.DefRange, "Action does nothing", "Give a command of the device type (command = \"name\"), a hook (exec = [...]), or both.")
	}
	if b.Timeout != nil {
		out.Timeout = c.positive(*b.Timeout, b.TimeoutRange, "timeout")
	}
	return out
}

// deviceInfo turns device_info (HCL names) into platform names.
func (c *checker) deviceInfo(m map[string]string, rng hcl.Range) map[string]string {
	if m == nil {
		return nil
	}
	out := map[string]string{}
	for k, v := range m {
		name, ok := deviceInfoNames[k]
		if !ok {
			c.errorf(rng, "Unknown device_info attribute", "%q is not a deviceInfo attribute; use %s.%s", k, quoteList(keys(deviceInfoNames)), didYouMean(k, keys(deviceInfoNames)))
			continue
		}
		out[name] = v
	}
	return out
}

// deviceManagement checks a device's management block.
func (c *checker) deviceManagement(b *deviceManagementBlock) DeviceManagement {
	if b == nil {
		return DeviceManagement{}
	}
	out := DeviceManagement{DeviceInfo: c.deviceInfo(b.DeviceInfo, b.DeviceInfoRange)}
	if b.Metadata != nil && !b.Metadata.IsNull() {
		v := *b.Metadata
		if !v.Type().IsObjectType() && !v.Type().IsMapType() {
			c.errorf(b.MetadataRange, "Invalid metadata", "metadata is an object, like { site = \"plant-2\", line = 3 }.")
		} else if js, err := ctyjson.Marshal(v, v.Type()); err != nil {
			c.errorf(b.MetadataRange, "Invalid metadata", "%v", err)
		} else {
			out.Metadata = js
		}
	}
	if l := b.Location; l != nil {
		out.Location = &Location{Latitude: l.Latitude, Longitude: l.Longitude, Elevation: l.Elevation, Accuracy: l.Accuracy}
		if l.Latitude < -maxLatitude || l.Latitude > maxLatitude {
			c.errorf(l.LatitudeRange, "Invalid latitude", "latitude is -90 to 90 decimal degrees (WGS84).")
		}
		if l.Longitude < -maxLongitde || l.Longitude > maxLongitde {
			c.errorf(l.LongitudeRange, "Invalid longitude", "longitude is -180 to 180 decimal degrees (WGS84).")
		}
		if l.Accuracy != nil && *l.Accuracy < 0 {
			c.errorf(l.AccuracyRange, "Invalid accuracy", "accuracy is in metres, not negative.")
		}
	}
	return out
}
