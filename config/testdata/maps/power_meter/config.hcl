# A three-phase meter documented the usual way: "30001 Voltage L1-N, float,
# low word first", "30013 Total active energy, 32-bit unsigned, 0.01 kWh",
# "30021 Frequency, 16-bit, 0.01 Hz", "30023 Serial number, 64-bit".
platform {
  org = "ab12cd"
}
bus "rs485" {
  modbus_tcp { address = "127.0.0.1:502" }
}
device_type "power-meter" {
  point "voltage_l1" {
    table      = "input"
    address    = 0
    type       = "float32"
    byte_order = "CDAB"
  }
  point "voltage_l2" {
    table      = "input"
    address    = 2
    type       = "float32"
    byte_order = "CDAB"
  }
  point "current_l1" {
    table      = "input"
    address    = 6
    type       = "float32"
    byte_order = "CDAB"
    decimals   = 2
  }
  point "energy_kwh" {
    table   = "input"
    address = 12
    type    = "uint32"
    scale   = 0.01
  }
  point "frequency_hz" {
    table   = "input"
    address = 20
    type    = "uint16"
    scale   = 0.01
  }
  point "serial" {
    table      = "input"
    address    = 22
    type       = "uint64"
    byte_order = "GHEFCDAB"
  }
  point "power_factor" {
    table   = "input"
    address = 30
    type    = "int16"
    scale   = 0.001
  }
  event "reading" {
    points = ["voltage_l1", "voltage_l2", "current_l1", "energy_kwh", "frequency_hz", "power_factor"]
  }
  event "nameplate" {
    points = ["serial"]
    on_change = true
  }
}
device "meter-7" {
  type  = "power-meter"
  bus   = "rs485"
  unit  = 7
  token = "meter-7-token"
}
