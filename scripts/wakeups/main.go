// Command wakeups counts goroutine wake-ups per second in an execution
// trace, by where the woken goroutine had parked, and by who woke it: the
// fixed per-second costs of the bridge at small scale are wake-ups more
// than work (docs/performance.md, "Fixed costs at small scale").
//
//	go build -tags profile -o /tmp/bridge-prof ./cmd/bridge
//	go run ./scripts/loadrig -bridge /tmp/bridge-prof -devices 50 -scrape 0 -pin \
//	    -env BRIDGE_TRACE=/tmp/b.trace,BRIDGE_TRACE_AFTER=12s -duration 15s
//	go run ./scripts/wakeups /tmp/b.trace
//
// It reads the output of `go tool trace -d=parsed` (the Go toolchain's
// own trace parser): a wake-up is a goroutine's transition from Waiting to
// Runnable; its place is the first frames outside the runtime and the
// standard library of the stack where it parked, and its waker the
// goroutine that made the transition ("scheduler" when a timer or the
// network poller did).
package main

import (
	"bufio"
	"cmp"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

func main() {
	top := flag.Int("top", 25, "places to list")
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "usage: wakeups [-top N] TRACE")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	cmd := exec.Command("go", "tool", "trace", "-d=parsed", flag.Arg(0))
	out, err := cmd.StdoutPipe()
	if err != nil {
		fail(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		fail(err)
	}
	c := newCounter()
	if err := c.read(out); err != nil {
		fail(err)
	}
	if err := cmd.Wait(); err != nil {
		fail(fmt.Errorf("go tool trace: %w", err))
	}
	c.print(os.Stdout, *top)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "wakeups:", err)
	os.Exit(1)
}

var (
	timeRe       = regexp.MustCompile(`\bTime=(\d+)`)
	transitionRe = regexp.MustCompile(`\bGoID=(\d+) (\w+)->(\w+)`)
	byGRe        = regexp.MustCompile(`^M=\S+ P=\S+ G=(-?\d+) `)
)

// counter folds the events of a parsed trace.
type counter struct {
	parkedAt     map[string]string // goroutine -> where it last parked
	places       map[string]int
	wakers       map[string]int
	first, last  int64 // nanoseconds
	pending      event
	havePending  bool
	stackSection string
}

// event is one event line with its stacks.
type event struct {
	line       string
	transition []string // TransitionStack frames (function names)
	stack      []string // Stack frames
}

func newCounter() *counter {
	return &counter{parkedAt: map[string]string{}, places: map[string]int{}, wakers: map[string]int{}}
}

func (c *counter) read(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "M="):
			c.flush()
			c.pending, c.havePending, c.stackSection = event{line: line}, true, ""
		case strings.HasPrefix(line, "TransitionStack="):
			c.stackSection = "transition"
		case strings.HasPrefix(line, "Stack="):
			c.stackSection = "stack"
		case strings.HasPrefix(line, "\t") && !strings.HasPrefix(line, "\t\t") && c.havePending:
			fn, _, _ := strings.Cut(strings.TrimSpace(line), " @ ")
			switch c.stackSection {
			case "transition":
				c.pending.transition = append(c.pending.transition, fn)
			case "stack":
				c.pending.stack = append(c.pending.stack, fn)
			}
		}
	}
	c.flush()
	return sc.Err()
}

func (c *counter) flush() {
	if !c.havePending {
		return
	}
	c.havePending = false
	e := c.pending
	if m := timeRe.FindStringSubmatch(e.line); m != nil {
		t, _ := strconv.ParseInt(m[1], 10, 64)
		if c.first == 0 {
			c.first = t
		}
		c.last = t
	}
	if !strings.Contains(e.line, " StateTransition ") {
		return
	}
	m := transitionRe.FindStringSubmatch(e.line)
	if m == nil {
		return
	}
	g, from, to := m[1], m[2], m[3]
	switch {
	case from == "Running" && to == "Waiting":
		c.parkedAt[g] = place(e.transition, 2)
	case from == "Waiting" && to == "Runnable":
		at, ok := c.parkedAt[g]
		if !ok {
			at = "(parked before the trace began)"
		}
		c.places[at]++
		waker := "scheduler (timer or network poller)"
		if w := byGRe.FindStringSubmatch(e.line); w != nil && w[1] != "-1" {
			waker = place(e.stack, 1)
		}
		c.wakers[waker]++
	}
}

// stdPrefixes are the packages skipped when naming a place: the runtime
// and the standard library say how a goroutine waits, not which one it is.
var stdPrefixes = []string{"runtime.", "internal/", "sync.", "time.", "context.", "os.", "net.", "syscall.", "io.", "bufio.", "crypto/"}

// tracer is the place of the tracer's own goroutines (its CPU sample
// reader wakes ~10 times a second), which a trace-less run does not have.
const tracer = "(the tracer itself)"

// place names a stack by its first n frames outside stdPrefixes.
func place(frames []string, n int) string {
	if slices.ContainsFunc(frames, func(f string) bool {
		return strings.HasPrefix(f, "runtime.trace") || strings.HasPrefix(f, "runtime/trace.")
	}) {
		return tracer
	}
	var own []string
	for _, f := range frames {
		if !slices.ContainsFunc(stdPrefixes, func(p string) bool { return strings.HasPrefix(f, p) }) {
			own = append(own, f)
		}
	}
	if len(own) == 0 {
		if len(frames) == 0 {
			return "?"
		}
		return frames[0]
	}
	return strings.Join(own[:min(n, len(own))], " < ")
}

func (c *counter) print(w io.Writer, top int) {
	secs := float64(c.last-c.first) / 1e9
	if secs <= 0 {
		fmt.Fprintln(w, "empty trace")
		return
	}
	total := 0
	for _, n := range c.places {
		total += n
	}
	fmt.Fprintf(w, "window %.1f s, %.1f wake-ups/s, %.1f without the tracer's own\n\nwoken goroutine, where it parked:\n",
		secs, float64(total)/secs, float64(total-c.places[tracer])/secs)
	list(w, c.places, secs, top)
	fmt.Fprintln(w, "\nwoken by:")
	list(w, c.wakers, secs, top/2)
}

func list(w io.Writer, counts map[string]int, secs float64, top int) {
	type kv struct {
		k string
		n int
	}
	var all []kv
	for k, n := range counts {
		all = append(all, kv{k, n})
	}
	slices.SortFunc(all, func(a, b kv) int { return cmp.Or(cmp.Compare(b.n, a.n), strings.Compare(a.k, b.k)) })
	for _, x := range all[:min(top, len(all))] {
		fmt.Fprintf(w, "%9.1f/s  %s\n", float64(x.n)/secs, x.k)
	}
}
