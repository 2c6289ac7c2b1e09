package daemon

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/faultline-dev/faultline/safety/ledger"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// LeaseElector returns an Options.Elect that holds a coordination.k8s.io Lease as holder
// (identity/incarnation, see Holder). Leadership is released on shutdown so that a rolling update
// fails over at once rather than after the lease. onNewLeader (may be nil) hears every holder seen.
func LeaseElector(client kubernetes.Interface, le LeaderElection, holder string, onNewLeader func(string)) func(ctx context.Context, lead func(context.Context)) error {
	return func(ctx context.Context, lead func(context.Context)) error {
		leases := client.CoordinationV1().Leases(le.Namespace)
		// Replicas that start together would race to create the Lease, and client-go logs the
		// loser's AlreadyExists as an error: an empty Lease created here (or found) avoids that.
		_, err := leases.Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: le.LeaseName, Namespace: le.Namespace}}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) && ctx.Err() == nil {
			slog.Debug("create the Lease ahead of the election", "err", err)
		}
		lock := &resourcelock.LeaseLock{
			LeaseMeta:  metav1.ObjectMeta{Name: le.LeaseName, Namespace: le.Namespace},
			Client:     client.CoordinationV1(),
			LockConfig: resourcelock.ResourceLockConfig{Identity: holder},
		}
		if onNewLeader == nil {
			onNewLeader = func(string) {}
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
					OnNewLeader:      onNewLeader,
				},
			})
		}
		return nil
	}
}

// Holder is what a replica writes into the Lease: its identity and this process's incarnation,
// so that a replica restarted under the same name is a new holder, not its dead predecessor.
func Holder(identity, incarnation string) string { return identity + "/" + incarnation }

// HolderIdentity is the identity part of a Lease holder.
func HolderIdentity(holder string) string {
	id, _, _ := strings.Cut(holder, "/")
	return id
}

// NewIncarnation returns a random ID for this process start.
func NewIncarnation() string {
	var b [6]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read does not fail on Linux
	return hex.EncodeToString(b[:])
}

// NotSelf treats every owner but this very process (identity and incarnation) as gone. It is
// right only once this replica holds the lease: a replica that lost it halts its runs, a dead one
// cannot revert anything, and a predecessor under the same identity (a restarted container) is
// dead even though its name lives on. Entries without an incarnation are from before it existed.
func NotSelf(identity, incarnation string) func(ledger.Owner) bool {
	return func(o ledger.Owner) bool { return o.ID != identity || o.Incarnation != incarnation }
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
	_, _ = c.Prune(ctx, ttl)
}

// Prune deletes claims older than age.
func (c *ConfigMapClaimer) Prune(ctx context.Context, age time.Duration) (int, error) {
	cms := c.Client.CoreV1().ConfigMaps(c.Namespace)
	list, err := cms.List(ctx, metav1.ListOptions{LabelSelector: "faultline.dev/claim"})
	if err != nil {
		return 0, fmt.Errorf("list claims in %s: %w", c.Namespace, err)
	}
	n := 0
	for _, cm := range list.Items {
		if time.Since(cm.CreationTimestamp.Time) > age {
			if err := cms.Delete(ctx, cm.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				return n, fmt.Errorf("delete claim %s: %w", cm.Name, err)
			}
			n++
		}
	}
	return n, nil
}

// Starts lists the scheduled starts of sched claimed since since (by any replica, or by this
// one before a restart), ascending: the per-day cap and chaos-monkey gaps continue from them.
func (c *ConfigMapClaimer) Starts(ctx context.Context, sched string, since time.Time) ([]time.Time, error) {
	list, err := c.Client.CoreV1().ConfigMaps(c.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "faultline.dev/claim"})
	if err != nil {
		return nil, fmt.Errorf("list claims in %s: %w", c.Namespace, err)
	}
	var out []time.Time
	for _, cm := range list.Items {
		at, err := time.Parse(time.RFC3339Nano, cm.Data["start"])
		if err == nil && cm.Data["schedule"] == sched && !at.Before(since) {
			out = append(out, at)
		}
	}
	slices.SortFunc(out, time.Time.Compare)
	return out, nil
}
