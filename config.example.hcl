## fieldbridge configuration reference.
##
## Every setting is shown; commented-out lines (#) give the default.
## Check a file with:   bridge validate -config config.hcl
## Durations are strings ("500ms", "5s", "72h"); sizes too ("256MiB", "2GB").
## Secrets never need to be inline: env("NAME") reads an environment variable
## (env("NAME", "default") gives a fallback), token_file reads a file.

## Where events go: the platform's MQTT service.
platform {
  ## Organisation id assigned by the platform. "quickstart" selects quickstart
  ## mode (no credentials, plain TCP, QoS 0, at most one event per second).
  org = "ab12cd"

  ## device:     one MQTT connection per device, as d:<org>:<type>:<id>
  ## gateway:    one connection as g:<org>:<type>:<id> for all devices
  ## quickstart: the platform's try-out service
  # mode = "device"

  ## The broker is <org>.messaging.<domain> unless host is given.
  # domain = "internetofthings.ibmcloud.com"
  # host   = "broker.example.net"

  ## TLS 1.2+ is on by default (port 8883; 443 for websocket). Plain TCP
  ## (port 1883) only when tls = false. ca_file pins the platform's CA;
  ## otherwise the system roots are used.
  # tls       = true
  # port      = 8883
  # transport = "tcp"         # tcp | websocket
  # ca_file   = "/etc/bridge/messaging.pem"
  # client_cert = "/etc/bridge/client.pem"
  # client_key  = "/etc/bridge/client.key"
  # insecure_skip_verify = false   # never in production; logged as a warning

  ## qos 1 sends every event at least once through the buffer; qos 0 at most once.
  # qos           = 1
  # keepalive     = "60s"
  ## Durable session, so commands sent while the bridge is offline arrive later.
  # clean_session = false

  ## Gateway mode only: the gateway's own identity.
  # gateway {
  #   type  = "edge-gw"
  #   id    = "gw-01"
  #   token = env("GATEWAY_TOKEN")     # or token_file = "/etc/bridge/gw.token"
  #   rate  = 0                         # events/s over the connection; the platform allows 100
  # }
}

## The store-and-forward buffer: every event is on disk before it is sent
## and deleted only when the broker acknowledged it.
buffer {
  dir = "/var/lib/bridge/buffer"
  ## Bounds: when either is reached, on_full decides what goes. max_bytes counts
  ## waiting events; while a backlog drains, the space of the events already
  ## sent is given back only once it is gone, so the database can hold up to
  ## twice max_bytes (sooner when free space falls below 2 x min_free).
  # max_bytes = "256MiB"
  # max_age   = "72h"
  # on_full   = "drop_oldest"   # drop_oldest | drop_newest
  ## Group commit: a power cut loses at most this much; "always" syncs every event.
  # sync      = "1s"
  ## Events sent but not yet acknowledged, per connection.
  # in_flight = 64
  ## Events per second per device while a backlog drains; 0 is unlimited.
  # rate      = 0
  ## Free space to leave on the buffer's file system (at least 16MiB): below
  ## it new events are refused, counted and reported, never written.
  # min_free  = "64MiB"
}

## Device management (the platform's Device Management Protocol). With this
## block every device (and, in gateway mode, the gateway) is managed: on
## connect it sends Manage with what its device type supports, its
## deviceInfo, metadata and location; error codes follow its faults
## (1 unreachable, 2 corrupt replies, 100 + the Modbus exception code) and
## significant events go to its diagnostic log. Reboot, factory reset,
## firmware and custom actions are mapped per device type (management
## block in device_type); an action that is not mapped is answered 501.
## Not available in quickstart mode.
management {
  # enabled  = true
  ## Manage is sent again before the lifetime ends; "0s" means the platform
  ## never marks the devices dormant. Else at least "1h".
  # lifetime = "0s"
  ## Firmware images are downloaded here (https only), checked against the
  ## verifier (MD5 or SHA-256) and then installed by the type's firmware hook.
  # staging_dir       = "/var/lib/bridge/firmware"
  # max_firmware_size = "64MiB"
  # download_timeout  = "10m"
  # allow_http        = false    # plain-http firmware URIs: for tests only
}

## Metrics and health over HTTP, off unless this block is present:
## /metrics (Prometheus text format), /healthz (the process is alive) and
## /readyz (the buffer is open and an uplink is connected, or the buffer is
## within its limits; 503 otherwise), both with a JSON body. The metric names
## are listed in the README ("Metrics and health"). Nothing on it needs a
## password: listen on loopback or a management network only.
# metrics {
#   listen = "127.0.0.1:9273"   # host:port; ":9273" listens on every interface
# }

