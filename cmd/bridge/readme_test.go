package main

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"fieldbridge/config"
	"fieldbridge/internal/mqtttest"
	"fieldbridge/internal/testwait"
	"fieldbridge/platform"
)

const readmePath = "../../README.md"

// readmeBlock returns the body of the first fenced block of README.md whose
// info string is lang ("" for none) and that contains marker.
func readmeBlock(t testing.TB, lang, marker string) string {
	t.Helper()
	src, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	var body []string
	inside, info := false, ""
	for _, line := range strings.Split(string(src), "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case !inside && strings.HasPrefix(trimmed, "```"):
			inside, info, body = true, strings.TrimPrefix(trimmed, "```"), nil
		case inside && trimmed == "```":
			inside = false
			if block := strings.Join(body, "\n"); info == lang && strings.Contains(block, marker) {
				return block
			}
		case inside:
			body = append(body, line)
		}
	}
	t.Fatalf("README.md has no ```%s block containing %q", lang, marker)
	return ""
}

// shellWords splits a README command line as sh would for the quoting the
// README uses: blanks separate words, single quotes quote, and a backslash
// at the end of a line continues it.
func shellWords(s string) []string {
	s = strings.ReplaceAll(s, "\\\n", " ")
	var words []string
	var word strings.Builder
	inWord, quoted := false, false
	for _, r := range s {
		switch {
		case r == '\'':
			quoted, inWord = !quoted, true
		case !quoted && (r == ' ' || r == '\t' || r == '\n'):
			if inWord {
				words, inWord = append(words, word.String()), false
				word.Reset()
			}
		default:
			word.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, word.String())
	}
	return words
}

func TestShellWords(t *testing.T) {
	got := shellWords("mosquitto_sub -h 127.0.0.1 -i a:o:w \\\n    -t 'iot-2/type/+/id/+' -v ''")
	want := []string{"mosquitto_sub", "-h", "127.0.0.1", "-i", "a:o:w", "-t", "iot-2/type/+/id/+", "-v", ""}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("shellWords = %q, want %q", got, want)
	}
}

// readmeRig is the README's quick start on this machine: `bridge platform`
// with the README's registry, and the README's minimal configuration polled
// from the simulator and published to that platform in device mode.
type readmeRig struct {
	mqttAddr string
	key      platform.APIKey // the registry's API key
}

func startReadmeRig(t *testing.T) readmeRig {
	t.Helper()
	regText := readmeBlock(t, "", "apikey ")
	reg, err := platform.ReadRegistry(strings.NewReader(regText), "README registry")
	if err != nil {
		t.Fatalf("the README's registry: %v", err)
	}
	if len(reg.APIKeys) != 1 {
		t.Fatalf("the README's registry has %d API keys, want 1", len(reg.APIKeys))
	}
	regFile := filepath.Join(t.TempDir(), "devices.txt")
	if err := os.WriteFile(regFile, []byte(regText), 0o600); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	out, errs := &syncBuffer{}, &syncBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, func() {}, []string{"platform", "-org", "ab12cd", "-devices", regFile,
			"-listen", "127.0.0.1:0", "-http", "", "-print=false", "-log-level", "error"}, out, errs)
	}()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != exitOK {
			t.Errorf("bridge platform exit %d: %s", code, errs.String())
		}
	})
	listening := regexp.MustCompile(`mqtt listening on (\S+)\n`)
	var m []string
	testwait.For(t, waitTimeout, "bridge platform listening", func() bool {
		m = listening.FindStringSubmatch(out.String())
		return m != nil
	})

	// The README's minimal configuration, its token from the registry.
	var token string
	for _, d := range reg.Devices {
		if d.Type == "power-meter" && d.ID == "meter-7" {
			token = d.Token
		}
	}
	env := config.Environment{
		LookupEnv: func(name string) (string, bool) { return token, name == "METER7_TOKEN" },
		ReadFile:  func(p string) ([]byte, error) { return nil, errors.New(p + ": not read in this test") },
	}
	cfg, diags := config.Parse("bridge.hcl", []byte(readmeBlock(t, "hcl", "meter-7")), env)
	if len(diags) > 0 {
		t.Fatalf("the README's minimal configuration: %v", diags)
	}
	cfg.Devices[0].Poll = 100 * time.Millisecond // the default 5s would only make the test slow
	sims, err := startSimulators(cfg, func(*config.Bus) string { return "127.0.0.1:0" }, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sims.Close)
	cfg.Buses[0].Address = sims.servers[0].server.Addr()
	(&rig{cfg: cfg}).runBridge(t, "tcp://"+m[1])
	return readmeRig{mqttAddr: m[1], key: reg.APIKeys[0]}
}

