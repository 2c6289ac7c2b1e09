// Package kube starts a real Kubernetes control plane for tests: etcd, kube-apiserver,
// kube-controller-manager (all default controllers: Deployment, ReplicaSet, StatefulSet, HPA, …),
// kube-scheduler, and kwok, which plays the kubelets of fake Nodes so that pods bound to them become
// Running and Ready without containers.
//
// The binaries are built once, from the Go module proxy, by scripts/testenv-kube and cached by
// version. Start skips the test when they are missing, and fails it when CI=true.
//
// Every component runs as a child process on free loopback ports, with its output in a log file
// under Cluster.Dir; the tail of each log is written to the test log when the test failed. Only
// tests import this package.
package kube

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

const (
	// KubeVersion is the version of the control plane that scripts/testenv-kube builds.
	KubeVersion = "v1.35.4"
	// FakeNodeAnnotation marks the Nodes kwok manages (value "fake"); AddNodes sets it.
	FakeNodeAnnotation = "kwok.x-k8s.io/node"
	// AdminUser is the user name of the admin token (group system:masters).
	AdminUser = "faultline-test-admin"
)

// Token is a static bearer token the apiserver accepts (RBAC decides what it may do).
type Token struct {
	User   string
	Token  string
	Groups []string
}

// Option configures Start.
type Option func(*options)

type options struct {
	tokens                []Token
	binDir                string
	startTimeout          time.Duration
	apiserverArgs         []string
	controllerManagerArgs []string
	metricsServer         bool
	realNode              bool
}

// WithTokens adds static tokens to the apiserver's token file (they can only be set at start);
// use KubeconfigForToken or ConfigForToken to act as them.
func WithTokens(tokens ...Token) Option {
	return func(o *options) { o.tokens = append(o.tokens, tokens...) }
}

// WithBinDir overrides where the binaries are looked up (default: DefaultBinDir()).
func WithBinDir(dir string) Option { return func(o *options) { o.binDir = dir } }

// WithStartTimeout bounds how long Start waits for the cluster (default 2 minutes).
func WithStartTimeout(d time.Duration) Option { return func(o *options) { o.startTimeout = d } }

// WithAPIServerArgs appends flags to kube-apiserver's command line (a repeated flag overrides).
func WithAPIServerArgs(args ...string) Option {
	return func(o *options) { o.apiserverArgs = append(o.apiserverArgs, args...) }
}

// WithControllerManagerArgs appends flags to kube-controller-manager's command line.
func WithControllerManagerArgs(args ...string) Option {
	return func(o *options) { o.controllerManagerArgs = append(o.controllerManagerArgs, args...) }
}

// Cluster is a running test control plane. Its processes stop when the test ends.
type Cluster struct {
	// Config is an admin (system:masters) client configuration.
	Config *rest.Config
	// Client is an admin clientset.
	Client kubernetes.Interface
	// Kubeconfig is the path of an admin kubeconfig file, e.g. for a child process's --kubeconfig.
	Kubeconfig string
	// Server is the apiserver's URL, https://127.0.0.1:PORT.
	Server string
	// Dir holds the cluster's files: one log per component (<component>.log), certificates, kubeconfigs.
	Dir string

	t          testing.TB
	caPEM      []byte
	adminToken string

	mu    sync.Mutex
	procs []*process

	metrics bool // started WithMetricsServer
	pki     *pki
}

// DefaultBinDir is $FAULTLINE_KUBE_BIN, or else the bin directory scripts/testenv-kube fills:
// ${FAULTLINE_TESTENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/faultline-testenv}/kube-VERSION/bin.
func DefaultBinDir() string {
	if d := os.Getenv("FAULTLINE_KUBE_BIN"); d != "" {
		return d
	}
	cache := os.Getenv("FAULTLINE_TESTENV_CACHE")
	if cache == "" {
		base := os.Getenv("XDG_CACHE_HOME")
		if base == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				home = os.TempDir()
			}
			base = filepath.Join(home, ".cache")
		}
		cache = filepath.Join(base, "faultline-testenv")
	}
	return filepath.Join(cache, "kube-"+KubeVersion, "bin")
}

// stagesFile is kwok's stage configuration, next to the bin directory.
func stagesFile(binDir string) string {
	return filepath.Join(filepath.Dir(filepath.Clean(binDir)), "kwok-stages.yaml")
}

