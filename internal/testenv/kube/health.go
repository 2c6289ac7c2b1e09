package kube

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// healthClient probes the components' health endpoints on loopback.
type healthClient struct {
	plain, insecure *http.Client
}

func newHealthClient() *healthClient {
	return &healthClient{
		plain: &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}},
		// kube-controller-manager and kube-scheduler serve /healthz with a self-signed certificate
		// they make at start; the check is on loopback and the port is known to be theirs.
		insecure: &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
			Proxy: nil, DisableKeepAlives: true,
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
		}},
	}
}

func (h *healthClient) get(ctx context.Context, url, token string) (string, error) {
	return do(ctx, h.plain, url, token)
}

func (h *healthClient) getInsecure(ctx context.Context, url string) (string, error) {
	return do(ctx, h.insecure, url, "")
}

// getTLS checks the server's certificate against caPEM.
func (h *healthClient) getTLS(ctx context.Context, url string, caPEM []byte, token string) (string, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return "", errors.New("no CA certificate to verify the apiserver with")
	}
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		Proxy: nil, DisableKeepAlives: true, TLSClientConfig: &tls.Config{RootCAs: pool},
	}}
	return do(ctx, client, url, token)
}

func do(ctx context.Context, client *http.Client, url, token string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", fmt.Errorf("request %s: %w", url, err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return "", fmt.Errorf("GET %s: read body: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return string(body), fmt.Errorf("GET %s: %s: %.300s", url, resp.Status, body)
	}
	return string(body), nil
}
