package mqtttest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// startTimeout is how long Start waits for the broker to accept connections.
const startTimeout = 10 * time.Second

// Mosquitto is a Mosquitto broker subprocess bound to one loopback port for
// the life of a test.
type Mosquitto struct {
	t          testing.TB
	bin        string
	conf       string
	addr       string
	persistent bool

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when the running process has exited
	log  *lockedBuffer // the broker's stderr, across restarts
}

// StartMosquitto starts a broker and returns its address ("127.0.0.1:port").
// It is stopped when the test ends.
func StartMosquitto(t testing.TB) (addr string) {
	t.Helper()
	return NewMosquitto(t).Addr()
}

// NewMosquitto starts a broker (listener on 127.0.0.1 and a free port,
// anonymous access allowed, no persistence) and returns its handle. It is
// stopped when the test ends, and its log is printed if the test failed.
func NewMosquitto(t testing.TB) *Mosquitto {
	t.Helper()
	return newMosquitto(t, false)
}

// NewPersistentMosquitto is NewMosquitto with persistence on: durable
// sessions (clean session false) and their queued QoS 1 messages survive
// Stop and Start, which shut the broker down cleanly (SIGTERM) so that it
// saves its database. Use it when a test's own subscriber must not miss
// messages published while it reconnects after an outage.
func NewPersistentMosquitto(t testing.TB) *Mosquitto {
	t.Helper()
	return newMosquitto(t, true)
}

func newMosquitto(t testing.TB, persistent bool) *Mosquitto {
	t.Helper()
	bin := findMosquitto(t)
	m := &Mosquitto{t: t, bin: bin, log: &lockedBuffer{}, persistent: persistent}
	t.Cleanup(func() {
		m.Stop()
		if t.Failed() {
			t.Logf("mosquitto log:\n%s", m.log.String())
		}
	})

	dir := t.TempDir()
	var lastErr error
	for range 5 { // a free port can be taken by someone else before mosquitto binds it
		port, err := freePort()
		if err != nil {
			t.Fatalf("mqtttest: find a free port: %v", err)
		}
		m.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		m.conf = filepath.Join(dir, "mosquitto.conf")
		persistence := "persistence false\n"
		if persistent {
			persistence = fmt.Sprintf("persistence true\npersistence_location %s/\nautosave_interval 0\n", dir)
			if os.Geteuid() == 0 {
				// Started as root, mosquitto drops to the user "mosquitto",
				// which cannot write its database into our temporary
				// directory: every save then fails ("Error: Permission
				// denied" in its log) and a restart forgets all sessions.
				persistence += "user root\n"
			}
		}
		conf := fmt.Sprintf(`listener %d 127.0.0.1
allow_anonymous true
max_queued_messages 0
set_tcp_nodelay true
%slog_dest stderr
log_type error
log_type warning
log_type notice
`, port, persistence)
		if err := os.WriteFile(m.conf, []byte(conf), 0o600); err != nil {
			t.Fatalf("mqtttest: write config: %v", err)
		}
		if lastErr = m.start(); lastErr == nil {
			return m
		}
	}
	t.Fatalf("mqtttest: start mosquitto: %v\nlog:\n%s", lastErr, m.log.String())
	return nil
}

// Addr returns the broker's address, "127.0.0.1:port"; it stays the same
// across Stop and Start.
func (m *Mosquitto) Addr() string { return m.addr }

// URL returns the broker's address as tcp://127.0.0.1:port.
func (m *Mosquitto) URL() string { return "tcp://" + m.addr }

// Stop kills the broker (SIGKILL, like a crash: clients see their
// connections drop; a persistent broker gets SIGTERM so that it saves its
// sessions) and waits until it has exited. Stopping a stopped broker does
// nothing.
func (m *Mosquitto) Stop() { m.stop(m.persistent) }

// Kill kills the broker with SIGKILL whether or not it is persistent, like
// a crash or a power cut: a persistent broker comes back with what it last
// saved (at its previous clean stop), and loses what it held only in
// memory since. It waits until the process has exited.
func (m *Mosquitto) Kill() { m.stop(false) }

// stop ends the running process, with SIGTERM first when gently is set.
func (m *Mosquitto) stop(gently bool) {
	m.mu.Lock()
	cmd, done := m.cmd, m.done
	m.cmd = nil
	m.mu.Unlock()
	if cmd == nil {
		return
	}
	if gently {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
			return
		case <-time.After(startTimeout):
		}
	}
	_ = cmd.Process.Kill()
	<-done
}

// Start starts a stopped broker again on the same port and waits until it
// accepts connections. It fails the test if it cannot.
func (m *Mosquitto) Start() {
	m.t.Helper()
	deadline := time.Now().Add(startTimeout)
	for {
		err := m.start()
		if err == nil {
			return
		}
		// The old socket may linger for a moment; retry until the deadline.
		if time.Now().After(deadline) {
			m.t.Fatalf("mqtttest: restart mosquitto on %s: %v\nlog:\n%s", m.addr, err, m.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Restart stops and starts the broker on the same port.
func (m *Mosquitto) Restart() {
	m.t.Helper()
	m.Stop()
	m.Start()
}

// start launches the process and waits until the port accepts connections.
func (m *Mosquitto) start() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd != nil {
		return errors.New("already running")
	}
	cmd := exec.Command(m.bin, "-c", m.conf)
	cmd.Stdout = m.log
	cmd.Stderr = m.log
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()

	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-done:
			return fmt.Errorf("mosquitto exited during start-up (%v)", cmd.ProcessState)
		default:
		}
		conn, err := net.DialTimeout("tcp", m.addr, 100*time.Millisecond)
		if err == nil {
			_ = conn.Close()
			m.cmd, m.done = cmd, done
			return nil
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-done
			return fmt.Errorf("mosquitto did not accept connections on %s within %v", m.addr, startTimeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// findMosquitto returns the broker's path, or skips the test (fails it when
// CI=true) when it is not installed.
func findMosquitto(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("mosquitto"); err == nil {
		return p
	}
	const debianPath = "/usr/sbin/mosquitto" // not on a normal user's PATH
	if _, err := os.Stat(debianPath); err == nil {
		return debianPath
	}
	const msg = "mosquitto not found on PATH or at /usr/sbin/mosquitto; install it (Debian/Ubuntu: apt-get install mosquitto) to run this test"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// freePort asks the kernel for a free loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// lockedBuffer collects the broker's output from exec's copying goroutine.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
