platform {
  org = "ab12cd"
}
bus "rs485" {
  modbus_tcp { address = "127.0.0.1:502" }
}
device_type "meter" {
  point "power" {
    table   = "holding"
    address = 10
    type    = "float32"
  }
  point "power_raw" {
    table   = "holding"
    address = 11
    type    = "uint16"
  }
  point "status_word" {
    table   = "holding"
    address = 20
    type    = "uint16"
  }
  point "running" {
    table   = "holding"
    address = 20
    type    = "bool"
    bit     = 0
  }
}
