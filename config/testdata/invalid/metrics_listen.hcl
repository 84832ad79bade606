platform {
  org = "ab12cd"
}
metrics {
  listen = "9273"
}
