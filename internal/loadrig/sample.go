package loadrig

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat:
// 100 on every Linux architecture the bridge ships for (the kernel fixes
// the value it exports, whatever its internal HZ).
const clockTicks = 100

// procSample is what /proc says about one process at one moment.
type procSample struct {
	cpu    time.Duration // utime + stime since the process started
	rssKiB int64         // VmRSS
	hwmKiB int64         // VmHWM: peak RSS since the process started
}

// readProc samples /proc/<pid>/stat and /proc/<pid>/status.
func readProc(pid int) (procSample, error) {
	var s procSample
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	if s.cpu, err = parseStatCPU(stat); err != nil {
		return s, err
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	s.rssKiB, s.hwmKiB, err = parseStatusMemory(status)
	return s, err
}

// parseStatCPU returns utime + stime from the text of /proc/<pid>/stat.
// The command name (field 2) is in parentheses and may hold spaces, so the
// fields are counted from the last ')'.
func parseStatCPU(stat []byte) (time.Duration, error) {
	end := bytes.LastIndexByte(stat, ')')
	if end < 0 {
		return 0, errors.New("/proc stat: no ')' after the command name")
	}
	fields := strings.Fields(string(stat[end+1:]))
	// After the name: state(3) ... utime is field 14, stime 15 → indexes 11, 12.
	if len(fields) < 13 {
		return 0, fmt.Errorf("/proc stat: %d fields after the name, want at least 13", len(fields))
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc stat: %w", err)
	}
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}

// parseStatusMemory returns VmRSS and VmHWM (KiB) from /proc/<pid>/status.
func parseStatusMemory(status []byte) (rss, hwm int64, err error) {
	found := 0
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || (name != "VmRSS" && name != "VmHWM") {
			continue
		}
		f := strings.Fields(rest) // "1234 kB"
		if len(f) != 2 || f[1] != "kB" {
			return 0, 0, fmt.Errorf("/proc status: unexpected %s line %q", name, sc.Text())
		}
		v, perr := strconv.ParseInt(f[0], 10, 64)
		if perr != nil {
			return 0, 0, fmt.Errorf("/proc status: %s: %w", name, perr)
		}
		if name == "VmRSS" {
			rss = v
		} else {
			hwm = v
		}
		found++
	}
	if found != 2 {
		return 0, 0, errors.New("/proc status: VmRSS or VmHWM missing")
	}
	return rss, hwm, nil
}

// bridgeMetrics is what the rig reads from the bridge's /metrics.
type bridgeMetrics struct {
	backlog   int64            // bridge_buffer_events
	appended  int64            // sum of bridge_events_appended_total
	published map[string]int64 // bridge_events_published_total by queue (device)
	dropped   int64            // sum of bridge_events_dropped_total
	failed    int64            // sum of bridge_events_failed_total
}

// scrape fetches and parses the bridge's /metrics.
func scrape(ctx context.Context, client *http.Client, url string) (bridgeMetrics, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return bridgeMetrics{}, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return bridgeMetrics{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return bridgeMetrics{}, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return parseMetrics(resp.Body)
}

// parseMetrics reads the few series the rig needs from Prometheus text.
func parseMetrics(r io.Reader) (bridgeMetrics, error) {
	m := bridgeMetrics{published: map[string]int64{}}
	sawBacklog := false
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		series, value, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		name, labels, _ := strings.Cut(series, "{")
		switch name {
		case "bridge_buffer_events", "bridge_events_appended_total", "bridge_events_published_total",
			"bridge_events_dropped_total", "bridge_events_failed_total":
		default:
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			return m, fmt.Errorf("metrics: %q: %w", line, err)
		}
		n := int64(v)
		switch name {
		case "bridge_buffer_events":
			m.backlog, sawBacklog = n, true
		case "bridge_events_appended_total":
			m.appended += n
		case "bridge_events_published_total":
			m.published[labelValue(labels, "device")] += n
		case "bridge_events_dropped_total":
			m.dropped += n
		case "bridge_events_failed_total":
			m.failed += n
		}
	}
	if err := sc.Err(); err != nil {
		return m, err
	}
	if !sawBacklog {
		return m, errors.New("metrics: no bridge_buffer_events")
	}
	return m, nil
}

// labelValue returns the value of label key in `a="x",key="y"}`.
func labelValue(labels, key string) string {
	_, rest, ok := strings.Cut(labels, key+`="`)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, `"`)
	return v
}

func (m bridgeMetrics) publishedTotal() (n int64) {
	for _, v := range m.published {
		n += v
	}
	return n
}
