package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"fieldbridge/internal/testwait"
)

// needPrograms returns nothing when every program is on PATH; otherwise it
// skips the test with a message, or fails it under CI=true.
func needPrograms(t *testing.T, names ...string) {
	t.Helper()
	for _, name := range names {
		if _, err := exec.LookPath(name); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is required in CI to run the README's commands: %v", name, err)
			}
			t.Skipf("%s not found, the README's commands cannot run here: %v", name, err)
		}
	}
}

// readmeShell runs README shell lines the way a reader would: with bash, in
// dir, with a `bridge` on PATH that is this test binary running main().
// Using the test binary instead of `go build` needs no Go toolchain at test
// time and costs no build; it is the same main().
type readmeShell struct {
	dir string
	env []string
}

func newReadmeShell(t *testing.T, dir string, env ...string) readmeShell {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	binDir := filepath.Join(t.TempDir(), "bin")
	if err := os.Mkdir(binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(self, filepath.Join(binDir, "bridge")); err != nil {
		t.Fatal(err)
	}
	env = append(append(os.Environ(), childEnv+"=1", "PATH="+binDir+string(os.PathListSeparator)+os.Getenv("PATH")), env...)
	return readmeShell{dir: dir, env: env}
}

// start runs a README line in the background (its `&` if any removed), in
// its own process group, and returns what it prints (stdout and stderr
// together). The group is stopped with SIGTERM (the bridge's clean stop)
// when the test ends, then killed.
func (s readmeShell) start(t *testing.T, line string) *syncBuffer {
	t.Helper()
	line = strings.TrimSpace(line)
	out := &syncBuffer{}
	cmd := exec.Command("bash", "-c", "exec "+strings.TrimSuffix(line, "&"))
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = s.dir, s.env, out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", line, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("output of %s:\n%s", line, out.String())
		}
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(waitTimeout):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
			t.Errorf("%s did not stop on SIGTERM; killed. Output:\n%s", line, out.String())
		}
	})
	return out
}

// run runs a script with bash -e to its end and returns its stdout and
// stderr together.
func (s readmeShell) run(t *testing.T, script string) (string, error) {
	t.Helper()
	cmd := exec.Command("bash", "-e", "-c", script)
	cmd.Dir, cmd.Env = s.dir, s.env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago: the
// README's commands take fixed addresses, so the test picks them.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// readmeSection returns the README text from the heading "## name" to the
// next "## " heading.
func readmeSection(t *testing.T, name string) string {
	t.Helper()
	src, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(src), "\n## "+name+"\n")
	if !ok {
		t.Fatalf("README.md has no section %q", name)
	}
	section, _, _ := strings.Cut(rest, "\n## ")
	return section
}

// hclBlock returns the block of src that starts with header (up to its
// matching closing brace, braces counted outside strings are enough for the
// README's HCL).
func hclBlock(t *testing.T, src, header string) string {
	t.Helper()
	start := strings.Index(src, header)
	if start < 0 {
		t.Fatalf("no %q in:\n%s", header, src)
	}
	depth, inString := 0, false
	for i := start; i < len(src); i++ {
		switch c := src[i]; {
		case c == '"' && src[i-1] != '\\':
			inString = !inString
		case inString:
		case c == '{':
			depth++
		case c == '}':
			depth--
			if depth == 0 {
				return src[start : i+1]
			}
		}
	}
	t.Fatalf("block %q is not closed", header)
	return ""
}

// withPort replaces the port of every 127.0.0.1:<from> in s by to.
func withPort(s, from, to string) string {
	return strings.ReplaceAll(s, "127.0.0.1:"+from, "127.0.0.1:"+to)
}

