//go:build profile

package main

import (
	"os"
	"runtime/pprof"
)

// Built with -tags profile, the bridge writes a CPU profile of its whole run
// to $BRIDGE_CPUPROFILE (measurements with the load rig; never in a release).
func init() {
	path := os.Getenv("BRIDGE_CPUPROFILE")
	if path == "" {
		return
	}
	f, err := os.Create(path)
	if err != nil {
		panic(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		panic(err)
	}
	stopProfile = func() { pprof.StopCPUProfile(); f.Close() }
}
