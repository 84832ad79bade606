package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"fieldbridge/mapping"
	"fieldbridge/platform"
	"fieldbridge/uplink"
)

func cmdPlatform(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "send" {
		return cmdPlatformSend(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "action" {
		return cmdPlatformAction(ctx, args[1:], stdout, stderr)
	}
	fs := newFlagSet("platform", stderr)
	org := fs.String("org", "", "organisation id the platform serves (\"quickstart\" for quickstart mode)")
	addr := fs.String("listen", "127.0.0.1:1883", "MQTT listen address")
	registry := fs.String("devices", "", "registry file of devices, gateways and tokens (see README)")
	bundles := fs.String("bundles", "", "JSON file of device-management extension packages (protocol.md §8)")
	httpAddr := fs.String("http", "127.0.0.1:8080", "HTTP address of the device-management API and the firmware files (\"\" for none)")
	fwDir := fs.String("firmware-dir", "", "serve this directory's files on the HTTP address under /firmware/")
	tlsCert := fs.String("http-tls-cert", "", "serve HTTPS with this certificate (PEM) ...")
	tlsKey := fs.String("http-tls-key", "", "... and key")
	show := fs.Bool("print", true, "print every event and device-management message as it arrives")
	var lf logFlags
	lf.register(fs)
	logger, err := lf.parse(fs, args, stderr)
	if err != nil {
		return err
	}
	cfg := platform.Config{Org: *org, Addr: *addr}
	if *registry != "" {
		reg, err := platform.LoadRegistry(*registry)
		if err != nil {
			return fmt.Errorf("%v: %w", err, errConfig)
		}
		cfg.Devices, cfg.APIKeys = reg.Devices, reg.APIKeys
	}
	if *bundles != "" {
		if cfg.Bundles, err = platform.LoadBundles(*bundles); err != nil {
			return fmt.Errorf("%v: %w", err, errConfig)
		}
	}
	if cfg.Org == "" {
		return fmt.Errorf("-org is required: %w", errConfig)
	}
	if *fwDir != "" && *httpAddr == "" {
		return fmt.Errorf("-firmware-dir needs -http: %w", errConfig)
	}
	p, err := platform.New(cfg, logger.With("component", "platform"))
	if err != nil {
		return fmt.Errorf("%v: %w", err, errConfig)
	}
	if err := p.Start(); err != nil {
		return fmt.Errorf("%v: %w", err, errConfig)
	}
	defer p.Close()
	out := &lockedWriter{w: stdout}
	// Subscribe before announcing the addresses: whoever waits for
	// "listening" must see every message it then causes printed.
	if *show {
		var printers sync.WaitGroup
		defer printers.Wait() // after the subscriptions closed (deferred later, so run first)
		for _, filter := range []string{"iot-2/type/+/id/+/evt/+/fmt/+", "iotdevice-1/#", "iotdm-1/#"} {
			sub, err := p.Subscribe(filter)
			if err != nil {
				return err
			}
			defer sub.Close()
			print := printDM
			if strings.HasPrefix(filter, "iot-2/") {
				print = printEvents
			}
			printers.Add(1)
			go func() { defer printers.Done(); print(ctx, out, sub.C) }()
		}
	}
	logger.Info("platform listening", "address", p.Addr(), "org", cfg.Org)
	fmt.Fprintf(out, "mqtt listening on %s\n", p.Addr())
	if *httpAddr != "" {
		url, stop, err := servePlatformHTTP(p, *httpAddr, *fwDir, *tlsCert, *tlsKey, logger)
		if err != nil {
			return fmt.Errorf("%v: %w", err, errConfig)
		}
		defer stop()
		fmt.Fprintf(out, "api listening on %s%s\n", url, platform.APIPath)
		if *fwDir != "" {
			fmt.Fprintf(out, "firmware files of %s on %s/firmware/\n", *fwDir, url)
		}
	}
	<-ctx.Done()
	return nil
}

// lockedWriter serialises the writes of the printing goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// servePlatformHTTP serves the platform's device-management API and, if
// fwDir is set, its files under /firmware/, over HTTPS when a certificate
// is given. It returns the base URL and a function that stops the server.
func servePlatformHTTP(p *platform.Platform, addr, fwDir, certFile, keyFile string, logger *slog.Logger) (string, func(), error) {
	if (certFile == "") != (keyFile == "") {
		return "", nil, errors.New("-http-tls-cert and -http-tls-key go together")
	}
	mux := http.NewServeMux()
	mux.Handle(platform.APIPath, p.APIHandler())
	if fwDir != "" {
		if st, err := os.Stat(fwDir); err != nil || !st.IsDir() {
			return "", nil, fmt.Errorf("-firmware-dir %s is not a directory", fwDir)
		}
		mux.Handle("GET /firmware/", http.StripPrefix("/firmware/", http.FileServer(http.Dir(fwDir))))
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("listen on %s: %v", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}
	scheme := "http"
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			ln.Close()
			return "", nil, fmt.Errorf("load https key pair: %v", err)
		}
		srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
		ln = tls.NewListener(ln, srv.TLSConfig)
		scheme = "https"
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("http server stopped", "err", err)
		}
	}()
	stop := func() {
		_ = srv.Close() // ends Serve and every connection
		<-done
	}
	return scheme + "://" + ln.Addr().String(), stop, nil
}

