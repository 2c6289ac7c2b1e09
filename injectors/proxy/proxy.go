//go:build linux

package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// DialFunc connects a client the proxy accepted to its upstream.
type DialFunc func(ctx context.Context, client net.Conn) (net.Conn, error)

// Config configures a Proxy.
type Config struct {
	// Listener is where clients come in; the proxy owns it from Start on and closes it.
	Listener net.Listener
	// Dial connects each client to its upstream.
	Dial DialFunc
	// Toxics is the initial toxic set.
	Toxics []Toxic
	// DialTimeout bounds one upstream dial (default 10s).
	DialTimeout time.Duration
	Logger      *slog.Logger
}

// Stats counts a proxy's connections.
type Stats struct {
	Accepted   int64 // clients accepted
	Proxied    int64 // clients connected to their upstream
	DialErrors int64 // clients whose upstream dial failed (they were reset)
	Open       int64 // connections open now
}

// Proxy is a running TCP proxy.
type Proxy struct {
	ln          net.Listener
	dial        DialFunc
	dialTimeout time.Duration
	log         *slog.Logger

	ctx    context.Context // ends on Close: bounds dials and waits
	cancel context.CancelFunc

	mu      sync.Mutex
	toxics  []Toxic
	changed chan struct{} // closed and replaced on every SetToxics
	conns   map[*conn]struct{}
	closed  bool // the listener is closed
	// draining: Drain has begun, every connection registered from now on drains at once;
	// forced: Close has begun, a connection registering now is closed at once.
	draining, forced bool

	wg   sync.WaitGroup
	bufs sync.Pool // bufSize chunks of the toxic path
	big  sync.Pool // bigBufSize buffers of the fast path

	accepted, proxied, dialErrors atomic.Int64
	drained                       atomic.Int64 // connections a Drain has closed or is closing
}

// Start validates the configuration and starts accepting connections.
func Start(cfg Config) (*Proxy, error) {
	if cfg.Listener == nil || cfg.Dial == nil {
		return nil, errors.New("proxy: Listener and Dial are required")
	}
	for _, t := range cfg.Toxics {
		if err := t.Validate(); err != nil {
			return nil, err
		}
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{
		ln: cfg.Listener, dial: cfg.Dial, dialTimeout: cfg.DialTimeout, log: cfg.Logger,
		ctx: ctx, cancel: cancel,
		toxics:  append([]Toxic(nil), cfg.Toxics...),
		changed: make(chan struct{}),
		conns:   map[*conn]struct{}{},
	}
	p.bufs.New = func() any { b := make([]byte, bufSize); return &b }
	p.big.New = func() any { b := make([]byte, bigBufSize); return &b }
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

// Addr is the listener's address.
func (p *Proxy) Addr() net.Addr { return p.ln.Addr() }

// Stats returns the connection counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	open := int64(len(p.conns))
	p.mu.Unlock()
	return Stats{Accepted: p.accepted.Load(), Proxied: p.proxied.Load(), DialErrors: p.dialErrors.Load(), Open: open}
}

// SetToxics atomically replaces the toxic set. When it returns, every open connection has the new
// set (each drawing its toxicity afresh): data already read keeps the timing it was given (order
// is never broken), data read from now on gets the new toxics.
func (p *Proxy) SetToxics(ts ...Toxic) error {
	for _, t := range ts {
		if err := t.Validate(); err != nil {
			return err
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.toxics = append([]Toxic(nil), ts...)
	// Installed here, under p.mu, rather than by each connection's watcher: a caller (an API
	// client, a test) may rely on the toxics being in force once this returns. A connection
	// registering concurrently waits for p.mu and then reads the new set.
	for c := range p.conns {
		c.install(newView(p.toxics))
	}
	// Wakes the watchers, which re-arm the connection-level toxics (reset, blackhole timeout).
	close(p.changed)
	p.changed = make(chan struct{})
	return nil
}

// Toxics returns the current toxic set.
func (p *Proxy) Toxics() []Toxic {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Toxic(nil), p.toxics...)
}

// current returns the toxic set and the channel that is closed when it next changes.
func (p *Proxy) current() ([]Toxic, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.toxics, p.changed
}

// Close stops accepting, closes every open connection and waits for the proxy's goroutines.
func (p *Proxy) Close() error {
	err := p.stopAccepting()
	p.mu.Lock()
	p.forced = true
	conns := make([]*conn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	for _, c := range conns {
		c.shut(false)
	}
	p.cancel()
	p.wg.Wait()
	return err
}

// Shutdown is Drain without its figures: open connections, and those still connecting to their
// upstream, are closed at their next response boundary until ctx ends, the rest then.
func (p *Proxy) Shutdown(ctx context.Context) error {
	_, err := p.Drain(ctx)
	return err
}

func (p *Proxy) stopAccepting() error {
	p.mu.Lock()
	already := p.closed
	p.closed = true
	p.mu.Unlock()
	if already {
		return nil
	}
	if err := p.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("close proxy listener %s: %w", p.ln.Addr(), err)
	}
	return nil
}

func (p *Proxy) serve() {
	defer p.wg.Done()
	backoff := time.NewTimer(0)
	<-backoff.C
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || p.ctx.Err() != nil {
				return
			}
			// EMFILE and friends: retry after a pause rather than spinning or giving up.
			p.log.Warn("proxy accept", "addr", p.ln.Addr(), "err", err)
			backoff.Reset(50 * time.Millisecond)
			select {
			case <-backoff.C:
			case <-p.ctx.Done():
				return
			}
			continue
		}
		p.accepted.Add(1)
		p.wg.Add(1)
		go p.handle(c)
	}
}

