// Package serialtest gives tests real serial lines without hardware: Pair
// starts `socat -d -d pty,raw,echo=0 pty,raw,echo=0` and returns the paths
// of the two pseudo-terminals it links, so that a Modbus master opens one end
// and a simulated slave the other. Bytes written to one end come out of the
// other, through the kernel's tty layer, exactly as through a null-modem
// cable (but without a baud-rate delay: a pty moves bytes as fast as the
// processes read them).
//
// A missing socat binary skips the test with a clear message on a
// developer's machine, and fails it when the environment variable CI is
// "true" (.ci/run installs socat first).
//
// Imports: standard library only; test support, imported only by _test.go
// files.
//
// Concurrency: Pair must be called from the test goroutine (it calls
// t.Fatal); the socat process is killed when the test ends.
package serialtest
