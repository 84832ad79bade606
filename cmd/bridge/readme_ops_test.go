package main

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"fieldbridge/config"
	"fieldbridge/internal/testpki"
	"fieldbridge/internal/testwait"
	"fieldbridge/uplink"
)

// The README's operational commands (building, the demo, CI, the
// Dockerfile, probe, reload through the systemd unit), each run from the
// README's own text or compared with the file that runs it, so that they
// cannot drift apart. readme_shell_test.go holds the shell mechanism.

const repoRoot = "../.."

// readFile returns the content of a file of the repository.
func readFile(t testing.TB, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// withoutComment returns a shell line without its trailing # comment.
func withoutComment(line string) string {
	if i := strings.Index(line, " #"); i >= 0 {
		line = line[:i]
	}
	return strings.TrimSpace(line)
}

// TestReadmeTestCommand: the README's "run the whole test suite" block is
// what .ci/run runs (the packages it installs, go vet, go test -race on
// every package). Running the suite from inside the suite would recurse, so
// the test compares the texts instead.
func TestReadmeTestCommand(t *testing.T) {
	block := readmeBlock(t, "sh", "go test -race ./...")
	lines := strings.Split(strings.TrimSpace(block), "\n")
	if len(lines) != 2 {
		t.Fatalf("the README's test block is no longer the install line and the test line:\n%s", block)
	}
	install := strings.Fields(withoutComment(lines[0]))
	if len(install) < 5 || strings.Join(install[:4], " ") != "sudo apt-get install -y" {
		t.Fatalf("the README's install line %q is no longer sudo apt-get install -y PACKAGES", lines[0])
	}
	readmePackages := slices.Sorted(slices.Values(install[4:]))

	ci := readFile(t, ".ci/run")
	var ciPackages []string
	for _, m := range regexp.MustCompile(`need\+=\(([a-z-]+)\)`).FindAllStringSubmatch(ci, -1) {
		ciPackages = append(ciPackages, m[1])
	}
	slices.Sort(ciPackages)
	if !slices.Equal(readmePackages, ciPackages) {
		t.Errorf("the README installs %q, .ci/run installs %q", readmePackages, ciPackages)
	}

	// The README's `go vet ./... && go test -race ./...`: .ci/run runs both,
	// in that order, on every package (its go test adds only -count and a
	// timeout).
	vet, test, ok := strings.Cut(lines[1], " && ")
	if !ok || vet != "go vet ./..." || test != "go test -race ./..." {
		t.Fatalf("the README's test line %q is no longer `go vet ./... && go test -race ./...`", lines[1])
	}
	vetAt := strings.Index(ci, "\n"+vet+"\n")
	testLine := regexp.MustCompile(`\ngo test -race( -count=1)?( -timeout [0-9]+m)? \./\.\.\.\n`).FindStringIndex(ci)
	if vetAt < 0 || testLine == nil || testLine[0] < vetAt {
		t.Errorf(".ci/run does not run %q and then %q (with at most -count=1 and -timeout):\n%s", vet, test, ci)
	}
}

// TestReadmeDemoCommand runs the README's demo line (go run ./cmd/bridge is
// `bridge` here, the same main()) with the -duration its comment names, and
// checks that every line of the README's sample output has a line of the
// same shape in what it printed: timestamps, ports, seqs and measured
// values may differ, devices, event kinds and payload members may not.
func TestReadmeDemoCommand(t *testing.T) {
	needPrograms(t, "bash")
	block := readmeBlock(t, "sh", "go run ./cmd/bridge demo")
	line := strings.TrimSpace(block)
	if !strings.Contains(line, "-duration 30s stops by itself") {
		t.Fatalf("the demo line no longer mentions -duration:\n%s", line)
	}
	cmd, ok := strings.CutPrefix(withoutComment(line), "go run ./cmd/bridge ")
	if !ok || cmd != "demo" {
		t.Fatalf("the demo line is no longer `go run ./cmd/bridge demo`: %q", line)
	}
	sh := newReadmeShell(t, t.TempDir())
	out, err := sh.run(t, "bridge "+cmd+" -duration 4s")
	if err != nil {
		t.Fatalf("bridge demo -duration 4s: %v\n%s", err, out)
	}
	sample := readmeBlock(t, "", "fieldbridge demo: simulated Modbus devices")
	printed := strings.Split(out, "\n")
	for _, want := range strings.Split(sample, "\n") {
		if strings.TrimSpace(want) == "" {
			continue
		}
		shape := demoLineShape(want)
		if !slices.ContainsFunc(printed, shape.MatchString) {
			t.Errorf("the demo printed no line like the README's\n%s\n(pattern %s); it printed:\n%s", want, shape, out)
		}
	}
}

// demoLineShape turns a line of the README's demo output into a pattern in
// which every number (the clock time, ports, units, seqs, values) matches
// any number, and the blanks padding a column any number of blanks (a
// longer seq takes some); digits inside names (meter-1, FC6) stay.
func demoLineShape(line string) *regexp.Regexp {
	number := regexp.MustCompile(`(^|[^A-Za-z0-9_-])([0-9]+(?:\.[0-9]+)?)`)
	literal := func(s string) string {
		return regexp.MustCompile(` {2,}`).ReplaceAllString(regexp.QuoteMeta(s), ` +`)
	}
	var pattern strings.Builder
	pattern.WriteString("^")
	last := 0
	for _, m := range number.FindAllStringSubmatchIndex(line, -1) {
		pattern.WriteString(literal(line[last:m[4]]))
		pattern.WriteString(`[0-9]+(?:\.[0-9]+)?`)
		last = m[5]
	}
	pattern.WriteString(literal(line[last:]) + "$")
	return regexp.MustCompile(pattern.String())
}

// TestReadmeBuildCommands runs the quick start's build line, `go build -o
// bridge ./cmd/bridge`, and the Dockerfile's build stage's `go build` line,
// and checks what the README and the Dockerfile say about the result:
// `bridge version` prints version, commit, modified and Go version; the
// image's binary is static and is the ENTRYPOINT; its CMD is `run -config
// FILE`. `docker build` itself does not run here (no Docker daemon and no
// registry access on the test machines): the Dockerfile's steps are checked
// one by one instead.
func TestReadmeBuildCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary twice; skipped with -short")
	}
	needPrograms(t, "bash", "go")
	quick := readmeSection(t, "Quick start with a real configuration")
	const buildLine = "go build -o bridge ./cmd/bridge"
	if !strings.Contains(quick, "`"+buildLine+"` (or `docker build -t fieldbridge .`)") {
		t.Fatalf("the quick start no longer builds with `%s` or `docker build -t fieldbridge .`", buildLine)
	}
	out := t.TempDir()
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	build := func(line string) {
		t.Helper()
		cmd := exec.Command("bash", "-e", "-c", line)
		cmd.Dir = root
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", line, err, b)
		}
	}

	// The README's line, its output in a temporary directory.
	bin := filepath.Join(out, "bridge")
	build(strings.Replace(buildLine, "-o bridge", "-o "+bin, 1))
	version, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatalf("%s version: %v", bin, err)
	}
	fields := versionFields(t, string(version))
	if keys := slices.Sorted(func(yield func(string) bool) {
		for k := range fields {
			if !yield(k) {
				return
			}
		}
	}); !slices.Equal(keys, []string{"bridge", "commit", "go", "modified"}) {
		t.Errorf("bridge version printed %q; the README says version, commit, modified and Go version", version)
	}

	// The Dockerfile's build stage: its go build line as written, only its
	// output path moved, run where its COPY . . puts the source.
	docker := readFile(t, "Dockerfile")
	if !regexp.MustCompile(`(?m)^# Build: docker build -t fieldbridge \.$`).MatchString(docker) {
		t.Errorf("the Dockerfile's header no longer gives the README's `docker build -t fieldbridge .`")
	}
	dockerBuild := regexp.MustCompile(`(?m)^RUN (CGO_ENABLED=0 go build .* -o (\S+) (\./cmd/bridge))$`).FindStringSubmatch(docker)
	if dockerBuild == nil {
		t.Fatalf("the Dockerfile has no `RUN CGO_ENABLED=0 go build ... -o OUT ./cmd/bridge` line:\n%s", docker)
	}
	imageBin := filepath.Join(out, "image-bridge")
	build(strings.Replace(dockerBuild[1], "-o "+dockerBuild[2], "-o "+imageBin, 1))
	if elfInterpreter(t, imageBin) {
		t.Errorf("the Dockerfile's binary has a program interpreter: not static, it would need the image's libc")
	}
	checkDockerfile(t, docker, dockerBuild[2], imageBin)
}

