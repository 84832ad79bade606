# Gateway mode: the gateway's token and ids follow the platform's rules; the
# devices' own tokens are unused and not checked.
platform {
  org  = "ab12cd"
  mode = "gateway"
  gateway {
    type  = "edge gw"
    id    = "gw.01"
    token = "gw-tok"
  }
}
bus "line1" {
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
  bus  = "line1"
}
