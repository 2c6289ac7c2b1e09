package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
)

// LabelHaltRequest marks the ConfigMaps that carry halt requests from standbys to the leader.
const LabelHaltRequest = "faultline.dev/halt-request"

// Answer states of a halt request.
const (
	haltDone     = "done"
	haltNotFound = "not-found"
	haltFailed   = "failed"
)

// KubeCoordinator keeps the shared state in ConfigMaps next to the Lease: <lease>-pause holds the
// pause switch, and each halt request is a ConfigMap the leader answers by writing into it (a
// watch on both sides, so a kill switch through a standby costs a few API round trips).
type KubeCoordinator struct {
	Client    kubernetes.Interface
	Namespace string
	LeaseName string
	Holder    string // this replica, named in its answers
	Log       *slog.Logger
}

func (k *KubeCoordinator) pauseName() string { return k.LeaseName + "-pause" }

// Paused implements Coordinator; no ConfigMap means not paused.
func (k *KubeCoordinator) Paused(ctx context.Context) (PauseState, error) {
	cm, err := k.Client.CoreV1().ConfigMaps(k.Namespace).Get(ctx, k.pauseName(), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return PauseState{}, nil
	}
	if err != nil {
		return PauseState{}, fmt.Errorf("read the pause state %s/%s: %w", k.Namespace, k.pauseName(), err)
	}
	st := PauseState{Paused: cm.Data["paused"] == "true", By: cm.Data["by"]}
	st.At, _ = time.Parse(time.RFC3339Nano, cm.Data["at"])
	return st, nil
}

// SetPaused implements Coordinator.
func (k *KubeCoordinator) SetPaused(ctx context.Context, st PauseState) error {
	cms := k.Client.CoreV1().ConfigMaps(k.Namespace)
	data := map[string]string{"paused": strconv.FormatBool(st.Paused), "by": st.By, "at": st.At.UTC().Format(time.RFC3339Nano)}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: k.pauseName(), Namespace: k.Namespace,
		Labels: map[string]string{"app.kubernetes.io/managed-by": "faultline", "faultline.dev/pause": "v1"}}, Data: data}
	_, err := cms.Create(ctx, cm, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
			cur, err := cms.Get(ctx, cm.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			cur.Data = data
			_, err = cms.Update(ctx, cur, metav1.UpdateOptions{})
			return err
		})
	}
	if err != nil {
		return fmt.Errorf("write the pause state %s/%s: %w", k.Namespace, cm.Name, err)
	}
	return nil
}

// RequestHalt implements Coordinator: it creates a request, waits for the leader to answer it
// (until ctx ends) and deletes it.
func (k *KubeCoordinator) RequestHalt(ctx context.Context, req HaltRequest) ([]string, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	cms := k.Client.CoreV1().ConfigMaps(k.Namespace)
	created, err := cms.Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "faultline-halt-", Namespace: k.Namespace,
			Labels: map[string]string{LabelHaltRequest: "v1", "app.kubernetes.io/managed-by": "faultline"}},
		Data: map[string]string{"request": string(b), "requestedAt": time.Now().UTC().Format(time.RFC3339Nano)},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("send the halt to the leader (ConfigMap in %s): %w", k.Namespace, err)
	}
	rv := created.ResourceVersion
	answered := false
	defer func() {
		// Once answered the request has served its purpose. Unanswered, it stays for the leader to
		// act on (a caller that gave up does not cancel a kill switch); the leader deletes it later.
		if answered {
			_ = cms.Delete(context.WithoutCancel(ctx), created.Name, metav1.DeleteOptions{})
		}
	}()
	for {
		w, err := cms.Watch(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", created.Name).String(), ResourceVersion: rv})
		if err != nil {
			return nil, fmt.Errorf("wait for the leader to answer the halt: %w", err)
		}
		halted, done, err := k.awaitAnswer(ctx, w, &rv)
		w.Stop()
		if done || err != nil {
			answered = done
			return halted, err
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("no leader answered the halt request %s/%s in time (is a replica leading? its runs are halted when it answers, or reverted by the next leader's recovery): %w", k.Namespace, created.Name, ctx.Err())
		}
	}
}