func (p *Proxy) handle(client net.Conn) {
	defer p.wg.Done()
	ctx, cancel := context.WithTimeout(p.ctx, p.dialTimeout)
	server, err := p.dial(ctx, client)
	cancel()
	if err != nil {
		p.dialErrors.Add(1)
		p.log.Debug("proxy upstream dial", "client", client.RemoteAddr(), "err", err)
		// The client sees what it would see if the upstream refused: a reset.
		resetClose(client)
		return
	}
	p.proxied.Add(1)
	c := &conn{p: p, client: client, server: server, start: time.Now(), done: make(chan struct{}), viewCh: make(chan struct{}), draining: make(chan struct{})}
	c.drain.wake = make(chan struct{}, 1)
	// The view is drawn and the connection registered in one critical section with SetToxics,
	// so a change is either seen here or installed by SetToxics, never missed.
	p.mu.Lock()
	if p.forced {
		p.mu.Unlock()
		_ = client.Close()
		_ = server.Close()
		return
	}
	c.view.Store(newView(p.toxics))
	changed := p.changed
	p.conns[c] = struct{}{}
	if p.draining {
		// Accepted before the listener closed, connected since: served, and drained.
		c.startDrain()
	}
	p.mu.Unlock()

	up := &link{c: c, dir: Upstream, src: client, dst: server}
	down := &link{c: c, dir: Downstream, src: server, dst: client}
	var links sync.WaitGroup
	links.Add(2)
	downDone := make(chan struct{})
	go func() { defer links.Done(); up.run() }()
	go func() { defer links.Done(); down.run(); close(downDone) }()
	watched := make(chan struct{})
	go func() { defer close(watched); c.watch(changed) }()
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		select {
		case <-c.draining:
			c.closeWhenIdle(downDone)
		case <-c.done:
		}
	}()
	links.Wait()
	c.shut(false)
	<-watched
	<-drained

	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// conn is one proxied connection.
type conn struct {
	p              *Proxy
	client, server net.Conn
	start          time.Time

	view   atomic.Pointer[view]
	vmu    sync.Mutex
	viewCh chan struct{} // closed and replaced when view changes (wakes held streams)

	once sync.Once
	done chan struct{} // closed when the connection is shut

	drain    connDrain
	draining chan struct{} // closed when the connection starts draining
}

