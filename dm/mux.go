package dm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
)

// MaxInbound is the largest inbound message the bridge acts on: 128 KiB.
// A larger command is refused with a result; its payload is not kept.
const MaxInbound = 128 << 10

// RequestHandler receives device-management requests: topics
// iotdm-1/<rest> (device mode, for the connection's own device) and
// iotdm-1/type/<t>/id/<d>/<rest> (gateway mode). rest is the part after
// the device, for example "mgmt/initiate/device/reboot" or "response".
// It is called on the connection's dispatch goroutine: it must not block
// for long, and must not keep payload after it returned.
type RequestHandler interface {
	HandleRequest(ctx context.Context, deviceType, deviceID, rest string, payload []byte)
}

// CommandHandler receives commands, one at a time, on the connection's
// dispatch goroutine. It must not block for long; *Executor queues them.
// It must not keep c.Payload after it returned.
type CommandHandler interface {
	HandleCommand(ctx context.Context, c Command)
}

// Command is a command as it arrived: whom it is for and what it says.
type Command struct {
	DeviceType string
	DeviceID   string
	Name       string // the command id of the topic
	Format     string // the format segment of the topic, usually "json"
	Payload    []byte
}

// MuxConfig configures a Mux.
type MuxConfig struct {
	// SelfType and SelfID are the identity of the connection the Mux
	// serves: the device in device mode, the gateway in gateway mode.
	// Device-form topics (iot-2/cmd/..., iotdm-1/...) are for it.
	SelfType, SelfID string
	// Commands receives every command. Required.
	Commands CommandHandler
	// Requests receives device-management requests; nil ignores them.
	Requests RequestHandler
}

// Mux routes what a connection receives: commands to a CommandHandler,
// device-management requests to a RequestHandler. It implements the
// uplink's handler shape (HandleMessage) and is safe for concurrent use.
type Mux struct {
	cfg    MuxConfig
	logger *slog.Logger
}

// errUnknownTopic is returned for a topic the Mux does not route.
var errUnknownTopic = errors.New("dm: topic is neither a command nor a device-management request")

// NewMux checks cfg and returns a Mux.
func NewMux(cfg MuxConfig, logger *slog.Logger) (*Mux, error) {
	if cfg.Commands == nil {
		return nil, errors.New("dm: MuxConfig.Commands is required")
	}
	if cfg.SelfType == "" || cfg.SelfID == "" {
		return nil, errors.New("dm: MuxConfig.SelfType and SelfID are required")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Mux{cfg: cfg, logger: logger}, nil
}

// HandleMessage routes one inbound message by its topic:
//
//	iot-2/cmd/<c>/fmt/<f>                      command for the connection's own identity
//	iot-2/type/<t>/id/<d>/cmd/<c>/fmt/<f>      command for <t>/<d> (gateway mode; the gateway itself too)
//	iotdm-1/<rest>                             DM request for the connection's own identity
//	iotdm-1/type/<t>/id/<d>/<rest>             DM request for <t>/<d> (gateway mode)
//
// It returns an error only for a topic it does not know; the message is
// then dropped. payload is not kept after HandleMessage returned.
func (m *Mux) HandleMessage(ctx context.Context, topic string, payload []byte) error {
	parts := strings.Split(topic, "/")
	switch {
	case len(parts) == 5 && parts[0] == "iot-2" && parts[1] == "cmd" && parts[3] == "fmt":
		m.cfg.Commands.HandleCommand(ctx, Command{DeviceType: m.cfg.SelfType, DeviceID: m.cfg.SelfID, Name: parts[2], Format: parts[4], Payload: payload})
		return nil
	case len(parts) == 9 && parts[0] == "iot-2" && parts[1] == "type" && parts[3] == "id" && parts[5] == "cmd" && parts[7] == "fmt":
		m.cfg.Commands.HandleCommand(ctx, Command{DeviceType: parts[2], DeviceID: parts[4], Name: parts[6], Format: parts[8], Payload: payload})
		return nil
	case len(parts) >= 6 && parts[0] == "iotdm-1" && parts[1] == "type" && parts[3] == "id":
		m.request(ctx, parts[2], parts[4], strings.Join(parts[5:], "/"), payload)
		return nil
	case len(parts) >= 2 && parts[0] == "iotdm-1":
		m.request(ctx, m.cfg.SelfType, m.cfg.SelfID, strings.Join(parts[1:], "/"), payload)
		return nil
	}
	return fmt.Errorf("%w: %q", errUnknownTopic, topic)
}

func (m *Mux) request(ctx context.Context, typ, id, rest string, payload []byte) {
	if m.cfg.Requests == nil {
		m.logger.Debug("device-management request ignored: no handler", "type", typ, "device", id, "request", rest)
		return
	}
	if len(payload) > MaxInbound {
		m.logger.Warn("device-management request refused: too large", "type", typ, "device", id, "request", rest, "bytes", len(payload))
		return
	}
	m.cfg.Requests.HandleRequest(ctx, typ, id, rest, payload)
}
