package loadrig

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"time"

	"fieldbridge/uplink"
)

// tickSlack absorbs the jitter of the one-second ticker when deciding
// whether a periodic scrape is due.
const tickSlack = 200 * time.Millisecond

// settleAfterDrain is how long a run with a broker outage goes on after the
// backlog has drained, so that latency and RSS are also seen back in the
// steady state.
const settleAfterDrain = 5 * time.Second

// Options describe one run of the rig.
type Options struct {
	BridgeBin   string // the bridge binary: the simulator always, and the system under test unless TelegrafBin is set
	TelegrafBin string // run Telegraf as the system under test instead of the bridge

	Devices int           // devices, each read with one request
	Points  int           // float32 input-register points per device
	Buses   int           // Modbus TCP buses (simulator endpoints); devices are spread round-robin
	Poll    time.Duration // poll interval (Telegraf: agent interval and flush interval)
	Mode    string        // ModeDevice or ModeGateway (bridge only)

	Warmup   time.Duration // before the measured window: connections up, first polls done
	Duration time.Duration // the measured window (at least; a broker outage waits for the drain too)

	// BrokerDown stops Mosquitto at the end of the warm-up for this long,
	// then starts it again; the run then lasts until the backlog has drained
	// (at most DrainTimeout after the restart), 5 s more, and at least
	// Duration. Latencies are recorded only after the drain.
	BrokerDown   time.Duration
	DrainTimeout time.Duration // default 10 minutes

	// Pin runs the system under test alone on CPU 0 (taskset -c 0) and the
	// simulator, Mosquitto and the rig on CPU 1.
	Pin bool

	// ScrapeEvery is how often the bridge's /metrics is read for the
	// backlog. Each scrape costs the bridge CPU (~8 ms at 500 devices, see
	// docs/performance.md), which then counts in its figures; 0 scrapes only
	// at the start and end of the window and while waiting for a drain.
	ScrapeEvery time.Duration

	Env      []string  // extra environment of the system under test (e.g. GOMEMLIMIT=...)
	Dir      string    // working directory for configs, logs and the buffer; default a new temp dir, removed afterwards
	Timeline io.Writer // if set, one line per second
}

func (o *Options) withDefaults() error {
	if o.BridgeBin == "" {
		return errors.New("loadrig: BridgeBin is required (it serves the simulator)")
	}
	if o.Devices <= 0 || o.Points <= 0 || o.Points > 62 {
		return fmt.Errorf("loadrig: want devices > 0 and 1..62 points (one request of at most 125 registers), got %d and %d", o.Devices, o.Points)
	}
	if o.Buses <= 0 {
		o.Buses = 1
	}
	o.Buses = min(o.Buses, o.Devices) // the simulator serves only buses with devices
	if o.Devices > o.Buses*247 {
		return fmt.Errorf("loadrig: %d devices need at least %d buses (247 units per bus)", o.Devices, (o.Devices+246)/247)
	}
	if o.Poll <= 0 {
		o.Poll = time.Second
	}
	if o.Mode == "" {
		o.Mode = ModeGateway
	}
	if o.Mode != ModeDevice && o.Mode != ModeGateway {
		return fmt.Errorf("loadrig: mode %q: want %q or %q", o.Mode, ModeDevice, ModeGateway)
	}
	if o.Duration <= 0 {
		o.Duration = 30 * time.Second
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = 10 * time.Minute
	}
	if o.Pin {
		if runtime.NumCPU() < 2 {
			return errors.New("loadrig: pinning needs at least 2 CPUs")
		}
		if _, err := exec.LookPath("taskset"); err != nil {
			return errors.New("loadrig: pinning needs taskset (util-linux)")
		}
	}
	return nil
}

// SUT returns the name of the system under test.
func (o *Options) SUT() string {
	if o.TelegrafBin != "" {
		return "telegraf"
	}
	return "bridge-" + o.Mode
}

