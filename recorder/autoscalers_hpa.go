package recorder

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/faultline-dev/faultline/experiments"
	"github.com/faultline-dev/faultline/injectors"
)

// hpaResolution is what a watched HPA's times are good to: the watch delivers a change within
// milliseconds of the API server storing it (docs/benchmarks.md has the measured error).
const hpaResolution = "watch events, ≤100 ms"

// hpaState is the history of one HPA, from the watch.
type hpaState struct {
	namespace, name string
	why             string // set once the HPA is recorded: why it is
	target          string // "deployment shop/web"
	targetKind      string
	targetName      string
	min, max        int32
	samples         []scaleSample
	lastCond        map[string]ConditionChange
	conditions      []ConditionChange
	events          []AutoscalerEvent
	marks           []experiments.TimelineMark
	deleted         bool
}

func (h *hpaState) subject() string { return "hpa " + h.namespace + "/" + h.name }

// hpaWatch watches the HPAs, and the events about HPAs, of a few namespaces, and keeps the
// history of the tracked ones.
type hpaWatch struct {
	log     *slog.Logger
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	changed chan struct{}

	mu      sync.Mutex
	started bool
	// hpas holds every HPA of the watched namespaces, so that one a fault turns out to touch
	// later (a workload resolved at Apply) still has its history from before the fault; only those
	// with a why are recorded.
	hpas      map[string]*hpaState // NAMESPACE/NAME
	eventSeen map[string]int32     // event UID → the count last seen
	watchErrs []string
}

// startHPAWatch starts watching the tracked HPAs (NAMESPACE/NAME → why) and returns once every
// watch has its initial state.
func startHPAWatch(ctx context.Context, cs kubernetes.Interface, tracked map[string]string, syncTimeout time.Duration, log *slog.Logger) (*hpaWatch, error) {
	sctx, cancel := context.WithCancel(ctx)
	w := &hpaWatch{log: log, cancel: cancel, changed: make(chan struct{}, 1),
		hpas: map[string]*hpaState{}, eventSeen: map[string]int32{}}
	var namespaces []string
	for key, why := range tracked {
		ns, name, _ := strings.Cut(key, "/")
		w.hpas[key] = &hpaState{namespace: ns, name: name, why: why, lastCond: map[string]ConditionChange{}}
		if !slices.Contains(namespaces, ns) {
			namespaces = append(namespaces, ns)
		}
	}
	slices.Sort(namespaces)
	var regs []cache.ResourceEventHandlerRegistration
	for _, ns := range namespaces {
		// One watch of the namespace's HPAs rather than one per HPA: fifty HPAs in a namespace
		// cost one connection.
		hpaLW := cache.NewListWatchFromClient(cs.AutoscalingV2().RESTClient(), "horizontalpodautoscalers", ns, fields.Everything())
		evLW := cache.NewFilteredListWatchFromClient(cs.CoreV1().RESTClient(), "events", ns, func(o *metav1.ListOptions) {
			o.FieldSelector = "involvedObject.kind=HorizontalPodAutoscaler"
		})
		for _, x := range []struct {
			lw      cache.ListerWatcher
			example runtime.Object
			what    string
			on      func(any)
		}{
			{hpaLW, &autoscalingv2.HorizontalPodAutoscaler{}, "horizontalpodautoscalers in " + ns, w.onHPA},
			{evLW, &corev1.Event{}, "HPA events in " + ns, w.onEvent},
		} {
			inf := cache.NewSharedIndexInformer(x.lw, x.example, 0, cache.Indexers{})
			// The arrival time is stamped as the event is decoded, before the informer's queue.
			_ = inf.SetTransform(stampWorkload) // fails only once the informer runs
			what := x.what
			if err := inf.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) { w.watchError(what, err) }); err != nil {
				cancel()
				return nil, fmt.Errorf("watch %s: %w", what, err)
			}
			on := x.on
			reg, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
				AddFunc:    on,
				UpdateFunc: func(_, n any) { on(n) },
				DeleteFunc: w.onDelete,
			})
			if err != nil {
				cancel()
				return nil, fmt.Errorf("watch %s: %w", what, err)
			}
			regs = append(regs, reg)
			w.wg.Add(1)
			go func() {
				defer w.wg.Done()
				inf.RunWithContext(sctx)
			}()
		}
	}
	if err := w.waitSynced(ctx, syncTimeout, regs); err != nil {
		w.stop()
		return nil, err
	}
	w.mu.Lock()
	w.started = true
	var missing []string
	for key := range tracked {
		if h := w.hpas[key]; h == nil || len(h.samples) == 0 {
			missing = append(missing, key)
		}
	}
	w.mu.Unlock()
	if len(missing) > 0 {
		w.stop()
		slices.Sort(missing)
		return nil, fmt.Errorf("horizontalpodautoscaler %s does not exist", strings.Join(missing, ", "))
	}
	return w, nil
}

