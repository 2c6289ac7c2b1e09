package recorder

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/cache"

	"github.com/faultline-dev/faultline/experiments"
	"github.com/faultline-dev/faultline/runbooks"
)

// observedAnnotation carries, on the recorder's cached copy of a workload object, when the watch
// event that brought it was decoded (Unix nanoseconds). The informer's transform function stamps
// it as the event comes off the wire, so the time does not include the wait in the informer's
// queues. (Pods carry the time in their podSkeleton.)
const observedAnnotation = "recorder.faultline.dev/observed"

// podSkeleton is what the recorder's pod caches hold of a pod: its identity, node, deletion and the
// two conditions it reads, and when the watch event that brought it arrived. A few hundred bytes,
// against several kilobytes for a *corev1.Pod even with its fields cleared.
type podSkeleton struct {
	metav1.TypeMeta
	metav1.ObjectMeta // name, namespace, UID, resourceVersion, creation and deletion only
	observed          time.Time
	node              string
	scheduled, ready  *skeletonCondition
}

type skeletonCondition struct {
	status  corev1.ConditionStatus
	since   metav1.Time // lastTransitionTime
	message string      // PodScheduled=False only: why the scheduler could not place the pod
}

func (p *podSkeleton) DeepCopyObject() runtime.Object {
	c := *p
	p.ObjectMeta.DeepCopyInto(&c.ObjectMeta)
	if p.scheduled != nil {
		v := *p.scheduled
		c.scheduled = &v
	}
	if p.ready != nil {
		v := *p.ready
		c.ready = &v
	}
	return &c
}

// stripPod turns a pod from the watch into a podSkeleton stamped with the arrival time. It runs as
// the informer's transform, as the event comes off the wire, before any queueing; it is idempotent
// (client-go may transform an object twice).
func stripPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil // a podSkeleton already, or a tombstone
	}
	out := &podSkeleton{
		ObjectMeta: metav1.ObjectMeta{
			Name: p.Name, Namespace: p.Namespace, UID: p.UID, ResourceVersion: p.ResourceVersion,
			CreationTimestamp: p.CreationTimestamp, DeletionTimestamp: p.DeletionTimestamp,
			DeletionGracePeriodSeconds: p.DeletionGracePeriodSeconds,
		},
		observed: time.Now(),
		node:     p.Spec.NodeName,
	}
	for _, c := range p.Status.Conditions {
		switch c.Type {
		case corev1.PodScheduled:
			out.scheduled = &skeletonCondition{status: c.Status, since: c.LastTransitionTime}
			if c.Status == corev1.ConditionFalse {
				out.scheduled.message = c.Message
			}
		case corev1.PodReady:
			out.ready = &skeletonCondition{status: c.Status, since: c.LastTransitionTime}
		}
	}
	return out, nil
}

// stampWorkload stamps the arrival time on a workload object and drops its managed fields.
func stampWorkload(obj any) (any, error) {
	o, ok := obj.(metav1.Object)
	if !ok {
		return obj, nil
	}
	a := o.GetAnnotations()
	if _, done := a[observedAnnotation]; done {
		return obj, nil
	}
	if a == nil {
		a = map[string]string{}
	}
	a[observedAnnotation] = strconv.FormatInt(time.Now().UnixNano(), 10)
	o.SetAnnotations(a)
	o.SetManagedFields(nil)
	return obj, nil
}

// observedAt reads the arrival stamp, or now for an object that has none (a deletion the informer
// inferred on a re-list).
func observedAt(o metav1.Object) time.Time {
	if p, ok := o.(*podSkeleton); ok && !p.observed.IsZero() {
		return p.observed
	}
	if v, ok := o.GetAnnotations()[observedAnnotation]; ok {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			return time.Unix(0, n)
		}
	}
	return time.Now()
}

// workload is the recorder's state of one tracked workload. Guarded by workloadSession.mu.
type workload struct {
	ref      runbooks.WorkloadRef
	key      string
	selector string // its pod selector

	seen                   bool
	deleted                bool
	baseline               int // desired replicas in the initial list
	desired, available     int
	generation, observedGn int64
	ready                  int // Ready, not terminating pods, counted from the pod watch
	minReady, minAvailable int // -1 until known
	fullAtStart            bool
	startReady, startAvail int

	kills   []*pod // deletions seen, in order
	created []*pod // pods created while recording, in order

	disruptedAt, lastKillAt, recoveredAt *Moment

	readySeries, availSeries []experiments.Point // every change while recording, for the timeline
}

