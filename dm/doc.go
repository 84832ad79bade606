// Package dm implements device management for the bridge: the platform's
// Device Management Protocol (iotdm-1 requests, iotdevice-1 responses,
// protocol.md §7–§8) and the commands that arrive on iot-2/cmd topics.
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
//     appear and cleared when they go, and log entries for transitions and
//     action results.
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
// timeout. Commands go through a CommandRunner.
//
// Place in the pipeline: uplink hands inbound iotdm-1 messages (through the
// router that cmd/bridge wires) to Agent.HandleRequest; the agent publishes
// through a Publisher per device (*uplink.Client), runs commands through a
// CommandRunner (the command executor, which writes through the bus loops)
// and hooks itself. cmd/bridge feeds NoteReading and SetDeviceInfo from the
// bus loops.
//
// Imports: only adapters (value types). It must not import uplink, buffer,
// mapping, config, adapters/* implementations, badger or paho.
//
// Concurrency: every Agent method is safe for concurrent use; HandleRequest,
// Connected, NoteReading and SetDeviceInfo never block. Run owns one
// manager goroutine and one worker goroutine per device (each device's
// requests are answered in order, one at a time, from a queue of
// Config.QueueSize; beyond it rc 409) plus the firmware and post-answer
// jobs, and returns when its context ends, after the Unmanage requests.
package dm