// checkDockerfile checks the Dockerfile's other steps against the
// repository and the CLI: the go.mod replacements are copied before `go mod
// download`, the built binary is what ENTRYPOINT runs, CMD is `run -config
// FILE` (the header's `docker run` line says the same), the example
// configuration the image ships validates, and the bridge user's home is
// the volume that holds the default buffer directory.
func checkDockerfile(t *testing.T, docker, builtAt, bin string) {
	t.Helper()
	download := strings.Index(docker, "\nRUN go mod download\n")
	if download < 0 {
		t.Fatal("the Dockerfile no longer runs `go mod download`")
	}
	for _, m := range regexp.MustCompile(`(?m)^replace \S+(?: \S+)? => (\./\S+)`).FindAllStringSubmatch(readFile(t, "go.mod"), -1) {
		dir := strings.TrimPrefix(strings.TrimPrefix(m[1], "./"), "/")
		top, _, _ := strings.Cut(dir, "/")
		if at := strings.Index(docker, "\nCOPY "+top+" ./"+top+"\n"); at < 0 || at > download {
			t.Errorf("go.mod replaces with %s, but the Dockerfile does not COPY %s before `go mod download`", m[1], top)
		}
	}

	copyLine := regexp.MustCompile(`(?m)^COPY --from=build ` + regexp.QuoteMeta(builtAt) + ` (\S+)$`).FindStringSubmatch(docker)
	var entrypoint, cmd []string
	for _, m := range regexp.MustCompile(`(?m)^(ENTRYPOINT|CMD) (\[.*\])$`).FindAllStringSubmatch(docker, -1) {
		var words []string
		if err := json.Unmarshal([]byte(m[2]), &words); err != nil {
			t.Fatalf("%s %s: %v", m[1], m[2], err)
		}
		if m[1] == "ENTRYPOINT" {
			entrypoint = words
		} else {
			cmd = words
		}
	}
	if copyLine == nil || len(entrypoint) != 1 || entrypoint[0] != copyLine[1] {
		t.Errorf("ENTRYPOINT %q does not run the binary the build stage made (copied to %v)", entrypoint, copyLine)
	}
	if len(cmd) != 3 || cmd[0] != "run" || cmd[1] != "-config" {
		t.Fatalf("CMD %q: want run -config FILE", cmd)
	}
	if want := "fieldbridge " + strings.Join(cmd, " "); !regexp.MustCompile(`(?m)^# Run: +docker run .* ` + regexp.QuoteMeta(want) + `$`).MatchString(docker) {
		t.Errorf("the Dockerfile's `# Run:` line does not end in %q", want)
	}
	// CMD as the container runs it, the file not mounted: a configuration
	// error naming the file, exit 1, which the Dockerfile says not to
	// restart on.
	missing := filepath.Join(t.TempDir(), "bridge.hcl")
	b, err := exec.Command(bin, cmd[0], cmd[1], missing).CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != exitConfig || !strings.Contains(string(b), missing) {
		t.Errorf("the image's CMD without its file: %v, want exit %d naming %s:\n%s", err, exitConfig, missing, b)
	}

	example := regexp.MustCompile(`(?m)^COPY (config\.example\.hcl) (\S+)$`).FindStringSubmatch(docker)
	if example == nil {
		t.Fatal("the Dockerfile no longer ships config.example.hcl")
	}
	if b, err := exec.Command(bin, "validate", "-config", filepath.Join(repoRoot, example[1])).CombinedOutput(); err != nil {
		t.Errorf("the image's %s does not validate: %v\n%s", example[2], err, b)
	}

	home := regexp.MustCompile(`useradd --system --home (\S+) --create-home bridge`).FindStringSubmatch(docker)
	volume := regexp.MustCompile(`(?m)^VOLUME (\S+)$`).FindStringSubmatch(docker)
	if home == nil || volume == nil || home[1] != volume[1] || !strings.HasPrefix(config.DefaultBufferDir, volume[1]+"/") {
		t.Errorf("the bridge user's home %v, the VOLUME %v and the default buffer dir %s: want one directory holding the buffer", home, volume, config.DefaultBufferDir)
	}
}