// missingParts lists the binaries and files Start needs that are not in binDir.
func missingParts(binDir string) []string {
	var missing []string
	for _, b := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"} {
		if st, err := os.Stat(filepath.Join(binDir, b)); err != nil || st.IsDir() || st.Mode().Perm()&0o111 == 0 {
			missing = append(missing, b)
		}
	}
	if _, err := os.Stat(stagesFile(binDir)); err != nil {
		missing = append(missing, "../kwok-stages.yaml")
	}
	return missing
}

// Start starts a control plane for the test and waits until it is ready: the apiserver answers
// /readyz and the default ServiceAccount of namespace default exists. It stops everything in
// t.Cleanup. Without the binaries it skips the test, or fails it when CI=true.
func Start(t testing.TB, opts ...Option) *Cluster {
	t.Helper()
	o := options{startTimeout: 2 * time.Minute}
	for _, opt := range opts {
		opt(&o)
	}
	binDir := o.binDir
	if binDir == "" {
		binDir = DefaultBinDir()
	}
	missing := missingParts(binDir)
	if o.metricsServer {
		missing = append(missing, missingMetricsParts(binDir)...)
	}
	if len(missing) > 0 {
		msg := fmt.Sprintf("kubernetes test binaries not built: run scripts/testenv-kube (missing in %s: %s)",
			binDir, strings.Join(missing, ", "))
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	for _, tok := range o.tokens {
		if tok.User == "" || tok.Token == "" || strings.ContainsAny(tok.User+tok.Token+strings.Join(tok.Groups, ""), ",\"\n") {
			t.Fatalf("kube.WithTokens: token for user %q: user and token must be set, with no comma, quote or newline", tok.User)
		}
	}

	began := time.Now()
	c := &Cluster{t: t, Dir: t.TempDir(), metrics: o.metricsServer}
	t.Cleanup(c.stop)
	ctx, cancel := context.WithTimeout(t.Context(), o.startTimeout)
	defer cancel()
	if err := c.start(ctx, binDir, o); err != nil {
		t.Fatalf("start kubernetes test cluster: %v", err)
	}
	t.Logf("kubernetes %s test cluster ready at %s in %s (files in %s)", KubeVersion, c.Server,
		time.Since(began).Round(time.Millisecond), c.Dir)
	return c
}

func (c *Cluster) start(ctx context.Context, binDir string, o options) error {
	pkiDir := filepath.Join(c.Dir, "pki")
	if err := os.MkdirAll(pkiDir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", pkiDir, err)
	}
	pki, err := newPKI(pkiDir)
	if err != nil {
		return fmt.Errorf("make certificates: %w", err)
	}
	c.caPEM = pki.caPEM
	c.pki = pki
	if o.realNode {
		if err := pki.addKubeletClient(); err != nil {
			return fmt.Errorf("make certificates: %w", err)
		}
	}
	if c.adminToken, err = randomToken(); err != nil {
		return err
	}
	tokenFile := filepath.Join(c.Dir, "tokens.csv")
	tokens := append([]Token{{User: AdminUser, Token: c.adminToken, Groups: []string{"system:masters"}}}, o.tokens...)
	if err := writeTokenFile(tokenFile, tokens); err != nil {
		return err
	}
	bin := func(name string) string { return filepath.Join(binDir, name) }
	health := newHealthClient()

	// etcd
	etcdPorts, err := c.run(ctx, component{
		name: "etcd", bin: bin("etcd"), ports: 2,
		args: func(p []int, attempt int) []string {
			client, peer := fmt.Sprintf("http://127.0.0.1:%d", p[0]), fmt.Sprintf("http://127.0.0.1:%d", p[1])
			return []string{
				"--name", "faultline-test",
				"--data-dir", filepath.Join(c.Dir, "etcd-data-"+strconv.Itoa(attempt)),
				"--listen-client-urls", client, "--advertise-client-urls", client,
				"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
				"--initial-cluster", "faultline-test=" + peer,
				"--unsafe-no-fsync", "--log-level", "warn",
			}
		},
		ready: func(ctx context.Context, p []int) error {
			body, err := health.get(ctx, fmt.Sprintf("http://127.0.0.1:%d/health", p[0]), "")
			if err == nil && !strings.Contains(body, `"health":"true"`) {
				err = fmt.Errorf("etcd /health: %s", body)
			}
			return err
		},
	})
	if err != nil {
		return err
	}

	// kube-apiserver
	apiPorts, err := c.run(ctx, component{
		name: "kube-apiserver", bin: bin("kube-apiserver"), ports: 1,
		args: func(p []int, _ int) []string {
			args := []string{
				"--etcd-servers", fmt.Sprintf("http://127.0.0.1:%d", etcdPorts[0]),
				"--bind-address", "127.0.0.1", "--secure-port", strconv.Itoa(p[0]),
				"--advertise-address", "127.0.0.1", "--endpoint-reconciler-type", "none",
				"--cert-dir", filepath.Join(c.Dir, "apiserver-certs"),
				"--tls-cert-file", pki.servingCert, "--tls-private-key-file", pki.servingKey,
				"--client-ca-file", pki.caCert,
				"--service-account-issuer", "https://kubernetes.default.svc",
				"--service-account-key-file", pki.saPub, "--service-account-signing-key-file", pki.saKey,
				"--service-cluster-ip-range", "10.96.0.0/16",
				"--authorization-mode", authorizationMode(o), "--token-auth-file", tokenFile,
				"--allow-privileged=true",
				// The aggregation layer, for metrics-server and other extension apiservers.
				"--requestheader-client-ca-file", pki.frontProxyCA,
				"--requestheader-allowed-names", "front-proxy-client",
				"--requestheader-username-headers", "X-Remote-User",
				"--requestheader-group-headers", "X-Remote-Group",
				"--requestheader-extra-headers-prefix", "X-Remote-Extra-",
				"--proxy-client-cert-file", pki.proxyClientCert, "--proxy-client-key-file", pki.proxyKey,
			}
			if o.realNode {
				args = append(args, realNodeAPIServerArgs(pki)...)
			}
			return append(args, o.apiserverArgs...)
		},
		ready: func(ctx context.Context, p []int) error {
			_, err := health.getTLS(ctx, fmt.Sprintf("https://127.0.0.1:%d/readyz", p[0]), c.caPEM, c.adminToken)
			return err
		},
	})
	if err != nil {
		return err
	}
	c.Server = fmt.Sprintf("https://127.0.0.1:%d", apiPorts[0])
	c.Config = &rest.Config{
		Host:            c.Server,
		BearerToken:     c.adminToken,
		TLSClientConfig: rest.TLSClientConfig{CAData: c.caPEM},
		QPS:             100,
		Burst:           200,
	}
	if c.Client, err = kubernetes.NewForConfig(c.Config); err != nil {
		return fmt.Errorf("admin clientset: %w", err)
	}
	c.Kubeconfig = filepath.Join(c.Dir, "admin.kubeconfig")
	if err := c.writeKubeconfig(c.Kubeconfig, AdminUser, c.adminToken); err != nil {
		return err
	}

	// kube-controller-manager and kube-scheduler
	_, err = c.run(ctx, component{
		name: "kube-controller-manager", bin: bin("kube-controller-manager"), ports: 1,
		args: func(p []int, _ int) []string {
			args := []string{
				"--kubeconfig", c.Kubeconfig,
				"--authentication-kubeconfig", c.Kubeconfig, "--authorization-kubeconfig", c.Kubeconfig,
				"--bind-address", "127.0.0.1", "--secure-port", strconv.Itoa(p[0]),
				"--cert-dir", filepath.Join(c.Dir, "kube-controller-manager-certs"),
				"--leader-elect=false",
				"--controllers=*",
				"--use-service-account-credentials=false",
				"--horizontal-pod-autoscaler-sync-period=5s",
				"--service-account-private-key-file", pki.saKey,
				"--root-ca-file", pki.caCert,
				"--cluster-signing-cert-file", pki.caCert, "--cluster-signing-key-file", pki.caKey,
			}
			return append(args, o.controllerManagerArgs...)
		},
		ready: func(ctx context.Context, p []int) error {
			_, err := health.getInsecure(ctx, fmt.Sprintf("https://127.0.0.1:%d/healthz", p[0]))
			return err
		},
	})
	if err != nil {
		return err
	}
	_, err = c.run(ctx, component{
		name: "kube-scheduler", bin: bin("kube-scheduler"), ports: 1,
		args: func(p []int, _ int) []string {
			return []string{
				"--kubeconfig", c.Kubeconfig,
				"--authentication-kubeconfig", c.Kubeconfig, "--authorization-kubeconfig", c.Kubeconfig,
				"--bind-address", "127.0.0.1", "--secure-port", strconv.Itoa(p[0]),
				"--cert-dir", filepath.Join(c.Dir, "kube-scheduler-certs"),
				"--leader-elect=false",
			}
		},
		ready: func(ctx context.Context, p []int) error {
			_, err := health.getInsecure(ctx, fmt.Sprintf("https://127.0.0.1:%d/healthz", p[0]))
			return err
		},
	})
	if err != nil {
		return err
	}

	// kwok: the kubelets of the Nodes annotated kwok.x-k8s.io/node=fake.
	kwokHome := filepath.Join(c.Dir, "kwok-home") // keeps kwok from reading ~/.kwok
	if err := os.MkdirAll(kwokHome, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", kwokHome, err)
	}
	metricsFile, crdsFile := metricsFiles(binDir)
	if o.metricsServer {
		if err := c.installKwokCRDs(ctx, crdsFile); err != nil {
			return err
		}
	}
	_, err = c.run(ctx, component{
		name: "kwok", bin: bin("kwok"), ports: 1,
		env: []string{"HOME=" + kwokHome},
		args: func(p []int, _ int) []string {
			args := []string{
				"--config", stagesFile(binDir),
				"--kubeconfig", c.Kubeconfig,
				"--manage-all-nodes=false",
				"--manage-nodes-with-annotation-selector=" + FakeNodeAnnotation + "=fake",
				"--server-address", fmt.Sprintf("127.0.0.1:%d", p[0]),
				"--node-ip", "127.0.0.1", "--node-port", strconv.Itoa(p[0]),
			}
			if o.metricsServer {
				args = append(args, kwokMetricsArgs(metricsFile)...)
			}
			return args
		},
		ready: func(ctx context.Context, p []int) error {
			_, err := health.get(ctx, fmt.Sprintf("http://127.0.0.1:%d/healthz", p[0]), "")
			return err
		},
	})
	if err != nil {
		return err
	}

	if o.metricsServer {
		if err := c.startMetricsServer(ctx, binDir); err != nil {
			return err
		}
	}

	// Pods need their namespace's default ServiceAccount, which the controller manager creates.
	return poll(ctx, 100*time.Millisecond, func(ctx context.Context) error {
		_, err := c.Client.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("default ServiceAccount: %w", err)
		}
		return nil
	})
}

