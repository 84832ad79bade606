// Package dm is the bridge's device management: the commands that arrive on
// iot-2 cmd topics and the routing of the platform's Device Management
// Protocol requests (iotdm-1 topics) to their handler.
//
// It owns:
//   - Mux: routes a connection's inbound messages by topic, commands
//     (device form iot-2/cmd/<c>/fmt/<f>, gateway form
//     iot-2/type/<t>/id/<d>/cmd/<c>/fmt/<f>, the gateway itself included) to
//     a CommandHandler, device-management requests (iotdm-1/<rest>,
//     iotdm-1/type/<t>/id/<d>/<rest>) to a RequestHandler;
//   - Executor: runs commands. Each device has a bounded queue and a worker,
//     so a flood of commands never blocks the connection or polling, and one
//     device never delays another's commands. A command whose queue is full
//     (16 commands, 8 MiB of payloads over all devices) or whose payload is
//     over 128 KiB is refused at once (one log line per
//     N refusals); a command redelivered with a reqId already taken is not
//     run twice (a bounded memory of ids per device). Every other command
//     gets exactly one Result: planned (Planner), written in order and read
//     back on the bus owner (FieldIO), published (ResultPublisher). A write
//     whose outcome is unknown (timeout) is reported as such and never
//     retried. RunCommand runs a command synchronously for the
//     device-management agent (reboot, factory reset, custom actions);
//   - Result: the `command` event's payload.
//
// Place in the pipeline: uplink hands inbound messages to a Mux
// (cmd/bridge wires one per device connection in device mode, one for the
// gateway connection in gateway mode); the Executor asks a Planner
// (cmd/bridge, on top of mapping) for the writes, runs them through the bus
// loops (adapters.Loop), and hands each Result to a ResultPublisher
// (cmd/bridge appends it to the buffer on a queue of its own per device, so
// results never wait behind readings).
//
// Imports: only adapters (value types). It must not import uplink, buffer,
// mapping, config, adapters/* implementations, badger or paho.
//
// Concurrency: Mux.HandleMessage and Executor.HandleCommand are called on a
// connection's dispatch goroutine and never block on the bus. Executor.Run
// owns the worker goroutines and returns when its context ends.
package dm
