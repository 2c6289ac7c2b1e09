package local

import (
	"io"
	"net"
	"sync"
	"testing"
)

// ServeTCP runs handler for every connection ln accepts until the test ends; then it closes the
// listener and every open connection and waits for the handlers.
func ServeTCP(t testing.TB, ln net.Listener, handler func(net.Conn)) net.Listener {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	open := map[net.Conn]bool{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			open[c] = true
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() {
					mu.Lock()
					delete(open, c)
					mu.Unlock()
					_ = c.Close()
				}()
				handler(c)
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for c := range open {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln
}

// Echo writes back every byte it reads.
func Echo(c net.Conn) { _, _ = io.Copy(c, c) }

// EchoServer serves Echo on a fresh loopback port until the test ends and returns its address.
func EchoServer(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ServeTCP(t, ln, Echo).Addr().String()
}