// maxPoints bounds a workload's timeline series: a workload of 10,000 pods killed one by one
// changes ready count 20,000 times, and a chart needs far fewer points than that.
const maxPoints = 5000

// plot records the ready and available counts at at when they changed.
func (w *workload) plot(at time.Time) {
	add := func(s *[]experiments.Point, v int) {
		if n := len(*s); (n > 0 && (*s)[n-1].V == float64(v)) || n >= maxPoints {
			return
		}
		*s = append(*s, experiments.Point{T: at, V: float64(v)})
	}
	add(&w.readySeries, w.ready)
	add(&w.availSeries, w.available)
}

func (w *workload) target() int { return max(w.baseline, w.desired) }

// fullyAvailable: enough Ready pods, enough available replicas by the controller's current status.
func (w *workload) fullyAvailable() bool {
	t := w.target()
	return w.seen && !w.deleted && w.observedGn >= w.generation && w.available >= t && w.ready >= t
}

// pod is the recorder's state of one pod. Guarded by workloadSession.mu.
type pod struct {
	namespace, name, uid string
	w                    *workload // nil for a selected pod without a tracked controller
	node                 string
	initial              bool // in the initial list: existed before the experiment
	preTerminating       bool // already being deleted when recording started
	counted              bool // counted in w.ready

	created, scheduled, ready, killed, gone *Moment
	pending                                 string // the scheduler's message while unschedulable
}

func (s *workloadSession) podHandler(w *workload) cache.ResourceEventHandler {
	return cache.ResourceEventHandlerDetailedFuncs{
		AddFunc:    func(obj any, initial bool) { s.podEvent(w, obj, false, initial) },
		UpdateFunc: func(_, obj any) { s.podEvent(w, obj, false, false) },
		DeleteFunc: func(obj any) { s.podEvent(w, obj, true, false) },
	}
}

func (s *workloadSession) workloadHandler(w *workload) cache.ResourceEventHandler {
	return cache.ResourceEventHandlerDetailedFuncs{
		AddFunc:    func(obj any, _ bool) { s.workloadEvent(w, obj, false) },
		UpdateFunc: func(_, obj any) { s.workloadEvent(w, obj, false) },
		DeleteFunc: func(obj any) { s.workloadEvent(w, obj, true) },
	}
}

func serverTime(t metav1.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	v := t.Time
	return &v
}

func (s *workloadSession) podEvent(w *workload, obj any, deleted, initial bool) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	k8sPod, ok := obj.(*podSkeleton)
	if !ok {
		return
	}
	at := observedAt(k8sPod)
	uid := string(k8sPod.UID)

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.finished {
		return
	}
	p := s.pods[uid]
	if p == nil {
		if w == nil && !s.untracked[uid] {
			return // a selector watch cares only about the selected pods no controller of ours owns
		}
		p = &pod{namespace: k8sPod.Namespace, name: k8sPod.Name, uid: uid, w: w, initial: initial || !s.started}
		p.preTerminating = p.initial && k8sPod.DeletionTimestamp != nil
		s.pods[uid] = p
		if !p.initial {
			p.created = newMoment(at, serverTime(k8sPod.CreationTimestamp), s.lateAfter)
			if w != nil {
				w.created = append(w.created, p)
			}
		}
	} else if p.w == nil && w != nil {
		p.w = w
	}
	if n := k8sPod.node; n != "" {
		p.node = n
		if !p.initial && p.scheduled == nil {
			var srv *time.Time
			if c := k8sPod.scheduled; c != nil && c.status == corev1.ConditionTrue {
				srv = serverTime(c.since)
			}
			p.scheduled = newMoment(at, srv, s.lateAfter)
			p.pending = ""
		}
	} else if c := k8sPod.scheduled; c != nil && c.status == corev1.ConditionFalse {
		p.pending = c.message
	}
	rc := k8sPod.ready
	isReady := rc != nil && rc.status == corev1.ConditionTrue
	if isReady && !p.initial && p.ready == nil {
		p.ready = newMoment(at, serverTime(rc.since), s.lateAfter)
	}
	terminating := deleted || k8sPod.DeletionTimestamp != nil
	if terminating && p.killed == nil && !p.preTerminating && s.started {
		// deletionTimestamp is the deadline (deletion time + grace period); subtract the grace
		// period to get the moment of the delete call on the API server's clock.
		var srv *time.Time
		if dt := k8sPod.DeletionTimestamp; dt != nil {
			v := dt.Time
			if g := k8sPod.DeletionGracePeriodSeconds; g != nil {
				v = v.Add(-time.Duration(*g) * time.Second)
			}
			srv = &v
		}
		p.killed = newMoment(at, srv, s.lateAfter)
		s.killed = append(s.killed, p)
		if w := p.w; w != nil {
			w.kills = append(w.kills, p)
			w.lastKillAt = p.killed
			if w.disruptedAt == nil {
				w.disruptedAt = p.killed
			}
			w.recoveredAt = nil
		}
	}
	if deleted && p.gone == nil {
		p.gone = newMoment(at, nil, s.lateAfter)
	}
	if w := p.w; w != nil {
		if now := isReady && !terminating; now != p.counted {
			p.counted = now
			if now {
				w.ready++
			} else {
				w.ready--
			}
		}
		s.evaluate(w, at)
	}
	s.notify()
}

