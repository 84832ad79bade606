platform {
  org = "ab12cd"
}
bus "rs485" {
  modbus_tcp { address = "127.0.0.1:502" }
}
device_type "meter" {
  point "flow" {
    table   = "coil"
    address = 0
    type    = "float32"
  }
  point "mode" {
    table   = "holding"
    address = 1
    type    = "float32"
    bit     = 3
  }
  point "name" {
    table   = "holding"
    address = 4
    type    = "string"
  }
}
