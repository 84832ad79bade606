//go:build unix

package buffer

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"fieldbridge/internal/testwait"
)

var (
	soakEvents     = flag.Int("soak.events", 200_000, "events written and acknowledged by BenchmarkSoak")
	soakBacklog    = flag.Int("soak.backlog", 10_000, "standing backlog (live events) kept during BenchmarkSoak")
	soakStrategies = flag.String("soak.strategies", "dropprefix", "comma-separated reclamation strategies for BenchmarkSoak: dropprefix, deletes, deletes+flatten, none")
)

// ackPublisher acknowledges every publish at once: the store's own cost.
type ackPublisher struct{}

func (ackPublisher) Publish(context.Context, string, []byte) <-chan error {
	ch := make(chan error, 1)
	ch <- nil
	return ch
}

// eventPayload is a realistic 10-point event of about 220 bytes.
func eventPayload(seq uint64) ([]byte, error) {
	return fmt.Appendf(nil, `{"d":{"voltage_l1":231.4,"voltage_l2":230.9,"voltage_l3":232.0,"current_l1":12.31,`+
		`"current_l2":11.87,"current_l3":12.05,"power":8123.5,"energy":1234567.8,"pf":0.97,`+
		`"breaker_closed":true},"ts":"2026-11-24T10:15:30.120Z","seq":%d}`, seq), nil
}

const benchTopic = "iot-2/type/power-meter/id/meter-7/evt/reading/fmt/json"

