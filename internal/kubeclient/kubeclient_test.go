package kubeclient_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/faultline-dev/faultline/internal/kubeclient"
	"github.com/faultline-dev/faultline/internal/testenv/kube"
)

// writeKubeconfig writes a kubeconfig with one context per server, the first current.
func writeKubeconfig(t *testing.T, servers map[string]string, current string) string {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	for name, server := range servers {
		cfg.Clusters[name] = &clientcmdapi.Cluster{Server: server}
		cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: "t-" + name}
		cfg.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name}
	}
	cfg.CurrentContext = current
	path := filepath.Join(t.TempDir(), "config")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadingRules(t *testing.T) {
	servers := map[string]string{"golden": "https://golden.example:6443", "staging": "https://staging.example:6443"}
	explicit := writeKubeconfig(t, servers, "golden")
	fromEnv := writeKubeconfig(t, map[string]string{"env": "https://env.example:6443"}, "env")
	t.Setenv("KUBECONFIG", fromEnv)
	t.Setenv("HOME", t.TempDir()) // no ~/.kube/config

	for _, tc := range []struct {
		name string
		opts kubeclient.Options
		host string
	}{
		{"$KUBECONFIG", kubeclient.Options{}, "https://env.example:6443"},
		{"--kubeconfig beats $KUBECONFIG", kubeclient.Options{Kubeconfig: explicit}, "https://golden.example:6443"},
		{"--context", kubeclient.Options{Kubeconfig: explicit, Context: "staging"}, "https://staging.example:6443"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := kubeclient.New(tc.opts)
			cfg, err := c.Config()
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Host != tc.host {
				t.Fatalf("host = %s, want %s", cfg.Host, tc.host)
			}
			if cfg.QPS < 50 || cfg.Burst < 100 || cfg.UserAgent != "faultline" {
				t.Fatalf("client settings: qps %v burst %d agent %q", cfg.QPS, cfg.Burst, cfg.UserAgent)
			}
			if cs, err := c.Clientset(); err != nil || cs == nil {
				t.Fatalf("clientset: %v", err)
			}
		})
	}
	t.Run("unknown context", func(t *testing.T) {
		_, err := kubeclient.New(kubeclient.Options{Kubeconfig: explicit, Context: "prod"}).Config()
		if err == nil {
			t.Fatal("no error for a context that does not exist")
		}
	})
}

// Nothing is read until the client is used: a run without Kubernetes faults never needs a cluster.
func TestLazy(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope")
	c := kubeclient.New(kubeclient.Options{Kubeconfig: missing})
	if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	_, err := c.Clientset()
	if err == nil {
		t.Fatal("no error for a missing kubeconfig")
	}
	if want := "--kubeconfig " + missing; !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not say where it looked (%s)", err, want)
	}
	var nilClient *kubeclient.Client
	if _, err := nilClient.Clientset(); !errors.Is(err, kubeclient.ErrNotConfigured) {
		t.Fatalf("nil client: %v", err)
	}
	if ns := nilClient.SelfNamespace(); ns != "" {
		t.Fatalf("nil client self namespace %q", ns)
	}
	if ns := kubeclient.New(kubeclient.Options{SelfNamespace: "chaos"}).SelfNamespace(); ns != "chaos" {
		t.Fatalf("self namespace %q", ns)
	}
}

// Identity reads the UID of kube-system and the server from a real API server.
func TestIdentity(t *testing.T) {
	c := kube.Start(t)
	kc := kubeclient.New(kubeclient.Options{Kubeconfig: c.Kubeconfig})
	id, err := kc.Identity(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	ns, err := c.Client.CoreV1().Namespaces().Get(t.Context(), "kube-system", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if id.ClusterID != string(ns.UID) || id.Server != c.Server {
		t.Fatalf("identity = %+v, want %s at %s", id, ns.UID, c.Server)
	}
}
