package api

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testCA signs serving certificates for 127.0.0.1.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "faultline test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// issue writes a serving pair for 127.0.0.1 with the given serial to certFile and keyFile.
func (ca *testCA) issue(t *testing.T, serial int64, certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "faultline daemon"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, certFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	writeFile(t, keyFile, string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})))
}

func TestTLS(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	ca.issue(t, 100, certFile, keyFile)
	e := start(t, func(c *Config) { c.TLSCertFile, c.TLSKeyFile = certFile, keyFile })
	if !strings.HasPrefix(e.url, "https://") {
		t.Fatalf("url %s", e.url)
	}
	// No keep-alives: each request is a new handshake, so a renewed certificate shows.
	e.client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: ca.pool}, DisableKeepAlives: true,
	}}
	serial := func() int64 {
		t.Helper()
		req, _ := http.NewRequest("GET", e.url+"/api/v1/status", nil)
		req.Header.Set("Authorization", bearerReader)
		resp, err := e.client.Do(req)
		if err != nil {
			t.Fatalf("HTTPS request: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.TLS == nil {
			t.Fatalf("HTTPS status %d, TLS %v", resp.StatusCode, resp.TLS != nil)
		}
		return resp.TLS.PeerCertificates[0].SerialNumber.Int64()
	}
	if s := serial(); s != 100 {
		t.Errorf("serving certificate serial %d, want 100", s)
	}
	if r := e.do("POST", "/api/v1/halt", bearerAdmin, ""); r.code != http.StatusOK {
		t.Errorf("halt over HTTPS: %d", r.code)
	}

	// Renewal: the next handshake presents the new certificate.
	ca.issue(t, 101, certFile, keyFile)
	if s := serial(); s != 101 {
		t.Errorf("after renewal, serial %d, want 101", s)
	}
	// A broken key file keeps the last good pair.
	writeFile(t, keyFile, "not a key")
	if s := serial(); s != 101 {
		t.Errorf("after a broken renewal, serial %d, want 101", s)
	}

	// Plain HTTP to the TLS port gets no API, and an untrusting client no connection.
	// The refusal says to use HTTPS (curl and the CLI show it).
	plain, err := http.Get(strings.Replace(e.url, "https://", "http://", 1) + "/healthz")
	if err != nil {
		t.Fatalf("plain HTTP on the TLS port: %v, want a 400 with a hint", err)
	}
	hint, _ := io.ReadAll(plain.Body)
	plain.Body.Close()
	if plain.StatusCode != http.StatusBadRequest || !strings.Contains(string(hint), "HTTPS") {
		t.Errorf("plain HTTP on the TLS port: %d %q, want 400 with a hint to use HTTPS", plain.StatusCode, hint)
	}
	untrusting := &http.Client{Timeout: 10 * time.Second}
	if resp, err := untrusting.Get(e.url + "/healthz"); err == nil {
		resp.Body.Close()
		t.Error("a client without the CA connected")
	}
}