// Sample is one line of the per-second timeline.
type Sample struct {
	At        time.Duration // since the system under test started
	Phase     string        // warmup, measure, broker-down, drain
	CPU       float64       // CPU-seconds per second of the system under test since the last sample
	RSSMiB    float64
	HWMMiB    float64
	Points    int64 // points delivered to the subscriber since the last sample, per second
	Events    int64 // reading events delivered since the last sample, per second
	Backlog   int64 // bridge_buffer_events; -1 when not scraped
	BrokerUp  bool
	Measuring bool // inside the measured window
}

// Summary is the outcome of one run.
type Summary struct {
	Options Options

	Window        time.Duration // the measured window
	CPU           time.Duration // CPU time of the system under test in the window
	CPUPerSecond  float64
	Points        int64   // points delivered in the window
	PointsPerSec  float64 // delivered
	MicrosPerPt   float64 // CPU µs per delivered point
	RSSSteadyMiB  float64 // median VmRSS of the last half of the window
	RSSPeakMiB    float64 // VmHWM at the end
	BacklogStart  int64   // at the start of the window (-1: not available)
	BacklogEnd    int64
	BacklogMax    int64
	Latency       LatencySummary
	Seqs          *seqReport // bridge only
	Dropped       int64      // bridge_events_dropped_total (bridge only)
	Failed        int64      // bridge_events_failed_total (bridge only)
	BadFormat     int64      // messages that did not parse
	Timeline      []Sample
	SUTExitStatus string
}

// LatencySummary is poll→subscriber latency: from the event's ts (when the
// values were read; Telegraf: the metric's timestamp) to its arrival at the
// subscriber. ts has millisecond resolution and is truncated, so figures
// may be up to 1 ms high; quantiles have 100 µs buckets.
type LatencySummary struct {
	N                   int64
	P50, P99, P999, Max time.Duration
}

// Run runs the rig once and returns its summary. Every process it started
// is stopped before it returns.
func Run(ctx context.Context, opts Options) (*Summary, error) {
	if err := opts.withDefaults(); err != nil {
		return nil, err
	}
	dir := opts.Dir
	if dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
	} else {
		tmp, err := os.MkdirTemp("", "loadrig-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	sutCPU, restCPU := "", ""
	if opts.Pin {
		sutCPU, restCPU = sutCore, restCore
		// The rig's subscriber shares the other core with the simulator and
		// the broker; -a pins every thread, and later threads inherit it.
		if out, err := exec.Command("taskset", "-a", "-p", "-c", restCore, strconv.Itoa(os.Getpid())).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("loadrig: pin the rig: %v: %s", err, out)
		}
	}

	r := &rig{opts: opts, dir: dir, http: &http.Client{Timeout: 10 * time.Second}}
	defer r.stopAll()
	if err := r.setUp(ctx, sutCPU, restCPU); err != nil {
		return nil, err
	}
	return r.measure(ctx)
}

// rig holds the running parts of one run.
type rig struct {
	opts Options
	dir  string
	http *http.Client

	sim, sut   *child
	broker     *broker
	sub        *uplink.Client
	subStop    context.CancelFunc
	subDone    chan struct{}
	count      *counter
	metricsURL string
}

