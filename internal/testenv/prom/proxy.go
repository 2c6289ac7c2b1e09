package prom

import (
	"crypto/subtle"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// Proxy is a real TLS reverse proxy in front of a Server that lets a request through only with
// the right bearer token and required headers, the way an authenticating gateway in front of
// Prometheus, Mimir or Thanos does.
type Proxy struct {
	// URL is https://127.0.0.1:PORT.
	URL string
	// CA signed the proxy's certificate; CA.File is what a client's caFile names.
	CA *CA
	// TokenFile holds the token the proxy accepts.
	TokenFile string
	// Accepted and Rejected count requests let through and turned away (401/403).
	Accepted, Rejected atomic.Int64
}

// StartProxy starts a TLS reverse proxy to s that requires "Authorization: Bearer token" and every
// header in require; t.Cleanup closes it.
func StartProxy(t testing.TB, s *Server, token string, require map[string]string) *Proxy {
	t.Helper()
	dir := t.TempDir()
	ca := s.CA
	if ca == nil {
		var err error
		if ca, err = NewCA(filepath.Join(dir, "pki")); err != nil {
			t.Fatalf("proxy CA: %v", err)
		}
	}
	tlsCfg, err := ca.ServerTLS(fmt.Sprintf("proxy-%d", time.Now().UnixNano()), "127.0.0.1", "localhost")
	if err != nil {
		t.Fatalf("proxy certificate: %v", err)
	}
	p := &Proxy{CA: ca, TokenFile: filepath.Join(dir, "token")}
	if err := os.WriteFile(p.TokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	upstream, err := url.Parse(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(upstream)
	rp.Transport = s.HTTPClient().Transport
	want := "Bearer " + token
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), []byte(want)) != 1 {
			p.Rejected.Add(1)
			http.Error(w, "missing or wrong bearer token", http.StatusUnauthorized)
			return
		}
		for k, v := range require {
			if r.Header.Get(k) != v {
				p.Rejected.Add(1)
				http.Error(w, fmt.Sprintf("header %s must be %q", k, v), http.StatusForbidden)
				return
			}
		}
		p.Accepted.Add(1)
		r.Header.Del("Authorization") // the upstream's own auth, if any, is added by its transport
		rp.ServeHTTP(w, r)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxy listen: %v", err)
	}
	srv := &http.Server{Handler: handler, TLSConfig: tlsCfg, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })
	p.URL = "https://" + ln.Addr().String()
	return p
}
