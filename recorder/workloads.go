// Package recorder observes how a system recovers from an experiment. Workloads, the first
// recorder, follows Kubernetes workloads from watches: for every pod killed during the experiment,
// killed → replacement created → scheduled → Ready, and for every workload the experiment targets,
// when it was fully available again.
//
// The recorders implement experiments.Recorder, the one contract (experiments/recorder.go); the
// command wires them into the engine.
package recorder

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/faultline-dev/faultline/experiments"
	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/internal/kubeclient"
	"github.com/faultline-dev/faultline/runbooks"
)

var _ experiments.Recorder = (*Workloads)(nil)

// Workloads records the recovery of the Kubernetes workloads an experiment's pod-kill and
// shard-outage faults target. The zero value is ready to use.
type Workloads struct {
	// SyncTimeout bounds how long Start waits for its watches' initial lists (default 1m).
	SyncTimeout time.Duration
	// LateAfter is how far a watch event may arrive after the API server's own timestamp for the
	// same moment before the recorder treats it as delivered late and uses the API server's
	// timestamp instead (default 2s: the API server's timestamps are whole seconds, so up to 1s of
	// the difference is truncation).
	LateAfter time.Duration
}

// Name identifies the recorder in the result.
func (w *Workloads) Name() string { return "workloads" }

// Start resolves the workloads the experiment's Kubernetes faults target, starts watching them and
// their pods, and returns once the watches have their initial state. It returns (nil, nil) for an
// experiment without Kubernetes faults. The watches stop when Finish returns or ctx ends.
func (w *Workloads) Start(ctx context.Context, x *runbooks.Experiment, env injectors.Env) (experiments.RecorderSession, error) {
	targets := podTargets(x)
	if len(targets) == 0 {
		return nil, nil
	}
	cfg, err := env.Kube.Config()
	if err != nil {
		return nil, fmt.Errorf("the workload recorder needs a Kubernetes client: %w", err)
	}
	cs, meta, err := watchClients(cfg)
	if err != nil {
		return nil, err
	}
	log := env.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	lateAfter := w.LateAfter
	if lateAfter <= 0 {
		lateAfter = 2 * time.Second
	}
	syncTimeout := w.SyncTimeout
	if syncTimeout <= 0 {
		syncTimeout = time.Minute
	}

	res := &resolver{meta: meta, rs: map[string]metav1.Object{}}
	var refs []runbooks.WorkloadRef
	addRef := func(r runbooks.WorkloadRef) {
		if !slices.Contains(refs, r) {
			refs = append(refs, r)
		}
	}
	// Pods a fault selects that no tracked controller owns: watched by their selector, so that their
	// deletion is recorded too (no replacement is expected for them).
	untracked := map[scopeKey]map[string]bool{}
	for _, t := range targets {
		if t.Workload != nil {
			addRef(*t.Workload)
			continue
		}
		for _, ns := range t.Namespaces {
			owned, bare, err := res.ownersOf(ctx, ns, t.LabelSelector, t.FieldSelector)
			if err != nil {
				return nil, err
			}
			for _, r := range owned {
				addRef(r)
			}
			if len(bare) > 0 {
				k := scopeKey{ns, t.LabelSelector}
				if untracked[k] == nil {
					untracked[k] = map[string]bool{}
				}
				for _, uid := range bare {
					untracked[k][uid] = true
				}
			}
		}
	}

	sctx, cancel := context.WithCancel(ctx)
	s := &workloadSession{
		log: log, lateAfter: lateAfter, cancel: cancel, meta: meta,
		pods: map[string]*pod{}, untracked: map[string]bool{}, targeted: map[string]bool{},
		changed: make(chan struct{}, 1),
	}
	var informers []cache.SharedIndexInformer
	var regs []cache.ResourceEventHandlerRegistration
	add := func(inf cache.SharedIndexInformer, h cache.ResourceEventHandler, what string) error {
		if err := inf.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
			s.watchError(what, err)
		}); err != nil {
			return fmt.Errorf("watch %s: %w", what, err)
		}
		reg, err := inf.AddEventHandler(h)
		if err != nil {
			return fmt.Errorf("watch %s: %w", what, err)
		}
		informers, regs = append(informers, inf), append(regs, reg)
		return nil
	}
	fail := func(err error) (experiments.RecorderSession, error) {
		cancel()
		s.wg.Wait()
		return nil, err
	}

	podSelectors := map[scopeKey]bool{}
	for _, ref := range refs {
		wl, sel, err := newWorkload(ctx, cs, ref)
		if err != nil {
			return fail(err)
		}
		wl.selector = sel.String()
		s.workloads = append(s.workloads, wl)
		if err := add(workloadInformer(cs, ref), s.workloadHandler(wl), wl.key); err != nil {
			return fail(err)
		}
		k := scopeKey{ref.Namespace, sel.String()}
		if podSelectors[k] {
			// Two workloads with the same selector (a misconfiguration Kubernetes allows): each
			// needs its own attribution, so each keeps its own watch.
			log.Warn("two workloads select the same pods", "namespace", ref.Namespace, "selector", k.selector)
		}
		podSelectors[k] = true
		if err := add(podInformer(cs, ref.Namespace, k.selector), s.podHandler(wl), "pods of "+wl.key); err != nil {
			return fail(err)
		}
	}
	for k, uids := range untracked {
		for uid := range uids {
			s.untracked[uid] = true
		}
		if err := add(podInformer(cs, k.namespace, k.selector), s.podHandler(nil), fmt.Sprintf("pods %q in %s", k.selector, k.namespace)); err != nil {
			return fail(err)
		}
	}

	// Start the watches a few at a time: each one's initial list arrives as full pods before they
	// are reduced to skeletons, and fifty of them at once would double the memory peak for nothing.
	syncCtx, cancelSync := context.WithTimeout(ctx, syncTimeout)
	defer cancelSync()
	for i := 0; i < len(informers); i += syncBatch {
		j := min(i+syncBatch, len(informers))
		for _, inf := range informers[i:j] {
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				inf.RunWithContext(sctx)
			}()
		}
		if err := waitSynced(syncCtx, syncTimeout, regs[i:j], s); err != nil {
			return fail(err)
		}
	}
	s.markStarted()
	log.Debug("workload recorder watching", "workloads", len(s.workloads), "watches", len(informers))
	return s, nil
}

