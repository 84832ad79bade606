platform {
  org = "ab12cd"
}
bus "rs485" {
  modbus_tcp { address = "127.0.0.1:502" }
  write_multiple = true
}
bus "line" {
  serial_line {
    port      = "/dev/ttyUSB0"
    delimiter = "\r\n"
    separator = ","
  }
  write_multiple = true
}
device_type "drive" {
  point "speed" {
    table    = "holding"
    address  = 0
    type     = "uint16"
    writable = true
    min      = 0
    max      = 1500
  }
  point "mode" {
    table    = "holding"
    address  = 1
    type     = "uint16"
    writable = true
    enum     = { 0 = "off", 1 = "auto" }
  }
  point "temp" {
    table   = "input"
    address = 0
    type    = "int16"
  }
  command "set_speed" {
    write "sped" { value = "$.d.value" }
    write "temp" { value = 1 }
    write "speed" { value = "$.d..value" }
  }
  command "bad_literals" {
    write "speed" { value = 2000 }
    write "mode" { value = "manual" }
    write "speed" { value = 12.5 }
    write "speed" { value = true }
    timeout = "soon"
  }
  command "nothing" {
    readback = true
  }
  command "text" {
    send = "SP {$.d.value}\r\n"
  }
  command "set_speed" {
    write "speed" { value = 1 }
  }
}
device_type "scale" {
  point "weight" {
    column = 1
  }
  command "tare" {
    send     = "T {$.d.}\r\n"
    readback = true
  }
  command "zero" {
    write "weight" { value = 0 }
  }
}
