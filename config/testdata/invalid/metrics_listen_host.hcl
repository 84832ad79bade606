platform {
  org = "ab12cd"
}
metrics {
  listen = "metrics.example.com:9273"
}