// TestSystemdExecReload runs the unit's own ExecReload line, $MAINPID being
// a running `bridge run`, after removing a device from its configuration:
// the bridge logs the reload with the device removed, and keeps publishing.
// systemd is not PID 1 here, so `systemctl reload` itself does not run; the
// line it would execute does.
func TestSystemdExecReload(t *testing.T) {
	needPrograms(t, "bash")
	reload := parseUnit(t, unitPath).one(t, "ExecReload")
	if !strings.Contains(readmeSection(t, "Operations: reload"), "`systemctl reload bridge` (the unit's `ExecReload` sends SIGHUP)") {
		t.Fatal("the README's reload section no longer names systemctl reload and the unit's ExecReload")
	}
	c := startChildBridge(t)
	c.waitLog(t, "bridge started")
	c.waitEvents(t, 5)
	c.removeDeviceFromConfig(t, "m2")

	// systemd runs the line without a shell, $MAINPID replaced.
	line := strings.ReplaceAll(reload, "$MAINPID", itoa(c.cmd.Process.Pid))
	if b, err := exec.Command(strings.Fields(line)[0], strings.Fields(line)[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("ExecReload %s: %v\n%s", line, err, b)
	}
	logged := c.waitLog(t, `"msg":"reloaded"`)
	var rep struct{ Removed []string }
	if err := json.Unmarshal([]byte(logged), &rep); err != nil {
		t.Fatalf("log line %s: %v", logged, err)
	}
	if !slices.Equal(rep.Removed, []string{"m2"}) {
		t.Errorf("reloaded: %s, want m2 removed", logged)
	}
	c.waitEvents(t, 5)
	c.stop(t)
}

// TestReadmeProbe runs "Finding a device's map": both probe lines as
// written, the TCP one against the quick start's simulator (`bridge
// simulate` on the quick start's minimal configuration) and the RTU one
// against the simulator on a socat pty pair, only the device addresses
// replaced.
func TestReadmeProbe(t *testing.T) {
	needPrograms(t, "bash", "socat")
	section := readmeSection(t, "Finding a device's map")
	probes := readmeBlock(t, "sh", "bridge probe -tcp")
	if !strings.Contains(section, probes) {
		t.Fatalf("the probe block is no longer in its section:\n%s", probes)
	}
	lines := strings.Split(strings.TrimSpace(probes), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "-tcp 10.0.0.5:502 ") || !strings.Contains(lines[1], "-rtu /dev/ttyUSB0 ") {
		t.Fatalf("the probe block is no longer a -tcp 10.0.0.5:502 line and a -rtu /dev/ttyUSB0 line:\n%s", probes)
	}
	dir := t.TempDir()
	bridgeEnd, deviceEnd := filepath.Join(dir, "bridge"), filepath.Join(dir, "device")
	rtu := shellWords(lines[1])
	baud, parity := flagValue(rtu, "-baud"), flagValue(rtu, "-parity")
	if baud == "" || parity == "" || flagValue(rtu, "-unit") != "7" {
		t.Fatalf("the RTU probe line no longer gives -baud, -parity and unit 7: %q", lines[1])
	}
	// The quick start's configuration (meter-7, unit 7) with a second bus,
	// the serial line at the probe's settings, and meter-7 on it too.
	quick := readmeBlock(t, "hcl", "meter-7")
	simPort := freePort(t)
	hcl := strings.Join([]string{
		strings.Replace(quick, "10.0.0.5:502", "127.0.0.1:"+simPort, 1),
		"bus \"rs485\" {\n  modbus_rtu {\n    port   = \"" + bridgeEnd + "\"\n    baud   = " + baud + "\n    parity = \"" + parity + "\"\n  }\n}",
		strings.NewReplacer(`device "meter-7"`, `device "meter-7-rtu"`, `bus   = "line1"`, `bus   = "rs485"`).Replace(hclBlock(t, quick, `device "meter-7" {`)),
	}, "\n")
	if err := os.WriteFile(filepath.Join(dir, "bridge.hcl"), []byte(hcl), 0o600); err != nil {
		t.Fatal(err)
	}
	sh := newReadmeShell(t, dir, "METER7_TOKEN=meter7-token")
	sh.start(t, "socat -d -d pty,raw,echo=0,link="+bridgeEnd+" pty,raw,echo=0,link="+deviceEnd)
	testwait.For(t, waitTimeout, "socat's two links", func() bool {
		_, errB := os.Stat(bridgeEnd)
		_, errD := os.Stat(deviceEnd)
		return errB == nil && errD == nil
	})
	sim := sh.start(t, "bridge simulate -config bridge.hcl -listen rs485="+deviceEnd)
	testwait.For(t, waitTimeout, "the simulator serving both buses", func() bool {
		return strings.Count(sim.String(), "simulating bus") == 2
	})

	for i, line := range []string{
		strings.Replace(lines[0], "10.0.0.5:502", "127.0.0.1:"+simPort, 1),
		strings.Replace(lines[1], "/dev/ttyUSB0", bridgeEnd, 1),
	} {
		out, err := sh.run(t, line)
		if err != nil {
			t.Errorf("%s: %v\n%s\nsimulator:\n%s", line, err, out, sim.String())
			continue
		}
		// One row per register asked for, under its zero-based address and
		// its 1-based one.
		words := shellWords(lines[i])
		from, count := atoi(t, flagValue(words, "-address")), atoi(t, flagValue(words, "-count"))
		for addr := from; addr < from+count; addr++ {
			row := regexp.MustCompile(`(?m)^\s+` + itoa(addr) + `\s+` + itoa(addr+1) + `\s+16\s`)
			if !row.MatchString(out) {
				t.Errorf("%s printed no 16-bit row for address %d:\n%s", line, addr, out)
				break
			}
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func atoi(t testing.TB, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return n
}

// TestReadmeLocalPlatformActions runs the shell block of "Local platform:
// device management" as written, with its bundles.json block, against the
// bridge of the round trip section (its configuration with the commented
// factory_reset and custom_action lines switched on, and the two commands
// they name added to the type). The block gives no addresses, so the test
// appends free ones (-listen, -http, -api) and replaces the firmware URI's
// port. Every action must be accepted (the script runs with bash -e) and
// the firmware download prints the section's sample output.
func TestReadmeLocalPlatformActions(t *testing.T) {
	needPrograms(t, "bash", "sha256sum", "cut", "sh", "cp")
	section := readmeSection(t, "Local platform: device management")
	script := readmeBlock(t, "sh", "-bundles bundles.json")
	bundles := readmeBlock(t, "json", `"bundleId": "acme-modbus-v1"`)
	sample := readmeBlock(t, "", "firmware/download power-meter/meter-7: rc 202\n  update rc 204")
	for _, block := range []string{script, bundles, sample} {
		if !strings.Contains(section, block) {
			t.Fatalf("this block is no longer in the section:\n%s", block)
		}
	}
	dir := t.TempDir()
	rt := filepath.Join(dir, "rt")
	for _, d := range []string{filepath.Join(rt, "staging"), filepath.Join(dir, "fw"), filepath.Join(dir, "buffer")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("fw/mc3p-3.3.0.bin", "MC-3P firmware 3.3.0\n")
	write("bundles.json", bundles)
	write("devices.txt", readmeBlock(t, "", "apikey "))

	busPort, mqttPort, httpPort := freePort(t), freePort(t), freePort(t)
	write("bridge.hcl", roundTripConfig(t, rt, filepath.Join(dir, "buffer"), busPort, mqttPort))

	lines := strings.SplitN(strings.TrimSpace(script), "\n", 3)
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "bridge platform ") || !strings.HasPrefix(lines[1], `A="bridge platform action `) {
		t.Fatalf("the section's block no longer starts the platform and defines A:\n%s", script)
	}
	platformLine := strings.TrimSuffix(strings.TrimSpace(lines[0]), "&") + " -listen 127.0.0.1:" + mqttPort + " -http 127.0.0.1:" + httpPort + " &"
	actions := strings.Replace(lines[1], `A="bridge platform action `, `A="bridge platform action -api http://127.0.0.1:`+httpPort+" ", 1) + "\n" +
		withPort(lines[2], "8080", httpPort)

	sh := newReadmeShell(t, dir, "METER7_TOKEN=meter7-token")
	platformOut := sh.start(t, platformLine)
	sh.start(t, "bridge simulate -config bridge.hcl")
	testwait.For(t, waitTimeout, "bridge platform listening", func() bool {
		return strings.Contains(platformOut.String(), "api listening on")
	})
	run := sh.start(t, "bridge run -config bridge.hcl")
	testwait.For(t, waitTimeout, "meter-7's Manage printed by the platform", func() bool {
		return strings.Contains(platformOut.String(), "mgmt/manage")
	})
	out, err := sh.run(t, actions)
	if err != nil {
		t.Fatalf("the section's actions: %v\n%s\n--- bridge run:\n%s", err, out, run.String())
	}
	for _, want := range []string{
		"device/reboot power-meter/meter-7: rc 202\n",
		"device/factoryReset power-meter/meter-7: rc 202\n",
		sample + "\n",
		"firmware/update power-meter/meter-7: rc 202\n",
		"update power-meter/meter-7: rc 204\n",
		"observe power-meter/meter-7: rc 200\n",
		"cancel power-meter/meter-7: rc 200\n",
		"acme-modbus-v1/rescanBus power-meter/meter-7: rc 200\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the actions printed no %q:\n%s", want, out)
		}
	}
}

// roundTripConfig is bridge.hcl of the README's round trip section: its
// platform and bus block, its management block with the commented
// factory_reset and custom_action lines switched on, the quick start's
// point, buffer and device, and the two commands those lines name (a
// writable coil the simulator keeps). /tmp/rt is rt, ports are replaced.
func roundTripConfig(t *testing.T, rt, bufferDir, busPort, mqttPort string) string {
	t.Helper()
	const readmeBusPort, readmeMQTTPort = "15020", "18830"
	quick := readmeBlock(t, "hcl", "meter-7")
	mgmt := strings.ReplaceAll(readmeBlock(t, "hcl", "staging_dir"), "/tmp/rt", rt)
	for _, line := range []string{
		`# factory_reset { command = "remote_reset" }`,
		`# custom_action "acme-modbus-v1" "rescanBus" { command = "rescan" }`,
	} {
		if !strings.Contains(mgmt, line) {
			t.Fatalf("the round trip's configuration no longer has the line %s", line)
		}
		mgmt = strings.Replace(mgmt, line, strings.TrimPrefix(line, "# "), 1)
	}
	const commands = `point "reset" {
    table    = "coil"
    address  = 0
    type     = "bool"
    writable = true
  }
  command "remote_reset" {
    write "reset" { value = true }
  }
  command "rescan" {
    write "reset" { value = false }
  }`
	mgmt = strings.Replace(mgmt, `point "voltage_l1" { ... }`, hclBlock(t, quick, `point "voltage_l1" {`)+"\n  "+commands, 1)
	local := readmeBlock(t, "hcl", "127.0.0.1:"+readmeBusPort)
	local = strings.Replace(withPort(local, readmeBusPort, busPort), "port = "+readmeMQTTPort, "port = "+mqttPort, 1)
	buffer := strings.Replace(hclBlock(t, quick, "buffer {"), "/var/lib/bridge/buffer", bufferDir, 1)
	return strings.Join([]string{local, buffer, mgmt, hclBlock(t, quick, `device "meter-7" {`)}, "\n")
}

// deployStep says what the test does with one command of deploy/README.md.
type deployStep struct {
	run    bool   // run it, rewritten for a user without root (deployCommand)
	reason string // why it does not run here, and what checks it instead
}

// deploySteps lists every command of deploy/README.md. A command not listed
// fails TestDeployReadme, so a new step gets a decision here.
var deploySteps = map[string]deployStep{
	"bridge run -config /etc/bridge/bridge.hcl":                          {reason: "what the unit starts (its ExecStart); the test checks the paths against the unit, bridge run itself runs in TestReadmeQuickStart"},
	"scripts/release dist":                                               {reason: "cross-compiles both architectures (a minute); TestReleaseBuild runs it for this machine's, .ci/run for both"},
	"sudo install -m 0755 dist/bridge-linux-arm64 /usr/local/bin/bridge": {run: true},
	"bridge version": {run: true},
	"sudo useradd --system --no-create-home --shell /usr/sbin/nologin bridge":       {reason: "needs root and changes the machine's accounts; the unit's User= is checked to be the same name"},
	"sudo install -d -m 0750 -o root -g bridge /etc/bridge":                         {run: true},
	"sudo install -m 0640 -o root -g bridge bridge.hcl /etc/bridge/bridge.hcl":      {run: true},
	"sudo install -m 0600 bridge.env /etc/bridge/":                                  {run: true},
	"sudo install -m 0644 deploy/bridge.service /etc/systemd/system/bridge.service": {run: true},
	"sudo systemctl daemon-reload":                                                  {reason: "no systemd as PID 1 here; systemd-analyze verify checks the unit (TestSystemdAnalyzeVerify)"},
	"sudo systemctl enable --now bridge":                                            {reason: "no systemd as PID 1 here; the unit's ExecStartPre runs in TestSystemdUnitCommands"},
	"journalctl -u bridge -f":                                                       {reason: "no journal here"},
	"sudo -u bridge bridge validate -config /etc/bridge/bridge.hcl":                 {run: true},
	"sudo systemctl reload bridge":                                                  {reason: "no systemd as PID 1 here; the unit's ExecReload line runs in TestSystemdExecReload"},
	"sudo systemctl restart bridge":                                                 {reason: "no systemd as PID 1 here"},
	"sudo systemctl edit bridge":                                                    {reason: "interactive, and no systemd as PID 1 here"},
	"go test ./cmd/bridge -run TestSystemd":                                         {reason: "the suite itself; the test checks that the TestSystemd tests exist"},
	"go test ./cmd/bridge -run TestDeployReadme":                                    {reason: "this test"},
}

// deployCommands returns every command of deploy/README.md, in order: the
// lines of its sh blocks and its inline `sudo ...`, `bridge ...` and `go
// test ...` commands and `bridge SUBCOMMAND -FLAG...`, without their
// comments.
func deployCommands(t *testing.T, src string) []string {
	t.Helper()
	var cmds []string
	inside := false
	for _, line := range strings.Split(src, "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case !inside && trimmed == "```sh":
			inside = true
		case inside && trimmed == "```":
			inside = false
		case inside && trimmed != "":
			cmds = append(cmds, withoutComment(trimmed))
		case !inside:
			for _, m := range regexp.MustCompile("`((?:sudo |go test |journalctl |scripts/)[^`]*|bridge [a-z]+ -[^`]*)`").FindAllStringSubmatch(line, -1) {
				cmds = append(cmds, m[1])
			}
		}
	}
	return cmds
}

// deployCommand rewrites a command of deploy/README.md for a user without
// root: no sudo, no ownership (there is no user bridge), the system's
// directories under root, and the release binary of this machine's
// architecture.
func deployCommand(cmd, root string) string {
	cmd = strings.TrimPrefix(strings.TrimPrefix(cmd, "sudo -u bridge "), "sudo ")
	cmd = strings.ReplaceAll(cmd, " -o root -g bridge", "")
	cmd = strings.ReplaceAll(cmd, "bridge-linux-arm64", "bridge-linux-"+runtime.GOARCH)
	return strings.NewReplacer(" /etc/", " "+root+"/etc/", " /usr/local/bin/", " "+root+"/usr/local/bin/").Replace(cmd)
}

// TestDeployReadme goes through every command of deploy/README.md: those
// that can run without root run in order, rewritten by deployCommand, in a
// directory with the release binary (this test binary, the same main()),
// the quick start's bridge.hcl, a bridge.env with its token and the unit;
// what they install is checked (modes, content), `bridge version` and the
// validation of the installed file must pass. The paths the commands use
// must be the unit's. What cannot run here says why in deploySteps.
func TestDeployReadme(t *testing.T) {
	needPrograms(t, "bash", "install")
	src := readFile(t, "deploy/README.md")
	cmds := deployCommands(t, src)
	var script []string
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	for _, cmd := range cmds {
		step, ok := deploySteps[cmd]
		switch {
		case !ok:
			t.Errorf("deploy/README.md has a command this test does not know: %q; add it to deploySteps", cmd)
		case step.run:
			script = append(script, deployCommand(cmd, root))
		default:
			t.Logf("not run here: %s: %s", cmd, step.reason)
		}
	}
	for cmd := range deploySteps {
		if !slices.Contains(cmds, cmd) {
			t.Errorf("deploySteps lists %q, which deploy/README.md no longer has", cmd)
		}
	}

	// The paths of the commands are the unit's.
	u := parseUnit(t, unitPath)
	start := strings.Fields(u.one(t, "ExecStart"))
	if len(start) < 1 || !slices.Contains(cmds, "sudo install -m 0755 dist/bridge-linux-arm64 "+start[0]) {
		t.Errorf("the unit runs %v; deploy/README.md does not install the binary there", start)
	}
	if conf := flagValue(start, "-config"); !slices.Contains(cmds, "sudo install -m 0640 -o root -g bridge bridge.hcl "+conf) ||
		!slices.Contains(cmds, "sudo -u bridge bridge validate -config "+conf) {
		t.Errorf("the unit reads %s; deploy/README.md does not install and validate that file", conf)
	}
	if env := u.one(t, "EnvironmentFile"); env != "-/etc/bridge/bridge.env" || !strings.Contains(src, "`/etc/bridge/bridge.env`") {
		t.Errorf("the unit's EnvironmentFile=%s is not the README's /etc/bridge/bridge.env", env)
	}
	if user := u.one(t, "User"); !slices.Contains(cmds, "sudo useradd --system --no-create-home --shell /usr/sbin/nologin "+user) {
		t.Errorf("the unit runs as %s; deploy/README.md does not create that user", user)
	}
	tests := readFile(t, "cmd/bridge/deploy_test.go") + readFile(t, "cmd/bridge/readme_ops_test.go")
	for _, name := range []string{"TestSystemdUnitKeys", "TestSystemdUnitCommands", "TestSystemdAnalyzeVerify", "TestSystemdExecReload"} {
		if !strings.Contains(tests, "\nfunc "+name+"(") {
			t.Errorf("deploy/README.md says `go test ./cmd/bridge -run TestSystemd` checks the unit; %s is gone", name)
		}
	}

	// The files the commands install, in the directory they run in.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"dist", "deploy", "root/etc/systemd/system", "root/usr/local/bin"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(self, filepath.Join(dir, "dist", "bridge-linux-"+runtime.GOARCH)); err != nil {
		t.Fatal(err)
	}
	quick := readmeBlock(t, "hcl", "meter-7")
	unit := readFile(t, "deploy/bridge.service")
	for name, content := range map[string]string{
		"bridge.hcl":            quick,
		"bridge.env":            "METER7_TOKEN=meter7-token\n",
		"deploy/bridge.service": unit,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// The installed binary comes first on PATH, as /usr/local/bin does;
	// bridge.env is read as systemd reads it (the README says validate
	// needs its variables).
	sh := newReadmeShell(t, dir)
	sh.env = append(sh.env, "PATH="+filepath.Join(root, "usr/local/bin")+string(os.PathListSeparator)+os.Getenv("PATH"))
	full := "set -a\n" + strings.Join(script, "\n") + "\n"
	full = strings.Replace(full, "\nbridge validate", "\n. "+filepath.Join(root, "etc/bridge/bridge.env")+"\nbridge validate", 1)
	out, err := sh.run(t, full)
	if err != nil {
		t.Fatalf("deploy/README.md's commands: %v\n%s\nscript:\n%s", err, out, full)
	}
	if !regexp.MustCompile(`(?m)^bridge +\S+\ncommit +\S+\nmodified +\S+\ngo +go\S+ \S+/\S+$`).MatchString(out) {
		t.Errorf("bridge version printed no version, commit, modified and Go version:\n%s", out)
	}
	for path, want := range map[string]os.FileMode{
		"usr/local/bin/bridge":              0o755,
		"etc/bridge":                        0o750 | os.ModeDir,
		"etc/bridge/bridge.hcl":             0o640,
		"etc/bridge/bridge.env":             0o600,
		"etc/systemd/system/bridge.service": 0o644,
	} {
		fi, err := os.Stat(filepath.Join(root, path))
		if err != nil || fi.Mode() != want {
			t.Errorf("/%s: %v, mode %v; want mode %v", path, err, fi.Mode(), want)
		}
	}
	if got, _ := os.ReadFile(filepath.Join(root, "etc/systemd/system/bridge.service")); string(got) != unit {
		t.Error("the installed unit differs from deploy/bridge.service")
	}
}

// TestReadmeRealPlatformOffline checks what "Against the real platform" says
// about the connection, as far as it can be checked without the platform
// (no internet access and no account on the test machines, so the
// connection itself is not made): the quick start's configuration connects
// to <org>.messaging.<domain>:8883 over TLS 1.2 or later, the host and port
// of the README's real-platform mosquitto_sub line; with ca_file, gateway
// mode (a gateway block of the registry's gateway, rate 100) and
// org = "quickstart" the file validates, through `bridge validate` as a
// reader runs it.
func TestReadmeRealPlatformOffline(t *testing.T) {
	needPrograms(t, "bash")
	section := readmeSection(t, "Against the real platform")
	for _, claim := range []string{
		"connects to `<org>.messaging.<domain>` on port\n8883 with TLS 1.2 or later (system roots, or `ca_file` to pin the platform's CA)",
		"`gateway { rate = 100 }`",
		"`org = \"quickstart\"` uses the platform's quickstart service: no credentials, plain TCP, QoS 0",
	} {
		if !strings.Contains(section, claim) {
			t.Fatalf("the section no longer says %q", claim)
		}
	}
	quick := readmeBlock(t, "hcl", "meter-7")
	env := config.Environment{
		LookupEnv: func(name string) (string, bool) { return "meter7-token", name == "METER7_TOKEN" },
		ReadFile:  os.ReadFile,
	}
	cfg, diags := config.Parse("bridge.hcl", []byte(quick), env)
	if len(diags) > 0 {
		t.Fatalf("the quick start's configuration: %v", diags)
	}
	watch := regexp.MustCompile("it is the same command with `-h (\\S+)\\s+-p (\\d+) --capath /etc/ssl/certs`").FindStringSubmatch(readmeSection(t, "Watching events as an application"))
	if watch == nil {
		t.Fatal("the README no longer gives the real platform's -h and -p for mosquitto_sub")
	}
	if got, want := brokerURL(cfg.Platform), "ssl://"+watch[1]+":"+watch[2]; got != want {
		t.Errorf("the quick start's configuration connects to %s; the README's application connects to %s", got, want)
	}
	tlsConfig, err := uplink.NewTLSConfig(cfg.Platform.CAFile, cfg.Platform.ClientCert, cfg.Platform.ClientKey, cfg.Platform.InsecureSkipVerify)
	if err != nil || tlsConfig.MinVersion < tls.VersionTLS12 || tlsConfig.RootCAs != nil {
		t.Errorf("TLS of the quick start's configuration: %v, min version %x, own roots %v; want TLS 1.2+ on the system roots", err, tlsConfig.MinVersion, tlsConfig.RootCAs != nil)
	}

	dir := t.TempDir()
	pki := testpki.New(t)
	var gateway []string
	for _, line := range strings.Split(readmeBlock(t, "", "apikey "), "\n") {
		if f := strings.Fields(line); len(f) == 4 && f[0] == "gateway" {
			gateway = f[1:]
		}
	}
	if gateway == nil {
		t.Fatal("the README's registry has no gateway line")
	}
	platformBlock := hclBlock(t, quick, "platform {")
	for name, platform := range map[string]string{
		"ca_file":    "platform {\n  org     = \"ab12cd\"\n  ca_file = \"" + pki.CAFile + "\"\n}",
		"gateway":    fmt.Sprintf("platform {\n  org  = \"ab12cd\"\n  mode = \"gateway\"\n  gateway {\n    type  = %q\n    id    = %q\n    token = %q\n    rate  = 100\n  }\n}", gateway[0], gateway[1], gateway[2]),
		"quickstart": "platform {\n  org = \"quickstart\"\n}",
	} {
		file := name + ".hcl"
		src := strings.Replace(quick, platformBlock, platform, 1)
		if err := os.WriteFile(filepath.Join(dir, file), []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		sh := newReadmeShell(t, dir, "METER7_TOKEN=meter7-token")
		if out, err := sh.run(t, "bridge validate -config "+file); err != nil {
			t.Errorf("%s: bridge validate: %v\n%s\n%s", name, err, out, src)
		}
		if name == "quickstart" {
			cfg, diags := config.Parse(file, []byte(src), env)
			if diags.HasErrors() || cfg.Platform.Mode != config.ModeQuickstart || cfg.Platform.TLS || cfg.Platform.QoS != 0 {
				t.Errorf("org = \"quickstart\": %v, mode %s, TLS %v, QoS %d; the README says plain TCP, QoS 0", diags, cfg.Platform.Mode, cfg.Platform.TLS, cfg.Platform.QoS)
			}
		}
	}
}

// readmeCommands is the table of every command README.md shows (the lines
// of its sh blocks, continuation lines joined, comments removed, and its
// inline commands) and the tests that run it or check it. A command that
// is not in the table fails TestReadmeEveryCommandHasATest, so a new README
// command comes with its test.
var readmeCommands = map[string][]string{
	"bridge": {"TestReadmeQuickStart"}, // the program's name, in the first paragraph
	// The two commands.
	"go run ./cmd/bridge demo": {"TestReadmeDemoCommand", "TestDemo"},
	"sudo apt-get install -y mosquitto mosquitto-clients socat systemd": {"TestReadmeTestCommand"},
	"go vet ./... && go test -race ./...":                               {"TestReadmeTestCommand"},
	// Quick start.
	"go build -o bridge ./cmd/bridge":    {"TestReadmeBuildCommands"},
	"docker build -t fieldbridge .":      {"TestReadmeBuildCommands"}, // its steps; docker itself cannot run here
	"scripts/release":                    {"TestReleaseBuild"},
	"bridge version":                     {"TestReadmeBuildCommands", "TestVersionCommand", "TestDeployReadme"},
	"bridge validate -config bridge.hcl": {"TestReadmeQuickStart", "TestReadmeValidateExample"},
	"bridge simulate -config bridge.hcl": {"TestReadmeQuickStart", "TestReadmeDeviceManagement"},
	"bridge simulate -config bridge.hcl -listen line1=127.0.0.1:1502 &":         {"TestReadmeQuickStart"},
	"bridge platform -org ab12cd -devices devices.txt -listen 127.0.0.1:1883 &": {"TestReadmeQuickStart"},
	"bridge platform": {"TestReadmeQuickStart", "TestReadmeLocalPlatformActions"},
	`bridge platform send -org ab12cd -key a-ab12cd-q8w7e6r5t4 -token app-token-1 -type power-meter -id meter-7 -command set_setpoint -payload '{"d":{"value":500}}' -wait`: {"TestReadmeQuickStart"},
	"bridge run -config bridge.hcl": {"TestReadmeQuickStart", "TestReadmeSerialLines"},
	"bridge -config bridge.hcl":     {"TestReadmeBareConfigRuns"},
	// Watching events as an application.
	"mosquitto_sub": {"TestReadmeWatchEvents"},
	"mosquitto_sub -h 127.0.0.1 -p 1883 -i a:ab12cd:watch1 -u a-ab12cd-q8w7e6r5t4 -P app-token-1 -t 'iot-2/type/+/id/+/evt/+/fmt/+' -v": {"TestReadmeWatchEvents"},
	// Local platform: device management.
	"bridge platform action -ca ca.pem": {"TestPlatformHTTPS"},
	"bridge platform -org ab12cd -devices devices.txt -bundles bundles.json -firmware-dir ./fw &":          {"TestReadmeLocalPlatformActions"},
	`A="bridge platform action -key a-ab12cd-q8w7e6r5t4 -token app-token-1 -type power-meter -id meter-7"`: {"TestReadmeLocalPlatformActions"},
	"$A reboot":          {"TestReadmeLocalPlatformActions", "TestReadmeDeviceManagement"},
	"$A factory-reset":   {"TestReadmeLocalPlatformActions"},
	"$A firmware-update": {"TestReadmeLocalPlatformActions", "TestReadmeDeviceManagement"},
	`$A firmware-download -uri http://127.0.0.1:8080/firmware/mc3p-3.3.0.bin -verifier "$(sha256sum fw/mc3p-3.3.0.bin | cut -d' ' -f1)" -name mc3p -version 3.3.0`: {"TestReadmeLocalPlatformActions"},
	`$A update -field 'metadata={"site":"plant-2"}'`:                         {"TestReadmeLocalPlatformActions"},
	"$A observe -field mgmt.firmware":                                        {"TestReadmeLocalPlatformActions"},
	"$A cancel -field mgmt.firmware":                                         {"TestReadmeLocalPlatformActions"},
	"$A custom -bundle acme-modbus-v1 -action rescanBus -field port=rs485-1": {"TestReadmeLocalPlatformActions"},
	// Device management: reboot and firmware round trip.
	"bridge simulate -config bridge.hcl &": {"TestReadmeDeviceManagement"},
	"bridge platform -org ab12cd -devices devices.txt -listen 127.0.0.1:18830 -http 127.0.0.1:18080 -firmware-dir ./fw &": {"TestReadmeDeviceManagement"},
	"bridge run -config bridge.hcl &": {"TestReadmeDeviceManagement"},
	`A="bridge platform action -api http://127.0.0.1:18080 -key a-ab12cd-q8w7e6r5t4 -token app-token-1 -type power-meter -id meter-7"`:                              {"TestReadmeDeviceManagement"},
	`$A firmware-download -uri http://127.0.0.1:18080/firmware/mc3p-3.3.0.bin -verifier "$(sha256sum fw/mc3p-3.3.0.bin | cut -d' ' -f1)" -name mc3p -version 3.3.0`: {"TestReadmeDeviceManagement"},
	"$A observe -field deviceInfo.fwVersion": {"TestReadmeDeviceManagement"},
	// Serial lines.
	"socat -d -d pty,raw,echo=0,link=/tmp/bridge pty,raw,echo=0,link=/tmp/device &": {"TestReadmeSerialLines"},
	"bridge simulate -config bridge.hcl -listen rs485=/tmp/device &":                {"TestReadmeSerialLines"},
	// Finding a device's map.
	"bridge probe": {"TestReadmeProbe"},
	"bridge probe -tcp 10.0.0.5:502 -unit 7 -table input -address 0 -count 10":                            {"TestReadmeProbe"},
	"bridge probe -rtu /dev/ttyUSB0 -baud 9600 -parity none -unit 7 -table holding -address 100 -count 4": {"TestReadmeProbe"},
	"bridge validate -plan -config bridge.hcl":                                                            {"TestReadmeQuickStart"},
	// Operations: reload.
	"bridge validate":         {"TestReadmeQuickStart", "TestReloadInvalidFileKeepsRunning"},
	"systemctl reload bridge": {"TestSystemdExecReload"},
	"bridge run":              {"TestSIGHUPReload", "TestSystemdExecReload"},
}

// readmeCommandsOf returns the commands of a Markdown text: the lines of
// its sh blocks (a trailing backslash joins the next line; comments
// removed) and its inline `bridge ...`, `go ...`, `docker ...`,
// `scripts/...`, `sudo ...`, `systemctl ...` and `mosquitto_sub ...`.
func readmeCommandsOf(src string) []string {
	inline := regexp.MustCompile("`((?:bridge|go|docker|sudo|systemctl|mosquitto_sub)(?: [^`]*)?|scripts/[^`]+)`")
	var cmds []string
	inside, lang, pending := false, "", ""
	for _, line := range strings.Split(src, "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case !inside && strings.HasPrefix(trimmed, "```"):
			inside, lang = true, strings.TrimPrefix(trimmed, "```")
		case inside && trimmed == "```":
			inside = false
		case inside && lang == "sh" && trimmed != "":
			if cont, ok := strings.CutSuffix(trimmed, "\\"); ok {
				pending += strings.TrimSpace(cont) + " "
				continue
			}
			cmds = append(cmds, withoutComment(pending+trimmed))
			pending = ""
		case !inside:
			for _, m := range inline.FindAllStringSubmatch(line, -1) {
				cmds = append(cmds, m[1])
			}
		}
	}
	return cmds
}

// TestReadmeEveryCommandHasATest checks README.md against readmeCommands:
// every command it shows has an entry, every entry is still in the README,
// and every test named exists.
func TestReadmeEveryCommandHasATest(t *testing.T) {
	cmds := readmeCommandsOf(readFile(t, "README.md"))
	for _, cmd := range cmds {
		if _, ok := readmeCommands[cmd]; !ok {
			t.Errorf("README.md shows a command no test is listed for: %q; add it and its test to readmeCommands", cmd)
		}
	}
	sources, err := filepath.Glob("*_test.go")
	if err != nil {
		t.Fatal(err)
	}
	var tests strings.Builder
	for _, f := range sources {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		tests.Write(b)
	}
	for cmd, names := range readmeCommands {
		if !slices.Contains(cmds, cmd) {
			t.Errorf("readmeCommands lists %q, which README.md no longer shows", cmd)
		}
		for _, name := range names {
			if !strings.Contains(tests.String(), "\nfunc "+name+"(t *testing.T)") {
				t.Errorf("readmeCommands names %s for %q; there is no such test", name, cmd)
			}
		}
	}
}

// TestReadmeBareConfigRuns: "bridge run -config bridge.hcl (or just bridge
// -config bridge.hcl)". The second form, run as written on the quick
// start's configuration, starts the bridge as the first does (its platform
// and bus need not answer for that).
func TestReadmeBareConfigRuns(t *testing.T) {
	needPrograms(t, "bash")
	const bare = "bridge -config bridge.hcl"
	if !strings.Contains(readmeSection(t, "Quick start with a real configuration"), "`bridge run -config bridge.hcl` (or just `"+bare+"`)") {
		t.Fatalf("the quick start no longer offers `%s`", bare)
	}
	dir := t.TempDir()
	hcl := strings.Replace(readmeBlock(t, "hcl", "meter-7"), "/var/lib/bridge/buffer", filepath.Join(dir, "buffer"), 1)
	// Nothing answers on these: the bridge starts and retries.
	hcl = strings.Replace(hcl, "10.0.0.5:502", "127.0.0.1:"+freePort(t), 1)
	hcl = strings.Replace(hcl, "platform {\n", "platform {\n  host = \"127.0.0.1\"\n  port = "+freePort(t)+"\n  tls  = false\n", 1)
	if err := os.WriteFile(filepath.Join(dir, "bridge.hcl"), []byte(hcl), 0o600); err != nil {
		t.Fatal(err)
	}
	sh := newReadmeShell(t, dir, "METER7_TOKEN=meter7-token")
	out := sh.start(t, bare)
	testwait.For(t, waitTimeout, "bridge -config bridge.hcl logging its start", func() bool {
		return strings.Contains(out.String(), "bridge started")
	})
}

func TestDemoLineShape(t *testing.T) {
	shape := demoLineShape(`14:02:36.083  power-meter/meter-1    reading    seq=2     {"voltage_l1":231.00163,"breaker_closed":true}`)
	for line, want := range map[string]bool{
		`09:59:01.100  power-meter/meter-1    reading    seq=17    {"voltage_l1":229.5,"breaker_closed":true}`:  true,
		`09:59:01.100  power-meter/meter-2    reading    seq=17    {"voltage_l1":229.5,"breaker_closed":true}`:  false, // another device
		`09:59:01.100  power-meter/meter-1    status     seq=17    {"voltage_l1":229.5,"breaker_closed":true}`:  false, // another event
		`09:59:01.100  power-meter/meter-1    reading    seq=17    {"voltage_l2":229.5,"breaker_closed":true}`:  false, // another member
		`09:59:01.100  power-meter/meter-1    reading    seq=17    {"voltage_l1":229.5,"breaker_closed":false}`: false,
	} {
		if got := shape.MatchString(line); got != want {
			t.Errorf("%s matches %s: %v, want %v", shape, line, got, want)
		}
	}
}