// TestReadmeDeviceManagement runs the README's "Device management: reboot
// and firmware round trip" from its own text: bridge.hcl is the section's
// HCL block (its point filled from the quick start's) with the bus and
// platform lines the section names, the shell block runs with bash as
// written, only its ports and /tmp paths replaced, and what it prints is
// the section's output block. The hooks' effects are checked on disk.
func TestReadmeDeviceManagement(t *testing.T) {
	needPrograms(t, "bash", "sha256sum", "cut", "cp", "sh")
	section := readmeSection(t, "Device management: reboot and firmware round trip")
	dir := t.TempDir()
	rt := filepath.Join(dir, "rt") // the README's /tmp/rt
	for _, d := range []string{filepath.Join(rt, "staging"), filepath.Join(dir, "fw"), filepath.Join(dir, "buffer")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	image := []byte("MC-3P firmware 3.3.0, a test image\n")
	if err := os.WriteFile(filepath.Join(dir, "fw", "mc3p-3.3.0.bin"), image, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "devices.txt"), []byte(readmeBlock(t, "", "apikey ")), 0o600); err != nil {
		t.Fatal(err)
	}
	busPort, mqttPort, httpPort := freePort(t), freePort(t), freePort(t)

	// bridge.hcl: the section's platform and bus block, its management
	// block, the quick start's buffer (its directory here) and device.
	const readmeBusPort, readmeMQTTPort, readmeHTTPPort = "15020", "18830", "18080"
	quick := readmeBlock(t, "hcl", "meter-7")
	mgmt := readmeBlock(t, "hcl", "staging_dir")
	mgmt = strings.ReplaceAll(mgmt, "/tmp/rt", rt)
	mgmt = strings.Replace(mgmt, `point "voltage_l1" { ... }`, hclBlock(t, quick, `point "voltage_l1" {`), 1)
	local := readmeBlock(t, "hcl", "127.0.0.1:"+readmeBusPort)
	local = strings.Replace(withPort(local, readmeBusPort, busPort), "port = "+readmeMQTTPort, "port = "+mqttPort, 1)
	buffer := strings.Replace(hclBlock(t, quick, "buffer {"), "/var/lib/bridge/buffer", filepath.Join(dir, "buffer"), 1)
	hcl := strings.Join([]string{local, buffer, mgmt, hclBlock(t, quick, `device "meter-7" {`)}, "\n")
	if err := os.WriteFile(filepath.Join(dir, "bridge.hcl"), []byte(hcl), 0o600); err != nil {
		t.Fatal(err)
	}

	// The shell block: its first three lines start the programs, the rest
	// are the actions.
	script := readmeBlock(t, "sh", "-firmware-dir ./fw &\nbridge run")
	if !strings.Contains(section, script) {
		t.Fatalf("the round trip's shell block is no longer in its section:\n%s", script)
	}
	script = withPort(withPort(withPort(script, readmeMQTTPort, mqttPort), readmeHTTPPort, httpPort), readmeBusPort, busPort)
	lines := strings.SplitN(script, "\n", 4)
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "bridge simulate ") ||
		!strings.HasPrefix(lines[1], "bridge platform ") || !strings.HasPrefix(lines[2], "bridge run ") {
		t.Fatalf("the section's shell block no longer starts simulate, platform and run:\n%s", script)
	}
	sh := newReadmeShell(t, dir, "METER7_TOKEN=meter7-token")
	simulate := sh.start(t, lines[0])
	platformOut := sh.start(t, lines[1])
	testwait.For(t, waitTimeout, "bridge platform listening", func() bool {
		return strings.Contains(platformOut.String(), "api listening on")
	})
	run := sh.start(t, lines[2])
	// The actions need the device managed: the platform prints its Manage.
	testwait.For(t, waitTimeout, "meter-7's Manage printed by the platform", func() bool {
		return strings.Contains(platformOut.String(), "mgmt/manage")
	})

	out, err := sh.run(t, lines[3])
	if err != nil {
		t.Fatalf("the README's actions: %v\n%s\n--- bridge run:\n%s\n--- platform:\n%s\n--- simulate:\n%s",
			err, out, run.String(), platformOut.String(), simulate.String())
	}
	want := readmeBlock(t, "", "device/reboot power-meter/meter-7: rc 202")
	if strings.TrimSpace(out) != strings.TrimSpace(want) {
		t.Errorf("the README's actions printed:\n%s\nthe README shows:\n%s", out, want)
	}

	// The hooks ran: the reboot hook's log line and the flashed image.
	log, err := os.ReadFile(filepath.Join(rt, "actions.log"))
	if err != nil || !strings.Contains(string(log), "rebooting meter-7") {
		t.Errorf("reboot hook log = %q (%v), want a line \"rebooting meter-7\"", log, err)
	}
	flashed, err := os.ReadFile(filepath.Join(rt, "flashed-3.3.0.bin"))
	if err != nil || string(flashed) != string(image) {
		t.Errorf("flashed image = %q (%v), want the served image %q", flashed, err, image)
	}
	if errors.Is(err, os.ErrNotExist) {
		t.Logf("bridge run:\n%s", run.String())
	}
}

