// Package config loads the bridge's HCL configuration (design.md §3) and
// checks it. Every mistake becomes an hcl.Diagnostic with the tightest source
// range and a hint, all of them collected before anything starts; Render
// prints them as file:line:col lines with the offending source.
//
// The result is plain Go values: mapping rules (mapping.DeviceType, Point,
// Event), bus, device, platform and buffer settings. Other packages never see
// HCL; cmd/bridge turns these values into each package's own Config.
//
// Imports: adapters (value types) and mapping (the rules it builds and checks
// points with), plus hcl and cty. It must not import adapters/*, buffer,
// uplink, dm, platform, simulator, badger or paho.
//
// Concurrency: Load is a pure function of the file and the environment; the
// returned *Config is immutable by convention.
package config