func (w *hpaWatch) waitSynced(ctx context.Context, timeout time.Duration, regs []cache.ResourceEventHandlerRegistration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if !slices.ContainsFunc(regs, func(r cache.ResourceEventHandlerRegistration) bool { return !r.HasSynced() }) {
			return nil
		}
		w.mu.Lock()
		errs := slices.Clone(w.watchErrs)
		w.mu.Unlock()
		if len(errs) > 0 {
			return fmt.Errorf("%s", errs[0])
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("HPA watches not ready within %s: %w", timeout, context.Cause(ctx))
		case <-tick.C:
		}
	}
}

func (w *hpaWatch) stop() {
	w.cancel()
	w.wg.Wait()
}

func (w *hpaWatch) watchError(what string, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.watchErrs) < 20 {
		w.watchErrs = append(w.watchErrs, fmt.Sprintf("watch %s: %v", what, err))
	}
	if w.started {
		w.log.Warn("autoscaler recorder: watch interrupted (client-go re-lists; changes in the gap are seen late)", "watch", what, "err", err)
	}
}

func (w *hpaWatch) notify() {
	select {
	case w.changed <- struct{}{}:
	default:
	}
}

func (w *hpaWatch) onHPA(obj any) {
	o, ok := obj.(*autoscalingv2.HorizontalPodAutoscaler)
	if !ok {
		return
	}
	now := observedAt(o)
	w.mu.Lock()
	defer w.mu.Unlock()
	h := w.hpas[o.Namespace+"/"+o.Name]
	if h == nil {
		h = &hpaState{namespace: o.Namespace, name: o.Name, lastCond: map[string]ConditionChange{}}
		w.hpas[o.Namespace+"/"+o.Name] = h
	}
	h.deleted = false
	h.min, h.max = 1, o.Spec.MaxReplicas
	if o.Spec.MinReplicas != nil {
		h.min = *o.Spec.MinReplicas
	}
	ref := o.Spec.ScaleTargetRef
	h.target = fmt.Sprintf("%s %s/%s", strings.ToLower(ref.Kind), o.Namespace, ref.Name)
	h.targetKind, h.targetName = ref.Kind, ref.Name
	s := scaleSample{At: now, Current: float64(o.Status.CurrentReplicas), Desired: float64(o.Status.DesiredReplicas)}
	if s.Desired == 0 && h.min > 0 {
		// An HPA that has not computed a replica count yet (no metrics) reports 0 desired; it is
		// unknown, not a decision to scale to zero.
		s.Desired = -1
	}
	if n := len(h.samples); n == 0 || h.samples[n-1].Current != s.Current || h.samples[n-1].Desired != s.Desired {
		h.samples = append(h.samples, s)
		w.notify()
	}
	for _, c := range o.Status.Conditions {
		last, seen := h.lastCond[string(c.Type)]
		if seen && last.Status == string(c.Status) && last.Reason == c.Reason {
			continue
		}
		cc := ConditionChange{At: now, Type: string(c.Type), Status: string(c.Status), Reason: c.Reason, Message: c.Message}
		if !c.LastTransitionTime.IsZero() {
			t := c.LastTransitionTime.Time
			cc.APIServer = &t
		}
		h.lastCond[cc.Type] = cc
		h.conditions = append(h.conditions, cc)
		if seen && w.started {
			h.marks = append(h.marks, experiments.TimelineMark{At: now, Label: fmt.Sprintf("%s=%s (%s)", cc.Type, cc.Status, cc.Reason)})
		}
	}
}

