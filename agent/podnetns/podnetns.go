// Package podnetns finds the network namespace of a pod on this node: through the container
// runtime's CRI API (containerd, CRI-O), or, when no runtime answers, through /proc (the pod's
// sandbox process, found by the pod UID in its cgroup). Both need the node's process table: the
// agent runs with hostPID.
package podnetns

import (
	"context"
	"errors"
	"fmt"
)

// ErrNotOnNode means no sandbox of the pod runs on this node: the pod is elsewhere, or does not
// exist. A node cannot tell the two apart without the API server, which it does not need.
var ErrNotOnNode = errors.New("pod has no sandbox on this node")

// ErrNotReady means the pod's sandbox exists on this node but has no network namespace to enter
// (it is being created or torn down).
var ErrNotReady = errors.New("pod sandbox is not ready")

// Pod is a pod's network namespace as found on this node.
type Pod struct {
	Namespace, Name, UID string
	// Netns is the namespace file: /proc/<pause pid>/ns/net when the pause process is known (what
	// a hostPID container can always open), else the runtime's bind mount (/var/run/netns/cni-…).
	Netns string
	// RuntimeNetns is the runtime's path for it, when the runtime told.
	RuntimeNetns string
	// PausePID is the sandbox's process, 0 when unknown.
	PausePID int
	// Via says how it was found: "cri <endpoint>" or "proc".
	Via string
}

// Resolver finds pods' namespaces: CRI first, /proc when no CRI endpoint answers.
type Resolver struct {
	// CRI is tried first; nil skips it.
	CRI *CRI
	// Proc is the fallback; nil disables it.
	Proc *Proc
}

// Resolve finds the pod namespace/name (uid, when given, must match).
func (r *Resolver) Resolve(ctx context.Context, namespace, name, uid string) (Pod, error) {
	var criErr error
	if r.CRI != nil {
		p, err := r.CRI.Resolve(ctx, namespace, name, uid)
		if err == nil || errors.Is(err, ErrNotOnNode) || errors.Is(err, ErrNotReady) {
			return p, err
		}
		criErr = err
		if r.Proc == nil {
			return Pod{}, err
		}
	}
	if r.Proc == nil {
		return Pod{}, fmt.Errorf("no way to find pods configured (no CRI endpoint, no /proc fallback)")
	}
	if uid == "" {
		if criErr != nil {
			return Pod{}, fmt.Errorf("%w; the /proc fallback needs the pod's uid", criErr)
		}
		return Pod{}, fmt.Errorf("no CRI endpoint: the /proc fallback needs the pod's uid")
	}
	p, err := r.Proc.Resolve(ctx, uid)
	if err != nil {
		return Pod{}, errors.Join(criErr, err)
	}
	p.Namespace, p.Name = namespace, name
	return p, nil
}