// podTargets returns the pod selections of the experiment's Kubernetes faults.
func podTargets(x *runbooks.Experiment) []runbooks.PodTarget {
	var out []runbooks.PodTarget
	for i := range x.Faults {
		switch f := x.Faults[i].Spec().(type) {
		case *runbooks.PodKill:
			out = append(out, f.PodTarget)
		case *runbooks.ShardOutage:
			out = append(out, f.PodTarget)
		}
	}
	return out
}

// watchClients builds clients that speak protobuf: a watch of thousands of pods decodes several
// times faster, and with less garbage, than the same watch in JSON.
func watchClients(cfg *rest.Config) (kubernetes.Interface, metadata.Interface, error) {
	c := rest.CopyConfig(cfg)
	c.ContentType = runtime.ContentTypeProtobuf
	c.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	cs, err := kubernetes.NewForConfig(c)
	if err != nil {
		return nil, nil, fmt.Errorf("kubernetes client for %s: %w", cfg.Host, err)
	}
	meta, err := metadata.NewForConfig(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("kubernetes metadata client for %s: %w", cfg.Host, err)
	}
	return cs, meta, nil
}

type scopeKey struct{ namespace, selector string }

// resolver finds the controllers of selected pods, reading metadata only.
type resolver struct {
	meta metadata.Interface
	rs   map[string]metav1.Object // ReplicaSets read, by namespace/name
}

var (
	podsResource        = schema.GroupVersionResource{Version: "v1", Resource: "pods"}
	replicaSetsResource = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "replicasets"}
)

