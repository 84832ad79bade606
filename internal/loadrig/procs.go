package loadrig

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// Cores used with pinning: the system under test alone on sutCore, the
// simulator, Mosquitto and the rig itself on restCore.
const (
	sutCore  = "0"
	restCore = "1"
)

// stopTimeout is how long a stopped child may take to exit after SIGTERM
// before it is killed.
const stopTimeout = 30 * time.Second

// child is one process the rig started.
type child struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // the exit status, valid after done
}

// startChild starts argv with its output in logPath; with core set it runs
// under `taskset -c core`, which execs the program, so the pid is the
// program's.
func startChild(name, core, logPath string, env []string, argv ...string) (*child, error) {
	if core != "" {
		argv = append([]string{"taskset", "-c", core}, argv...)
	}
	log, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		log.Close()
		close(c.done)
	}()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// exited reports whether the process has ended.
func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, waits up to stopTimeout, then kills. It returns the
// exit error of a process that did not exit cleanly after SIGTERM.
func (c *child) stop() error {
	if c.exited() {
		return c.err
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
		return c.err
	case <-time.After(stopTimeout):
		_ = c.cmd.Process.Kill()
		<-c.done
		return fmt.Errorf("%s did not stop within %v after SIGTERM; killed", c.name, stopTimeout)
	}
}

// freePorts returns n distinct free TCP ports on 127.0.0.1. They are free
// when returned; another program could take one before it is bound, which
// shows as a start-up error.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// waitListening waits until addr accepts TCP connections, or c exits, or
// the timeout passes.
func waitListening(c *child, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			return nil
		}
		if c.exited() {
			return fmt.Errorf("%s exited before listening on %s (%v)", c.name, addr, c.err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not listening on %s after %v: %w", c.name, addr, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// broker is a Mosquitto subprocess with persistence, so that the
// subscriber's durable session (and the QoS 1 messages queued for it)
// survives a stop and start: the subscriber then misses nothing published
// while it reconnects, and a loss it reports is a loss of the bridge.
type broker struct {
	bin, conf, logDir, core string
	port                    int
	proc                    *child
	starts                  int
}

func newBroker(dir, core string, port int) (*broker, error) {
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		for _, p := range []string{"/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"} {
			if _, statErr := os.Stat(p); statErr == nil {
				bin, err = p, nil
				break
			}
		}
	}
	if err != nil {
		return nil, errors.New("mosquitto not found (install the mosquitto package)")
	}
	conf := filepath.Join(dir, "mosquitto.conf")
	text := fmt.Sprintf(`listener %d 127.0.0.1
allow_anonymous true
max_queued_messages 0
max_inflight_messages 0
set_tcp_nodelay true
persistence true
persistence_location %s/
autosave_interval 0
log_dest stderr
log_type error
log_type warning
`, port, dir)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		return nil, err
	}
	return &broker{bin: bin, conf: conf, logDir: dir, core: core, port: port}, nil
}

func (b *broker) addr() string { return "127.0.0.1:" + strconv.Itoa(b.port) }

// start starts the broker and waits until it accepts connections; the old
// socket may linger for a moment after a stop, so it retries.
func (b *broker) start() error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		b.starts++
		p, err := startChild("mosquitto", b.core, filepath.Join(b.logDir, fmt.Sprintf("mosquitto-%d.log", b.starts)), nil, b.bin, "-c", b.conf)
		if err != nil {
			return err
		}
		if err = waitListening(p, b.addr(), 5*time.Second); err == nil {
			b.proc = p
			return nil
		}
		_ = p.stop()
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// stop shuts the broker down with SIGTERM so that it saves its sessions.
func (b *broker) stop() error {
	if b.proc == nil {
		return nil
	}
	err := b.proc.stop()
	b.proc = nil
	return err
}