func (r *rig) setUp(ctx context.Context, sutCPU, restCPU string) error {
	o := r.opts
	ports, err := freePorts(o.Buses + 2)
	if err != nil {
		return err
	}
	p := plant{devices: o.Devices, points: o.Points, pollEvery: o.Poll.String()}
	for _, port := range ports[:o.Buses] {
		p.busAddrs = append(p.busAddrs, "127.0.0.1:"+strconv.Itoa(port))
	}
	brokerPort, metricsPort := ports[o.Buses], ports[o.Buses+1]
	metricsAddr := "127.0.0.1:" + strconv.Itoa(metricsPort)
	r.metricsURL = "http://" + metricsAddr + "/metrics"

	cfgPath := filepath.Join(r.dir, "bridge.hcl")
	if err := os.WriteFile(cfgPath, []byte(bridgeConfig(p, o.Mode, brokerPort, filepath.Join(r.dir, "buffer"), metricsAddr)), 0o600); err != nil {
		return err
	}
	if r.sim, err = startChild("simulator", restCPU, filepath.Join(r.dir, "simulator.log"), nil, o.BridgeBin, "simulate", "-config", cfgPath); err != nil {
		return err
	}
	for _, addr := range p.busAddrs {
		if err := waitListening(r.sim, addr, 30*time.Second); err != nil {
			return err
		}
	}
	if r.broker, err = newBroker(r.dir, restCPU, brokerPort); err != nil {
		return err
	}
	if err := r.broker.start(); err != nil {
		return err
	}
	if err := r.startSubscriber(ctx); err != nil {
		return err
	}

	argv := []string{o.BridgeBin, "run", "-config", cfgPath}
	if o.TelegrafBin != "" {
		tcPath := filepath.Join(r.dir, "telegraf.conf")
		if err := os.WriteFile(tcPath, []byte(telegrafConfig(p, brokerPort)), 0o600); err != nil {
			return err
		}
		argv = []string{o.TelegrafBin, "--config", tcPath}
	}
	if r.sut, err = startChild(o.SUT(), sutCPU, filepath.Join(r.dir, "sut.log"), o.Env, argv...); err != nil {
		return err
	}
	if o.TelegrafBin == "" {
		return waitListening(r.sut, metricsAddr, 30*time.Second)
	}
	return nil
}

