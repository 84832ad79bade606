// Package mqtttest starts a real Mosquitto broker as a subprocess for tests,
// on 127.0.0.1 and a free port, with its configuration in t.TempDir(), and
// can stop and start it again on the same port to simulate an outage.
//
// A missing mosquitto binary skips the test with a clear message on a
// developer's machine, and fails it when the environment variable CI is
// "true" (CI installs Debian's mosquitto package first).
//
// Imports: standard library only; test support, imported only by _test.go
// files.
//
// Concurrency: a *Mosquitto is meant to be driven from the test goroutine
// (Start calls t.Fatal); Addr may be called from any goroutine.
package mqtttest
