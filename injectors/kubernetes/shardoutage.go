package kubernetes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/watch"
	k8s "k8s.io/client-go/kubernetes"
	watchtools "k8s.io/client-go/tools/watch"
	"k8s.io/client-go/util/retry"

	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/runbooks"
	"github.com/faultline-dev/faultline/safety/policy"
)

// ShardOutage is the shard-outage injector: a whole shard (the pods a label selects, or one
// workload) goes away for the fault window.
//
// scale-to-zero scales the shard's Deployments and StatefulSets to 0 through the scale
// subresource. The ledger record, written before anything changes, holds each workload's UID and
// replica count and each HorizontalPodAutoscaler that targets it with its minReplicas; revert
// restores exactly those, from the record alone, and only where the outage is still in place (a
// workload no longer at 0 was restored already, by a previous revert or by someone else, and is
// left alone), so that it is idempotent.
//
// HorizontalPodAutoscalers: the HPA controller does not scale a target whose replicas are 0 while
// its minReplicas is 1 or more ("ScalingDisabled: scaling is disabled since the replica count of
// the target is zero"), and its own scale updates carry a resourceVersion, so it cannot overwrite
// our 0 with a stale count. Such HPAs are left untouched. Only an HPA with minReplicas 0 (the
// HPAScaleToZero feature) keeps scaling a target at 0 from its metrics; for the window its
// minReplicas is raised to 1, which disables it the same way, and revert puts 0 back.
//
// keep-down deletes the shard's pods and then, for the whole window, every pod of the shard that
// appears, as a watch reports it (no polling). Pods come back when the window ends; there is
// nothing to revert.
type ShardOutage struct{}

// Kind implements injectors.Injector.
func (ShardOutage) Kind() string { return "shard-outage" }

// Prepare implements injectors.Injector.
func (ShardOutage) Prepare(ctx context.Context, f runbooks.Fault, env injectors.Env) (injectors.Action, error) {
	spec := *f.ShardOutage
	cs, err := Clientset(env)
	if err != nil {
		return nil, err
	}
	var act injectors.Action
	if spec.Mode == runbooks.ModeKeepDown {
		act, err = prepareKeepDown(ctx, cs, spec, env)
	} else {
		act, err = prepareScaleToZero(ctx, cs, spec, env)
	}
	return act, Forbidden(err)
}

