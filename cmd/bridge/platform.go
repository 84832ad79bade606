package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"time"

	"fieldbridge/mapping"
	"fieldbridge/platform"
	"fieldbridge/uplink"
)

func cmdPlatform(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "send" {
		return cmdPlatformSend(ctx, args[1:], stdout, stderr)
	}
	fs := newFlagSet("platform", stderr)
	org := fs.String("org", "", "organisation id the platform serves (\"quickstart\" for quickstart mode)")
	addr := fs.String("listen", "127.0.0.1:1883", "MQTT listen address")
	registry := fs.String("devices", "", "registry file of devices, gateways and tokens (see README)")
	show := fs.Bool("print", true, "print every event as it arrives")
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
	if cfg.Org == "" {
		return fmt.Errorf("-org is required: %w", errConfig)
	}
	p, err := platform.New(cfg, logger.With("component", "platform"))
	if err != nil {
		return fmt.Errorf("%v: %w", err, errConfig)
	}
	if err := p.Start(); err != nil {
		return fmt.Errorf("%v: %w", err, errConfig)
	}
	logger.Info("platform listening", "address", p.Addr(), "org", cfg.Org)
	if *show {
		events, err := p.Subscribe("iot-2/type/+/id/+/evt/+/fmt/+")
		if err != nil {
			return err
		}
		defer events.Close()
		go printEvents(ctx, stdout, events.C)
	}
	<-ctx.Done()
	return p.Close()
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
