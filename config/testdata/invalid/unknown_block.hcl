platform {
  org = "ab12cd"
}
bus "rs485" {
  modbus_tcp { address = "127.0.0.1:502" }
}
devise "m1" {
  type = "meter"
}
