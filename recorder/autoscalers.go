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

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/faultline-dev/faultline/experiments"
	"github.com/faultline-dev/faultline/injectors"
	"github.com/faultline-dev/faultline/internal/kubeclient"
	"github.com/faultline-dev/faultline/runbooks"
	"github.com/faultline-dev/faultline/safety/policy"
)

// Autoscalers records how autoscalers reacted to an experiment: every HorizontalPodAutoscaler
// that scales a workload the experiment's faults touch, plus those the runbook names in
// record.autoscalers (HPAs, KEDA ScaledObjects through their HPA, and Prometheus capacity
// queries). HPAs are watched; figures and timelines follow docs/recovery.md. The zero value is
// ready to use.
type Autoscalers struct {
	// SyncTimeout bounds how long Start waits for its watches' initial lists (default 1m).
	SyncTimeout time.Duration
}

// Name identifies the recorder in the result.
func (a *Autoscalers) Name() string { return "autoscalers" }

// Start finds the autoscalers to record and starts watching them; it returns (nil, nil) when the
// experiment has none. A named HPA that does not exist is an error.
func (a *Autoscalers) Start(ctx context.Context, x *runbooks.Experiment, env injectors.Env) (experiments.RecorderSession, error) {
	var specs []runbooks.AutoscalerSpec
	if x.Record != nil {
		specs = x.Record.Autoscalers
	}
	targets := podTargets(x)
	needKube := len(targets) > 0 || slices.ContainsFunc(specs, func(s runbooks.AutoscalerSpec) bool { return s.Prometheus == nil })
	log := env.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	syncTimeout := a.SyncTimeout
	if syncTimeout <= 0 {
		syncTimeout = time.Minute
	}
	s := &autoscalerSession{log: log}
	if needKube {
		if env.Kube == nil {
			if len(targets) == 0 {
				return nil, errors.New("record.autoscalers names HPAs but no Kubernetes client is configured")
			}
			return nil, nil
		}
		tracked, err := a.resolveHPAs(ctx, env.Kube, targets, specs)
		if err != nil {
			return nil, err
		}
		if len(tracked) > 0 {
			cs, err := env.Kube.Clientset()
			if err != nil {
				return nil, fmt.Errorf("the autoscaler recorder needs a Kubernetes client: %w", err)
			}
			if s.hpa, err = startHPAWatch(ctx, cs, tracked, syncTimeout, log); err != nil {
				return nil, err
			}
		}
	}
	for i := range specs {
		if specs[i].Prometheus == nil {
			continue
		}
		p, err := newPromSource(specs[i].Prometheus, log)
		if err == nil {
			err = p.start(ctx)
		}
		if err != nil {
			s.stop()
			return nil, err
		}
		s.proms = append(s.proms, p)
	}
	if s.hpa == nil && len(s.proms) == 0 {
		return nil, nil
	}
	return s, nil
}

// resolveHPAs returns the HPAs to watch (NAMESPACE/NAME → why): those whose scaleTargetRef is a
// workload the faults select, and those the runbook names.
func (a *Autoscalers) resolveHPAs(ctx context.Context, kc *kubeclient.Client, targets []runbooks.PodTarget, specs []runbooks.AutoscalerSpec) (map[string]string, error) {
	cfg, err := kc.Config()
	if err != nil {
		return nil, fmt.Errorf("the autoscaler recorder needs a Kubernetes client: %w", err)
	}
	cs, meta, err := watchClients(cfg)
	if err != nil {
		return nil, err
	}
	tracked := map[string]string{}
	named, err := namedHPAs(ctx, kc, specs)
	if err != nil {
		return nil, fmt.Errorf("record.autoscalers: %w", err)
	}
	for _, n := range named {
		tracked[n] = "named in record.autoscalers"
	}
	res := &resolver{meta: meta, rs: map[string]metav1.Object{}}
	byNS := map[string][]runbooks.WorkloadRef{}
	for _, t := range targets {
		if t.Workload != nil {
			byNS[t.Workload.Namespace] = append(byNS[t.Workload.Namespace], *t.Workload)
			continue
		}
		for _, ns := range t.Namespaces {
			owned, _, err := res.ownersOf(ctx, ns, t.LabelSelector, t.FieldSelector)
			if err != nil {
				return nil, err
			}
			byNS[ns] = append(byNS[ns], owned...)
		}
	}
	for ns, refs := range byNS {
		if err := hpasScaling(ctx, cs, ns, refs, tracked); err != nil {
			return nil, err
		}
	}
	return tracked, nil
}