// shut closes both sides once: with an RST if reset, else normally.
func (c *conn) shut(reset bool) {
	c.once.Do(func() {
		if reset {
			resetClose(c.client)
			resetClose(c.server)
		} else {
			_ = c.client.Close()
			_ = c.server.Close()
		}
		close(c.done)
	})
}

func (c *conn) viewChanged() <-chan struct{} {
	c.vmu.Lock()
	defer c.vmu.Unlock()
	return c.viewCh
}

// install makes v the connection's view and wakes both streams so they pick it up.
func (c *conn) install(v *view) {
	c.view.Store(v)
	c.vmu.Lock()
	close(c.viewCh)
	c.viewCh = make(chan struct{})
	c.vmu.Unlock()
	// A deadline in the past makes a blocked read return; the stream then clears it
	// and reloads the view. The view is stored first, so the stream cannot miss it.
	past := time.Unix(1, 0)
	_ = c.client.SetReadDeadline(past)
	_ = c.server.SetReadDeadline(past)
}

// watch follows toxic set changes and runs the connection-level toxics (reset, blackhole timeout).
func (c *conn) watch(changed <-chan struct{}) {
	var resetAt, closeAt time.Time
	resetT := time.NewTimer(time.Hour)
	closeT := time.NewTimer(time.Hour)
	defer resetT.Stop()
	defer closeT.Stop()
	arm := func(v *view, now time.Time) {
		resetT.Stop()
		closeT.Stop()
		if v.reset == nil {
			resetAt = time.Time{}
		} else {
			if resetAt.IsZero() {
				from := now
				if c.start.After(from) {
					from = c.start
				}
				resetAt = from.Add(v.reset.After)
			}
			resetT.Reset(time.Until(resetAt))
		}
		if v.timeout == 0 {
			closeAt = time.Time{}
		} else {
			if closeAt.IsZero() {
				closeAt = now.Add(v.timeout)
			}
			closeT.Reset(time.Until(closeAt))
		}
	}
	arm(c.view.Load(), time.Now())
	for {
		select {
		case <-c.done:
			return
		case <-changed:
			// SetToxics installed the new view already.
			_, changed = c.p.current()
			arm(c.view.Load(), time.Now())
		case <-resetT.C:
			c.shut(true)
			return
		case <-closeT.C:
			c.shut(false)
			return
		}
	}
}

// link is one direction of a connection.
type link struct {
	c        *conn
	dir      Stream
	src, dst net.Conn

	small   []byte        // the fast path's own read buffer
	carry   []byte        // read by the fast path after the toxics changed: the slow path sends it
	q       chan chunk    // to the writer; nil until the toxic path is first used
	written chan struct{} // closed when the writer has finished
}

type chunkKind uint8

const (
	chunkData chunkKind = iota
	chunkEOF
	chunkFlush
)

type chunk struct {
	kind chunkKind
	buf  *[]byte
	n    int
	at   time.Time     // when it may be written
	ack  chan struct{} // chunkFlush: closed when everything before it is written
}

// The fast path reads into smallBufSize first and switches to bigBufSize for bulk transfers.
const (
	smallBufSize = 16 << 10
	bigBufSize   = 1 << 20
)

// queueLen bounds the chunks in flight on one stream (at most queueLen×bufSize bytes held).
const queueLen = 64

func (l *link) run() {
	defer func() {
		if l.q != nil {
			close(l.q)
			<-l.written
		}
	}()
	for {
		if l.c.view.Load().link(l.dir) == nil && len(l.carry) == 0 {
			if !l.flush() {
				return
			}
			if !l.fast() {
				return
			}
			continue
		}
		if !l.slow() {
			return
		}
	}
}

