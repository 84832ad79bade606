package buffer_test

import (
	"context"
	"fmt"
	"log"
	"sync"

	"fieldbridge/buffer"
)

// printPublisher is a stand-in for the MQTT uplink: it prints each message
// and acknowledges it at once.
type printPublisher struct {
	mu   sync.Mutex
	done func()
	n    int
}

func (p *printPublisher) Publish(_ context.Context, topic string, payload []byte) <-chan error {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Printf("%s %s\n", topic, payload)
	if p.n++; p.n == 3 {
		p.done()
	}
	ack := make(chan error, 1)
	ack <- nil // the broker's PUBACK
	return ack
}

func Example() {
	store, err := buffer.Open(buffer.Config{InMemory: true, OnFull: buffer.DropOldest}, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()

	// The poll loop appends; the buffer assigns seq and the payload embeds it.
	for _, v := range []float64{231.4, 231.9, 230.8} {
		_, err := store.Append("meter-7", "iot-2/evt/reading/fmt/json", func(seq uint64) ([]byte, error) {
			return fmt.Appendf(nil, `{"d":{"voltage_l1":%.1f},"seq":%d}`, v, seq), nil
		})
		if err != nil {
			log.Fatal(err)
		}
	}

	// The forward loop publishes in order and deletes after each PUBACK.
	ctx, cancel := context.WithCancel(context.Background())
	if err := store.Forward(ctx, "meter-7", &printPublisher{done: cancel}); err != nil {
		log.Fatal(err)
	}
	st := store.QueueStats("meter-7")
	fmt.Printf("waiting %d, acknowledged %d, next seq %d\n", st.Len, st.Acked, st.NextSeq)
	// Output:
	// iot-2/evt/reading/fmt/json {"d":{"voltage_l1":231.4},"seq":1}
	// iot-2/evt/reading/fmt/json {"d":{"voltage_l1":231.9},"seq":2}
	// iot-2/evt/reading/fmt/json {"d":{"voltage_l1":230.8},"seq":3}
	// waiting 0, acknowledged 3, next seq 4
}