// TestReadmeSerialLines runs the README's "Serial lines" from its own text:
// socat's pty pair, the simulator on one end and the bridge on the other,
// with the quick start's configuration on the README's rs485 bus, and the
// quick start's local platform, which prints the meter's readings. Only the
// /tmp paths and the port are replaced.
func TestReadmeSerialLines(t *testing.T) {
	needPrograms(t, "bash", "socat")
	section := readmeSection(t, "Serial lines")
	script := readmeBlock(t, "sh", "socat -d -d pty")
	if !strings.Contains(section, script) {
		t.Fatalf("the serial lines' shell block is no longer in its section:\n%s", script)
	}
	dir := t.TempDir()
	bridgeEnd, deviceEnd := filepath.Join(dir, "bridge"), filepath.Join(dir, "device")
	script = strings.NewReplacer("/tmp/bridge", bridgeEnd, "/tmp/device", deviceEnd).Replace(script)
	var lines []string
	for _, line := range strings.Split(script, "\n") {
		if strings.TrimSpace(line) != "" {
			lines = append(lines, line)
		}
	}
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "socat ") ||
		!strings.HasPrefix(lines[1], "bridge simulate ") || !strings.HasPrefix(lines[2], "bridge run ") {
		t.Fatalf("the serial lines' shell block is no longer socat, simulate and run:\n%s", script)
	}
	bus := readmeBlock(t, "hcl", `bus "rs485" {`)
	if !strings.Contains(section, bus) {
		t.Fatalf("the rs485 bus block is no longer in the serial lines' section:\n%s", bus)
	}
	bus = strings.ReplaceAll(bus, "/tmp/bridge", bridgeEnd)

	// bridge.hcl: the quick start's configuration with the README's rs485
	// bus instead of line1, pointed at the quick start's local platform.
	mqttPort := freePort(t)
	quick := readmeBlock(t, "hcl", "meter-7")
	local := readmeBlock(t, "hcl", "port = 18830") // the platform block of the round trip
	hcl := strings.Join([]string{
		strings.Replace(hclBlock(t, local, "platform {"), "port = 18830", "port = "+mqttPort, 1),
		strings.Replace(hclBlock(t, quick, "buffer {"), "/var/lib/bridge/buffer", filepath.Join(dir, "buffer"), 1),
		bus,
		hclBlock(t, quick, `device_type "power-meter" {`),
		strings.Replace(hclBlock(t, quick, `device "meter-7" {`), `bus   = "line1"`, `bus   = "rs485"`, 1),
	}, "\n")
	if !strings.Contains(hcl, `bus   = "rs485"`) {
		t.Fatalf("the quick start's device no longer reads bus   = \"line1\":\n%s", hcl)
	}
	if err := os.WriteFile(filepath.Join(dir, "bridge.hcl"), []byte(hcl), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "devices.txt"), []byte(readmeBlock(t, "", "apikey ")), 0o600); err != nil {
		t.Fatal(err)
	}
	platformLine := readmeBlock(t, "sh", "bridge platform -org ab12cd -devices devices.txt -listen 127.0.0.1:1883 &")
	platformLine = strings.Split(withPort(platformLine, "1883", mqttPort), "\n")[1]
	// The platform's HTTP API is not used here; its default address
	// 127.0.0.1:8080 may be taken on this machine.
	platformLine = strings.TrimSuffix(strings.TrimSpace(platformLine), "&") + " -http 127.0.0.1:0 &"

	sh := newReadmeShell(t, dir, "METER7_TOKEN=meter7-token")
	platformOut := sh.start(t, platformLine)
	sh.start(t, lines[0])
	testwait.For(t, waitTimeout, "socat's two links", func() bool {
		_, errB := os.Stat(bridgeEnd)
		_, errD := os.Stat(deviceEnd)
		return errB == nil && errD == nil
	})
	sh.start(t, lines[1])
	sh.start(t, lines[2])
	reading := regexp.MustCompile(`power-meter/meter-7 +reading +seq=[0-9]+ +\{"voltage_l1":[-0-9.e]+\}`)
	testwait.For(t, waitTimeout, "a reading of meter-7 printed by the platform", func() bool {
		return reading.MatchString(platformOut.String())
	})
}

