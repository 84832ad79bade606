platform {
  org = "ab12cd"
}
bus "rs485" {
  modbus_rtu {
    port      = "/dev/ttyUSB0"
    baud      = 19200
    parity    = "evn"
    stop_bits = 3
  }
}
bus "both" {
  modbus_rtu { port = "/dev/ttyUSB1" }
  modbus_tcp { address = "10.0.0.5:502" }
}
bus "scale" {
  serial_line {
    port      = "/dev/ttyUSB2"
    delimiter = "\r\n"
    regexp    = "(?P<weight>[0-9.]+"
  }
}
device_type "scale" {
  point "weight" {
    field   = "weight"
    address = 4
  }
}
device_type "meter" {
  point "v" {
    table   = "input"
    address = 0
    type    = "uint16"
  }
}
device "s1" {
  type  = "meter"
  bus   = "scale"
  token = "secret-token"
}