// TestReadmeWatchEvents follows the README's "Watching events as an
// application": an application identity (a: client id, the registry's API
// key and token) subscribes on the local platform and receives the device's
// events on qualified topics. The same steps run twice: with an MQTT library,
// and with the README's mosquitto_sub command itself.
func TestReadmeWatchEvents(t *testing.T) {
	r := startReadmeRig(t)
	const filter = "iot-2/type/+/id/+/evt/+/fmt/+"
	const reading = "iot-2/type/power-meter/id/meter-7/evt/reading/fmt/json"

	t.Run("paho", func(t *testing.T) {
		got := make(chan mqtt.Message, 100)
		opts := mqtt.NewClientOptions().AddBroker("tcp://" + r.mqttAddr).SetClientID("a:ab12cd:watch-go").
			SetUsername(r.key.Key).SetPassword(r.key.Token).SetAutoReconnect(false)
		app := mqtt.NewClient(opts)
		if tok := app.Connect(); !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
			t.Fatalf("application connect: %v", tok.Error())
		}
		defer app.Disconnect(100)
		if tok := app.Subscribe(filter, 1, func(_ mqtt.Client, m mqtt.Message) {
			select {
			case got <- m:
			default:
			}
		}); !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
			t.Fatalf("application subscribe %s: %v", filter, tok.Error())
		}
		timeout := time.After(waitTimeout)
		for {
			select {
			case m := <-got:
				if m.Topic() != reading {
					continue // the status event
				}
				checkReadmeReading(t, m.Payload())
				return
			case <-timeout:
				t.Fatalf("no event on %s within %v", reading, waitTimeout)
			}
		}
	})

	t.Run("mosquitto_sub", func(t *testing.T) {
		bin, err := exec.LookPath("mosquitto_sub")
		if err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("mosquitto_sub is required in CI (Debian package mosquitto-clients): %v", err)
			}
			t.Skipf("mosquitto_sub not found (Debian package mosquitto-clients): %v", err)
		}
		args := shellWords(readmeBlock(t, "sh", "mosquitto_sub -h 127.0.0.1"))
		host, port, err := net.SplitHostPort(r.mqttAddr)
		if err != nil {
			t.Fatal(err)
		}
		for i := range args[:len(args)-1] {
			switch args[i] {
			case "-h":
				args[i+1] = host
			case "-p":
				args[i+1] = port
			}
		}
		// Stop after a few messages (the first may be the status event), or
		// after 30 s without one.
		args = append(args[1:], "-C", "3", "-W", "30")
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, bin, args...).Output()
		if err != nil {
			t.Fatalf("mosquitto_sub %q: %v\n%s", args, err, out)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if topic, payload, _ := strings.Cut(line, " "); topic == reading {
				checkReadmeReading(t, []byte(payload))
				return
			}
		}
		t.Errorf("mosquitto_sub printed no %s event:\n%s", reading, out)
	})
}

// checkReadmeReading checks a reading event of the README's power meter:
// its one point and a seq.
func checkReadmeReading(t *testing.T, body []byte) {
	t.Helper()
	var p struct {
		D   map[string]float64 `json:"d"`
		Seq uint64             `json:"seq"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("payload %q: %v", body, err)
	}
	if _, ok := p.D["voltage_l1"]; !ok || len(p.D) != 1 || p.Seq == 0 {
		t.Errorf("reading %s: want d.voltage_l1 and a seq", body)
	}
}

// TestPlainBrokerTopics shows the README's warning about plain MQTT brokers:
// in device mode every device publishes on the same relative topic and
// nothing in the message tells which device sent it; in gateway mode the
// topics name the device.
func TestPlainBrokerTopics(t *testing.T) {
	for _, mode := range []string{config.ModeDevice, config.ModeGateway} {
		t.Run(mode, func(t *testing.T) {
			addr := mqtttest.StartMosquitto(t)
			r := startSimulation(t)
			if mode == config.ModeGateway {
				r.cfg.Platform.Mode = config.ModeGateway
				r.cfg.Platform.Gateway = &config.Gateway{Type: "edge-gw", ID: "gw-1", Token: "gateway-token-1"}
			}
			var mu sync.Mutex
			topics := map[string]int{} // reading topics, and how many events with seq 1 each had
			opts := mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("watcher").SetAutoReconnect(false)
			sub := mqtt.NewClient(opts)
			if tok := sub.Connect(); !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
				t.Fatalf("subscriber connect: %v", tok.Error())
			}
			t.Cleanup(func() { sub.Disconnect(100) })
			if tok := sub.Subscribe("iot-2/#", 1, func(_ mqtt.Client, m mqtt.Message) {
				if !strings.Contains(m.Topic(), "/evt/status/") {
					return
				}
				var p struct{ Seq uint64 }
				if json.Unmarshal(m.Payload(), &p) == nil && p.Seq == 1 {
					mu.Lock()
					topics[m.Topic()]++
					mu.Unlock()
				}
			}); !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
				t.Fatalf("subscribe: %v", tok.Error())
			}
			r.runBridge(t, "tcp://"+addr)

			// Each of the three devices sends its first status event (seq 1).
			testwait.For(t, waitTimeout, "three first status events", func() bool {
				mu.Lock()
				defer mu.Unlock()
				n := 0
				for _, c := range topics {
					n += c
				}
				return n >= 3
			})
			mu.Lock()
			defer mu.Unlock()
			want := map[string]int{"iot-2/evt/status/fmt/json": 3}
			if mode == config.ModeGateway {
				want = map[string]int{
					"iot-2/type/meter/id/m1/evt/status/fmt/json":        1,
					"iot-2/type/meter/id/m2/evt/status/fmt/json":        1,
					"iot-2/type/boiler/id/boiler-9/evt/status/fmt/json": 1,
				}
			}
			if len(topics) != len(want) {
				t.Errorf("first status events per topic = %v, want %v", topics, want)
			}
			for topic, n := range want {
				if topics[topic] != n {
					t.Errorf("first status events per topic = %v, want %v", topics, want)
					break
				}
			}
		})
	}
}
