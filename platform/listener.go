package platform

import (
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// listener is a mochi listener for raw MQTT over TCP or MQTT over WebSocket,
// optionally with TLS. mochi's own listeners are not used because:
//
//   - its WebSocket listener binds only when it starts serving, so a ":0"
//     address could not be reported; this one binds in Init;
//   - its listeners leave connections that have not sent CONNECT yet open at
//     shutdown, so mochi's Close would wait for them; this one closes every
//     connection it accepted and waits for its goroutine;
//   - mochi counts a connection in its wait group from inside the
//     connection's goroutine, so its Close may race with a connection that
//     is just arriving; waiting here, under a mutex, orders the two.
//
// The WebSocket side accepts any path and the subprotocols mqtt and mqttv3.1.
type listener struct {
	id, addr string
	ws       bool
	tlsCfg   *tls.Config

	ln        net.Listener
	httpSrv   *http.Server // WebSocket only
	log       *slog.Logger
	establish listeners.EstablishFn
	upgrader  websocket.Upgrader
	closeOnce sync.Once

	// disconnect, if set, replaces the CloseFn mochi passes to Close. mochi's
	// own (closeListenerClients, v2.7.9) read-locks the client map twice in
	// one call (Clients.GetByListener calls Len), which deadlocks Close when
	// a disconnecting client's Clients.Delete waits between the two locks.
	disconnect listeners.CloseFn

	mu     sync.Mutex
	idle   *sync.Cond // signalled when conns becomes empty
	closed bool
	conns  map[net.Conn]struct{}
}

var _ listeners.Listener = (*listener)(nil)

func newListener(id, addr string, ws bool, tlsCfg *tls.Config) *listener {
	l := &listener{
		id: id, addr: addr, ws: ws, tlsCfg: tlsCfg,
		conns: map[net.Conn]struct{}{},
		upgrader: websocket.Upgrader{
			Subprotocols: []string{"mqtt", "mqttv3.1"},
			CheckOrigin:  func(*http.Request) bool { return true },
		},
	}
	l.idle = sync.NewCond(&l.mu)
	return l
}

func (l *listener) ID() string { return l.id }

// Address returns the bound address after Init.
func (l *listener) Address() string {
	if l.ln != nil {
		return l.ln.Addr().String()
	}
	return l.addr
}

func (l *listener) Protocol() string {
	switch {
	case l.ws && l.tlsCfg != nil:
		return "wss"
	case l.ws:
		return "ws"
	case l.tlsCfg != nil:
		return "tls"
	}
	return "tcp"
}

// Init binds the address.
func (l *listener) Init(log *slog.Logger) error {
	l.log = log
	ln, err := net.Listen("tcp", l.addr)
	if err != nil {
		return err
	}
	if l.tlsCfg != nil {
		ln = tls.NewListener(ln, l.tlsCfg)
	}
	l.ln = ln
	if l.ws {
		l.httpSrv = &http.Server{
			Handler:           http.HandlerFunc(l.upgrade),
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		}
	}
	return nil
}

// Serve accepts until Close. establish is set before any goroutine that
// reads it starts.
func (l *listener) Serve(establish listeners.EstablishFn) {
	l.establish = establish
	if l.ws {
		if err := l.httpSrv.Serve(l.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			l.log.Error("websocket listener failed", "err", err)
		}
		return
	}
	for {
		conn, err := l.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				l.log.Error("tcp listener failed", "err", err)
			}
			return
		}
		go l.serveConn(conn)
	}
}

func (l *listener) upgrade(w http.ResponseWriter, r *http.Request) {
	c, err := l.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader has answered with an HTTP error
	}
	l.serveConn(&wsConn{c: c})
}

// serveConn runs mochi's connection handling for conn, tracked so that Close
// can end it and wait for it.
func (l *listener) serveConn(conn net.Conn) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		conn.Close()
		return
	}
	l.conns[conn] = struct{}{}
	l.mu.Unlock()

	defer func() {
		conn.Close()
		l.mu.Lock()
		delete(l.conns, conn)
		if len(l.conns) == 0 {
			l.idle.Broadcast()
		}
		l.mu.Unlock()
	}()
	if err := l.establish(l.id, &meteredConn{Conn: conn}); err != nil {
		l.log.Debug("connection ended", "remote", conn.RemoteAddr().String(), "err", err)
	}
}

// Close stops accepting, disconnects the clients (disconnect if set, else
// mochi's closeClients), closes what is left (connections still before
// CONNECT) and waits for every connection goroutine.
func (l *listener) Close(closeClients listeners.CloseFn) {
	if l.disconnect != nil {
		closeClients = l.disconnect
	}
	l.closeOnce.Do(func() {
		l.mu.Lock()
		l.closed = true
		l.mu.Unlock()
		if l.httpSrv != nil {
			_ = l.httpSrv.Close() // upgraded (hijacked) connections are tracked in conns
		}
		if l.ln != nil {
			_ = l.ln.Close()
		}
		closeClients(l.id)

		l.mu.Lock()
		for c := range l.conns {
			_ = c.Close()
		}
		for len(l.conns) > 0 {
			l.idle.Wait()
		}
		l.mu.Unlock()
	})
}

// wsConn carries the MQTT byte stream in binary WebSocket messages. mochi
// reads from one goroutine and serialises its writes.
type wsConn struct {
	c *websocket.Conn
	r io.Reader // current message
}

var errWSText = errors.New("websocket text message; mqtt needs binary")

func (w *wsConn) Read(p []byte) (int, error) {
	for {
		if w.r == nil {
			typ, r, err := w.c.NextReader()
			if err != nil {
				return 0, err
			}
			if typ != websocket.BinaryMessage {
				return 0, errWSText
			}
			w.r = r
		}
		n, err := w.r.Read(p)
		if errors.Is(err, io.EOF) {
			w.r = nil
			if n == 0 {
				continue
			}
			err = nil
		}
		return n, err
	}
}

func (w *wsConn) Write(p []byte) (int, error) {
	if err := w.c.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (w *wsConn) Close() error         { return w.c.Close() }
func (w *wsConn) LocalAddr() net.Addr  { return w.c.LocalAddr() }
func (w *wsConn) RemoteAddr() net.Addr { return w.c.RemoteAddr() }

// Deadlines go to the underlying connection, where they are safe to set
// while another goroutine writes (mochi refreshes them from its read loop);
// gorilla's own write deadline is not.
func (w *wsConn) SetDeadline(t time.Time) error      { return w.c.UnderlyingConn().SetDeadline(t) }
func (w *wsConn) SetReadDeadline(t time.Time) error  { return w.c.UnderlyingConn().SetReadDeadline(t) }
func (w *wsConn) SetWriteDeadline(t time.Time) error { return w.c.UnderlyingConn().SetWriteDeadline(t) }

// meteredConn counts what a connection carries, for the ReadBytes,
// WriteBytes, ReadMsg and WriteMsg fields of mon messages (rule Q4). mochi
// keeps it as the client's Net.Conn; the hook counts the messages.
type meteredConn struct {
	net.Conn
	readBytes, writeBytes atomic.Int64
	readMsgs, writeMsgs   atomic.Int64
}

func (c *meteredConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.readBytes.Add(int64(n))
	return n, err
}

func (c *meteredConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.writeBytes.Add(int64(n))
	return n, err
}
