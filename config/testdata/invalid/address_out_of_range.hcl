platform {
  org = "ab12cd"
}
bus "rs485" {
  modbus_tcp { address = "127.0.0.1:502" }
}
device_type "meter" {
  point "a" {
    table   = "holding"
    address = 40001
    type    = "uint16"
  }
  point "b" {
    table   = "holding"
    address = 65535
    type    = "float32"
  }
  point "c" {
    table   = "holding"
    address = 70000
    type    = "uint16"
  }
}
