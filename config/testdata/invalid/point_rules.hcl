platform {
  org = "ab12cd"
}
bus "rs485" {
  modbus_tcp { address = "127.0.0.1:502" }
}
device_type "drive" {
  point "name" {
    table    = "holding"
    address  = 0
    type     = "string"
    length   = 8
    deadband = 1
  }
  point "mode" {
    table   = "holding"
    address = 10
    type    = "float32"
    enum    = { 0 = "off", 1 = "on" }
  }
  point "state" {
    table   = "holding"
    address = 12
    type    = "uint16"
    enum    = { zero = "off" }
  }
  point "speed" {
    table    = "holding"
    address  = 20
    type     = "uint16"
    writable = true
  }
  point "speed_hi" {
    table    = "holding"
    address  = 20
    type     = "int16"
    writable = true
  }
  point "hidden" {
    table   = "input"
    address = 101
    type    = "uint16"
  }
  unreadable {
    table   = "input"
    address = 100
    count   = 10
  }
}
