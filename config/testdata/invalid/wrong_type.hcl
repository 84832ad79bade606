platform {
  org = "ab12cd"
}
bus "rs485" {
  modbus_tcp { address = "127.0.0.1:502" }
}
device_type "meter" {
  point "v" {
    table   = "input"
    address = "zero"
    type    = "uint16"
  }
}
