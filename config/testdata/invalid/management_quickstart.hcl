platform {
  org = "quickstart"
}
management {
}
bus "b" {
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
  type = "meter"
  bus  = "b"
}
