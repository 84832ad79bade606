platform {
  org = "ab12cd"
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
  type  = "meter"
  bus   = "b"
  token = "token-m1-secret"
  management {
    device_info = { serial_number = "1" }
  }
  point "w" { scale = 2 }
}
device_type "other" {
  management {
    device_info_points = { serial_number = "flag" }
  }
  point "flag" {
    table   = "coil"
    address = 0
    type    = "bool"
  }
}
