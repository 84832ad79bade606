platform {
  org = "ab12cd"
}
buffer {
  max_bytes = "0.5MiB"
  min_free  = "8MiB"
}
