// Package dm is the bridge's device management: the commands that arrive on
// iot-2 cmd topics, the routing of the platform's Device Management
// Protocol requests (iotdm-1 topics), and the device-management agent that
// answers them (protocol.md §7–§8).
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
//   - Result: the `command` event's payload;
//   - Agent: the device-management agent, the RequestHandler the Muxes
//     call (below).
//
// # Device-management agent
//
// Agent manages every configured field device with the platform, and in
// gateway mode the gateway itself, in device form (relative topics on the
// device's own connection) or gateway form (iotdevice-1/type/<t>/id/<i>/...
// on the gateway's connection):
//
//   - Manage on connect (Connected), with supports (deviceActions when
//     reboot or factory reset is mapped, firmwareActions when firmware is,
//     every bundle of its custom actions), deviceInfo (configured, and read
//     from the device through SetDeviceInfo), metadata and lifetime; Manage
//     again RenewBefore the lifetime ends, after a reconnect, after a reboot
//     or factory reset (which completes it on the platform), after a
//     firmware install; Unmanage when Run's context ends. The platform's
//     answers are matched by reqId; a request without rc 200 (or without an
//     answer) is logged and retried with a doubling, jittered wait.
//   - Location, and diagnostics that follow the field faults NoteReading
//     reports: error codes (ErrorCodeUnreachable, ErrorCodeBadFrame,
//     ErrorCodeException + the Modbus exception code) posted when they
//     appear and cleared once they have not been seen for Config.FaultHold
//     (so an intermittent fault does not flap), and log entries for faults
//     that appear and go, reachability transitions and action results.
//   - Platform requests (HandleRequest) answered per §7.8: observe/cancel
//     (notify on every change of an observed value), device/update (204;
//     404 listing unknown attributes; 400 for bad values), reboot and
//     factory reset (202 after the mapped command and/or hook ran, 500 when
//     it failed or the device is known unreachable, 501 when not mapped),
//     firmware download (202, then the image is fetched over https — http
//     only with Config.AllowHTTP — into the staging directory, bounded in
//     size and time, checked against the MD5 or SHA-256 verifier; state and
//     updateStatus as §7.7) and update (202, then the install hook; 400
//     unless downloaded), custom actions mgmt/custom/<bundle>/<action> (200,
//     500, 501; the parameters become the command's {"d": {...}}). A
//     malformed request (not a JSON object, reqId missing or not a string,
//     unknown members, over MaxRequestBytes) is answered 400, an unknown
//     request topic 501.
//
// Hooks (Action.Exec) are argument vectors run without a shell, with
// {type} {id} {device} {file} {version} {name} replaced, killed at their
// timeout. Commands go through a CommandRunner (the Executor).
//
// Place in the pipeline: uplink hands inbound messages to a Mux
// (cmd/bridge wires one per device connection in device mode, one for the
// gateway connection in gateway mode); the Executor asks a Planner
// (cmd/bridge, on top of mapping) for the writes, runs them through the bus
// loops (adapters.Loop), and hands each Result to a ResultPublisher
// (cmd/bridge appends it to the buffer on a queue of its own per device, so
// results never wait behind readings). The Mux hands iotdm-1 messages to
// the Agent, which publishes through a Publisher per device
// (*uplink.Client), runs commands through the Executor and hooks itself;
// cmd/bridge feeds NoteReading and SetDeviceInfo from the bus loops.
//
// Imports: only adapters (value types). It must not import uplink, buffer,
// mapping, config, adapters/* implementations, badger or paho.
//
// Concurrency: Mux.HandleMessage, Executor.HandleCommand and
// Agent.HandleRequest are called on a connection's dispatch goroutine and
// never block on the bus. Executor.Run owns the worker goroutines and
// returns when its context ends. Every Agent method is safe for concurrent
// use; Connected, NoteReading and SetDeviceInfo never block. Agent.Run owns
// one manager and one worker goroutine per device (each device's requests
// answered in order from a queue of Config.QueueSize; beyond it rc 409) plus
// the firmware and post-answer jobs, and returns when its context ends,
// after the Unmanage requests.
package dm
