// Package modbus implements adapters.Bus for Modbus: TCP now, RTU and ASCII
// framing on serial lines later. It owns the connection to one endpoint,
// the translation of goburrow/modbus errors into the adapters errors, and the
// recovery rules: after a timeout or a reply that does not match its request
// the connection is closed, so a late reply can never be taken as the answer
// to the next request.
//
// Imports: adapters only of ours, plus github.com/goburrow/modbus (imported
// as mb). It must not import mapping, buffer, uplink, dm, hcl, badger or paho.
//
// Concurrency: a *TCP is used by the one goroutine of the adapters.Loop that
// owns its bus; it is not safe for concurrent use.
package modbus
