package daemon

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/faultline-dev/faultline/safety"
)

// LeaseElector returns an Options.Elect that holds a coordination.k8s.io Lease. Leadership is
// released on shutdown so that a rolling update fails over at once rather than after the lease.
func LeaseElector(client kubernetes.Interface, le LeaderElection, identity string) func(ctx context.Context, lead func(context.Context)) error {
	return func(ctx context.Context, lead func(context.Context)) error {
		lock := &resourcelock.LeaseLock{
			LeaseMeta:  metav1.ObjectMeta{Name: le.LeaseName, Namespace: le.Namespace},
			Client:     client.CoordinationV1(),
			LockConfig: resourcelock.ResourceLockConfig{Identity: identity},
		}
		for ctx.Err() == nil {
			// RunOrDie returns when leadership is lost; stand for election again until shutdown.
			leaderelection.RunOrDie(ctx, leaderelection.LeaderElectionConfig{
				Lock:            lock,
				LeaseDuration:   le.LeaseDuration.D(),
				RenewDeadline:   le.RenewDeadline.D(),
				RetryPeriod:     le.RetryPeriod.D(),
				ReleaseOnCancel: true,
				Name:            le.LeaseName,
				Callbacks: leaderelection.LeaderCallbacks{
					OnStartedLeading: lead,
					OnStoppedLeading: func() {},
				},
			})
		}
		return nil
	}
}

// NotIdentity treats every owner but this replica as gone. It is right only once this replica
// holds the lease: a replica that lost it halts its runs, and a dead one cannot revert anything.
func NotIdentity(identity string) func(safety.Owner) bool {
	return func(o safety.Owner) bool { return o.ID != identity }
}

// ConfigMapClaimer claims scheduled starts by creating a ConfigMap whose name is derived from
// (schedule, start time): the API server lets exactly one create succeed, so a start that a dead
// leader already made is not made again by the next one.
type ConfigMapClaimer struct {
	Client    kubernetes.Interface
	Namespace string
	// TTL is how long claims are kept (default 48h); older ones are deleted on the next claim.
	TTL time.Duration
}

// Claim implements Claimer.
func (c *ConfigMapClaimer) Claim(ctx context.Context, sched string, at time.Time, by string) (bool, error) {
	h := sha256.Sum256([]byte(fmt.Sprintf("%s\x00%d", sched, at.UnixNano())))
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{
			Name: "faultline-claim-" + hex.EncodeToString(h[:10]), Namespace: c.Namespace,
			Labels: map[string]string{"faultline.dev/claim": "v1", "app.kubernetes.io/managed-by": "faultline"},
		},
		Data: map[string]string{"schedule": sched, "start": at.UTC().Format(time.RFC3339Nano), "by": by},
	}
	cms := c.Client.CoreV1().ConfigMaps(c.Namespace)
	_, err := cms.Create(ctx, cm, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("claim %s at %s: %w", sched, at.Format(time.RFC3339), err)
	}
	c.expire(ctx)
	return true, nil
}

// expire deletes old claims; failures only leave a few small objects behind for the next try.
func (c *ConfigMapClaimer) expire(ctx context.Context) {
	ttl := c.TTL
	if ttl == 0 {
		ttl = 48 * time.Hour
	}
	cms := c.Client.CoreV1().ConfigMaps(c.Namespace)
	list, err := cms.List(ctx, metav1.ListOptions{LabelSelector: "faultline.dev/claim"})
	if err != nil {
		return
	}
	for _, cm := range list.Items {
		if time.Since(cm.CreationTimestamp.Time) > ttl {
			_ = cms.Delete(ctx, cm.Name, metav1.DeleteOptions{})
		}
	}
}