// Revert implements injectors.Injector.
func (ShardOutage) Revert(ctx context.Context, record json.RawMessage, env injectors.Env) error {
	var head struct {
		Mode string `json:"mode"`
	}
	if err := json.Unmarshal(record, &head); err != nil {
		return fmt.Errorf("decode shard-outage record: %w", err)
	}
	if head.Mode != runbooks.ModeScaleToZero {
		return nil // keep-down deleted pods; their controllers bring them back
	}
	var rec scaleRecord
	if err := json.Unmarshal(record, &rec); err != nil {
		return fmt.Errorf("decode shard-outage record: %w", err)
	}
	if len(rec.Workloads) == 0 {
		return nil
	}
	cs, err := env.Kube.Clientset()
	if err != nil {
		return fmt.Errorf("revert shard-outage: %w", err)
	}
	var errs []error
	for _, w := range rec.Workloads {
		if err := restore(ctx, cs, w); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ---- scale-to-zero ----

// scaleRecord is the ledger record of a scale-to-zero outage.
type scaleRecord struct {
	Mode      string        `json:"mode"`
	Workloads []scaledState `json:"workloads"`
}

// scaledState is what revert needs to put one workload back.
type scaledState struct {
	Kind      string     `json:"kind"`
	Namespace string     `json:"namespace"`
	Name      string     `json:"name"`
	UID       string     `json:"uid"`
	Replicas  int32      `json:"replicas"` // spec.replicas before the outage
	HPAs      []hpaState `json:"hpas,omitempty"`
}

// hpaState is one HorizontalPodAutoscaler targeting the workload.
type hpaState struct {
	Name        string `json:"name"`
	UID         string `json:"uid"`
	MinReplicas *int32 `json:"minReplicas"` // as it was; null when unset (the API's default is 1)
	// Raised is true when minReplicas was 0 and is set to 1 for the window.
	Raised bool `json:"raised"`
}

func (s scaledState) ref() string {
	return fmt.Sprintf("%s %s/%s", strings.ToLower(s.Kind), s.Namespace, s.Name)
}

func (s scaledState) target() string {
	t := fmt.Sprintf("%s (uid %s): %d → 0 replicas", s.ref(), s.UID, s.Replicas)
	for _, h := range s.HPAs {
		if h.Raised {
			t += fmt.Sprintf("; hpa %s/%s minReplicas 0 → 1 for the window", s.Namespace, h.Name)
		} else {
			t += fmt.Sprintf("; hpa %s/%s (minReplicas %s) left as is: it does not scale a target at 0", s.Namespace, h.Name, minText(h.MinReplicas))
		}
	}
	return t
}

func minText(p *int32) string {
	if p == nil {
		return "unset, 1"
	}
	return fmt.Sprint(*p)
}

type scaleAction struct {
	cs  k8s.Interface
	rec scaleRecord
}

func prepareScaleToZero(ctx context.Context, cs k8s.Interface, spec runbooks.ShardOutage, env injectors.Env) (injectors.Action, error) {
	r := newResolver(cs, env)
	var wls []*workload
	if ref := spec.Workload; ref != nil {
		w, err := r.getWorkload(ctx, *ref)
		if err != nil {
			return nil, err
		}
		wls = append(wls, w)
	} else {
		sel, err := labels.Parse(spec.LabelSelector)
		if err != nil {
			return nil, fmt.Errorf("labelSelector: %w", err)
		}
		for _, ns := range spec.Namespaces {
			if _, err := r.namespace(ctx, ns); err != nil {
				return nil, err
			}
			found, err := shardWorkloads(ctx, r, ns, sel)
			if err != nil {
				return nil, err
			}
			wls = append(wls, found...)
		}
	}
	if len(wls) == 0 {
		return nil, policy.Refusef("target", "no Deployment or StatefulSet whose pods match %s", targetText(spec.PodTarget))
	}
	var notOptedIn, atZero []string
	fp := policy.KubeFootprint{Targets: len(wls)}
	for _, w := range wls {
		if !r.pol.OptedIn(w.Labels, w.Template, r.ns[w.Namespace].Labels) {
			notOptedIn = append(notOptedIn, w.String())
		}
		if w.Replicas == 0 {
			atZero = append(atZero, w.String())
		}
		fp.Pods += w.Replicas
		fp.Workloads = append(fp.Workloads, policy.WorkloadShare{Name: w.String(), Replicas: w.Replicas, Affected: w.Replicas})
	}
	if len(notOptedIn) > 0 {
		return nil, policy.RefuseNotOptedIn(notOptedIn)
	}
	if len(atZero) > 0 {
		sort.Strings(atZero)
		return nil, policy.Refusef("target", "%s already at 0 replicas: an outage that was not reverted? run 'faultline recover' (or scale it up) first", strings.Join(atZero, ", "))
	}
	if err := r.pol.CheckBlastRadius(fp); err != nil {
		return nil, err
	}
	a := &scaleAction{cs: cs, rec: scaleRecord{Mode: runbooks.ModeScaleToZero}}
	for _, w := range wls {
		st, err := liveState(ctx, cs, w.Kind, w.Namespace, w.Name)
		if err != nil {
			return nil, err
		}
		a.rec.Workloads = append(a.rec.Workloads, st)
	}
	return a, nil
}

// shardWorkloads lists the Deployments and StatefulSets of a namespace whose pods the selector
// matches: every pod of a workload carries its template's labels, so the whole workload is in
// the shard.
func shardWorkloads(ctx context.Context, r *resolver, ns string, sel labels.Selector) ([]*workload, error) {
	var out []*workload
	deps, err := r.cs.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list deployments in %s: %w", ns, err)
	}
	for _, d := range deps.Items {
		if sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			out = append(out, &workload{Kind: "Deployment", Namespace: ns, Name: d.Name, UID: d.UID,
				Replicas: replicasOf(d.Spec.Replicas), Labels: d.Labels, Template: d.Spec.Template.Labels})
		}
	}
	sts, err := r.cs.AppsV1().StatefulSets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list statefulsets in %s: %w", ns, err)
	}
	for _, s := range sts.Items {
		if sel.Matches(labels.Set(s.Spec.Template.Labels)) {
			out = append(out, &workload{Kind: "StatefulSet", Namespace: ns, Name: s.Name, UID: s.UID,
				Replicas: replicasOf(s.Spec.Replicas), Labels: s.Labels, Template: s.Spec.Template.Labels})
		}
	}
	return out, nil
}