func (s *workloadSession) workloadEvent(w *workload, obj any, deleted bool) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	o, ok := obj.(metav1.Object)
	if !ok {
		return
	}
	at := observedAt(o)
	replicas := func(r *int32) int {
		if r == nil {
			return 1
		}
		return int(*r)
	}
	var desired, available int
	switch v := obj.(type) {
	case *appsv1.Deployment:
		desired, available = replicas(v.Spec.Replicas), int(v.Status.AvailableReplicas)
	case *appsv1.StatefulSet:
		desired, available = replicas(v.Spec.Replicas), int(v.Status.AvailableReplicas)
	case *appsv1.ReplicaSet:
		desired, available = replicas(v.Spec.Replicas), int(v.Status.AvailableReplicas)
	case *appsv1.DaemonSet:
		desired, available = int(v.Status.DesiredNumberScheduled), int(v.Status.NumberAvailable)
	default:
		return
	}
	var observedGn int64
	switch v := obj.(type) {
	case *appsv1.Deployment:
		observedGn = v.Status.ObservedGeneration
	case *appsv1.StatefulSet:
		observedGn = v.Status.ObservedGeneration
	case *appsv1.ReplicaSet:
		observedGn = v.Status.ObservedGeneration
	case *appsv1.DaemonSet:
		observedGn = v.Status.ObservedGeneration
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.finished {
		return
	}
	if !w.seen {
		w.baseline = desired
	}
	w.seen = true
	w.desired, w.available = desired, available
	w.generation, w.observedGn = o.GetGeneration(), observedGn
	if deleted {
		w.deleted, w.available = true, 0
	}
	s.evaluate(w, at)
	s.notify()
}

// evaluate updates a workload's minima, disruption and recovery after an event observed at at.
func (s *workloadSession) evaluate(w *workload, at time.Time) {
	if !w.seen || !s.started {
		return // the initial lists: markStarted takes the baseline
	}
	if w.minReady < 0 || w.ready < w.minReady {
		w.minReady = w.ready
	}
	if w.minAvailable < 0 || w.available < w.minAvailable {
		w.minAvailable = w.available
	}
	w.plot(at)
	ok := w.fullyAvailable()
	switch {
	case !ok:
		if w.disruptedAt == nil && w.fullAtStart {
			w.disruptedAt = &Moment{At: at}
		}
		w.recoveredAt = nil
	case w.recoveredAt == nil && w.disruptedAt != nil:
		w.recoveredAt = &Moment{At: at}
	}
}

// markStarted ends the initial phase: from now on, events are news.
func (s *workloadSession) markStarted() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, w := range s.workloads {
		w.startReady, w.startAvail = w.ready, w.available
		w.fullAtStart = w.fullyAvailable()
		w.minReady, w.minAvailable = w.ready, w.available
		w.plot(time.Now())
	}
	s.started = true
}

// allRecovered: every workload fully available, and recovered after its last disruption.
func (s *workloadSession) allRecovered() bool {
	for _, w := range s.workloads {
		if !w.fullyAvailable() || (w.disruptedAt != nil && w.recoveredAt == nil) {
			return false
		}
	}
	return true
}