## A bus is one physical line or TCP endpoint. One goroutine owns it: every
## read and write for every device on it goes through that one owner.
bus "line1" {
  modbus_tcp {
    address = "10.0.0.5:502"
    # timeout = "1s"      # per request; after a timeout the connection is reopened
    # connect_pause = "0s" # silence after connecting, for gateways that need it
  }
  ## Silence between two requests (slow devices, RS-485 converters).
  # pause = "0s"
  ## Unused registers a request may read to join two points (0: only
  ## adjacent points share a request, safe with devices that have holes).
  # max_gap = 0
  ## Registers per request, for devices that accept fewer than 125.
  # max_registers = 125
  ## Commands write one coil with FC5 and one register with FC6, several
  ## with FC15/FC16. Some devices implement only FC15/FC16: then set
  ## write_multiple = true to use them for single values too.
  # write_multiple = false
}

## Modbus RTU on a serial line (RS-485/RS-232). One goroutine owns the
## line: requests for every unit on it take turns, writes go first.
# bus "rs485" {
#   modbus_rtu {
#     port      = "/dev/ttyUSB0"     # or /dev/serial/by-id/...
#     baud      = 19200
#     data_bits = 8
#     parity    = "even"             # none | even | odd
#     stop_bits = 1
#     timeout   = "1s"               # a unit that does not answer costs this once
#     silence   = "0s"               # end-of-frame silence; 0 is 3.5 characters (1.75ms above 19200 baud)
#   }
# }

## Modbus ASCII: the same settings as modbus_rtu (default 7 data bits), no silence.
# bus "ascii" {
#   modbus_ascii { port = "/dev/ttyUSB1" }
# }

## Modbus RTU frames over TCP, for serial device servers.
# bus "gw" {
#   modbus_rtu_tcp { address = "10.0.0.7:4001" }
# }

## An instrument that prints text frames (scales, analysers). Its device
## type's points read fields of the frame (field = "name" or column = N)
## instead of registers.
# bus "scale" {
#   serial_line {
#     port      = "/dev/ttyUSB2"     # or address = "10.0.0.8:4002" (raw TCP port of a device server)
#     baud      = 9600               # 8N1 unless data_bits/parity/stop_bits say otherwise
#     delimiter = "\r\n"             # frames end with this; or length = N (with start = "\x02")
#     # max_length = 256             # a longer delimited frame is dropped and counted as malformed
#     separator = ","                # fields are columns; or regexp = "(?P<weight>[-+0-9.]+) kg"
#     # decimal_comma = false
#     request   = "W{unit}\r\n"      # query mode: sent each poll ({unit} is the device's unit id);
#                                    # without it the instrument prints by itself (push mode)
#     # timeout = "1s"
#     # max_age = "10s"              # push mode: an older frame is stale
#     # simulate_template = "ST,{weight_kg:%+08.2f},kg\r\n"   # what bridge simulate prints (needed with regexp)
#   }
# }
# device_type "scale" {
#   point "weight_kg" {
#     column = 2                     # a number (float64), scale and offset as usual
#   }
#   ## A command for a text instrument sends a request; {$.path} is the
#   ## payload's value at that JSON path (numbers as sent, strings as is);
#   ## {{ and }} are literal braces.
#   command "tare" {
#     send = "T {$.d.channel}\r\n"
#   }
#   point "status" {
#     column = 1
#     type   = "string"
#     length = 2                     # registers, two characters each
#   }
# }