// liveState reads a workload's scale and the HPAs that target it.
func liveState(ctx context.Context, cs k8s.Interface, kind, ns, name string) (scaledState, error) {
	sc, err := getScale(ctx, cs, kind, ns, name)
	if err != nil {
		return scaledState{}, err
	}
	st := scaledState{Kind: kind, Namespace: ns, Name: name, UID: string(sc.UID), Replicas: sc.Spec.Replicas}
	hpas, err := cs.AutoscalingV2().HorizontalPodAutoscalers(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return scaledState{}, fmt.Errorf("list horizontalpodautoscalers in %s: %w", ns, err)
	}
	for _, h := range hpas.Items {
		if !targets(h, kind, name) {
			continue
		}
		hs := hpaState{Name: h.Name, UID: string(h.UID), MinReplicas: h.Spec.MinReplicas}
		hs.Raised = h.Spec.MinReplicas != nil && *h.Spec.MinReplicas == 0
		st.HPAs = append(st.HPAs, hs)
	}
	return st, nil
}

func targets(h autoscalingv2.HorizontalPodAutoscaler, kind, name string) bool {
	ref := h.Spec.ScaleTargetRef
	group, _, _ := strings.Cut(ref.APIVersion, "/")
	return ref.Kind == kind && ref.Name == name && (group == "apps" || ref.APIVersion == "")
}

func getScale(ctx context.Context, cs k8s.Interface, kind, ns, name string) (*autoscalingv1.Scale, error) {
	var (
		sc  *autoscalingv1.Scale
		err error
	)
	switch kind {
	case "Deployment":
		sc, err = cs.AppsV1().Deployments(ns).GetScale(ctx, name, metav1.GetOptions{})
	case "StatefulSet":
		sc, err = cs.AppsV1().StatefulSets(ns).GetScale(ctx, name, metav1.GetOptions{})
	default:
		return nil, fmt.Errorf("scale-to-zero does not scale %s", kind)
	}
	if err != nil {
		return nil, fmt.Errorf("get scale of %s %s/%s: %w", strings.ToLower(kind), ns, name, err)
	}
	return sc, nil
}

func updateScale(ctx context.Context, cs k8s.Interface, kind string, sc *autoscalingv1.Scale) error {
	var err error
	switch kind {
	case "Deployment":
		_, err = cs.AppsV1().Deployments(sc.Namespace).UpdateScale(ctx, sc.Name, sc, metav1.UpdateOptions{})
	case "StatefulSet":
		_, err = cs.AppsV1().StatefulSets(sc.Namespace).UpdateScale(ctx, sc.Name, sc, metav1.UpdateOptions{})
	default:
		return fmt.Errorf("scale-to-zero does not scale %s", kind)
	}
	return err
}

func (a *scaleAction) Targets() []string {
	out := make([]string, len(a.rec.Workloads))
	for i, w := range a.rec.Workloads {
		out[i] = w.target()
	}
	return out
}

// TargetRefs implements injectors.TargetLister: the workloads scaled to zero.
func (a *scaleAction) TargetRefs() []injectors.Target {
	out := make([]injectors.Target, len(a.rec.Workloads))
	for i, w := range a.rec.Workloads {
		ref := &injectors.WorkloadRef{Kind: strings.ToLower(w.Kind), Namespace: w.Namespace, Name: w.Name}
		out[i] = injectors.Target{Kind: ref.Kind, Namespace: w.Namespace, Name: w.Name, UID: w.UID, Workload: ref}
	}
	return out
}

func (a *scaleAction) Record() (json.RawMessage, error) { return json.Marshal(a.rec) }