// ownersOf lists the pods a selection matches now and returns the workloads that own them, and the
// UIDs of the pods no Deployment, StatefulSet, ReplicaSet or DaemonSet owns.
func (r *resolver) ownersOf(ctx context.Context, ns, labelSel, fieldSel string) (owned []runbooks.WorkloadRef, bare []string, err error) {
	opts := metav1.ListOptions{LabelSelector: labelSel, FieldSelector: fieldSel, Limit: 500}
	for {
		list, err := r.meta.Resource(podsResource).Namespace(ns).List(ctx, opts)
		if err != nil {
			return nil, nil, fmt.Errorf("list pods %q in namespace %s: %w", labelSel, ns, err)
		}
		for i := range list.Items {
			p := &list.Items[i]
			ref, err := r.owner(ctx, ns, metav1.GetControllerOf(p))
			if err != nil {
				return nil, nil, err
			}
			if ref == nil {
				bare = append(bare, string(p.UID))
			} else if !slices.Contains(owned, *ref) {
				owned = append(owned, *ref)
			}
		}
		if list.Continue == "" {
			return owned, bare, nil
		}
		opts.Continue = list.Continue
	}
}

// owner maps a pod's controller reference to the workload to track (kubeclient.TopController,
// the resolution the injectors use too): a ReplicaSet's Deployment when it has one.
func (r *resolver) owner(ctx context.Context, ns string, c *metav1.OwnerReference) (*runbooks.WorkloadRef, error) {
	kind, name, err := kubeclient.TopController(ctx, ns, c, func(ctx context.Context, ns, name string) (metav1.Object, error) {
		key := ns + "/" + name
		if rs, ok := r.rs[key]; ok {
			return rs, nil
		}
		rs, err := r.meta.Resource(replicaSetsResource).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("get replicaset %s: %w", key, err)
		}
		r.rs[key] = rs
		return rs, nil
	})
	if err != nil {
		return nil, err
	}
	switch kind {
	case "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet":
		return &runbooks.WorkloadRef{Kind: kind, Namespace: ns, Name: name}, nil
	}
	return nil, nil // a Job, or a custom controller: its pods are recorded without a workload
}

// newWorkload reads a workload once for its pod selector.
func newWorkload(ctx context.Context, cs kubernetes.Interface, ref runbooks.WorkloadRef) (*workload, labels.Selector, error) {
	key := workloadKey(ref.Kind, ref.Namespace, ref.Name)
	var ls *metav1.LabelSelector
	var err error
	get := metav1.GetOptions{}
	apps := cs.AppsV1()
	switch ref.Kind {
	case "Deployment":
		var o *appsv1.Deployment
		if o, err = apps.Deployments(ref.Namespace).Get(ctx, ref.Name, get); err == nil {
			ls = o.Spec.Selector
		}
	case "StatefulSet":
		var o *appsv1.StatefulSet
		if o, err = apps.StatefulSets(ref.Namespace).Get(ctx, ref.Name, get); err == nil {
			ls = o.Spec.Selector
		}
	case "ReplicaSet":
		var o *appsv1.ReplicaSet
		if o, err = apps.ReplicaSets(ref.Namespace).Get(ctx, ref.Name, get); err == nil {
			ls = o.Spec.Selector
		}
	case "DaemonSet":
		var o *appsv1.DaemonSet
		if o, err = apps.DaemonSets(ref.Namespace).Get(ctx, ref.Name, get); err == nil {
			ls = o.Spec.Selector
		}
	default:
		return nil, nil, fmt.Errorf("%s: unsupported workload kind %q", key, ref.Kind)
	}
	if apierrors.IsNotFound(err) {
		return nil, nil, fmt.Errorf("%s does not exist", key)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("get %s: %w", key, err)
	}
	sel, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: pod selector: %w", key, err)
	}
	if sel.Empty() {
		return nil, nil, fmt.Errorf("%s selects every pod of its namespace: refusing to guess which pods are its own", key)
	}
	return &workload{ref: ref, key: key, minReady: -1, minAvailable: -1}, sel, nil
}