// fast copies with no toxic until EOF, an error, or a wake-up (the view changed). It reports
// whether the stream goes on.
//
// Measured on loopback (2 cores), plain read/write with a large buffer beats splice(2) through a
// pipe, which is what net.TCPConn.ReadFrom does, by about half again. Reads go to a small buffer
// of the stream's own; a read that fills it means a bulk transfer, and the following reads use a
// large pooled buffer, taken only once data is there to read, until the stream slows down again.
// An idle stream holds no large buffer.
func (l *link) fast() bool {
	sc, ok := l.src.(syscall.Conn)
	if !ok {
		b := l.c.p.bufs.Get().(*[]byte)
		_, err := io.CopyBuffer(l.dst, l.src, *b)
		l.c.p.bufs.Put(b)
		return l.ended(err, false)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return l.ended(err, false)
	}
	if l.small == nil {
		l.small = make([]byte, smallBufSize)
	}
	pool := &l.c.p.big
	bulk := false
	for {
		var big *[]byte
		var n int
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			buf := l.small
			if bulk {
				big = pool.Get().(*[]byte)
				buf = *big
			}
			for {
				n, rerr = unix.Read(int(fd), buf)
				if rerr != unix.EINTR {
					break
				}
			}
			if rerr == unix.EAGAIN {
				if big != nil {
					pool.Put(big)
					big = nil
				}
				return false // wait until readable (or until a wake-up's deadline)
			}
			return true
		})
		buf := l.small
		if big != nil {
			buf = *big
		}
		switch {
		case err != nil:
		case rerr != nil:
			err = os.NewSyscallError("read", rerr)
		case n == 0:
			err = io.EOF
		case !l.c.admit(l.dir, n):
			// Draining, past the response boundary: the client's data is dropped.
		case l.c.view.Load().link(l.dir) != nil:
			// The toxics changed while this read was in flight: the deadline that wakes a blocked
			// read can lose the race with data arriving, and the read then completes. The data
			// came in after the change, so the slow path sends it, with the toxics.
			l.carry = append(l.carry[:0], buf[:n]...)
			if big != nil {
				pool.Put(big)
			}
			return true
		default:
			_, err = l.dst.Write(buf[:n])
			l.c.written(l.dir, n)
			bulk = n == len(buf) || (bulk && n >= len(buf)/4)
		}
		if big != nil {
			pool.Put(big)
		}
		if err != nil {
			return l.ended(err, false)
		}
	}
}

// ended handles the end of a read: nil is EOF. It reports whether the stream goes on.
func (l *link) ended(err error, queued bool) bool {
	switch {
	case err == nil || errors.Is(err, io.EOF):
		if queued {
			l.enqueue(chunk{kind: chunkEOF, at: l.closeAt(time.Now())})
		} else {
			closeWrite(l.dst)
		}
		return false
	case errors.Is(err, os.ErrDeadlineExceeded):
		// Woken up by install: clear the deadline and reload the view. A wake-up that comes
		// after this point sets the deadline again, so none is lost.
		if serr := l.src.SetReadDeadline(time.Time{}); serr != nil {
			l.c.shut(true)
			return false
		}
		return true
	default:
		// A reset or a failed write on either side: pass the reset on to the other side.
		select {
		case <-l.c.done:
		default:
			l.c.p.log.Debug("proxy stream ended", "stream", l.dir, "err", err)
		}
		l.c.shut(isReset(err))
		return false
	}
}

func (l *link) closeAt(now time.Time) time.Time {
	if lt := l.c.view.Load().link(l.dir); lt != nil && lt.slowClose > 0 {
		return now.Add(lt.slowClose)
	}
	return now
}