// Apply re-reads every workload (replicas and HPAs may have changed since Prepare), records that
// state durably, then raises the minReplicas of HPAs at 0 and scales each workload to 0. A
// change between the record and the update (the update carries the resourceVersion it read)
// is recorded again before it is retried.
func (a *scaleAction) Apply(ctx context.Context, rec injectors.Recorder) error {
	fresh := scaleRecord{Mode: runbooks.ModeScaleToZero}
	for _, w := range a.rec.Workloads {
		st, err := liveState(ctx, a.cs, w.Kind, w.Namespace, w.Name)
		if err != nil {
			return err
		}
		if st.UID != w.UID {
			return fmt.Errorf("%s was replaced (uid %s, prepared %s) between prepare and apply", w.ref(), st.UID, w.UID)
		}
		fresh.Workloads = append(fresh.Workloads, st)
	}
	if err := a.record(ctx, rec, fresh); err != nil {
		return err
	}
	for i := range a.rec.Workloads {
		w := &a.rec.Workloads[i]
		for _, h := range w.HPAs {
			if h.Raised {
				if err := setHPAMin(ctx, a.cs, w.Namespace, h, 0, ptr(int32(1))); err != nil {
					return err
				}
			}
		}
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			sc, err := getScale(ctx, a.cs, w.Kind, w.Namespace, w.Name)
			if err != nil {
				return err
			}
			if sc.Spec.Replicas == 0 {
				return nil
			}
			if sc.Spec.Replicas != w.Replicas {
				w.Replicas = sc.Spec.Replicas // scaled by someone (an HPA) since: record the new count first
				if err := a.record(ctx, rec, a.rec); err != nil {
					return err
				}
			}
			sc.Spec.Replicas = 0
			return updateScale(ctx, a.cs, w.Kind, sc)
		})
		if err != nil {
			return fmt.Errorf("scale %s to 0: %w", w.ref(), err)
		}
	}
	return nil
}

func (a *scaleAction) record(ctx context.Context, rec injectors.Recorder, r scaleRecord) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode shard-outage record: %w", err)
	}
	if err := rec(ctx, b); err != nil {
		return err
	}
	a.rec = r
	return nil
}

func (a *scaleAction) Describe() []string {
	out := make([]string, 0, len(a.rec.Workloads))
	for _, w := range a.rec.Workloads {
		out = append(out, fmt.Sprintf("scaled %s from %d to 0 replicas (scale subresource); revert restores %d", w.ref(), w.Replicas, w.Replicas))
		for _, h := range w.HPAs {
			if h.Raised {
				out = append(out, fmt.Sprintf("raised hpa %s/%s minReplicas 0 → 1 so that it does not scale the shard back; revert restores 0", w.Namespace, h.Name))
			} else {
				out = append(out, fmt.Sprintf("left hpa %s/%s (minReplicas %s) as is: the HPA controller does not scale a target at 0 replicas", w.Namespace, h.Name, minText(h.MinReplicas)))
			}
		}
	}
	return out
}