// workloadInformer watches one workload object.
func workloadInformer(cs kubernetes.Interface, ref runbooks.WorkloadRef) cache.SharedIndexInformer {
	var resource string
	var example runtime.Object
	switch ref.Kind {
	case "Deployment":
		resource, example = "deployments", &appsv1.Deployment{}
	case "StatefulSet":
		resource, example = "statefulsets", &appsv1.StatefulSet{}
	case "ReplicaSet":
		resource, example = "replicasets", &appsv1.ReplicaSet{}
	case "DaemonSet":
		resource, example = "daemonsets", &appsv1.DaemonSet{}
	}
	lw := cache.NewFilteredListWatchFromClient(cs.AppsV1().RESTClient(), resource, ref.Namespace, func(o *metav1.ListOptions) {
		o.FieldSelector = "metadata.name=" + ref.Name
	})
	inf := cache.NewSharedIndexInformer(lw, example, 0, cache.Indexers{})
	_ = inf.SetTransform(stampWorkload) // fails only once the informer runs
	return inf
}

// podInformer watches the pods a label selector matches in one namespace. Its cache keeps a
// skeleton of each pod (stripPod), so that watching 10,000 pods costs a few megabytes.
func podInformer(cs kubernetes.Interface, ns, selector string) cache.SharedIndexInformer {
	lw := cache.NewFilteredListWatchFromClient(cs.CoreV1().RESTClient(), "pods", ns, func(o *metav1.ListOptions) {
		o.LabelSelector = selector
	})
	inf := cache.NewSharedIndexInformer(lw, &corev1.Pod{}, 0, cache.Indexers{})
	_ = inf.SetTransform(stripPod)
	return inf
}

// syncBatch is how many watches Start opens at a time.
const syncBatch = 8

// waitSynced waits until every handler has been given its watch's initial list, failing early on
// a watch error (RBAC, a missing resource) rather than waiting for the timeout (ctx's deadline).
func waitSynced(ctx context.Context, timeout time.Duration, regs []cache.ResourceEventHandlerRegistration, s *workloadSession) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		synced := 0
		for _, r := range regs {
			if r.HasSynced() {
				synced++
			}
		}
		if synced == len(regs) {
			return nil
		}
		if err := s.firstWatchError(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("watches not ready within %s (%d of %d synced in the last batch): %w", timeout, synced, len(regs), context.Cause(ctx))
		case <-tick.C:
		}
	}
}

// workloadSession is one experiment's recording of its workloads.
type workloadSession struct {
	meta      metadata.Interface
	log       *slog.Logger
	lateAfter time.Duration
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	changed   chan struct{} // a token after every state change, for Finish

	mu        sync.Mutex
	started   bool // the initial lists are in: what comes now is news
	workloads []*workload
	pods      map[string]*pod // by UID
	untracked map[string]bool // UIDs of selected pods with no tracked controller
	killed    []*pod          // in the order the deletions were seen
	faults    []FaultMark
	targeted  map[string]bool // UIDs (and NAMESPACE/NAME, for targets without one) of the pods the faults named
	held      map[string]bool // keys of workloads a fault held down until its revert (shard-outage)
	watchErrs []string
	finished  bool
}

func (s *workloadSession) watchError(what string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	msg := fmt.Sprintf("watch %s: %v", what, err)
	if len(s.watchErrs) < 20 {
		s.watchErrs = append(s.watchErrs, msg)
	}
	// A watch ended by the run's own cancellation (a halt, SIGTERM) is no interruption.
	if s.started && !errors.Is(err, context.Canceled) {
		s.log.Warn("workload recorder: watch interrupted (client-go re-lists; events in the gap arrive late)", "watch", what, "err", err)
	}
}

func (s *workloadSession) firstWatchError() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.watchErrs) == 0 {
		return nil
	}
	return fmt.Errorf("%s", s.watchErrs[0])
}

// FaultApplied notes a fault and its targets; deletions themselves come from the watches.
func (s *workloadSession) FaultApplied(f experiments.AppliedFault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, FaultMark{Name: f.Name, Kind: f.Kind, Targets: slices.Clone(f.Described), AppliedAt: f.At})
	s.noteTargets(f, f.Targets)
}

// FaultEvent notes the pods a sustained fault touched after it was applied (the later rounds of
// an interval podKill, the returning pods a keepDown outage deletes).
func (s *workloadSession) FaultEvent(f experiments.AppliedFault, ev injectors.Event) {
	if len(ev.Subjects) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.noteTargets(f, ev.Subjects)
}

