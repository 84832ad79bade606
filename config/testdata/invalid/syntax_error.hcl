platform {
  org = "ab12cd"
bus "rs485" {
