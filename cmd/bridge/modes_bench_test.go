package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"fieldbridge/internal/mqtttest"
	"fieldbridge/uplink"
)

// BenchmarkModes publishes b.N events from 100 devices against a real
// Mosquitto at QoS 0 and 1: in device mode over 100 connections (window 10
// each, the platform's limit), in gateway mode over one connection (window
// 1000). With load=max each device keeps its window full (throughput, and
// the latency of a full queue); with load=1000_per_s each device sends one
// event every 100 ms. It reports events/s and the p99 time from Publish to
// the broker's acknowledgement (for QoS 0: to the write on the connection).
func BenchmarkModes(b *testing.B) {
	const devices = 100
	payload := []byte(`{"d":{"voltage_l1":231.4,"current_l1":12.11,"energy_kwh":18234.5,"breaker_closed":true},"ts":"2026-11-24T10:15:30.120Z","seq":1}`)
	for _, paced := range []bool{false, true} {
		for _, mode := range []string{"device", "gateway"} {
			for _, qos := range []byte{0, 1} {
				load := "max"
				if paced {
					load = "1000_per_s"
				}
				b.Run(fmt.Sprintf("load=%s/mode=%s/qos=%d", load, mode, qos), func(b *testing.B) {
					broker := mqtttest.NewMosquitto(b) // a fresh broker: no state left by the last run
					ctx, cancel := context.WithCancel(context.Background())
					defer cancel()
					var links []*uplink.Client
					var running sync.WaitGroup
					newLink := func(id string, inflight int) *uplink.Client {
						l, err := uplink.New(uplink.Config{Broker: broker.URL(), ClientID: id, QoS: qos, MaxInflight: inflight, MaxPending: 4096}, quietLogger())
						if err != nil {
							b.Fatal(err)
						}
						running.Add(1)
						go func() { defer running.Done(); l.Run(ctx) }()
						links = append(links, l)
						return l
					}
					linkOf := make([]*uplink.Client, devices)
					window := platformDeviceInflight
					if mode == "gateway" {
						gw := newLink("g:bench:edge-gw:gw-1", platformGatewayInflight)
						for i := range linkOf {
							linkOf[i] = gw
						}
					} else {
						for i := range linkOf {
							linkOf[i] = newLink(fmt.Sprintf("d:bench:meter:m%d", i), platformDeviceInflight)
						}
					}
					for _, l := range links {
						for !l.Connected() {
							time.Sleep(time.Millisecond)
						}
					}
					per := (b.N + devices - 1) / devices
					if paced {
						window = 1 // each device sends one event every 100 ms
					}
					lat := make([][]time.Duration, devices)
					var wg sync.WaitGroup
					b.ResetTimer()
					start := time.Now()
					for d := range devices {
						wg.Add(1)
						go func() {
							defer wg.Done()
							topic := uplink.GatewayEventTopic(uplink.Identity{Type: "meter", ID: fmt.Sprintf("m%d", d)}, "reading", "json")
							type pending struct {
								at  time.Time
								res <-chan error
							}
							var inflight []pending
							next := time.Now().Add(time.Duration(d) * time.Millisecond) // spread the devices
							for i := 0; i < per || len(inflight) > 0; {
								if paced && i < per && len(inflight) == 0 {
									time.Sleep(time.Until(next))
									next = next.Add(100 * time.Millisecond)
								}
								if i < per && len(inflight) < window {
									inflight = append(inflight, pending{time.Now(), linkOf[d].Publish(ctx, topic, payload)})
									i++
									continue
								}
								if err := <-inflight[0].res; err != nil {
									b.Error(err)
									return
								}
								lat[d] = append(lat[d], time.Since(inflight[0].at))
								inflight = inflight[1:]
							}
						}()
					}
					wg.Wait()
					elapsed := time.Since(start)
					b.StopTimer()
					var all []time.Duration
					for _, l := range lat {
						all = append(all, l...)
					}
					slices.Sort(all)
					b.ReportMetric(float64(len(all))/elapsed.Seconds(), "events/s")
					if len(all) > 0 {
						b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99_ms")
					}
					cancel()
					running.Wait()
				})
			}
		}
	}
}