// TestReadmeQuickStart runs the quick start's steps 3 to 5 from the
// README's text: its minimal configuration with the platform lines the text
// gives and the bus pointed at the simulator, `bridge validate`, the
// simulator and the local platform as written, `bridge run`, and the
// command sent as an application. The power meter of the minimal
// configuration defines no command, so its answer is a result that says so.
func TestReadmeQuickStart(t *testing.T) {
	needPrograms(t, "bash")
	dir := t.TempDir()
	const readmeSimPort, readmeMQTTPort = "1502", "1883"
	simPort, mqttPort := freePort(t), freePort(t)

	hcl := readmeBlock(t, "hcl", "meter-7")
	for _, r := range []struct{ old, new string }{
		{"platform {\n", fmt.Sprintf("platform {\n  host = \"127.0.0.1\"\n  port = %s\n  tls  = false\n", mqttPort)},
		{"/var/lib/bridge/buffer", filepath.Join(dir, "buffer")},
		{"10.0.0.5:502", "127.0.0.1:" + simPort}, // "Point the bus at the simulator"
	} {
		if !strings.Contains(hcl, r.old) {
			t.Fatalf("the README's minimal configuration has no %q:\n%s", r.old, hcl)
		}
		hcl = strings.Replace(hcl, r.old, r.new, 1)
	}
	if err := os.WriteFile(filepath.Join(dir, "bridge.hcl"), []byte(hcl), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "devices.txt"), []byte(readmeBlock(t, "", "apikey ")), 0o600); err != nil {
		t.Fatal(err)
	}
	sh := newReadmeShell(t, dir, "METER7_TOKEN=meter7-token")

	// Step 3.
	if out, err := sh.run(t, "bridge validate -config bridge.hcl"); err != nil {
		t.Fatalf("bridge validate -config bridge.hcl: %v\n%s", err, out)
	}
	// "Finding a device's map": the read plan of the same file.
	const planCommand = "bridge validate -plan -config bridge.hcl"
	if !strings.Contains(readmeSection(t, "Finding a device's map"), "`"+planCommand+"`") {
		t.Fatalf("the README no longer shows `%s`", planCommand)
	}
	out, err := sh.run(t, planCommand)
	if err != nil || !strings.Contains(out, "device meter-7 (bus line1, unit 7, every 5s): 1 requests per cycle\n  input        0 +2") {
		t.Errorf("%s: %v, want meter-7's one request of input 0-1:\n%s", planCommand, err, out)
	}

	// Step 4: the simulator and the platform. The platform's HTTP API is not
	// used here; its default 127.0.0.1:8080 may be taken on this machine.
	start := readmeBlock(t, "sh", "bridge simulate -config bridge.hcl -listen line1=")
	start = withPort(withPort(start, readmeSimPort, simPort), readmeMQTTPort, mqttPort)
	lines := strings.Split(strings.TrimSpace(start), "\n")
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i]) // the block is indented in a list
	}
	if len(lines) != 2 || !strings.HasPrefix(lines[1], "bridge platform ") {
		t.Fatalf("the quick start's block no longer starts the simulator and the platform:\n%s", start)
	}
	sh.start(t, lines[0])
	platformOut := sh.start(t, strings.TrimSuffix(lines[1], "&")+" -http 127.0.0.1:0 &")
	testwait.For(t, waitTimeout, "bridge platform listening", func() bool {
		return strings.Contains(platformOut.String(), "mqtt listening on")
	})

	// Step 5, then the command once the meter is connected (its first
	// reading printed by the platform).
	sh.start(t, "bridge run -config bridge.hcl")
	reading := regexp.MustCompile(`power-meter/meter-7 +reading +seq=[0-9]+ +\{"voltage_l1":`)
	testwait.For(t, waitTimeout, "a reading of meter-7 printed by the platform", func() bool {
		return reading.MatchString(platformOut.String())
	})
	send := readmeBlock(t, "sh", "bridge platform send ")
	// The platform's MQTT address in place of send's default 127.0.0.1:1883.
	send = strings.Replace(send, "bridge platform send ", "bridge platform send -broker tcp://127.0.0.1:"+mqttPort+" ", 1)
	// It exits 2: the device refused the command (the README says so).
	out, err = sh.run(t, send)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 {
		t.Fatalf("%s: %v, want exit status 2 (the device refused)\n%s", send, err, out)
	}
	result := regexp.MustCompile(`(?m)^result (\{.*\})$`).FindStringSubmatch(out)
	if result == nil {
		t.Fatalf("bridge platform send -wait printed no result:\n%s", out)
	}
	var r struct {
		D struct {
			Command string `json:"command"`
			ReqID   string `json:"reqId"`
			OK      bool   `json:"ok"`
			Error   string `json:"error"`
		} `json:"d"`
	}
	if err := json.Unmarshal([]byte(result[1]), &r); err != nil {
		t.Fatalf("result %s: %v", result[1], err)
	}
	readmeAnswer := `unknown command "set_setpoint" for device type "power-meter" (it has none)`
	if !strings.Contains(readmeSection(t, "Quick start with a real configuration"), readmeAnswer) {
		t.Fatalf("the quick start no longer shows the answer %s", readmeAnswer)
	}
	if r.D.Command != "set_setpoint" || r.D.ReqID == "" || r.D.OK || r.D.Error != readmeAnswer {
		t.Errorf("result %s: want set_setpoint refused as an unknown command of the minimal configuration, with its reqId", result[1])
	}
}

