platform {
  org  = "ab12cd"
  mode = "gatway"
}
buffer {
  on_full   = "drop_olest"
  max_bytes = "lots"
  sync      = "sometimes"
}
bus "rs485" {
  modbus_tcp { address = "127.0.0.1" }
}
device_type "meter" {
  point "v" {
    table      = "holdings"
    address    = 0
    type       = "flaot32"
  }
  point "w" {
    table      = "holding"
    address    = 2
    type       = "float32"
    byte_order = "ABDC"
  }
  event "reading" {
    points   = ["v", "x"]
    interval = "ten seconds"
  }
}
