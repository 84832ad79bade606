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
    reboot {}
    factory_reset {
      exec = []
    }
    firmware {
      command = "flash"
    }
    custom_action "acme modbus" "rescan" {
      command = "rescan"
      timeout = "soon"
    }
    custom_action "acme" "rescan" {
      command = "rescan"
    }
    custom_action "acme" "rescan" {
      command = "rescan"
    }
  }
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
    metadata = "plant-2"
    location {
      latitude  = 91
      longitude = -181
      accuracy  = -1
    }
  }
}