// BenchmarkAppendAck measures append plus acknowledge: producers append
// while one Forward loop per queue publishes to a broker that acknowledges
// at once. events/s counts events appended and acknowledged.
func BenchmarkAppendAck(b *testing.B) {
	for _, c := range []struct {
		name   string
		cfg    func(b *testing.B) Config
		queues int
	}{
		{"sync=1s/queues=1", func(b *testing.B) Config { return Config{Dir: b.TempDir(), Sync: time.Second} }, 1},
		{"sync=1s/queues=8", func(b *testing.B) Config { return Config{Dir: b.TempDir(), Sync: time.Second} }, 8},
		{"sync=always/queues=1", func(b *testing.B) Config { return Config{Dir: b.TempDir()} }, 1},
		{"sync=always/queues=8", func(b *testing.B) Config { return Config{Dir: b.TempDir()} }, 8},
		{"memory/queues=1", func(*testing.B) Config { return Config{InMemory: true} }, 1},
	} {
		b.Run(c.name, func(b *testing.B) {
			s, err := Open(c.cfg(b), nil)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			ctx, cancel := context.WithCancel(context.Background())
			var fwd sync.WaitGroup
			for i := range c.queues {
				fwd.Add(1)
				go func() {
					defer fwd.Done()
					_ = s.Forward(ctx, "q"+strconv.Itoa(i), ackPublisher{})
				}()
			}
			b.SetBytes(int64(len(must(eventPayload(1)))))
			b.ResetTimer()
			start := time.Now()
			var prod sync.WaitGroup
			per := (b.N + c.queues - 1) / c.queues
			for i := range c.queues {
				prod.Add(1)
				go func() {
					defer prod.Done()
					for range per {
						if _, err := s.Append("q"+strconv.Itoa(i), benchTopic, eventPayload); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			prod.Wait()
			for s.Stats().Len > 0 {
				time.Sleep(100 * time.Microsecond)
			}
			elapsed := time.Since(start)
			b.StopTimer()
			cancel()
			fwd.Wait()
			b.ReportMetric(float64(per*c.queues)/elapsed.Seconds(), "events/s")
		})
	}
}

// BenchmarkAppend measures Append alone (no forwarding) with group commit.
func BenchmarkAppend(b *testing.B) {
	s, err := Open(Config{Dir: b.TempDir(), Sync: time.Second, MaxBytes: 1 << 30}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		if _, err := s.Append("q", benchTopic, eventPayload); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
}

// BenchmarkEnqueue compares, in one run, Append (the caller commits each
// event) with Enqueue (the writer commits batches), from 1 and from 8
// goroutines on 8 queues, with group commit. For Enqueue the time includes
// Flush, so it counts the commit too; allocs/op are per event.
func BenchmarkEnqueue(b *testing.B) {
	for _, how := range []string{"append", "enqueue"} {
		for _, callers := range []int{1, 8} {
			b.Run(fmt.Sprintf("%s/callers=%d", how, callers), func(b *testing.B) {
				s, err := Open(Config{Dir: b.TempDir(), Sync: time.Second, MaxBytes: 1 << 30}, nil)
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				put := s.Append
				if how == "enqueue" {
					put = s.Enqueue
				}
				per := (b.N + callers - 1) / callers
				var wg sync.WaitGroup
				b.ReportAllocs()
				b.ResetTimer()
				start := time.Now()
				for c := range callers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						q := fmt.Sprintf("q%d", c)
						for range per {
							if _, err := put(q, benchTopic, eventPayload); err != nil && !errors.Is(err, ErrFull) {
								b.Error(err)
								return
							}
						}
					}()
				}
				wg.Wait()
				if err := s.Flush(); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(per*callers)/time.Since(start).Seconds(), "events/s")
				if st := s.Stats(); st.Dropped+st.Failed > 0 {
					b.ReportMetric(float64(st.Dropped+st.Failed), "lost_events")
				}
			})
		}
	}
}

// BenchmarkAppendDiskGuard measures what the free-space guard costs
// Append: without it (baseline), as in production with plenty of space
// (statfs at most every 100 ms), and near the floor, where it runs statfs
// before every write (the real syscall, with the result replaced by a
// value just above the floor).
func BenchmarkAppendDiskGuard(b *testing.B) {
	nearFloor := func(dir string) (int64, error) {
		if _, err := statfsFree(dir); err != nil {
			return 0, err
		}
		return DefaultMinFree + 8<<20, nil
	}
	for _, c := range []struct {
		name string
		cfg  Config
	}{
		{"guard=off", Config{noDiskGuard: true}},
		{"guard=cached", Config{}},
		{"guard=every_write", Config{diskFree: nearFloor}},
	} {
		b.Run(c.name, func(b *testing.B) {
			cfg := c.cfg
			cfg.Dir, cfg.Sync, cfg.MaxBytes = b.TempDir(), time.Second, 1<<30
			s, err := Open(cfg, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			b.ResetTimer()
			start := time.Now()
			for range b.N {
				if _, err := s.Append("q", benchTopic, eventPayload); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
		})
	}
}

// BenchmarkCheckDisk measures one pass through the free-space guard alone:
// cached (production with plenty of space) and with statfs on every call
// (near the floor).
func BenchmarkCheckDisk(b *testing.B) {
	nearFloor := func(dir string) (int64, error) {
		if _, err := statfsFree(dir); err != nil {
			return 0, err
		}
		return DefaultMinFree + 8<<20, nil
	}
	for _, c := range []struct {
		name     string
		diskFree func(string) (int64, error)
	}{{"cached", nil}, {"every_write", nearFloor}} {
		b.Run(c.name, func(b *testing.B) {
			s, err := Open(Config{Dir: b.TempDir(), Sync: time.Second, diskFree: c.diskFree}, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			b.ResetTimer()
			for range b.N {
				if err := s.checkDisk(writeEvent, 323); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// gatePublisher acknowledges a publish only once the producer is far enough
// ahead, which keeps a standing backlog of `backlog` live events.
type gatePublisher struct {
	mu      sync.Mutex
	limit   uint64 // seqs <= limit may be acknowledged
	pending []gated
}

type gated struct {
	seq uint64
	ch  chan error
}

func (p *gatePublisher) Publish(_ context.Context, _ string, payload []byte) <-chan error {
	ch := make(chan error, 1)
	seq := payloadSeq(payload)
	p.mu.Lock()
	defer p.mu.Unlock()
	if seq <= p.limit {
		ch <- nil
	} else {
		p.pending = append(p.pending, gated{seq, ch})
	}
	return ch
}

func (p *gatePublisher) setLimit(limit uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.limit = limit
	i := 0
	for ; i < len(p.pending) && p.pending[i].seq <= limit; i++ {
		p.pending[i].ch <- nil
	}
	p.pending = p.pending[i:]
}

// BenchmarkSoak writes and acknowledges -soak.events events through one
// queue while keeping -soak.backlog events live, then drains everything.
// It reports disk bytes per live event and read speed at the start and the
// end, the peak disk use, disk use after the drain, and peak RSS. Run it
// once: -run XXX -bench Soak -benchtime 1x [-soak.events 10000000].
func BenchmarkSoak(b *testing.B) {
	for _, name := range strings.Split(*soakStrategies, ",") {
		m, ok := reclaimModes[name]
		if !ok {
			b.Fatalf("unknown strategy %q", name)
		}
		b.Run(fmt.Sprintf("reclaim=%s/events=%d", name, *soakEvents), func(b *testing.B) { soak(b, m) })
	}
}

func soak(b *testing.B, mode reclaimMode) {
	dir := b.TempDir()
	cfg := Config{Dir: dir, Sync: time.Second, reclaim: mode} // default MaxBytes: 256 MiB
	s, err := Open(cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	q, _ := s.queue("soak")
	backlog := uint64(*soakBacklog)
	total := uint64(*soakEvents)

	var peakDisk atomic.Int64
	stopSample := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stopSample:
				return
			case <-t.C:
				peakDisk.Store(max(peakDisk.Load(), diskUsage(dir)))
			}
		}
	}()

	measure := func(label string) {
		q.mu.Lock()
		head, tail := q.head, q.tail
		live := q.count
		q.mu.Unlock()
		start := time.Now()
		n := 0
		for from := head + 1; from < tail; {
			items, next, err := s.readRange(q, from, tail, 64)
			if err != nil {
				b.Fatal(err)
			}
			n += len(items)
			from = next
		}
		rate := float64(n) / time.Since(start).Seconds()
		disk := diskUsage(dir)
		b.ReportMetric(float64(disk)/float64(max(live, 1)), "disk_B/live_event_"+label)
		b.ReportMetric(rate, "reads/s_"+label)
		b.Logf("%s: %d live events, disk %.1f MiB (%.0f B/event), reads %.0f/s, %d tables",
			label, live, float64(disk)/(1<<20), float64(disk)/float64(max(live, 1)), rate, len(s.db.Tables()))
	}

	for range backlog {
		if _, err := s.Append("soak", benchTopic, eventPayload); err != nil {
			b.Fatal(err)
		}
	}
	measure("start")

	pub := &gatePublisher{}
	ctx, cancel := context.WithCancel(context.Background())
	fwdDone := make(chan error, 1)
	go func() { fwdDone <- s.Forward(ctx, "soak", pub) }()

	b.ResetTimer()
	start := time.Now()
	for i := uint64(1); i <= total; i++ {
		seq, err := s.Append("soak", benchTopic, eventPayload)
		if err != nil {
			b.Fatal(err)
		}
		if i%256 == 0 {
			pub.setLimit(seq - backlog)
		}
		if i%(total/4+1) == 0 {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			b.Logf("%d/%d events, disk %.1f MiB, rss %.1f MiB (anon %.1f, file %.1f), go heap in use %.1f MiB, sys %.1f MiB",
				i, total, float64(diskUsage(dir))/(1<<20), rssMiB("VmRSS"), rssMiB("RssAnon"), rssMiB("RssFile"),
				float64(ms.HeapInuse)/(1<<20), float64(ms.Sys)/(1<<20))
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	// Settle to exactly `backlog` live events, then measure again.
	q.mu.Lock()
	tail := q.tail
	q.mu.Unlock()
	pub.setLimit(tail - 1 - backlog)
	for s.QueueStats("soak").Len > int64(backlog) {
		time.Sleep(time.Millisecond)
	}
	b.ReportMetric(float64(total)/elapsed.Seconds(), "events/s")
	measure("end")

	// Drain everything and let reclamation run as its timer would.
	pub.setLimit(1 << 62)
	for s.QueueStats("soak").Len > 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-fwdDone
	close(stopSample)
	<-sampled
	rec := time.Now()
	s.reclaim()
	recDur := time.Since(rec)
	after := diskUsage(dir)
	b.ReportMetric(float64(peakDisk.Load())/(1<<20), "disk_MiB_peak")
	b.ReportMetric(float64(after)/(1<<20), "disk_MiB_drained")
	b.ReportMetric(rssMiB("VmHWM"), "rss_MiB_peak")
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.Logf("drained: disk %.1f MiB (reclaim took %v), %d tables; peak disk %.1f MiB; RSS peak %.1f MiB, now %.1f MiB; Go heap sys %.1f MiB",
		float64(after)/(1<<20), recDur, len(s.db.Tables()), float64(peakDisk.Load())/(1<<20), rssMiB("VmHWM"), rssMiB("VmRSS"),
		float64(ms.HeapSys)/(1<<20))
}

// diskUsage is the space allocated to the files under dir (du, not ls -l:
// Badger's logs are sparse).
func diskUsage(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				n += st.Blocks * 512
			}
		}
		return nil
	})
	return n
}

// logUsage is the part of diskUsage(dir) in Badger's memory-mapped logs,
// which are allocated in full when created: memtable logs, value logs and
// the DISCARD file.
func logUsage(dir string) int64 {
	var n int64
	for _, pattern := range []string{"*.mem", "*.vlog", "DISCARD"} {
		files, _ := filepath.Glob(filepath.Join(dir, "db", pattern))
		for _, f := range files {
			if fi, err := os.Stat(f); err == nil {
				if st, ok := fi.Sys().(*syscall.Stat_t); ok {
					n += st.Blocks * 512
				}
			}
		}
	}
	return n
}

// rssMiB reads a field (VmRSS, VmHWM) of /proc/self/status in MiB.
func rssMiB(field string) float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

var (
	liveDevices  = flag.Int("live.devices", 500, "devices (queues) in BenchmarkLiveRSS")
	liveDuration = flag.Duration("live.duration", 20*time.Second, "how long BenchmarkLiveRSS runs")
	liveMemTable = flag.Int("live.memtable_mib", defaultMemTableMiB, "Badger memtable size for BenchmarkLiveRSS (default: the product's)")
	liveReclaim  = flag.String("live.reclaim", "dropprefix", "reclamation strategy for BenchmarkLiveRSS")
)

var reclaimModes = map[string]reclaimMode{"dropprefix": reclaimDropPrefix, "deletes": reclaimDeletes,
	"deletes+flatten": reclaimDeletesFlatten, "none": reclaimNone}

// BenchmarkLiveRSS runs the design's memory scenario for the buffer alone:
// -live.devices queues, each appending one event per second and forwarded
// by its own Forward loop to a broker that acknowledges at once. It
// reports the process's peak and final RSS. Run it once:
// -run XXX -bench LiveRSS -benchtime 1x.
func BenchmarkLiveRSS(b *testing.B) {
	mode, ok := reclaimModes[*liveReclaim]
	if !ok {
		b.Fatalf("unknown strategy %q", *liveReclaim)
	}
	s, err := Open(Config{Dir: b.TempDir(), Sync: time.Second, memTableSizeMiB: int64(*liveMemTable), reclaim: mode}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *liveDuration)
	defer cancel()
	cpuStart := processCPU()
	var wg sync.WaitGroup
	var appended atomic.Int64
	for d := range *liveDevices {
		name := fmt.Sprintf("device-%03d", d)
		wg.Add(2)
		go func() {
			defer wg.Done()
			_ = s.Forward(ctx, name, ackPublisher{})
		}()
		go func() {
			defer wg.Done()
			// Spread the devices over the second, like staggered polls.
			first := time.NewTimer(time.Duration(d) * time.Second / time.Duration(*liveDevices))
			select {
			case <-first.C:
			case <-ctx.Done():
				return
			}
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				if _, err := s.Append(name, benchTopic, eventPayload); err != nil {
					b.Error(err)
					return
				}
				appended.Add(1)
				select {
				case <-t.C:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	wg.Wait()
	cpu := processCPU() - cpuStart
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	// CPU per event at paced load: the whole process (Badger's background
	// work included), which is what the bridge pays per event.
	b.ReportMetric(float64(cpu.Microseconds())/float64(max(appended.Load(), 1)), "cpu_µs/event")
	b.ReportMetric(rssMiB("VmHWM"), "rss_MiB_peak")
	b.ReportMetric(rssMiB("VmRSS"), "rss_MiB_end")
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap_inuse_MiB")
	b.ReportMetric(float64(appended.Load())/liveDuration.Seconds(), "events/s")
	b.Logf("%d devices, %d events, RSS peak %.1f MiB (anon %.1f, file %.1f now), Go sys %.1f MiB, disk %.1f MiB, backlog %d",
		*liveDevices, appended.Load(), rssMiB("VmHWM"), rssMiB("RssAnon"), rssMiB("RssFile"),
		float64(ms.Sys)/(1<<20), float64(diskUsage(s.cfg.Dir))/(1<<20), s.Stats().Len)
}

// processCPU is the user plus system CPU time the process used so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// signalPublisher acknowledges at once and signals each publish.
type signalPublisher struct{ published chan struct{} }

func (p signalPublisher) Publish(context.Context, string, []byte) <-chan error {
	p.published <- struct{}{}
	ch := make(chan error, 1)
	ch <- nil
	return ch
}

// BenchmarkLiveLatency measures, on an idle queue, the time from the start
// of Append to the Publish call of that event (the notify path), with group
// commit.
func BenchmarkLiveLatency(b *testing.B) {
	s, err := Open(Config{Dir: b.TempDir(), Sync: time.Second}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	pub := signalPublisher{published: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = s.Forward(ctx, "q", pub) }()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		if _, err := s.Append("q", benchTopic, eventPayload); err != nil {
			b.Fatal(err)
		}
		<-pub.published
		lat = append(lat, time.Since(start))
		for s.QueueStats("q").Len > 0 { // let the ack land: the next event finds an idle queue
			runtime.Gosched()
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50_µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99_µs")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds()), "max_µs")
}

// BenchmarkDrain measures the buffer's side of a backlog drain: b.N events
// are appended first, then one Forward loop drains them into a broker that
// acknowledges at once (the ceiling for the Mosquitto drain benchmark).
func BenchmarkDrain(b *testing.B) {
	for _, inflight := range []int{64, 256} {
		b.Run(fmt.Sprintf("inflight=%d", inflight), func(b *testing.B) {
			s, err := Open(Config{Dir: b.TempDir(), Sync: time.Second, MaxBytes: 2 << 30, InFlight: inflight}, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			for range b.N {
				if _, err := s.Append("q", benchTopic, eventPayload); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			start := time.Now()
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- s.Forward(ctx, "q", ackPublisher{}) }()
			for s.QueueStats("q").Len > 0 {
				time.Sleep(time.Millisecond)
			}
			elapsed := time.Since(start)
			b.StopTimer()
			cancel()
			<-done
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
		})
	}
}

// TestSoakReclaimsSpace is the functional core of BenchmarkSoak: after a
// write/acknowledge run with a standing backlog and a drain, the disk is
// back near empty and nothing was lost.
func TestSoakReclaimsSpace(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, Config{Dir: dir, Sync: 10 * time.Millisecond, reclaimBytes: 1 << 20})
	pub := &gatePublisher{}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Forward(ctx, "soak", pub) }()
	const total, backlog = 60_000, 2_000
	for i := uint64(1); i <= total; i++ {
		seq, err := s.Append("soak", benchTopic, eventPayload)
		if err != nil {
			t.Fatal(err)
		}
		if i%256 == 0 && seq > backlog {
			pub.setLimit(seq - backlog)
		}
	}
	written := diskUsage(dir)
	pub.setLimit(1 << 62)
	testwait.For(t, 20*time.Second, "drained", func() bool { return s.QueueStats("soak").Len == 0 })
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	s.reclaim() // what the next periodic pass does
	if got := eventKeys(t, s); got != 0 {
		t.Errorf("%d event keys left after drain and reclaim", got)
	}
	all := diskUsage(dir)
	logs := logUsage(dir)
	after := all - logs
	t.Logf("disk: %.1f MiB after writing %d events (%.1f MiB of records), %.2f MiB after drain and reclaim plus %.1f MiB of preallocated logs",
		float64(written)/(1<<20), total, float64(total*323)/(1<<20), float64(after)/(1<<20), float64(logs)/(1<<20))
	if after > 1<<20 {
		t.Errorf("disk use after drain and reclaim = %d bytes besides the logs, want < 1 MiB", after)
	}
	// Badger's logs are allocated in full (third_party/ristretto): at most
	// three memtable logs of 16 MiB, the 2 MiB value log and DISCARD.
	if logs > 3*(16<<20)+3<<20 {
		t.Errorf("log files take %d bytes, want at most 51 MiB", logs)
	}
	if st := s.QueueStats("soak"); st.Acked != total || st.Dropped != 0 {
		t.Errorf("QueueStats = %+v, want all %d acked, none dropped", st, total)
	}
}