// printDM prints device-management messages: "15:04:05.000  topic  payload".
func printDM(ctx context.Context, w io.Writer, msgs <-chan platform.Message) {
	for {
		select {
		case <-ctx.Done():
			return
		case m, ok := <-msgs:
			if !ok {
				return
			}
			fmt.Fprintf(w, "%s  %s  %s\n", m.Time.Format("15:04:05.000"), m.Topic, m.Payload)
		}
	}
}

// cmdPlatformSend sends one command to a device as an application (a:
// client with an API key), the way the platform's applications do, and
// waits for the broker's acknowledgement.
func cmdPlatformSend(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("platform send", stderr)
	broker := fs.String("broker", "tcp://127.0.0.1:1883", "the platform's MQTT address")
	org := fs.String("org", "", "organisation id")
	app := fs.String("app", "cli", "application id")
	key := fs.String("key", "", "API key (a-<org>-...), from the registry's apikey line")
	token := fs.String("token", "", "API token")
	typ := fs.String("type", "", "device type")
	id := fs.String("id", "", "device id")
	command := fs.String("command", "", "command id")
	format := fs.String("format", "json", "format segment of the topic")
	payload := fs.String("payload", "{}", "the command's payload")
	timeout := fs.Duration("timeout", 10*time.Second, "give up after this long")
	wait := fs.Bool("wait", false, "wait for the device's command result event and print it (adds a reqId to a JSON payload without one)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	topic, err := platform.CommandTopic(*typ, *id, *command, *format)
	if err != nil || *org == "" || *key == "" {
		return fmt.Errorf("give -org, -key, -token, -type, -id and -command (%v): %w", err, errConfig)
	}
	body := []byte(*payload)
	up := make(chan error, 1)
	lc := uplink.Config{
		Broker: *broker, ClientID: "a:" + *org + ":" + *app, Username: *key, Password: *token, QoS: 1, CleanSession: true,
		OnStateChange: func(connected bool, err error) {
			select {
			case up <- err: // nil when connected
			default:
			}
		},
	}
	var results chan []byte
	reqID := ""
	if *wait {
		body, reqID = withReqID(body)
		results = make(chan []byte, 16)
		lc.Subscriptions = []uplink.Subscription{{Filter: "iot-2/type/" + *typ + "/id/" + *id + "/evt/" + mapping.CommandEvent + "/fmt/json", QoS: 1}}
		lc.Handler = uplink.HandlerFunc(func(_ context.Context, _ string, p []byte) error {
			select {
			case results <- append([]byte(nil), p...):
			default:
			}
			return nil
		})
	}
	link, err := uplink.New(lc, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return fmt.Errorf("%v: %w", err, errConfig)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- link.Run(ctx) }()
	defer func() { cancel(); <-done }()
	select {
	case err := <-up:
		if err != nil {
			return fmt.Errorf("connect to %s: %w", *broker, err)
		}
	case <-ctx.Done():
		return fmt.Errorf("connect to %s: %w", *broker, ctx.Err())
	}
	if err := <-link.Publish(ctx, topic, body); err != nil {
		return fmt.Errorf("send %s: %w", topic, err)
	}
	fmt.Fprintf(stdout, "sent %s %s\n", topic, body)
	if !*wait {
		return nil
	}
	for {
		select {
		case p := <-results:
			if !isResultFor(p, *command, reqID) {
				continue
			}
			fmt.Fprintf(stdout, "result %s\n", p)
			var ev struct{ D struct{ OK bool } }
			if json.Unmarshal(p, &ev) == nil && !ev.D.OK {
				return fmt.Errorf("the device refused the command")
			}
			return nil
		case <-ctx.Done():
			return fmt.Errorf("no result for %s within %v: %w", topic, *timeout, ctx.Err())
		}
	}
}

// withReqID adds a reqId to a JSON object payload that has none, so that
// its result can be told from others; other payloads are left alone.
func withReqID(payload []byte) ([]byte, string) {
	var obj map[string]json.RawMessage
	if json.Unmarshal(payload, &obj) != nil || obj == nil {
		return payload, ""
	}
	if raw, ok := obj["reqId"]; ok {
		var id string
		json.Unmarshal(raw, &id)
		return payload, id
	}
	id := fmt.Sprintf("cli-%d", time.Now().UnixNano())
	obj["reqId"], _ = json.Marshal(id)
	out, err := json.Marshal(obj)
	if err != nil {
		return payload, ""
	}
	return out, id
}

// isResultFor reports whether a command event answers command (and reqID,
// when there is one).
func isResultFor(p []byte, command, reqID string) bool {
	var ev struct {
		D struct {
			Command string `json:"command"`
			ReqID   string `json:"reqId"`
		} `json:"d"`
	}
	return json.Unmarshal(p, &ev) == nil && ev.D.Command == command && (reqID == "" || ev.D.ReqID == reqID)
}

// platformActions maps the action words of `bridge platform action` to the
// API's action names; custom actions are <bundle>/<action>.
var platformActions = map[string]string{
	"reboot":            "device/reboot",
	"factory-reset":     "device/factoryReset",
	"firmware-download": "firmware/download",
	"firmware-update":   "firmware/update",
	"update":            "update",
	"observe":           "observe",
	"cancel":            "cancel",
	"custom":            "",
}

// fieldFlags collects repeated -field flags.
type fieldFlags []string

func (f *fieldFlags) String() string     { return strings.Join(*f, " ") }
func (f *fieldFlags) Set(v string) error { *f = append(*f, v); return nil }

// cmdPlatformAction starts a device-management action on a running `bridge
// platform` through its HTTP API (platform.APIHandler), as an application
// with an API key, waits for the end and prints the device's answers.
func cmdPlatformAction(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("platform action", stderr)
	api := fs.String("api", "http://127.0.0.1:8080", "the platform's HTTP address (bridge platform -http)")
	key := fs.String("key", "", "API key (a-<org>-...), from the registry's apikey line")
	token := fs.String("token", "", "API token")
	typ := fs.String("type", "", "device type")
	id := fs.String("id", "", "device id")
	timeout := fs.Duration("timeout", time.Minute, "how long the device has to finish")
	caFile := fs.String("ca", "", "CA certificate (PEM) to trust for the platform's HTTPS (default: the system's)")
	fs.Usage = func() {
		fmt.Fprint(stderr, `usage: bridge platform action -key K -token T -type T -id D ACTION [action flags]
actions: reboot | factory-reset | firmware-download -uri U [-verifier V -name N -version X] |
         firmware-update [-uri ...] | update -field name=jsonvalue ... | observe -field f ... |
         cancel -field f ... | custom -bundle B -action A [-field k=v ...]
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errConfig
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return fmt.Errorf("an action is required: %w", errConfig)
	}
	word := fs.Arg(0)
	action, ok := platformActions[word]
	if !ok {
		return fmt.Errorf("unknown action %q (want reboot, factory-reset, firmware-download, firmware-update, update, observe, cancel or custom): %w", word, errConfig)
	}
	req, err := parseActionFlags(word, action, fs.Args()[1:], stderr)
	if err != nil {
		return err
	}
	if *typ == "" || *id == "" || *key == "" {
		return fmt.Errorf("give -key, -token, -type and -id: %w", errConfig)
	}
	req.Devices = []platform.APIDevice{{TypeID: *typ, DeviceID: *id}}
	req.Timeout = int(max(1, min(3600, timeout.Seconds())))
	client := &http.Client{Timeout: *timeout + 10*time.Second}
	if *caFile != "" {
		pem, err := os.ReadFile(*caFile)
		pool := x509.NewCertPool()
		if err != nil || !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("-ca %s: no PEM certificate (%v): %w", *caFile, err, errConfig)
		}
		client.Transport = &http.Transport{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}}
	}
	res, err := postAction(ctx, client, *api, *key, *token, req)
	if err != nil {
		return err
	}
	printActionResult(stdout, res)
	if !actionSucceeded(res) {
		return fmt.Errorf("%s of %s/%s did not succeed", res.Action, res.TypeID, res.DeviceID)
	}
	return nil
}

// parseActionFlags parses the flags after the action word into a request.
func parseActionFlags(word, action string, args []string, stderr io.Writer) (platform.APIRequest, error) {
	fs := newFlagSet("platform action "+word, stderr)
	var fields fieldFlags
	uri := fs.String("uri", "", "firmware: URI of the image")
	verifier := fs.String("verifier", "", "firmware: checksum of the image")
	name := fs.String("name", "", "firmware: name")
	version := fs.String("version", "", "firmware: version")
	bundle := fs.String("bundle", "", "custom: extension bundle id")
	act := fs.String("action", "", "custom: action id")
	fs.Var(&fields, "field", "update: name=jsonvalue; observe, cancel: name; custom: name=value (repeatable)")
	if err := parseFlags(fs, args); err != nil {
		return platform.APIRequest{}, err
	}
	req := platform.APIRequest{Action: action}
	firmware := strings.HasPrefix(action, "firmware/")
	switch {
	case !firmware && (*uri != "" || *verifier != "" || *name != "" || *version != ""):
		return req, fmt.Errorf("-uri, -verifier, -name and -version belong to firmware actions: %w", errConfig)
	case word != "custom" && (*bundle != "" || *act != ""):
		return req, fmt.Errorf("-bundle and -action belong to custom: %w", errConfig)
	case firmware && len(fields) > 0:
		return req, fmt.Errorf("firmware actions take -uri, -verifier, -name and -version, not -field: %w", errConfig)
	case word == "custom" && (*bundle == "" || *act == ""):
		return req, fmt.Errorf("custom needs -bundle and -action: %w", errConfig)
	case (word == "update" || word == "observe" || word == "cancel") && len(fields) == 0:
		return req, fmt.Errorf("%s needs at least one -field: %w", word, errConfig)
	}
	if word == "custom" {
		req.Action = *bundle + "/" + *act
	}
	for _, p := range []struct{ n, v string }{{"uri", *uri}, {"verifier", *verifier}, {"name", *name}, {"version", *version}} {
		if p.v != "" {
			req.Parameters = append(req.Parameters, platform.APIParameter{Name: p.n, Value: p.v})
		}
	}
	for _, f := range fields {
		n, v, hasValue := strings.Cut(f, "=")
		switch {
		case word == "observe" || word == "cancel":
			if hasValue {
				return req, fmt.Errorf("-field %q: %s takes attribute names only: %w", f, word, errConfig)
			}
		case !hasValue:
			return req, fmt.Errorf("-field %q: want name=value: %w", f, errConfig)
		case word == "update" && !json.Valid([]byte(v)):
			return req, fmt.Errorf("-field %q: the value must be JSON (a string is \"...\"): %w", f, errConfig)
		}
		req.Parameters = append(req.Parameters, platform.APIParameter{Name: n, Value: v})
	}
	return req, nil
}

// postAction sends req to the platform's API and decodes the result.
func postAction(ctx context.Context, client *http.Client, api, key, token string, req platform.APIRequest) (platform.APIResult, error) {
	var res platform.APIResult
	body, _ := json.Marshal(req) // cannot fail
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(api, "/")+platform.APIPath, bytes.NewReader(body))
	if err != nil {
		return res, fmt.Errorf("-api %q: %v: %w", api, err, errConfig)
	}
	hreq.SetBasicAuth(key, token)
	hreq.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(hreq)
	if err != nil {
		return res, fmt.Errorf("reach the platform: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return res, fmt.Errorf("read the platform's answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e platform.APIError
		if json.Unmarshal(b, &e) != nil || e.Message == "" {
			e.Message = strings.TrimSpace(string(b))
		}
		return res, fmt.Errorf("platform answered %s: %s", resp.Status, e.Message)
	}
	if err := json.Unmarshal(b, &res); err != nil {
		return res, fmt.Errorf("platform's answer is not a result: %v", err)
	}
	return res, nil
}

// printActionResult prints the device's answers, and for a firmware action
// every step and the observed state transitions.
func printActionResult(w io.Writer, r platform.APIResult) {
	fmt.Fprintf(w, "%s %s/%s: rc %d", r.Action, r.TypeID, r.DeviceID, r.RC)
	if r.Message != "" && r.Firmware == nil {
		fmt.Fprintf(w, " %s", r.Message)
	}
	fmt.Fprintln(w)
	for _, f := range r.Fields {
		fmt.Fprintf(w, "  field %s = %s\n", f.Field, f.Value)
	}
	fw := r.Firmware
	if fw == nil {
		return
	}
	initiate := fmt.Sprint(fw.InitiateRC)
	if fw.InitiateMessage != "" {
		initiate += " (" + fw.InitiateMessage + ")"
	}
	fmt.Fprintf(w, "  update rc %d, observe rc %d, initiate rc %s, cancel rc %d\n",
		fw.UpdateRC, fw.ObserveRC, initiate, fw.CancelRC)
	for _, t := range fw.Transitions {
		fmt.Fprintf(w, "  mgmt.firmware state %d (%s) updateStatus %d (%s)\n",
			t.State, firmwareStateNames[t.State], t.UpdateStatus, updateStatusNames[t.UpdateStatus])
	}
	result := "failed"
	if fw.Succeeded {
		result = "succeeded"
	}
	fmt.Fprintf(w, "  %s: %s\n", result, fw.Message)
}

var (
	firmwareStateNames = map[int]string{0: "idle", 1: "downloading", 2: "downloaded"}
	updateStatusNames  = map[int]string{0: "success", 1: "in progress", 2: "out of memory", 3: "connection lost",
		4: "verification failed", 5: "unsupported image", 6: "invalid URI"}
)

// actionSucceeded: a firmware action that succeeded, or a device answer of
// 200, 202 or 204.
func actionSucceeded(r platform.APIResult) bool {
	if r.Firmware != nil {
		return r.Firmware.Succeeded
	}
	return r.RC == platform.RCOK || r.RC == platform.RCAccepted || r.RC == platform.RCChanged
}