// slow reads and queues chunks through the stream's toxics while it has any. It reports whether
// the stream goes on.
func (l *link) slow() bool {
	if l.q == nil {
		l.q = make(chan chunk, queueLen)
		l.written = make(chan struct{})
		go l.write()
	}
	for {
		changed := l.c.viewChanged()
		lt := l.c.view.Load().link(l.dir)
		if lt == nil && len(l.carry) == 0 {
			return true
		}
		if lt != nil && lt.hold {
			select {
			case <-changed:
				continue
			case <-l.c.done:
				return false
			}
		}
		limit := bufSize
		if lt != nil && lt.maxChunk > 0 {
			limit = lt.maxChunk
		}
		if len(l.carry) > 0 {
			// What the fast path read after the change goes first, in chunks as if read here.
			for len(l.carry) > 0 {
				b := l.c.p.bufs.Get().(*[]byte)
				n := copy((*b)[:limit], l.carry)
				l.carry = l.carry[n:]
				if !l.send(b, n) {
					return false
				}
			}
			l.carry = nil
			continue
		}
		b := l.c.p.bufs.Get().(*[]byte)
		n, err := l.src.Read((*b)[:limit])
		if n > 0 && !l.c.admit(l.dir, n) {
			n = 0 // draining, past the response boundary: dropped
		}
		if n > 0 {
			if !l.send(b, n) {
				return false
			}
		} else {
			l.c.p.bufs.Put(b)
		}
		if err != nil && !l.ended(err, true) {
			return false
		}
	}
}

// send queues n bytes of b for the writer, timed by the toxics in force now: the view may have
// changed while the read was blocked, and data is timed by the toxics of when it arrived.
func (l *link) send(b *[]byte, n int) bool {
	at := time.Now()
	if cur := l.c.view.Load().link(l.dir); cur != nil {
		for _, s := range cur.stages {
			at = s.at(at, n)
		}
	}
	return l.enqueue(chunk{kind: chunkData, buf: b, n: n, at: at})
}

func (l *link) enqueue(ch chunk) bool {
	select {
	case l.q <- ch:
		return true
	case <-l.c.done:
		return false
	}
}

// flush waits until the writer has written everything queued. It reports whether the stream goes on.
func (l *link) flush() bool {
	if l.q == nil {
		return true
	}
	ack := make(chan struct{})
	if !l.enqueue(chunk{kind: chunkFlush, ack: ack}) {
		return false
	}
	select {
	case <-ack:
		return true
	case <-l.c.done:
		return false
	}
}

// write releases queued chunks in order, each at its time.
func (l *link) write() {
	defer close(l.written)
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for ch := range l.q {
		switch ch.kind {
		case chunkFlush:
			close(ch.ack)
			continue
		case chunkEOF:
			if sleepUntil(ch.at, t, l.c.done) {
				closeWrite(l.dst)
			}
			continue
		}
		if !sleepUntil(ch.at, t, l.c.done) {
			l.c.p.bufs.Put(ch.buf)
			continue // shut: drain the queue
		}
		_, err := l.dst.Write((*ch.buf)[:ch.n])
		l.c.written(l.dir, ch.n)
		l.c.p.bufs.Put(ch.buf)
		if err != nil {
			l.c.shut(isReset(err))
		}
	}
}

// sleepUntil waits until at, or returns false when done closes first. Go's timers fire up to a
// millisecond or more late (the poller waits in whole milliseconds), which would be most of the
// error budget of a latency fault; the last stretch is slept with nanosleep, which the kernel's
// high-resolution timers end within tens of microseconds.
func sleepUntil(at time.Time, t *time.Timer, done <-chan struct{}) bool {
	const coarse = 2 * time.Millisecond
	if d := time.Until(at) - coarse; d > 0 {
		t.Reset(d)
		select {
		case <-t.C:
		case <-done:
			t.Stop()
			return false
		}
	}
	for {
		d := time.Until(at)
		if d <= 0 {
			break
		}
		ts := unix.NsecToTimespec(int64(d))
		if err := unix.Nanosleep(&ts, nil); err != nil && !errors.Is(err, unix.EINTR) {
			break
		}
	}
	select {
	case <-done:
		return false
	default:
		return true
	}
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
		return
	}
	_ = c.Close()
}

// resetClose closes a TCP connection with an RST instead of a FIN.
func resetClose(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
