platform {
  org = "ab12cd"
}
bus "rs485" {
  modbus_tcp { address = "127.0.0.1:502" }
}
device_type "power-meter" {
  point "v" {
    table   = "input"
    address = 0
    type    = "uint16"
  }
}
device "m1" {
  type  = "power-meter"
  bus   = "rs458"
  token = "secret-token"
}
device "m2" {
  type  = "power-meters"
  bus   = "rs485"
  token = "secret-token"
}
