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
  type = "meter"
  bus  = "rs485"
}
device "m2" {
  type  = "meter"
  bus   = "rs485"
  unit  = 2
  token = env("FIELDBRIDGE_TEST_UNSET_TOKEN")
}