func (w *hpaWatch) onEvent(obj any) {
	e, ok := obj.(*corev1.Event)
	if !ok {
		return
	}
	now := observedAt(e)
	w.mu.Lock()
	defer w.mu.Unlock()
	uid := string(e.UID)
	prev, seen := w.eventSeen[uid]
	count := max(e.Count, 1)
	if e.Series != nil {
		count = max(count, e.Series.Count)
	}
	w.eventSeen[uid] = count
	// Events listed before the recording began are history; an event seen again with the same
	// count is an unrelated update of its object.
	if !w.started || (seen && count <= prev) {
		return
	}
	h := w.hpas[e.InvolvedObject.Namespace+"/"+e.InvolvedObject.Name]
	if h == nil {
		return
	}
	ev := AutoscalerEvent{At: now, Type: e.Type, Reason: e.Reason, Message: e.Message, Count: count}
	if t := eventTime(e); !t.IsZero() {
		ev.APIServer = &t
	}
	h.events = append(h.events, ev)
	label := e.Reason
	if e.Message != "" {
		label += ": " + e.Message
	}
	h.marks = append(h.marks, experiments.TimelineMark{At: now, Label: label})
}

func (w *hpaWatch) onDelete(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	o, ok := obj.(*autoscalingv2.HorizontalPodAutoscaler)
	if !ok {
		return
	}
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	if h := w.hpas[o.Namespace+"/"+o.Name]; h != nil {
		h.deleted = true
		h.marks = append(h.marks, experiments.TimelineMark{At: now, Label: "HPA deleted"})
	}
}

// trackWorkload records, from now on, the HPAs of the watched namespaces that scale ref (a
// workload a fault touched that Start did not know of).
func (w *hpaWatch) trackWorkload(ref injectors.WorkloadRef) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, h := range w.hpas {
		if h.why == "" && h.namespace == ref.Namespace && h.targetName == ref.Name && strings.EqualFold(h.targetKind, ref.Kind) {
			h.why = fmt.Sprintf("scales %s %s/%s, which the faults touch", strings.ToLower(ref.Kind), ref.Namespace, ref.Name)
		}
	}
}

// eventTime is the latest time the event reports itself.
func eventTime(e *corev1.Event) time.Time {
	t := e.LastTimestamp.Time
	if e.Series != nil && e.Series.LastObservedTime.After(t) {
		t = e.Series.LastObservedTime.Time
	}
	if e.EventTime.After(t) {
		t = e.EventTime.Time
	}
	return t
}

// atBaseline reports whether every tracked HPA is at the level it had at the first fault.
// w.mu is held.
func (w *hpaWatch) atBaseline(firstFault time.Time) bool {
	for _, h := range w.hpas {
		if h.why == "" || len(h.samples) == 0 || h.deleted {
			continue
		}
		if levelAt(h.samples, firstFault) != h.samples[len(h.samples)-1].level() {
			return false
		}
	}
	return true
}

// levelAt is the level in force at t (the first sample's when t is before it or zero).
func levelAt(samples []scaleSample, t time.Time) float64 {
	l := samples[0].level()
	for _, s := range samples {
		if !t.IsZero() && s.At.After(t) {
			break
		}
		l = s.level()
	}
	return l
}

// records returns the document entries, figures and timelines of the tracked HPAs. w.mu is held.
func (w *hpaWatch) records(win scaleWindow) ([]AutoscalerRecord, []experiments.Figure, []experiments.Timeline) {
	keys := make([]string, 0, len(w.hpas))
	for k, h := range w.hpas {
		if h.why != "" {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var recs []AutoscalerRecord
	var figs []experiments.Figure
	var tls []experiments.Timeline
	for _, k := range keys {
		h := w.hpas[k]
		r := AutoscalerRecord{Subject: h.subject(), Source: "kubernetes", Why: h.why, Target: h.target,
			MinReplicas: h.min, MaxReplicas: h.max, Conditions: h.conditions, Events: h.events, Changes: []ReplicaChange{}}
		for _, s := range h.samples {
			c := ReplicaChange{At: s.At, Current: s.Current}
			if s.Desired >= 0 {
				d := s.Desired
				c.Desired = &d
			}
			r.Changes = append(r.Changes, c)
		}
		recs = append(recs, r)
		hw := win
		hw.Samples, hw.MaxReplicas = h.samples, float64(h.max)
		figs = append(figs, scaleFigures(h.subject(), hw)...)
		tls = append(tls, scaleTimeline(h.subject(), h.samples, h.marks, hpaResolution))
	}
	return recs, figs, tls
}