// hpasScaling adds the HPAs of namespace ns that scale one of refs.
func hpasScaling(ctx context.Context, cs kubernetes.Interface, ns string, refs []runbooks.WorkloadRef, tracked map[string]string) error {
	list, err := cs.AutoscalingV2().HorizontalPodAutoscalers(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list horizontalpodautoscalers in %s: %w", ns, err)
	}
	for _, h := range list.Items {
		ref := h.Spec.ScaleTargetRef
		for _, w := range refs {
			if strings.EqualFold(ref.Kind, w.Kind) && ref.Name == w.Name {
				key := ns + "/" + h.Name
				if _, ok := tracked[key]; !ok {
					tracked[key] = fmt.Sprintf("scales %s %s/%s, which the faults touch", strings.ToLower(w.Kind), ns, w.Name)
				}
			}
		}
	}
	return nil
}

var scaledObjectsResource = schema.GroupVersionResource{Group: "keda.sh", Version: "v1alpha1", Resource: "scaledobjects"}

// namedHPAs resolves the HPAs and KEDA ScaledObjects the runbook names to NAMESPACE/NAME of HPAs
// that exist, or explains which does not.
func namedHPAs(ctx context.Context, kc *kubeclient.Client, specs []runbooks.AutoscalerSpec) ([]string, error) {
	var out []string
	var cs kubernetes.Interface
	for _, s := range specs {
		if s.Prometheus != nil {
			continue
		}
		if cs == nil {
			var err error
			if cs, err = kc.Clientset(); err != nil {
				return nil, err
			}
		}
		ref, hint := s.HPA, ""
		if s.ScaledObject != "" {
			ns, name, _ := strings.Cut(s.ScaledObject, "/")
			hpa, err := scaledObjectHPA(ctx, kc, ns, name)
			if err != nil {
				return nil, err
			}
			ref, hint = ns+"/"+hpa, fmt.Sprintf(" (the HPA of KEDA ScaledObject %s)", s.ScaledObject)
		}
		ns, name, _ := strings.Cut(ref, "/")
		_, err := cs.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			return nil, fmt.Errorf("horizontalpodautoscaler %s%s does not exist", ref, hint)
		case err != nil:
			return nil, fmt.Errorf("get horizontalpodautoscaler %s%s: %w", ref, hint, err)
		}
		out = append(out, ref)
	}
	return out, nil
}

// scaledObjectHPA is the name of the HPA KEDA manages for a ScaledObject: status.hpaName when the
// ScaledObject can be read, else KEDA's default keda-hpa-NAME.
func scaledObjectHPA(ctx context.Context, kc *kubeclient.Client, ns, name string) (string, error) {
	cfg, err := kc.Config()
	if err != nil {
		return "", err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return "", err
	}
	o, err := dyn.Resource(scaledObjectsResource).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		// No KEDA CRD, or no right to read it: KEDA's naming rule still finds the HPA, and the
		// caller says clearly when it does not exist.
		return runbooks.KEDAHPAName(name), nil
	}
	if st, ok := o.Object["status"].(map[string]any); ok {
		if n, ok := st["hpaName"].(string); ok && n != "" {
			return n, nil
		}
	}
	return runbooks.KEDAHPAName(name), nil
}

// AutoscalersPreflight refuses a run whose runbook names an HPA or ScaledObject that does not
// exist, before anything is applied (exit 4), rather than when its experiment's turn comes.
func AutoscalersPreflight(kc *kubeclient.Client) func(ctx context.Context, rb *runbooks.Runbook) error {
	return func(ctx context.Context, rb *runbooks.Runbook) error {
		for i := range rb.Experiments {
			x := &rb.Experiments[i]
			if x.Record == nil || !slices.ContainsFunc(x.Record.Autoscalers, func(s runbooks.AutoscalerSpec) bool { return s.Prometheus == nil }) {
				continue
			}
			if _, err := namedHPAs(ctx, kc, x.Record.Autoscalers); err != nil {
				return policy.Refusef("record.autoscalers", "experiment %q: %v", x.Name, err)
			}
		}
		return nil
	}
}