// TestReadmeValidateExample runs the quick start's step 3 on its minimal
// configuration with the mistake its example output shows (the device on
// bus "line2") and compares what `bridge validate` prints with the README.
func TestReadmeValidateExample(t *testing.T) {
	needPrograms(t, "bash")
	dir := t.TempDir()
	hcl := dedent(readmeBlock(t, "hcl", "meter-7"), "   ")
	if !strings.Contains(hcl, `bus   = "line1"`) {
		t.Fatalf("the README's minimal configuration has no device on bus \"line1\":\n%s", hcl)
	}
	hcl = strings.Replace(hcl, `bus   = "line1"`, `bus   = "line2"`, 1)
	if err := os.WriteFile(filepath.Join(dir, "bridge.hcl"), []byte(hcl), 0o600); err != nil {
		t.Fatal(err)
	}
	sh := newReadmeShell(t, dir, "METER7_TOKEN=meter7-token")
	out, err := sh.run(t, "bridge validate -config bridge.hcl")
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("bridge validate: %v, want exit status 1\n%s", err, out)
	}
	if want := dedent(readmeBlock(t, "", "error: Unknown bus"), "   "); !strings.HasPrefix(out, want+"\n") {
		t.Errorf("bridge validate printed:\n%s\nthe README shows:\n%s", out, want)
	}
}

// dedent removes indent from the start of every line of a README block
// (blocks inside a list item are indented).
func dedent(block, indent string) string {
	lines := strings.Split(block, "\n")
	for i, line := range lines {
		lines[i] = strings.TrimPrefix(line, indent)
	}
	return strings.Join(lines, "\n")
}
