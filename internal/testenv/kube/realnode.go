package kube

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// WithRealNode prepares the control plane for a real kubelet (internal/testenv/realnode): the Node
// authorizer and the NodeRestriction admission plugin, which a kubelet's requests go through on real
// clusters, and a client certificate for the apiserver's calls to the kubelet (pod logs, exec),
// addressed by the node's InternalIP because a test node's name does not resolve. kwok nodes keep
// working beside it.
func WithRealNode() Option { return func(o *options) { o.realNode = true } }

// authorizationMode is a flag the apiserver accepts once.
func authorizationMode(o options) string {
	if o.realNode {
		return "Node,RBAC"
	}
	return "RBAC"
}

func realNodeAPIServerArgs(p *pki) []string {
	return []string{
		"--enable-admission-plugins", "NodeRestriction",
		"--kubelet-client-certificate", p.kubeletClientCert, "--kubelet-client-key", p.kubeletClientKey,
		"--kubelet-preferred-address-types", "InternalIP",
	}
}

// addKubeletClient makes the apiserver's client certificate towards kubelets.
func (p *pki) addKubeletClient() error {
	kp, err := newCert("kube-apiserver-kubelet-client", p.ca, &x509.Certificate{
		Subject:     pkix.Name{Organization: []string{"system:masters"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return err
	}
	p.kubeletClientCert = filepath.Join(p.dir, "apiserver-kubelet-client.crt")
	p.kubeletClientKey = filepath.Join(p.dir, "apiserver-kubelet-client.key")
	_, err = writeKeyPair(kp, p.kubeletClientCert, p.kubeletClientKey)
	return err
}

// CAFile is the path of the cluster CA's certificate: it signs the apiserver's serving certificate
// and its client certificate towards kubelets, so a kubelet trusts it for client authentication.
func (c *Cluster) CAFile() string { return c.pki.caCert }

// NodeKubeconfig writes a kubeconfig for the kubelet of node: a client certificate for
// system:node:<node> in group system:nodes, which the Node authorizer and NodeRestriction know as
// that node. The cluster must have been started WithRealNode.
func (c *Cluster) NodeKubeconfig(node string) (string, error) {
	if c.pki.kubeletClientCert == "" {
		return "", errors.New("node kubeconfig: the cluster was not started with kube.WithRealNode()")
	}
	if node == "" || strings.ContainsAny(node, "/ \n") {
		return "", fmt.Errorf("node kubeconfig: bad node name %q", node)
	}
	kp, err := newCert("system:node:"+node, c.pki.ca, &x509.Certificate{
		Subject:     pkix.Name{Organization: []string{"system:nodes"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return "", fmt.Errorf("node kubeconfig: %w", err)
	}
	certPEM, err := writeKeyPair(kp, filepath.Join(c.pki.dir, "node-"+node+".crt"), filepath.Join(c.pki.dir, "node-"+node+".key"))
	if err != nil {
		return "", fmt.Errorf("node kubeconfig: %w", err)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["faultline-test"] = &clientcmdapi.Cluster{Server: c.Server, CertificateAuthorityData: c.caPEM}
	cfg.AuthInfos[node] = &clientcmdapi.AuthInfo{
		ClientCertificateData: certPEM,
		ClientKey:             filepath.Join(c.pki.dir, "node-"+node+".key"),
	}
	cfg.Contexts["faultline-test"] = &clientcmdapi.Context{Cluster: "faultline-test", AuthInfo: node}
	cfg.CurrentContext = "faultline-test"
	path := filepath.Join(c.Dir, "node-"+node+".kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return "", fmt.Errorf("write kubeconfig %s: %w", path, err)
	}
	return path, nil
}
