# The configuration `bridge demo` runs: three devices of two types on two
# buses. The demo replaces the bus addresses with its own simulators and the
# broker with its own local platform, so nothing here leaves the machine.
platform {
  org = "demo01"
  tls = false
}

buffer {
  sync = "1s"
}

# Every device is managed by the platform's device management: it sends
# Manage with its deviceInfo and metadata when it connects.
management {
}

bus "line1" {
  modbus_tcp { address = "127.0.0.1:0" }
}

bus "line2" {
  modbus_tcp { address = "127.0.0.1:0" }
}

device_type "power-meter" {
  management {
    device_info = { manufacturer = "Demo Meters", model = "DM-3P", fw_version = "1.0" }
  }
  point "voltage_l1" {
    table      = "input"
    address    = 0
    type       = "float32"
    byte_order = "CDAB"
    unit       = "V"
    simulate {
      mode   = "sine"
      min    = 228
      max    = 234
      period = "30s"
    }
  }
  point "current_l1" {
    table    = "input"
    address  = 2
    type     = "int16"
    scale    = 0.01
    unit     = "A"
    simulate {
      mode  = "random_walk"
      value = 12
      min   = 8
      max   = 16
      step  = 0.2
    }
  }
  point "energy_kwh" {
    table   = "input"
    address = 3
    type    = "uint32"
    scale   = 0.1
    unit    = "kWh"
    simulate {
      mode  = "counter"
      value = 18234
      step  = 0.1
    }
  }
  point "breaker_closed" {
    table   = "discrete"
    address = 0
    type    = "bool"
    simulate {
      mode  = "fixed"
      value = 1
    }
  }
  event "reading" {
    points = ["voltage_l1", "current_l1", "energy_kwh", "breaker_closed"]
  }
}

device_type "boiler" {
  management {
    device_info = { manufacturer = "Demo Heat", model = "DH-70" }
  }
  point "flow_temp" {
    table   = "holding"
    address = 0
    type    = "int16"
    scale   = 0.1
    unit    = "C"
    simulate {
      mode   = "sine"
      min    = 62
      max    = 71
      period = "45s"
    }
  }
  point "pressure_bar" {
    table   = "holding"
    address = 1
    type    = "uint16"
    scale   = 0.01
    simulate {
      mode  = "random_walk"
      value = 1.8
      min   = 1.2
      max   = 2.4
      step  = 0.02
    }
  }
  point "burner_on" {
    table   = "coil"
    address = 0
    type    = "bool"
    simulate {
      mode  = "fixed"
      value = 1
    }
  }
  point "setpoint" {
    table    = "holding"
    address  = 2
    type     = "int16"
    scale    = 0.1
    unit     = "C"
    writable = true
    min      = 30
    max      = 80
    simulate {
      mode  = "fixed"
      value = 60
    }
  }
  event "telemetry" {
    points = ["flow_temp", "pressure_bar", "burner_on", "setpoint"]
  }
  # The demo sends this command once: the write shows on the simulator,
  # the result event carries what was written and read back, and the next
  # telemetry events carry the new setpoint.
  command "set_setpoint" {
    write "setpoint" { value = "$.d.value" }
    readback = true
  }
}

device "meter-1" {
  type  = "power-meter"
  bus   = "line1"
  unit  = 1
  poll  = "1s"
  token = "demo-token-meter-1"
  management {
    metadata = { site = "demo", line = 1 }
  }
}

device "meter-2" {
  type  = "power-meter"
  bus   = "line1"
  unit  = 2
  poll  = "2s"
  token = "demo-token-meter-2"
}

device "boiler-1" {
  type  = "boiler"
  bus   = "line2"
  unit  = 1
  poll  = "1s"
  token = "demo-token-boiler-1"
}