// setHPAMin sets an HPA's minReplicas from one value to another, only if it still has the first
// and is the same object (UID): the HPA someone edited or re-created since is left alone.
func setHPAMin(ctx context.Context, cs k8s.Interface, ns string, h hpaState, from int32, to *int32) error {
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := cs.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(ctx, h.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		if string(cur.UID) != h.UID || cur.Spec.MinReplicas == nil || *cur.Spec.MinReplicas != from {
			return nil
		}
		cur.Spec.MinReplicas = to
		_, err = cs.AutoscalingV2().HorizontalPodAutoscalers(ns).Update(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("set minReplicas of hpa %s/%s: %w", ns, h.Name, err)
	}
	return nil
}

// restore puts one workload back from its record: replicas first (only while it is still at 0,
// and only the same object), then the HPA minReplicas that were raised.
func restore(ctx context.Context, cs k8s.Interface, w scaledState) error {
	var errs []error
	if w.Replicas > 0 {
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			sc, err := getScale(ctx, cs, w.Kind, w.Namespace, w.Name)
			if apierrors.IsNotFound(err) {
				return nil // the workload is gone: nothing to restore
			}
			if err != nil {
				return err
			}
			if string(sc.UID) != w.UID || sc.Spec.Replicas != 0 {
				return nil // another object of that name, or no longer at 0: not ours to change
			}
			sc.Spec.Replicas = w.Replicas
			return updateScale(ctx, cs, w.Kind, sc)
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("restore %s to %d replicas: %w", w.ref(), w.Replicas, err))
		}
	}
	for _, h := range w.HPAs {
		if !h.Raised {
			continue
		}
		if err := setHPAMin(ctx, cs, w.Namespace, h, 1, h.MinReplicas); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ---- keep-down ----

type keepDownAction struct {
	cs     k8s.Interface
	env    injectors.Env
	spec   runbooks.ShardOutage
	grace  *int64
	picked []pod
	rv     map[string]string // namespace → resourceVersion of the list the targets came from
	// prepared holds Prepare's lookups; each watch starts from a copy.
	prepared *resolver

	stop    context.CancelFunc // ends the watch
	done    chan struct{}      // closed when the watch, the deletions and the last record are done
	sem     chan struct{}      // bounds the deletions in flight
	deletes sync.WaitGroup

	mu       sync.Mutex
	hit      []pod
	total    int
	seen     map[string]bool // UIDs deleted
	report   func(injectors.Event)
	pending  []injectors.Event
	err      error
	recorded int // total when the record was last written
}

func prepareKeepDown(ctx context.Context, cs k8s.Interface, spec runbooks.ShardOutage, env injectors.Env) (injectors.Action, error) {
	r := newResolver(cs, env)
	all, rv, err := r.podsOf(ctx, spec.PodTarget)
	if err != nil {
		return nil, err
	}
	if len(all) == 0 {
		return nil, policy.Refusef("target", "no live pod matches %s", targetText(spec.PodTarget))
	}
	if err := r.pol.CheckBlastRadius(footprint(all, all)); err != nil {
		return nil, err
	}
	grace := int64(0)
	if spec.GracePeriod != nil {
		grace = *gracePeriod(spec.GracePeriod)
	}
	a := &keepDownAction{cs: cs, env: env, spec: spec, grace: &grace, rv: rv, seen: map[string]bool{}, prepared: r}
	for _, c := range all {
		a.picked = append(a.picked, podOf(c.pod, c.wl))
	}
	return a, nil
}

func (a *keepDownAction) Targets() []string {
	return append(describePods(a.picked), "every pod of "+targetText(a.spec.PodTarget)+" that appears during the window")
}

// TargetRefs implements injectors.TargetLister: the pods of the shard when it was applied (the
// ones deleted later come as events with Subjects).
func (a *keepDownAction) TargetRefs() []injectors.Target { return podTargets(a.picked) }

type keepDownRecord struct {
	Mode    string `json:"mode"`
	Deleted int    `json:"deleted"`
	Pods    []pod  `json:"pods"`
}

func (a *keepDownAction) Record() (json.RawMessage, error) {
	return json.Marshal(keepDownRecord{Mode: runbooks.ModeKeepDown, Deleted: len(a.picked), Pods: lastN(a.picked, maxRecorded)})
}

// Apply starts watching the shard (from the resourceVersion of Prepare's list, so that no pod
// created since is missed) before it deletes the shard's pods: the replacements the controller
// creates at once are deleted as they appear, not when Sustain starts. The watch runs until
// Sustain's context ends (or Apply's, if Sustain is never called).
//
// The ledger entry written before Apply names the shard and says that every pod of it appearing
// during the window is deleted; the pods actually hit are added to the record as they go (at
// most every recordEvery, and once more at the end), after their deletion: a deletion cannot be
// reverted, and a returning pod is deleted without waiting for a disk write.
func (a *keepDownAction) Apply(ctx context.Context, rec injectors.Recorder) error {
	wctx, stop := context.WithCancel(ctx)
	a.stop, a.done = stop, make(chan struct{})
	a.sem = make(chan struct{}, deleteConcurrency)
	var watchers sync.WaitGroup
	for ns, rv := range a.rv {
		watchers.Add(1)
		go func() {
			defer watchers.Done()
			if err := a.watchNamespace(wctx, ns, rv); err != nil {
				a.fail(err)
			}
		}()
	}
	watchers.Add(1)
	go func() {
		defer watchers.Done()
		t := time.NewTicker(recordEvery)
		defer t.Stop()
		for {
			select {
			case <-wctx.Done():
				return
			case <-t.C:
				if err := a.flush(wctx, rec); err != nil {
					a.fail(err)
				}
			}
		}
	}()
	go func() {
		watchers.Wait()
		a.deletes.Wait()
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := a.flush(fctx, rec); err != nil {
			a.fail(err)
		}
		close(a.done)
	}()

	done, err := deletePods(ctx, a.cs, a.picked, a.grace)
	a.mu.Lock()
	for _, p := range a.picked {
		a.seen[p.UID] = true
	}
	a.hit = lastN(append(a.hit, done...), maxRecorded)
	a.total += len(done)
	a.mu.Unlock()
	return err
}

// recordEvery is how often keep-down adds the pods it deleted to its ledger record.
const recordEvery = 500 * time.Millisecond

// flush writes the record when pods were deleted since the last write.
func (a *keepDownAction) flush(ctx context.Context, rec injectors.Recorder) error {
	a.mu.Lock()
	if a.recorded == a.total {
		a.mu.Unlock()
		return nil
	}
	total := a.total
	b, err := json.Marshal(keepDownRecord{Mode: runbooks.ModeKeepDown, Deleted: total, Pods: append([]pod(nil), a.hit...)})
	a.mu.Unlock()
	if err != nil {
		return fmt.Errorf("encode keep-down record: %w", err)
	}
	if err := rec(ctx, b); err != nil {
		return fmt.Errorf("record the pods keep-down deleted: %w", err)
	}
	a.mu.Lock()
	a.recorded = total
	a.mu.Unlock()
	return nil
}

// fail keeps the first error and stops the watch.
func (a *keepDownAction) fail(err error) {
	a.mu.Lock()
	if a.err == nil {
		a.err = err
	}
	a.mu.Unlock()
	a.stop()
}

// emit reports an event, or keeps it until Sustain gives the reporter.
func (a *keepDownAction) emit(e injectors.Event) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.report == nil {
		a.pending = append(a.pending, e)
		return
	}
	a.report(e)
}

