platform {
  org = "ab12cd"
}
management {
  lifetime          = "10m"
  max_firmware_size = "12"
  download_timeout  = "0s"
  allow_http        = true
}
bus "b" {
  modbus_tcp { address = "127.0.0.1:502" }
}
device_type "meter" {
  management {
    device_info = { serial = "x" }
    device_info_points = { model = "modl" }
    reboot {
      command = "restrat"
    }
    factory_reset {
      exec = []
    }
    firmware {
      command = "flash"
    }
    custom_action "empty" "x" {}
    custom_action "acme modbus" "rescan" {
      command = "restart"
      timeout = "soon"
    }
    custom_action "acme" "rescan" {
      command = "restart"
    }
    custom_action "acme" "rescan" {
      command = "restart"
    }
  }
  point "v" {
    table   = "input"
    address = 0
    type    = "uint16"
  }
  point "run" {
    table    = "coil"
    address  = 0
    type     = "bool"
    writable = true
  }
  command "restart" {
    write "run" { value = false }
  }
}
device "m1" {
  type  = "meter"
  bus   = "b"
  token = "token-m1-secret"
  management {
    metadata = "plant-2"
    location {
      latitude  = 91
      longitude = -181
      accuracy  = -1
    }
  }
}