// noteTargets marks the pods a fault named as targeted and the workloads it holds down; s.mu is held.
func (s *workloadSession) noteTargets(f experiments.AppliedFault, ts []injectors.Target) {
	for _, t := range ts {
		if t.Kind == "pod" {
			if t.UID != "" {
				s.targeted[t.UID] = true
			} else {
				s.targeted[t.Namespace+"/"+t.Name] = true
			}
		}
		// A shard-outage keeps its workload down until the revert: its disruption lasts until then.
		if f.Kind == "shard-outage" && t.Workload != nil {
			if s.held == nil {
				s.held = map[string]bool{}
			}
			s.held[workloadKey(t.Workload.Kind, t.Workload.Namespace, t.Workload.Name)] = true
		}
	}
}

func workloadKey(kind, ns, name string) string {
	return fmt.Sprintf("%s %s/%s", strings.ToLower(kind), ns, name)
}

// Finish waits, until ctx ends at the latest, for every tracked workload to be fully available
// again after its last disruption, stops the watches and returns the record.
func (s *workloadSession) Finish(ctx context.Context, end experiments.RecordingEnd) experiments.Recording {
	// The watches may still be behind (a pod deleted a moment ago): take a snapshot of the
	// workloads and their pods now, and do not judge recovery before the watches have shown at
	// least that state.
	b, err := s.snapshot(ctx)
	if err != nil && ctx.Err() == nil {
		s.log.Warn("workload recorder: cannot read the current state to catch up with; judging from the watches alone", "err", err)
	}
	for {
		s.mu.Lock()
		if b != nil && s.caughtUp(b) {
			b = nil
		}
		done := b == nil && s.allRecovered()
		s.mu.Unlock()
		if done {
			break
		}
		select {
		case <-ctx.Done():
		case <-s.changed:
			continue
		}
		break
	}
	s.cancel()
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.finished = true
	return s.recording(end)
}

func (s *workloadSession) notify() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// barrier is the state of the tracked workloads at one moment, read straight from the API server.
type barrier struct {
	pods        map[*workload]map[string]bool // UID → terminating
	generations map[*workload]int64
}

// snapshot reads the tracked workloads' generations and their pods' UIDs (metadata only).
func (s *workloadSession) snapshot(ctx context.Context) (*barrier, error) {
	b := &barrier{pods: map[*workload]map[string]bool{}, generations: map[*workload]int64{}}
	for _, w := range s.workloads {
		gvr := schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: strings.ToLower(w.ref.Kind) + "s"}
		o, err := s.meta.Resource(gvr).Namespace(w.ref.Namespace).Get(ctx, w.ref.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return nil, fmt.Errorf("get %s: %w", w.key, err)
		default:
			b.generations[w] = o.Generation
		}
		uids := map[string]bool{}
		opts := metav1.ListOptions{LabelSelector: w.selector, Limit: 500}
		for {
			l, err := s.meta.Resource(podsResource).Namespace(w.ref.Namespace).List(ctx, opts)
			if err != nil {
				return nil, fmt.Errorf("list pods of %s: %w", w.key, err)
			}
			for i := range l.Items {
				uids[string(l.Items[i].UID)] = l.Items[i].DeletionTimestamp != nil
			}
			if l.Continue == "" {
				break
			}
			opts.Continue = l.Continue
		}
		b.pods[w] = uids
	}
	return b, nil
}

// caughtUp reports whether the watches have shown at least the state in b: every pod of the
// snapshot known (and its deletion seen if it was terminating), every pod the recorder holds alive
// present in the snapshot, and each workload's generation reached. s.mu is held.
func (s *workloadSession) caughtUp(b *barrier) bool {
	for _, w := range s.workloads {
		if w.generation < b.generations[w] {
			return false
		}
		snap := b.pods[w]
		for uid, terminating := range snap {
			p := s.pods[uid]
			if p == nil || (terminating && p.killed == nil && !p.preTerminating) {
				return false
			}
		}
	}
	for _, p := range s.pods {
		if p.w == nil || p.gone != nil || p.killed != nil || p.preTerminating {
			continue
		}
		if _, ok := b.pods[p.w][p.uid]; !ok {
			return false // deleted before the snapshot, and the watch has not shown it yet
		}
	}
	return true
}
