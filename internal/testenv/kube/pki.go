package kube

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// pki holds the files of the test cluster's certificates and keys, all inside one directory.
type pki struct {
	caCert, caKey             string // cluster CA: signs the apiserver serving cert, root-ca for service accounts
	servingCert, servingKey   string // kube-apiserver serving certificate (127.0.0.1, localhost, kubernetes.default.svc)
	frontProxyCA              string // request-header CA for the aggregation layer
	proxyClientCert, proxyKey string // front-proxy-client certificate used by kube-apiserver towards aggregated APIs
	saKey, saPub              string // service-account signing key pair (RSA)
	caPEM                     []byte

	dir string
	ca  *keyPair // signs the certificates made after start: kubelet clients (WithRealNode)
	// kube-apiserver's client certificate towards kubelets (logs, exec); set by addKubeletClient.
	kubeletClientCert, kubeletClientKey string
}

type keyPair struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// newPKI generates the cluster's certificates and keys into dir.
func newPKI(dir string) (*pki, error) {
	p := &pki{
		caCert:          filepath.Join(dir, "ca.crt"),
		caKey:           filepath.Join(dir, "ca.key"),
		servingCert:     filepath.Join(dir, "apiserver.crt"),
		servingKey:      filepath.Join(dir, "apiserver.key"),
		frontProxyCA:    filepath.Join(dir, "front-proxy-ca.crt"),
		proxyClientCert: filepath.Join(dir, "front-proxy-client.crt"),
		proxyKey:        filepath.Join(dir, "front-proxy-client.key"),
		saKey:           filepath.Join(dir, "sa.key"),
		saPub:           filepath.Join(dir, "sa.pub"),
		dir:             dir,
	}
	ca, err := newCert("faultline-test-ca", nil, nil)
	if err != nil {
		return nil, err
	}
	if p.caPEM, err = writeKeyPair(ca, p.caCert, p.caKey); err != nil {
		return nil, err
	}
	p.ca = ca
	serving, err := newCert("kube-apiserver", ca, &x509.Certificate{
		DNSNames: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
			"kubernetes.default.svc.cluster.local"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback, net.IPv4(10, 96, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return nil, err
	}
	if _, err := writeKeyPair(serving, p.servingCert, p.servingKey); err != nil {
		return nil, err
	}
	frontCA, err := newCert("faultline-test-front-proxy-ca", nil, nil)
	if err != nil {
		return nil, err
	}
	if _, err := writeKeyPair(frontCA, p.frontProxyCA, filepath.Join(dir, "front-proxy-ca.key")); err != nil {
		return nil, err
	}
	proxyClient, err := newCert("front-proxy-client", frontCA, &x509.Certificate{
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return nil, err
	}
	if _, err := writeKeyPair(proxyClient, p.proxyClientCert, p.proxyKey); err != nil {
		return nil, err
	}

	sa, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("generate service-account key: %w", err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&sa.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("marshal service-account public key: %w", err)
	}
	if err := writePEM(p.saKey, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(sa)); err != nil {
		return nil, err
	}
	if err := writePEM(p.saPub, "PUBLIC KEY", pub); err != nil {
		return nil, err
	}
	return p, nil
}

// newCert makes an ECDSA key and a certificate for it: a self-signed CA when parent is nil, otherwise a
// leaf signed by parent with the SANs and extended key usages of tmpl.
func newCert(cn string, parent *keyPair, tmpl *x509.Certificate) (*keyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key for %s: %w", cn, err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, fmt.Errorf("serial for %s: %w", cn, err)
	}
	now := time.Now()
	c := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(7 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	signer, signerCert := key, c
	if parent == nil {
		c.IsCA = true
		c.BasicConstraintsValid = true
		c.KeyUsage |= x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	} else {
		c.DNSNames, c.IPAddresses, c.ExtKeyUsage = tmpl.DNSNames, tmpl.IPAddresses, tmpl.ExtKeyUsage
		c.Subject.Organization = tmpl.Subject.Organization
		c.KeyUsage |= x509.KeyUsageKeyEncipherment
		signer, signerCert = parent.key, parent.cert
	}
	der, err := x509.CreateCertificate(rand.Reader, c, signerCert, &key.PublicKey, signer)
	if err != nil {
		return nil, fmt.Errorf("create certificate %s: %w", cn, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse certificate %s: %w", cn, err)
	}
	return &keyPair{cert: cert, key: key}, nil
}

// writeKeyPair writes the certificate and key as PEM and returns the certificate's PEM.
func writeKeyPair(kp *keyPair, certPath, keyPath string) ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(kp.key)
	if err != nil {
		return nil, fmt.Errorf("marshal key %s: %w", keyPath, err)
	}
	if err := writePEM(keyPath, "EC PRIVATE KEY", der); err != nil {
		return nil, err
	}
	if err := writePEM(certPath, "CERTIFICATE", kp.cert.Raw); err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: kp.cert.Raw}), nil
}

func writePEM(path, typ string, der []byte) error {
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