func (a *keepDownAction) Describe() []string {
	return []string{fmt.Sprintf("deleted %d pod(s) of %s and watching for new ones until the window ends (grace period %ds)",
		len(a.picked), targetText(a.spec.PodTarget), *a.grace)}
}

// Sustain keeps the shard down until ctx ends: the watch Apply started deletes every live pod of
// the shard it reports. It returns the watch's error, if one stopped it early.
func (a *keepDownAction) Sustain(ctx context.Context, _ injectors.Recorder, report func(injectors.Event)) error {
	a.mu.Lock()
	a.report = report
	for _, e := range a.pending {
		report(e)
	}
	a.pending = nil
	a.mu.Unlock()
	if a.done == nil {
		<-ctx.Done() // never applied
		return nil
	}
	select {
	case <-ctx.Done():
	case <-a.done:
	}
	a.stop()
	<-a.done
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.err
}

// listOptions selects the shard's pods in a namespace.
func (a *keepDownAction) listOptions(ctx context.Context, r *resolver) (metav1.ListOptions, *workload, error) {
	if ref := a.spec.Workload; ref != nil {
		w, err := r.getWorkload(ctx, *ref)
		if err != nil {
			return metav1.ListOptions{}, nil, err
		}
		return metav1.ListOptions{LabelSelector: w.Selector.String()}, w, nil
	}
	return metav1.ListOptions{LabelSelector: a.spec.LabelSelector, FieldSelector: a.spec.FieldSelector}, nil, nil
}

type podWatcher struct {
	cs   k8s.Interface
	ns   string
	opts metav1.ListOptions
}

func (w podWatcher) WatchWithContext(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
	o.LabelSelector, o.FieldSelector = w.opts.LabelSelector, w.opts.FieldSelector
	return w.cs.CoreV1().Pods(w.ns).Watch(ctx, o)
}

