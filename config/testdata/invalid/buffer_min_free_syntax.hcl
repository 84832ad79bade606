platform {
  org = "ab12cd"
}
buffer {
  min_free = "sixteen megs"
}