// autoscalerSession is one experiment's recording of its autoscalers.
type autoscalerSession struct {
	log   *slog.Logger
	hpa   *hpaWatch
	proms []*promSource

	mu         sync.Mutex
	firstFault time.Time
}

// FaultApplied notes the first fault (the baseline is the capacity in force then) and records the
// HPAs of the workloads the fault touched that Start did not resolve.
func (s *autoscalerSession) FaultApplied(f experiments.AppliedFault) {
	s.mu.Lock()
	if s.firstFault.IsZero() || f.At.Before(s.firstFault) {
		s.firstFault = f.At
	}
	s.mu.Unlock()
	s.touched(f.Targets)
}

// FaultEvent records the HPAs of workloads a later round of a sustained fault touched.
func (s *autoscalerSession) FaultEvent(_ experiments.AppliedFault, ev injectors.Event) {
	s.touched(ev.Subjects)
}

func (s *autoscalerSession) touched(targets []injectors.Target) {
	if s.hpa == nil {
		return
	}
	for _, t := range targets {
		if t.Workload != nil {
			s.hpa.trackWorkload(*t.Workload)
		}
	}
}

func (s *autoscalerSession) stop() {
	if s.hpa != nil {
		s.hpa.stop()
	}
	for _, p := range s.proms {
		p.stop()
	}
}

// Finish waits, until ctx ends at the latest, for every autoscaler to be back at its capacity
// from before the first fault, stops recording and returns the figures.
func (s *autoscalerSession) Finish(ctx context.Context, end experiments.RecordingEnd) experiments.Recording {
	s.mu.Lock()
	first := s.firstFault
	s.mu.Unlock()
	if !end.FirstFaultAt.IsZero() {
		first = end.FirstFaultAt
	}
	revertedAt := end.RevertedAt
	var hpaChanged <-chan struct{}
	if s.hpa != nil {
		hpaChanged = s.hpa.changed
	}
	for !s.atBaseline(first, revertedAt) {
		// A Prometheus source changes only when it is evaluated: look again at its pace.
		tick := time.NewTimer(250 * time.Millisecond)
		select {
		case <-ctx.Done():
		case <-hpaChanged:
		case <-tick.C:
		}
		tick.Stop()
		if ctx.Err() != nil {
			break
		}
	}
	s.stop()
	stopped := time.Now()
	win := scaleWindow{FirstFault: first, LastRevert: revertedAt, End: stopped, Uncertainty: 0.1, Waited: stopped.Sub(revertedAt)}
	if dl, ok := ctx.Deadline(); ok && dl.Before(stopped) {
		win.Waited = dl.Sub(revertedAt)
	}
	doc := &AutoscalerDocument{Autoscalers: []AutoscalerRecord{}}
	if !first.IsZero() {
		doc.FirstFault = &first
	}
	if !revertedAt.IsZero() {
		doc.RevertedAt = &revertedAt
	}
	rec := experiments.Recording{Recorder: "autoscalers", Recovered: true, Data: doc}
	if s.hpa != nil {
		s.hpa.mu.Lock()
		recs, figs, tls := s.hpa.records(win)
		s.hpa.mu.Unlock()
		doc.Autoscalers = append(doc.Autoscalers, recs...)
		rec.Figures, rec.Timelines = append(rec.Figures, figs...), append(rec.Timelines, tls...)
	}
	var missing []string
	for _, p := range s.proms {
		recs, figs, tls, miss := p.records(win)
		doc.Autoscalers = append(doc.Autoscalers, recs...)
		rec.Figures, rec.Timelines = append(rec.Figures, figs...), append(rec.Timelines, tls...)
		missing = append(missing, miss...)
	}
	if len(missing) > 0 {
		// Not a silent pass: the engine fails every objective judged on an incomplete recording,
		// and the summary prints it as INCOMPLETE. The autoscalers themselves did nothing wrong,
		// so the recording alone does not fail the experiment.
		rec.Incomplete = true
		rec.Reason = strings.Join(missing, "; ")
	}
	return rec
}

func (s *autoscalerSession) atBaseline(first, revertedAt time.Time) bool {
	if s.hpa != nil {
		s.hpa.mu.Lock()
		ok := s.hpa.atBaseline(first)
		s.hpa.mu.Unlock()
		if !ok {
			return false
		}
	}
	for _, p := range s.proms {
		if !p.atBaseline(first, revertedAt) {
			return false
		}
	}
	return true
}
