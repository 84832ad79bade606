platform {
  org = "ab12cd"
}
bus "rs485" {
  modbus_tcp { address = "127.0.0.1:502" }
}
device_type "meter" {
  point "v" {
    table   = "input"
    address = 0
    type    = "uint16"
  }
}
device "m1" {
  type  = "meter"
  bus   = "rs485"
  token = "secret-token"
  max_gap = 500
  point "voltage" {
    scale = 0.1
  }
  point "v" {
    type = "float32"
    bit  = 2
  }
}