// component describes how to run one process of the cluster.
type component struct {
	name  string
	bin   string
	ports int                                          // how many free ports args needs; ports[0] is checked for listening
	args  func(ports []int, attempt int) []string      // command line for the given ports
	ready func(ctx context.Context, ports []int) error // nil once the component serves
	env   []string                                     // added to the environment
}

// run starts a component and waits until it listens on its first port and is ready. A component
// that lost a race for a port is started again on new ports.
func (c *Cluster) run(ctx context.Context, comp component) ([]int, error) {
	const attempts = 5
	for attempt := 1; ; attempt++ {
		ports, err := freePorts(comp.ports)
		if err != nil {
			return nil, err
		}
		logPath := filepath.Join(c.Dir, comp.name+".log")
		if attempt > 1 {
			logPath = filepath.Join(c.Dir, fmt.Sprintf("%s.attempt%d.log", comp.name, attempt))
		}
		p, err := startProcess(comp.name, comp.bin, comp.args(ports, attempt), append(os.Environ(), comp.env...), c.Dir, logPath)
		if err != nil {
			return nil, err
		}
		c.mu.Lock()
		c.procs = append(c.procs, p)
		c.mu.Unlock()

		err = poll(ctx, 100*time.Millisecond, func(ctx context.Context) error {
			if done, err := p.exited(); done {
				return permanentError{fmt.Errorf("%s exited: %v; log %s ends:\n%s", comp.name, err, logPath, p.tail(20))}
			}
			if ok, err := listensOn(p.cmd.Process.Pid, ports[0]); err != nil {
				return permanentError{err}
			} else if !ok {
				return fmt.Errorf("%s does not listen on 127.0.0.1:%d yet", comp.name, ports[0])
			}
			return comp.ready(ctx, ports)
		})
		if err == nil {
			return ports, nil
		}
		if done, _ := p.exited(); done && p.portConflict() && attempt < attempts {
			c.t.Logf("%s lost a race for a port (attempt %d); starting it again on other ports", comp.name, attempt)
			continue
		}
		return nil, fmt.Errorf("start %s: %w", comp.name, err)
	}
}