// document builds the record; s.mu is held.
func (s *workloadSession) document(revertedAt time.Time) (*Document, bool, string) {
	doc := &Document{Faults: s.faults, Workloads: []WorkloadRecord{}, Pods: []PodTimeline{}}
	if !revertedAt.IsZero() {
		r := revertedAt
		doc.RevertedAt = &r
	}
	replacements := s.matchReplacements()
	for _, p := range s.killed {
		t := PodTimeline{Pod: p.namespace + "/" + p.name, UID: p.uid, Node: p.node, KilledAt: p.killed, GoneAt: p.gone}
		t.Targeted = s.targeted[t.UID] || s.targeted[t.Pod]
		if p.w != nil {
			t.Workload = p.w.key
		}
		if r := replacements[p]; r != nil {
			t.Replacement = &Replacement{
				Pod: r.namespace + "/" + r.name, UID: r.uid, Node: r.node,
				CreatedAt: r.created, ScheduledAt: r.scheduled, ReadyAt: r.ready, Pending: r.pending,
				CreatedToReady: span(r.created, r.ready),
			}
			t.TimeToReady = span(p.killed, r.ready)
		}
		doc.Pods = append(doc.Pods, t)
	}

	recovered := true
	var reasons []string
	for _, w := range s.workloads {
		rec := WorkloadRecord{
			Workload: w.key, Desired: w.target(), Ready: w.ready, Available: w.available,
			MinReady: max(w.minReady, 0), MinAvailable: max(w.minAvailable, 0), PodsKilled: len(w.kills),
			DisruptedAt: w.disruptedAt, LastKillAt: w.lastKillAt,
		}
		ok := w.fullyAvailable() && (w.disruptedAt == nil || w.recoveredAt != nil)
		rec.Recovered = ok
		if ok && w.recoveredAt != nil {
			rec.RecoveredAt = w.recoveredAt
			rec.TimeToRecover = span(w.disruptedAt, w.recoveredAt)
			rec.AfterLastKill = span(w.lastKillAt, w.recoveredAt)
			if !revertedAt.IsZero() {
				if d := w.recoveredAt.Best().Sub(revertedAt); d >= 0 {
					rec.AfterRevert = d.Round(time.Millisecond).String()
				} else {
					rec.RecoveredBeforeRevert = true
				}
			}
		}
		if !ok {
			recovered = false
			rec.Reason = s.notRecoveredReason(w, replacements)
			reasons = append(reasons, w.key+": "+rec.Reason)
		}
		doc.Workloads = append(doc.Workloads, rec)
	}
	return doc, recovered, strings.Join(reasons, "; ")
}

func (s *workloadSession) notRecoveredReason(w *workload, replacements map[*pod]*pod) string {
	if w.deleted {
		return "the workload was deleted"
	}
	t := w.target()
	msg := fmt.Sprintf("%d/%d ready, %d/%d available", w.ready, t, w.available, t)
	if w.observedGn < w.generation {
		msg += " (the controller has not caught up with the latest spec)"
	}
	var pending, notReady int
	var why string
	for _, p := range w.created {
		if p.gone != nil || p.killed != nil {
			continue
		}
		switch {
		case p.scheduled == nil:
			pending++
			if why == "" && p.pending != "" {
				why = p.pending
			}
		case p.ready == nil:
			notReady++
		}
	}
	if pending > 0 {
		msg += fmt.Sprintf("; %d new pod(s) not scheduled", pending)
		if why != "" {
			msg += ": " + why
		}
	}
	if notReady > 0 {
		msg += fmt.Sprintf("; %d new pod(s) scheduled but not Ready", notReady)
	}
	missing := 0
	for _, k := range w.kills {
		if replacements[k] == nil {
			missing++
		}
	}
	if missing > 0 {
		msg += fmt.Sprintf("; %d killed pod(s) without a replacement", missing)
	}
	if !w.fullAtStart {
		msg += fmt.Sprintf(" (it was not fully available when recording started either: %d/%d ready, %d/%d available)", w.startReady, w.baseline, w.startAvail, w.baseline)
	}
	return msg
}

// matchReplacements pairs each killed pod of a tracked workload with the pod that replaced it: for
// a StatefulSet the next pod with the same name, for a DaemonSet the next pod on the same node, for
// the rest the n-th pod created while recording with the n-th deletion.
func (s *workloadSession) matchReplacements() map[*pod]*pod {
	out := map[*pod]*pod{}
	for _, w := range s.workloads {
		used := map[*pod]bool{}
		for _, k := range w.kills {
			var match *pod
			for _, c := range w.created {
				// The deletion and the replacement's creation come through the same watch, so
				// their arrival order is the API server's order.
				if used[c] || c == k || c.created.At.Before(k.killed.At) {
					continue
				}
				switch w.ref.Kind {
				case "StatefulSet":
					if c.name != k.name {
						continue
					}
				case "DaemonSet":
					if c.node != k.node {
						continue
					}
				}
				match = c
				break
			}
			if match != nil {
				used[match] = true
				out[k] = match
			}
		}
	}
	return out
}
