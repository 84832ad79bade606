// Package dm implements device management for the bridge: the platform's
// Device Management Protocol (iotdm-1 requests, iotdevice-1 responses) and
// the commands that arrive on iot-2/cmd topics, decoded, validated, routed to
// the writes the mapping defines, and answered.
//
// Place in the pipeline: uplink hands inbound messages to a dm.Mux; the Mux
// asks a Translator (the mapping) for register writes and a RegisterWriter
// (the bus loops) to run them, and publishes the response.
//
// Imports: only adapters (value types). It must not import uplink, buffer,
// mapping, adapters/* implementations, badger or paho.
//
// Not built yet: commands and device management come in a later issue. The
// package exists so that the layout of design.md §1 is in place.
package dm