// awaitAnswer reads w until the request is answered (done) or the watch ends (not done).
func (k *KubeCoordinator) awaitAnswer(ctx context.Context, w watch.Interface, rv *string) ([]string, bool, error) {
	for {
		select {
		case <-ctx.Done():
			return nil, false, nil
		case ev, ok := <-w.ResultChan():
			if !ok {
				return nil, false, nil
			}
			cm, isCM := ev.Object.(*corev1.ConfigMap)
			if !isCM {
				continue
			}
			*rv = cm.ResourceVersion
			if ev.Type == watch.Deleted {
				return nil, true, errors.New("the halt request was deleted before the leader answered it")
			}
			switch cm.Data["state"] {
			case haltDone:
				var halted []string
				_ = json.Unmarshal([]byte(cm.Data["halted"]), &halted)
				return halted, true, nil
			case haltNotFound:
				return nil, true, fmt.Errorf("%w: %s", ErrNotFound, cm.Data["error"])
			case haltFailed:
				return nil, true, fmt.Errorf("the leader (%s) could not halt: %s", cm.Data["answeredBy"], cm.Data["error"])
			}
		}
	}
}

// ServeHalts implements Coordinator.
func (k *KubeCoordinator) ServeHalts(ctx context.Context, fn func(HaltRequest) ([]string, error)) {
	cms := k.Client.CoreV1().ConfigMaps(k.Namespace)
	for ctx.Err() == nil {
		list, err := cms.List(ctx, metav1.ListOptions{LabelSelector: LabelHaltRequest})
		if err != nil {
			k.log().Error("list halt requests", "err", err)
			if !sleepCtx(ctx, time.Second) {
				return
			}
			continue
		}
		for i := range list.Items {
			k.answer(ctx, &list.Items[i], fn)
		}
		w, err := cms.Watch(ctx, metav1.ListOptions{LabelSelector: LabelHaltRequest, ResourceVersion: list.ResourceVersion})
		if err != nil {
			k.log().Error("watch halt requests", "err", err)
			if !sleepCtx(ctx, time.Second) {
				return
			}
			continue
		}
		for ev := range w.ResultChan() {
			if cm, ok := ev.Object.(*corev1.ConfigMap); ok && (ev.Type == watch.Added || ev.Type == watch.Modified) {
				k.answer(ctx, cm, fn)
			}
		}
		w.Stop()
	}
}

// answer handles one request that has no answer yet, and deletes answered ones an hour old
// (their requester normally deletes them as soon as it has read the answer).
func (k *KubeCoordinator) answer(ctx context.Context, cm *corev1.ConfigMap, fn func(HaltRequest) ([]string, error)) {
	cms := k.Client.CoreV1().ConfigMaps(k.Namespace)
	if cm.Data["state"] != "" {
		if time.Since(cm.CreationTimestamp.Time) > time.Hour {
			_ = cms.Delete(ctx, cm.Name, metav1.DeleteOptions{})
		}
		return
	}
	var req HaltRequest
	data := map[string]string{}
	if err := json.Unmarshal([]byte(cm.Data["request"]), &req); err != nil {
		data["state"], data["error"] = haltFailed, "unreadable request: "+err.Error()
	} else if age := time.Since(cm.CreationTimestamp.Time); age > haltTimeout+30*time.Second {
		// Its sender answered "no leader answered" long ago: acting on it now would surprise.
		data["state"], data["error"] = haltFailed, fmt.Sprintf("expired: sent %s ago, when no replica led", age.Round(time.Second))
	} else {
		halted, err := fn(req)
		hb, _ := json.Marshal(nonNilStrings(halted))
		data["state"], data["halted"] = haltDone, string(hb)
		if errors.Is(err, ErrNotFound) {
			data["state"], data["error"] = haltNotFound, err.Error()
		} else if err != nil {
			data["state"], data["error"] = haltFailed, err.Error()
		}
	}
	data["answeredAt"], data["answeredBy"] = time.Now().UTC().Format(time.RFC3339Nano), k.Holder
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := cms.Get(ctx, cm.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for key, v := range data {
			cur.Data[key] = v
		}
		_, err = cms.Update(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if err != nil && !apierrors.IsNotFound(err) {
		k.log().Error("answer a halt request", "request", cm.Name, "err", err)
	}
}

func (k *KubeCoordinator) log() *slog.Logger {
	if k.Log == nil {
		return slog.Default()
	}
	return k.Log
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// sleepCtx waits d, or less if ctx ends (then it returns false). It paces retries; it does not
// wait for a condition.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

var _ Coordinator = (*KubeCoordinator)(nil)
