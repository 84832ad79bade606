package buffer

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkStatsBacklog is Stats (what a /metrics scrape calls) with a
// backlog of 280 events in each of 1 000 queues (280 000 events, the
// backlog of issue 12's drain): "stats" as it is, with every queue's
// oldest event known from an earlier call or a forwarder's read, and
// "read_every_queue" as Stats was before, one database read per queue for
// OldestAge. It reports the database reads per call and the wall time;
// compare the two within one run.
//
//	go test ./buffer -run '^$' -bench BenchmarkStatsBacklog -benchtime 20x
func BenchmarkStatsBacklog(b *testing.B) {
	const queues, perQueue = 1000, 280
	s := openTest(b, Config{Dir: b.TempDir(), Sync: 5 * time.Millisecond, MaxBytes: 1 << 30})
	names := make([]string, queues)
	for i := range names {
		names[i] = fmt.Sprintf("dev-%04d", i)
	}
	for range perQueue {
		for _, name := range names {
			for {
				_, err := s.Enqueue(name, testTopic, seqPayload(200))
				if err == nil {
					break
				}
				if err := s.Flush(); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	if err := s.Flush(); err != nil {
		b.Fatal(err)
	}
	if st := s.Stats(); st.Len != queues*perQueue {
		b.Fatalf("%d events waiting, want %d", st.Len, queues*perQueue)
	}
	for range queues/statsReadBudget + 1 {
		s.Stats() // until every queue's oldest event is known
	}

	b.Run("stats", func(b *testing.B) {
		before := s.statsReads.Load()
		start := time.Now()
		for range b.N {
			s.Stats()
		}
		b.ReportMetric(float64(time.Since(start).Microseconds())/float64(b.N)/1000, "ms/call")
		b.ReportMetric(float64(s.statsReads.Load()-before)/float64(b.N), "reads/call")
	})
	b.Run("read_every_queue", func(b *testing.B) {
		start := time.Now()
		reads := 0
		for range b.N {
			for _, q := range s.snapshotQueues() {
				st := q.counters()
				q.mu.Lock()
				head, tail := q.head, q.tail
				q.mu.Unlock()
				if st.Len > 0 {
					if _, _, err := s.read(q, head+1, tail, 1); err != nil {
						b.Fatal(err)
					}
					reads++
				}
			}
		}
		b.ReportMetric(float64(time.Since(start).Microseconds())/float64(b.N)/1000, "ms/call")
		b.ReportMetric(float64(reads)/float64(b.N), "reads/call")
	})
}