## A device type is a reusable map; many devices share it. Its name is the
## platform device type.
device_type "power-meter" {
  ## What device-management actions do for devices of this type. Each
  ## action runs a command of this type (command = "name", the writes of
  ## a command block), a hook (exec = [...]: a program and its arguments,
  ## run without a shell; {type} {id} {device} are replaced, and for
  ## firmware also {file} {version} {name}), or the command and then the hook.
  management {
    ## deviceInfo sent with Manage: serial_number manufacturer model
    ## device_class description fw_version hw_version descriptive_location.
    device_info = { manufacturer = "MeterCo", fw_version = "3.2" }
    ## deviceInfo attributes read from the device's own registers (the
    ## point's value as text, read every poll); a change sends Manage again.
    device_info_points = { model = "model" }
    reboot {
      exec    = ["/usr/local/bin/power-cycle", "{device}"]
      timeout = "30s"
    }
    factory_reset { command = "remote_reset" }   # a command of this type (below)
    ## Installs a downloaded, verified image: a hook that takes {file}, a
    ## command of this type (a register sequence; its payload is
    ## {"d":{"version","name","uri","verifier","file"}}), or the command and
    ## then the hook. updateStatus 5 when either fails.
    firmware {
      exec    = ["/usr/local/bin/meterco-flash", "--unit", "{device}", "{file}"]
      timeout = "10m"
    }
    ## A custom action of an extension bundle (iotdm-1/mgmt/custom/<bundle>/<action>):
    ## its parameters reach the command as {"d": {"name": "value", ...}}.
    # custom_action "acme-modbus-v1" "rescan" { command = "rescan" }
  }

  ## A point is one value: table (coil | discrete | input | holding), the
  ## zero-based protocol address, and the data type.
  ## Types: bool int16 uint16 int32 uint32 int64 uint64 float32 float64 string bcd16 bcd32
  ## byte_order: ABCD (default), CDAB, BADC, DCBA for 32 bits; ABCDEFGH,
  ## GHEFCDAB, BADCFEHG, HGFEDCBA for 64 bits; AB, BA for 16 bits.
  point "voltage_l1" {
    table      = "input"
    address    = 0
    type       = "float32"
    byte_order = "CDAB"
    unit       = "V"
    ## How bridge simulate animates this point: fixed, counter, sine, random_walk.
    simulate {
      mode   = "sine"
      min    = 225
      max    = 235
      period = "1m"
    }
  }
  point "energy_kwh" {
    table   = "input"
    address = 2
    type    = "uint32"
    ## value = raw * scale + offset; decimals rounds the result.
    scale    = 0.1
    # offset   = 0
    # decimals = 1
    unit     = "kWh"
    simulate {
      mode  = "counter"
      value = 1000
      step  = 0.5
    }
  }
  point "breaker_closed" {
    table   = "discrete"
    address = 0
    type    = "bool"
    simulate {
      mode  = "fixed"
      value = 1
    }
  }
  point "alarm_overvoltage" {
    table   = "holding"
    address = 10
    type    = "bool"
    bit     = 3          # one bit of a register: 0..15
    ## A written bit is a read-modify-write of its register on the bus
    ## owner, so the register's other bits are kept.
    writable = true
  }
  point "setpoint" {
    table    = "holding"
    address  = 100
    type     = "uint16"
    writable = true
    min      = 0
    max      = 1000
    ## On-change events ignore changes within the deadband: an absolute
    ## size, or a percentage of the last value sent.
    deadband = 5
    # deadband_percent = 1
  }
  point "mode" {
    table    = "holding"
    address  = 101
    type     = "uint16"
    writable = true
    ## enum names integer values; the event carries the name, and a command
    ## may write either the name or the number.
    enum     = { 0 = "off", 1 = "local", 2 = "remote" }
  }
  point "model" {
    table   = "holding"
    address = 200
    type    = "string"
    length  = 8          # registers, two characters each; trailing NULs and spaces trimmed
    # byte_order = "BA"  # for devices that put the first character in the low byte
  }

  ## Addresses the device refuses to read: requests never span them.
  unreadable {
    table   = "holding"
    address = 102
    count   = 98
  }

  ## An event is published on iot-2/evt/<name>/fmt/json with the listed points.
  ## Without event blocks, all points go out as one "reading" event per poll.
  event "reading" {
    points   = ["voltage_l1", "energy_kwh", "breaker_closed"]
    ## Least time between two events; unset sends one per poll.
    interval = "10s"
    ## Send only on change, with a heartbeat after max_silence.
    # on_change   = false
    # max_silence = "5m"
  }
  event "alarm" {
    points    = ["alarm_overvoltage", "setpoint", "mode", "model"]
    on_change = true
    max_silence = "5m"
  }

  ## A command arrives on iot-2/cmd/<name>/fmt/json (gateway mode:
  ## iot-2/type/<type>/id/<device>/cmd/<name>/fmt/json) and writes points in
  ## the order of its write blocks. Only writable points can be written.
  ## value is a JSON path into the payload ("$.d.value" reads 42 from
  ## {"d":{"value":42},"reqId":"..."}) or a literal bool, number or string
  ## (an enum name). Every value is checked against the point's type, min,
  ## max and enum before anything is written; scale and offset are undone.
  ## The result goes out as a "command" event:
  ## {"d":{"command":"set_setpoint","reqId":"...","ok":true,"written":{...},"readback":{...}}}
  command "set_setpoint" {
    write "setpoint" { value = "$.d.value" }
    ## Read the written points again afterwards and report what was read.
    readback = true
    ## Bounds the writes and the readback. A write that times out is
    ## reported as "unknown outcome" and never retried.
    # timeout = "5s"
  }
  command "remote_reset" {
    write "alarm_overvoltage" { value = false }
    write "mode" { value = "remote" }
  }
}

## A device is one slave on a bus. Its name is the platform device id: 1 to
## 36 characters of A-Z a-z 0-9 - _ (a dot is allowed by older platform
## versions only, so validate warns about it). Two devices on the same bus and
## unit read the same field device; validate warns about that too.
device "meter-7" {
  type  = "power-meter"
  bus   = "line1"
  unit  = 7
  ## Device mode: each device has its own token (not needed in gateway or quickstart mode):
  ## 8 to 36 characters of A-Z a-z 0-9 _ . ! & @ ? * + ( ) -, as the platform requires.
  token = env("METER7_TOKEN", "change-me-token")
  # token_file = "/etc/bridge/meter-7.token"
  # poll = "5s"
  ## Device management data of this device: deviceInfo attributes (over
  ## the type's), metadata (any object) and a fixed location.
  management {
    device_info = { serial_number = "M7-55321" }
    metadata    = { site = "plant-2", line = 3 }
    location {
      latitude  = 52.3702
      longitude = 4.8952
      # elevation = 2      # metres
      # accuracy  = 15     # metres
    }
  }
  ## The bus's planner limits, for this device only.
  # max_gap       = 0
  # max_registers = 125
  ## Override single attributes of the type's points for this device.
  point "energy_kwh" {
    scale = 0.01
  }
}
