// Package kubeclient gives faultline its Kubernetes client: client-go's standard loading rules
// (--kubeconfig, $KUBECONFIG, ~/.kube/config, --context, in-cluster service account), resolved
// lazily so that a runbook without Kubernetes faults or probes never needs a cluster.
//
// One *Client is built per process by the command and shared by injectors, probes and recorders
// through injectors.Env and guardrail.ProbeEnv. A nil *Client is valid: every method then reports that
// no Kubernetes client is configured.
package kubeclient

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// InClusterNamespaceFile holds the namespace of the pod faultline runs in, when it runs in one.
const InClusterNamespaceFile = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// ErrNotConfigured is returned by the methods of a nil *Client.
var ErrNotConfigured = errors.New("no Kubernetes client configured")

// Options selects the cluster. The zero value means the standard rules: $KUBECONFIG or
// ~/.kube/config with its current context, else the in-cluster service account.
type Options struct {
	// Kubeconfig is an explicit kubeconfig file (--kubeconfig); it overrides $KUBECONFIG.
	Kubeconfig string
	// Context is the kubeconfig context to use (--context); empty means the current context.
	Context string
	// SelfNamespace is the namespace faultline itself runs in (--self-namespace). Empty means: read
	// InClusterNamespaceFile when it exists, else none.
	SelfNamespace string
	// QPS and Burst bound the client's request rate (defaults 200 and 400). Chaos runs list and
	// delete in bursts: at 50/100 the deletions of 1 % of 10,000 pods waited 2-3 s on the limiter.
	QPS   float32
	Burst int
}

// Client resolves the configuration and the clientset once, on first use.
type Client struct {
	opts Options

	once   sync.Once
	config *rest.Config
	cs     kubernetes.Interface
	err    error
}

// New returns a client that will load its configuration on first use. It does no I/O.
func New(opts Options) *Client { return &Client{opts: opts} }

// FromConfig returns a client for an already resolved configuration (tests, embedding).
func FromConfig(cfg *rest.Config, selfNamespace string) (*Client, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes clientset for %s: %w", cfg.Host, err)
	}
	c := &Client{opts: Options{SelfNamespace: selfNamespace}, config: cfg, cs: cs}
	c.once.Do(func() {})
	return c, nil
}

func (c *Client) load() {
	c.once.Do(func() {
		rules := clientcmd.NewDefaultClientConfigLoadingRules()
		if c.opts.Kubeconfig != "" {
			rules.ExplicitPath = c.opts.Kubeconfig
		}
		overrides := &clientcmd.ConfigOverrides{CurrentContext: c.opts.Context}
		cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides).ClientConfig()
		if err != nil {
			c.err = fmt.Errorf("load Kubernetes client configuration (%s): %w", c.describe(), err)
			return
		}
		cfg = rest.CopyConfig(cfg)
		cfg.QPS, cfg.Burst = c.opts.QPS, c.opts.Burst
		if cfg.QPS == 0 {
			cfg.QPS = 200
		}
		if cfg.Burst == 0 {
			cfg.Burst = 400
		}
		if cfg.UserAgent == "" {
			cfg.UserAgent = "faultline"
		}
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			c.err = fmt.Errorf("kubernetes clientset for %s: %w", cfg.Host, err)
			return
		}
		c.config, c.cs = cfg, cs
	})
}

// describe says where the configuration is looked for, for error messages.
func (c *Client) describe() string {
	var parts []string
	switch {
	case c.opts.Kubeconfig != "":
		parts = append(parts, "--kubeconfig "+c.opts.Kubeconfig)
	case os.Getenv("KUBECONFIG") != "":
		parts = append(parts, "$KUBECONFIG "+os.Getenv("KUBECONFIG"))
	default:
		parts = append(parts, "~/.kube/config or in-cluster service account")
	}
	if c.opts.Context != "" {
		parts = append(parts, "--context "+c.opts.Context)
	}
	return strings.Join(parts, ", ")
}

// Config returns the resolved client configuration.
func (c *Client) Config() (*rest.Config, error) {
	if c == nil {
		return nil, ErrNotConfigured
	}
	c.load()
	return c.config, c.err
}

// Clientset returns the typed clientset.
func (c *Client) Clientset() (kubernetes.Interface, error) {
	if c == nil {
		return nil, ErrNotConfigured
	}
	c.load()
	return c.cs, c.err
}

// SelfNamespace returns the namespace faultline runs in: Options.SelfNamespace, else the content of
// InClusterNamespaceFile, else "" (not running in a cluster).
func (c *Client) SelfNamespace() string {
	if c == nil {
		return ""
	}
	if c.opts.SelfNamespace != "" {
		return c.opts.SelfNamespace
	}
	b, err := os.ReadFile(InClusterNamespaceFile)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// Identity names a live cluster the way runbooks declare it (environment.kubernetes).
type Identity struct {
	// ClusterID is the UID of the kube-system namespace: created once with the cluster, it tells
	// a golden copy from production even when both sit behind the same DNS name.
	ClusterID string `json:"clusterID"`
	// Server is the API server URL the client talks to.
	Server string `json:"server"`
}

// Identity reads the live cluster's identity. It needs get on namespace kube-system.
func (c *Client) Identity(ctx context.Context) (Identity, error) {
	cs, err := c.Clientset()
	if err != nil {
		return Identity{}, err
	}
	cfg, _ := c.Config()
	ns, err := cs.CoreV1().Namespaces().Get(ctx, metav1.NamespaceSystem, metav1.GetOptions{})
	if err != nil {
		return Identity{}, fmt.Errorf("read the cluster's identity (namespace kube-system) at %s: %w", cfg.Host, err)
	}
	return Identity{ClusterID: string(ns.UID), Server: cfg.Host}, nil
}