// stop stops the processes in reverse start order; when the test failed it logs each log's tail.
func (c *Cluster) stop() {
	c.mu.Lock()
	procs := c.procs
	c.procs = nil
	c.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		if err := procs[i].stop(15 * time.Second); err != nil {
			c.t.Logf("stop kubernetes test cluster: %v", err)
		}
	}
	if c.t.Failed() {
		for _, p := range procs {
			c.t.Logf("==> %s (last 40 lines of %s) <==\n%s", p.name, p.logPath, p.tail(40))
		}
	}
}

// AddNodes creates n Nodes named PREFIX-0 … PREFIX-(n-1) (prefix "" means "kwok-node") that kwok
// manages (annotation kwok.x-k8s.io/node=fake; 32 CPUs, 256Gi memory, 1100 pods each) and waits
// until all of them are Ready.
func (c *Cluster) AddNodes(ctx context.Context, n int, prefix string) error {
	if prefix == "" {
		prefix = "kwok-node"
	}
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("32"),
		corev1.ResourceMemory: resource.MustParse("256Gi"),
		corev1.ResourcePods:   resource.MustParse("1100"),
	}
	names := make([]string, 0, n)
	for i := range n {
		name := fmt.Sprintf("%s-%d", prefix, i)
		node := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{
				Name: name,
				Annotations: map[string]string{
					FakeNodeAnnotation:             "fake",
					"node.alpha.kubernetes.io/ttl": "0",
				},
				Labels: map[string]string{
					"kubernetes.io/hostname": name,
					"kubernetes.io/os":       "linux",
					"kubernetes.io/arch":     "amd64",
					"type":                   "kwok",
				},
			},
			Status: corev1.NodeStatus{
				Capacity:    capacity,
				Allocatable: capacity,
				NodeInfo:    corev1.NodeSystemInfo{Architecture: "amd64", OperatingSystem: "linux"},
			},
		}
		if c.metrics {
			maps.Copy(node.Annotations, metricsNodeAnnotations(name))
		}
		if _, err := c.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create node %s: %w", name, err)
		}
		names = append(names, name)
	}
	ctx, cancel := withDefaultTimeout(ctx, time.Minute)
	defer cancel()
	err := poll(ctx, 200*time.Millisecond, func(ctx context.Context) error {
		for _, name := range names {
			node, err := c.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return fmt.Errorf("get node %s: %w", name, err)
			}
			if !nodeReady(node) {
				return fmt.Errorf("node %s is not Ready", name)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("wait for %d kwok nodes %s-*: %w", n, prefix, err)
	}
	return nil
}

func nodeReady(node *corev1.Node) bool {
	for _, cond := range node.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}

// withDefaultTimeout bounds ctx by d unless it already has a deadline.
func withDefaultTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

// KubeconfigForToken writes a kubeconfig that authenticates with the bearer token (one given with
// WithTokens, or any other to test rejection) and returns its path. Call it from the test goroutine.
func (c *Cluster) KubeconfigForToken(token string) string {
	c.t.Helper()
	sum := sha256.Sum256([]byte(token))
	id := "token-" + hex.EncodeToString(sum[:6])
	path := filepath.Join(c.Dir, id+".kubeconfig")
	if err := c.writeKubeconfig(path, id, token); err != nil {
		c.t.Fatalf("kubeconfig for token: %v", err)
	}
	return path
}

// ConfigForToken returns a client configuration that authenticates with the bearer token.
func (c *Cluster) ConfigForToken(token string) *rest.Config {
	cfg := rest.AnonymousClientConfig(c.Config)
	cfg.BearerToken = token
	return cfg
}

func (c *Cluster) writeKubeconfig(path, user, token string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["faultline-test"] = &clientcmdapi.Cluster{Server: c.Server, CertificateAuthorityData: c.caPEM}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["faultline-test"] = &clientcmdapi.Context{Cluster: "faultline-test", AuthInfo: user}
	cfg.CurrentContext = "faultline-test"
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("write kubeconfig %s: %w", path, err)
	}
	return nil
}

func writeTokenFile(path string, tokens []Token) error {
	var b strings.Builder
	for _, t := range tokens {
		// token,user,uid,"group1,group2"
		fmt.Fprintf(&b, "%s,%s,%s,\"%s\"\n", t.Token, t.User, t.User, strings.Join(t.Groups, ","))
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("write token file %s: %w", path, err)
	}
	return nil
}

func randomToken() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random token: %w", err)
	}
	return hex.EncodeToString(b), nil
}