func (a *keepDownAction) watchNamespace(ctx context.Context, ns, rv string) error {
	// Start from what Prepare looked up (the namespace, the shard's owners): the first returning
	// pod is then deleted without a lookup.
	r := a.prepared.clone()
	opts, wl, err := a.listOptions(ctx, r)
	if err != nil {
		return err
	}
	for ctx.Err() == nil {
		rw, err := watchtools.NewRetryWatcherWithContext(ctx, rv, podWatcher{cs: a.cs, ns: ns, opts: opts})
		if err != nil {
			return fmt.Errorf("watch pods in %s: %w", ns, err)
		}
		err = a.consume(ctx, r, wl, rw.ResultChan())
		rw.Stop()
		if err != nil || ctx.Err() != nil {
			return err
		}
		// The watch ended (its resourceVersion expired): list again, delete what is there, and
		// watch on from that list.
		pods, lrv, err := listPods(ctx, a.cs, ns, opts)
		if err != nil {
			return err
		}
		for i := range pods {
			if err := a.maybeDelete(ctx, r, wl, &pods[i]); err != nil {
				return err
			}
		}
		rv = lrv
	}
	return nil
}

func (a *keepDownAction) consume(ctx context.Context, r *resolver, wl *workload, ch <-chan watch.Event) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-ch:
			if !ok {
				return nil
			}
			switch ev.Type {
			case watch.Added, watch.Modified:
				p, ok := ev.Object.(*corev1.Pod)
				if !ok {
					continue
				}
				if err := a.maybeDelete(ctx, r, wl, p); err != nil {
					return err
				}
			case watch.Error:
				return nil // e.g. resourceVersion too old: the caller lists again
			}
		}
	}
}

// maybeDelete deletes a pod of the shard that is live, opted in and not deleted already. The
// checks run in the watch's goroutine (their lookups are cached); the deletion runs concurrently
// so that a burst of new pods is deleted in about one round trip.
func (a *keepDownAction) maybeDelete(ctx context.Context, r *resolver, wl *workload, p *corev1.Pod) error {
	if !live(p) {
		return nil
	}
	a.mu.Lock()
	done := a.seen[string(p.UID)]
	a.mu.Unlock()
	if done {
		return nil
	}
	o, err := r.owner(ctx, p)
	if err != nil {
		return err
	}
	if wl != nil && (o == nil || o.UID != wl.UID) {
		return nil
	}
	ns, err := r.namespace(ctx, p.Namespace)
	if err != nil {
		return err
	}
	var wlLabels, tmpl map[string]string
	if o != nil {
		wlLabels, tmpl = o.Labels, o.Template
	}
	if !r.pol.OptedIn(p.Labels, wlLabels, tmpl, ns.Labels) {
		a.emit(injectors.Event{Time: time.Now(), Message: fmt.Sprintf("left pod %s/%s alone: it did not opt in", p.Namespace, p.Name)})
		return nil
	}
	tp := podOf(p, o)
	a.mu.Lock()
	a.seen[tp.UID] = true
	a.mu.Unlock()
	select {
	case a.sem <- struct{}{}:
	case <-ctx.Done():
		return nil
	}
	a.deletes.Add(1)
	go func() {
		defer func() { <-a.sem; a.deletes.Done() }()
		ok, err := deletePod(ctx, a.cs, tp, a.grace)
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return
		case apierrors.IsForbidden(err), apierrors.IsUnauthorized(err):
			a.fail(err) // it will not get better during the window
			return
		default:
			// One pod that could not be deleted (a timeout, the client's rate limit at the end of
			// the window) does not end the outage; the next event about it retries.
			a.mu.Lock()
			delete(a.seen, tp.UID)
			a.mu.Unlock()
			a.emit(injectors.Event{Time: time.Now(), Message: fmt.Sprintf("could not delete %s: %v", tp, err)})
			return
		}
		if ok {
			a.mu.Lock()
			a.hit = lastN(append(a.hit, tp), maxRecorded)
			a.total++
			a.mu.Unlock()
			a.emit(injectors.Event{Time: time.Now(), Message: "deleted a returning pod of the shard", Targets: []string{tp.String()}, Subjects: []injectors.Target{tp.target()}})
		}
	}()
	return nil
}

func ptr[T any](v T) *T { return &v }
