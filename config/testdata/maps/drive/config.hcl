# A variable-speed drive: a bit-packed status word, a BCD fault code, a
# state enumeration, a firmware string, and a speed setpoint that a device
# overrides (this drive reports rpm * 10).
platform {
  org = "ab12cd"
}
bus "line" {
  modbus_tcp { address = "127.0.0.1:502" }
}
device_type "vsd" {
  point "ready"   {
    table   = "holding"
    address = 0
    type    = "bool"
    bit     = 0
  }
  point "running" {
    table   = "holding"
    address = 0
    type    = "bool"
    bit     = 1
  }
  point "fault" {
    table   = "holding"
    address = 0
    type    = "bool"
    bit     = 3
  }
  point "status_word" {
    table   = "holding"
    address = 0
    type    = "uint16"
  }
  point "fault_code" {
    table   = "holding"
    address = 1
    type    = "bcd16"
  }
  point "state" {
    table   = "holding"
    address = 2
    type    = "uint16"
    enum    = { 0 = "stopped", 1 = "accelerating", 2 = "running", 3 = "braking" }
  }
  point "firmware" {
    table   = "holding"
    address = 10
    type    = "string"
    length  = 4
  }
  point "speed_rpm" {
    table   = "holding"
    address = 20
    type    = "int16"
  }
  point "run_hours" {
    table   = "input"
    address = 0
    type    = "bcd32"
  }
  event "state" {
    points = ["ready", "running", "fault", "status_word", "fault_code", "state"]
  }
  event "info" {
    points = ["firmware", "run_hours", "speed_rpm"]
  }
}
device "vsd-3" {
  type  = "vsd"
  bus   = "line"
  unit  = 3
  token = "vsd-3-token"
  point "speed_rpm" {
    scale = 0.1
  }
}
