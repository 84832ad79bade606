# What the platform would refuse later (protocol.md §1.2, §12), found at validate time.
platform {
  org = "ab12cd"
}
bus "line1" {
  modbus_tcp { address = "127.0.0.1:502" }
}
device_type "meter" {
  point "v" {
    table   = "input"
    address = 0
    type    = "uint16"
  }
}
device_type "power meter" {
  point "v" {
    table   = "input"
    address = 0
    type    = "uint16"
  }
}
device "short-token" {
  type  = "meter"
  bus   = "line1"
  unit  = 1
  token = "1234567"
}
device "long-token" {
  type  = "meter"
  bus   = "line1"
  unit  = 2
  token = "0123456789012345678901234567890123456"
}
device "token-with-space" {
  type  = "meter"
  bus   = "line1"
  unit  = 3
  token = "meter token"
}
device "token-with-hash" {
  type  = "meter"
  bus   = "line1"
  unit  = 4
  token = "meter#token"
}
device "good-token" {
  type  = "meter"
  bus   = "line1"
  unit  = 5
  token = "Ab_.!&@?*+()-9"
}
device "same-unit" {
  type  = "meter"
  bus   = "line1"
  unit  = 5
  token = "secret-token"
}
device "meter.7" {
  type  = "meter"
  bus   = "line1"
  unit  = 7
  token = "secret-token"
}
device "meter/8" {
  type  = "power meter"
  bus   = "line1"
  unit  = 8
  token = "secret-token"
}
device "a-device-id-longer-than-thirty-six-chars" {
  type  = "meter"
  bus   = "line1"
  unit  = 9
  token = "secret-token"
}
device "default-unit-1" {
  type  = "meter"
  bus   = "line1"
  token = "secret-token"
}
