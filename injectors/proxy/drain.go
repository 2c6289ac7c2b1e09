//go:build linux

package proxy

import (
	"context"
	"errors"
	"net"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// How a drain closes a relayed connection without cutting a response short or resetting it.
// TCP has no request boundaries, so the proxy waits for a moment that looks like one: every byte
// read has been written and the server has answered the client's last data. A server's answer may
// come in several writes; while the drain is young it also waits until the server has been quiet
// for drainSettle. Past drainPatience a busy connection (a client that sends its next request as
// soon as the last answer is in) has no such pause, and the first boundary is taken.
//
// Past drainPatience, a client's data that comes once the server has answered, with nothing in
// flight, is taken as the next request and so as a boundary too: HTTP/1.1 clients without
// pipelining send a request only once they have read the whole previous answer. That request is
// dropped (the client retries it), so the quiet boundary is preferred while there is time: a
// connection pool's connection that is quiet for drainSettle between requests is closed with no
// request lost, and notices the FIN before it is used again.
//
// At the boundary the proxy stops forwarding the client's data (a request that comes after it is
// read and dropped: the client sees its connection closed before any answer, which HTTP clients
// retry for idempotent requests) and half-closes towards the server. A server finishes what it is
// sending and closes its side; that FIN goes on to the client after the last byte of the answer.
// Once the client closes too, or drainLinger after the FIN reached it, the sockets are closed.
const (
	drainSettle   = 20 * time.Millisecond
	drainPatience = 200 * time.Millisecond
	drainLinger   = 250 * time.Millisecond
)

// DrainStats says what a drain did to the relayed connections.
type DrainStats struct {
	// Closed counts the relayed connections the drain closed.
	Closed int
	// Forced counts those of them still open when the drain's context ended, closed then whatever
	// they were doing (the rest were closed at a response boundary, with FIN).
	Forced int
}

// connDrain is a connection's drain state; its zero value is a connection not draining.
type connDrain struct {
	mu       sync.Mutex
	draining bool
	since    time.Time // when the drain began
	closing  bool      // half-closed towards the server: the client's data is dropped from now on
	pending  bool      // the client's last data has not been answered yet
	inflight int       // bytes read and not yet written, both streams
	lastDown time.Time // when the server's data was last written to the client
	wake     chan struct{}
}

// admit is called for n bytes read on stream dir before they are passed on; false means drop them.
func (c *conn) admit(dir Stream, n int) bool {
	d := &c.drain
	d.mu.Lock()
	defer d.mu.Unlock()
	if dir == Upstream {
		if d.closing {
			return false
		}
		if d.draining && !d.pending && d.inflight == 0 && !d.lastDown.IsZero() && time.Since(d.since) >= drainPatience {
			d.closing = true
			select {
			case d.wake <- struct{}{}:
			default:
			}
			return false
		}
		d.pending = true
	} else {
		d.pending = false
	}
	d.inflight += n
	return true
}

// written is called once n admitted bytes of stream dir have been written.
func (c *conn) written(dir Stream, n int) {
	d := &c.drain
	d.mu.Lock()
	d.inflight -= n
	if dir == Downstream {
		d.lastDown = time.Now()
	}
	draining := d.draining
	d.mu.Unlock()
	if draining {
		select {
		case d.wake <- struct{}{}:
		default:
		}
	}
}

// closeWhenIdle is a connection's drain: it waits for a response boundary, half-closes towards the
// server, and closes the connection once the client has closed its side too (or drainLinger after
// the server's FIN was passed on to it). The proxy's Close ends it early.
func (c *conn) closeWhenIdle(downDone <-chan struct{}) {
	start := time.Now()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
		case <-c.drain.wake:
		}
		// Data the kernel holds for either side and the streams have not read yet is in flight
		// too (a toxic that held the client's data has just been removed, say).
		unread := unreadBytes(c.client) > 0 || unreadBytes(c.server) > 0
		d := &c.drain
		d.mu.Lock()
		ready := d.inflight == 0 && !d.pending && !unread
		wait := drainSettle - time.Since(d.lastDown)
		if time.Since(start) >= drainPatience {
			wait = 0
		}
		if ready && wait <= 0 {
			d.closing = true
		}
		closing := d.closing
		d.mu.Unlock()
		if closing {
			break
		}
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
		if ready {
			t.Reset(wait)
		} else {
			t.Reset(drainPatience) // activity wakes it earlier
		}
	}
	closeWrite(c.server)
	select {
	case <-c.done:
		return
	case <-downDone:
	}
	t.Reset(drainLinger)
	select {
	case <-c.done:
	case <-t.C:
		c.shut(false)
	}
}

// unreadBytes is how many bytes the kernel holds in c's receive queue (SIOCINQ); 0 when it cannot
// tell.
func unreadBytes(c net.Conn) int {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return 0
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0
	}
	n := 0
	_ = rc.Control(func(fd uintptr) {
		if v, err := unix.IoctlGetInt(int(fd), unix.SIOCINQ); err == nil {
			n = v
		}
	})
	return n
}

// Drain stops accepting, removes every toxic (data already delayed keeps its time) and closes
// every relayed connection at its next response boundary, as closeWhenIdle describes. When ctx
// ends first, the rest are closed as Close does. It returns what it did to the connections.
func (p *Proxy) Drain(ctx context.Context) (DrainStats, error) {
	err := p.stopAccepting()
	_ = p.SetToxics()
	p.mu.Lock()
	p.draining = true
	for c := range p.conns {
		c.startDrain()
	}
	p.mu.Unlock()
	// With the listener closed, the wait group counts only connection handlers.
	idle := make(chan struct{})
	go func() {
		p.wg.Wait()
		close(idle)
	}()
	select {
	case <-idle:
	case <-ctx.Done():
	}
	p.mu.Lock()
	forced := len(p.conns)
	p.mu.Unlock()
	err = errors.Join(err, p.Close())
	return DrainStats{Closed: int(p.drained.Load()), Forced: forced}, err
}

// startDrain starts the connection's drain once; p.mu is held.
func (c *conn) startDrain() {
	d := &c.drain
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.draining {
		return
	}
	d.draining = true
	d.since = time.Now()
	c.p.drained.Add(1)
	close(c.draining)
}
