package agentapi

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// ClientTLS is the configuration of a run talking to agents: it presents the certificate in
// certFile/keyFile and trusts only agents whose certificate caFile's CA signed for ServerName.
func ClientTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	pool, err := loadCA(caFile)
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load client certificate %s / %s: %w", certFile, keyFile, err)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		RootCAs:      pool,
		Certificates: []tls.Certificate{cert},
		ServerName:   ServerName,
	}, nil
}

// ServerTLS is the agent's configuration: it presents certFile/keyFile and verifies every client
// certificate against caFile's CA (and for client authentication use). A certificate the CA did
// not sign fails the handshake, before any HTTP request is read. A connection with no certificate
// at all is let through the handshake so that the agent can answer it 401 with a reason, and
// serve its health endpoints; the agent's fault endpoints require a verified certificate.
func ServerTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	pool, err := loadCA(caFile)
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load agent certificate %s / %s: %w", certFile, keyFile, err)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		ClientCAs:    pool,
		ClientAuth:   tls.VerifyClientCertIfGiven,
		Certificates: []tls.Certificate{cert},
	}, nil
}

// Authenticated tells whether a connection presented a client certificate that verified.
func Authenticated(cs *tls.ConnectionState) bool {
	return cs != nil && len(cs.VerifiedChains) > 0
}

func loadCA(caFile string) (*x509.CertPool, error) {
	b, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("read CA %s: %w", caFile, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("CA %s holds no PEM certificate", caFile)
	}
	return pool, nil
}