// startSubscriber connects the counting subscriber with a durable session
// and waits until it is subscribed.
func (r *rig) startSubscriber(ctx context.Context) error {
	filter := "iot-2/#"
	if r.opts.TelegrafBin != "" {
		filter = telegrafTopicPrefix + "#"
	}
	r.count = newCounter(r.opts.TelegrafBin != "")
	sub, err := uplink.New(uplink.Config{
		Broker:        "tcp://" + r.broker.addr(),
		ClientID:      "loadrig-subscriber",
		CleanSession:  false,
		Subscriptions: []uplink.Subscription{{Filter: filter, QoS: 1}},
		Handler:       r.count,
		MinBackoff:    100 * time.Millisecond,
		MaxBackoff:    time.Second,
	}, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	subCtx, stop := context.WithCancel(ctx)
	r.sub, r.subStop, r.subDone = sub, stop, make(chan struct{})
	go func() {
		defer close(r.subDone)
		_ = sub.Run(subCtx)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for !sub.Connected() {
		if time.Now().After(deadline) {
			return errors.New("loadrig: subscriber did not connect to mosquitto within 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// stopAll stops everything still running, the system under test first.
func (r *rig) stopAll() {
	if r.sut != nil {
		_ = r.sut.stop()
	}
	if r.subStop != nil {
		r.subStop()
		<-r.subDone
	}
	if r.broker != nil {
		_ = r.broker.stop()
	}
	if r.sim != nil {
		_ = r.sim.stop()
	}
}

// measure runs the timeline until the run is over and builds the summary.
func (r *rig) measure(ctx context.Context) (*Summary, error) {
	o := r.opts
	s := &Summary{Options: o, BacklogStart: -1, BacklogEnd: -1, BacklogMax: -1}
	isBridge := o.TelegrafBin == ""
	start := time.Now()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()

	if o.Timeline != nil {
		fmt.Fprintf(o.Timeline, "%6s %-11s %7s %8s %8s %9s %8s %9s %6s\n", "t_s", "phase", "cpu_s/s", "rss_MiB", "hwm_MiB", "points/s", "events/s", "backlog", "broker")
	}
	var (
		prev                      procSample
		prevAt                    = start
		prevPoints, prevEvents    int64
		windowStart, brokerBackAt time.Time
		cpuAtWindow               time.Duration
		pointsAtWindow            int64
		lastScrape                time.Time
		drained                   = o.BrokerDown == 0
		drainedAt                 time.Time
		last                      bridgeMetrics
	)
	first, err := readProc(r.sut.pid())
	if err != nil {
		return nil, err
	}
	prev = first
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
		}
		if r.sut.exited() {
			return nil, fmt.Errorf("loadrig: %s exited during the run (%v); its log: %s", o.SUT(), r.sut.err, filepath.Join(r.dir, "sut.log"))
		}
		now := time.Now()
		ps, err := readProc(r.sut.pid())
		if err != nil {
			return nil, err
		}
		points, events := r.count.points.Load(), r.count.events.Load()
		elapsed := now.Sub(start)
		phase := "warmup"
		inWindow := !windowStart.IsZero()
		scrapeNow := false

		if !inWindow && elapsed >= o.Warmup { // the measured window starts
			windowStart, cpuAtWindow, pointsAtWindow, inWindow = now, ps.cpu, points, true
			scrapeNow = true
			if o.BrokerDown > 0 {
				if err := r.broker.stop(); err != nil {
					return nil, fmt.Errorf("loadrig: stop mosquitto: %w", err)
				}
			} else {
				r.count.recording.Store(true)
			}
		}
		if inWindow && o.BrokerDown > 0 && r.broker.proc == nil && now.Sub(windowStart) >= o.BrokerDown {
			if err := r.broker.start(); err != nil {
				return nil, fmt.Errorf("loadrig: restart mosquitto: %w", err)
			}
			brokerBackAt = now
		}
		switch {
		case !inWindow:
		case r.broker.proc == nil:
			phase = "broker-down"
		case !drained:
			phase, scrapeNow = "drain", true
		default:
			phase = "measure"
		}
		if isBridge && (scrapeNow || (o.ScrapeEvery > 0 && now.Sub(lastScrape) >= o.ScrapeEvery-tickSlack)) {
			m, err := scrape(ctx, r.http, r.metricsURL)
			if err != nil {
				return nil, err
			}
			last, lastScrape = m, now
		}
		backlog := int64(-1)
		if isBridge && lastScrape.Equal(now) {
			backlog = last.backlog
		}
		if !drained && !brokerBackAt.IsZero() && backlog >= 0 && backlog <= int64(2*o.Devices) {
			drained, drainedAt = true, now // what is left is about one poll's events in flight
			r.count.recording.Store(true)
		}
		if !drained && !brokerBackAt.IsZero() && now.Sub(brokerBackAt) > o.DrainTimeout {
			return nil, fmt.Errorf("loadrig: backlog %d did not drain within %v of the broker's restart", backlog, o.DrainTimeout)
		}

		dt := now.Sub(prevAt).Seconds()
		row := Sample{
			At: elapsed, Phase: phase, CPU: (ps.cpu - prev.cpu).Seconds() / dt,
			RSSMiB: float64(ps.rssKiB) / 1024, HWMMiB: float64(ps.hwmKiB) / 1024,
			Points: int64(float64(points-prevPoints) / dt), Events: int64(float64(events-prevEvents) / dt),
			Backlog: backlog, BrokerUp: r.broker.proc != nil, Measuring: inWindow,
		}
		s.Timeline = append(s.Timeline, row)
		if o.Timeline != nil {
			up := "up"
			if !row.BrokerUp {
				up = "down"
			}
			fmt.Fprintf(o.Timeline, "%6.0f %-11s %7.3f %8.1f %8.1f %9d %8d %9d %6s\n", elapsed.Seconds(), phase, row.CPU, row.RSSMiB, row.HWMMiB, row.Points, row.Events, row.Backlog, up)
		}
		prev, prevAt, prevPoints, prevEvents = ps, now, points, events

		if inWindow && drained && now.Sub(windowStart) >= o.Duration && now.Sub(drainedAt) >= settleAfterDrain {
			s.Window = now.Sub(windowStart)
			s.CPU = ps.cpu - cpuAtWindow
			s.Points = points - pointsAtWindow
			s.RSSPeakMiB = float64(ps.hwmKiB) / 1024
			break
		}
	}
	r.count.recording.Store(false)
	if isBridge {
		m, err := scrape(ctx, r.http, r.metricsURL)
		if err != nil {
			return nil, err
		}
		last = m
	}
	exitErr := r.sut.stop()
	s.SUTExitStatus = "exit 0"
	if exitErr != nil {
		s.SUTExitStatus = exitErr.Error()
	}
	r.waitQuiet(ctx)
	r.summarise(s, last)
	return s, nil
}

// waitQuiet waits until no message has arrived for 2 s (at most 60 s), so
// that what the system under test sent before it stopped is counted.
func (r *rig) waitQuiet(ctx context.Context) {
	deadline := time.Now().Add(60 * time.Second)
	n := r.count.messages.Load()
	for time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(2 * time.Second)
		m := r.count.messages.Load()
		if m == n {
			return
		}
		n = m
	}
}

func (r *rig) summarise(s *Summary, last bridgeMetrics) {
	o := r.opts
	secs := s.Window.Seconds()
	s.CPUPerSecond = s.CPU.Seconds() / secs
	s.PointsPerSec = float64(s.Points) / secs
	if s.Points > 0 {
		s.MicrosPerPt = float64(s.CPU.Microseconds()) / float64(s.Points)
	}
	var window []Sample
	for _, row := range s.Timeline {
		if row.Measuring {
			window = append(window, row)
		}
	}
	var rss []float64
	for _, row := range window[len(window)/2:] {
		rss = append(rss, row.RSSMiB)
	}
	slices.Sort(rss)
	if len(rss) > 0 {
		s.RSSSteadyMiB = rss[len(rss)/2]
	}
	for _, row := range window {
		if row.Backlog < 0 {
			continue
		}
		if s.BacklogStart < 0 {
			s.BacklogStart = row.Backlog
		}
		s.BacklogEnd = row.Backlog
		s.BacklogMax = max(s.BacklogMax, row.Backlog)
	}
	r.count.mu.Lock()
	defer r.count.mu.Unlock()
	h := &r.count.latency
	s.Latency = LatencySummary{N: h.n, P50: h.quantile(0.50), P99: h.quantile(0.99), P999: h.quantile(0.999), Max: h.max}
	s.BadFormat = r.count.badFormat.Load()
	if o.TelegrafBin == "" {
		rep := r.count.seqs.report(last.published, o.Devices)
		s.Seqs = &rep
		s.Dropped, s.Failed = last.dropped, last.failed
	}
}

// Print writes the summary as aligned "name: value" lines.
func (s *Summary) Print(w io.Writer) {
	o := s.Options
	fmt.Fprintf(w, "sut:              %s (%d devices × %d points, %d buses, poll %v, pinned %v)\n", o.SUT(), o.Devices, o.Points, o.Buses, o.Poll, o.Pin)
	if len(o.Env) > 0 {
		fmt.Fprintf(w, "sut env:          %v\n", o.Env)
	}
	if o.BrokerDown > 0 {
		fmt.Fprintf(w, "broker down:      %v after the warm-up\n", o.BrokerDown)
	}
	fmt.Fprintf(w, "window:           %.1f s\n", s.Window.Seconds())
	fmt.Fprintf(w, "cpu:              %.3f CPU-s/s, %.2f µs per delivered point\n", s.CPUPerSecond, s.MicrosPerPt)
	fmt.Fprintf(w, "delivered:        %.0f points/s (%d points)\n", s.PointsPerSec, s.Points)
	fmt.Fprintf(w, "rss:              steady %.1f MiB (median of the last half), peak %.1f MiB (VmHWM)\n", s.RSSSteadyMiB, s.RSSPeakMiB)
	if o.TelegrafBin == "" {
		fmt.Fprintf(w, "backlog:          start %d, end %d, max %d (events; -1 = not scraped)\n", s.BacklogStart, s.BacklogEnd, s.BacklogMax)
	}
	l := s.Latency
	fmt.Fprintf(w, "latency:          p50 %.1f ms, p99 %.1f ms, p99.9 %.1f ms, max %.1f ms (%d events, poll→subscriber)\n",
		ms(l.P50), ms(l.P99), ms(l.P999), ms(l.Max), l.N)
	if s.Seqs != nil {
		fmt.Fprintf(w, "seqs:             %s\n", s.Seqs)
		fmt.Fprintf(w, "dropped/failed:   %d / %d (bridge metrics)\n", s.Dropped, s.Failed)
	}
	if s.BadFormat > 0 {
		fmt.Fprintf(w, "bad messages:     %d\n", s.BadFormat)
	}
	fmt.Fprintf(w, "sut stop:         %s\n", s.SUTExitStatus)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
