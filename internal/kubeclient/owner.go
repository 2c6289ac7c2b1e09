package kubeclient

import (
	"context"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ReplicaSetGetter reads a ReplicaSet's metadata; the caller chooses the client (typed or
// metadata-only) and the cache.
type ReplicaSetGetter func(ctx context.Context, namespace, name string) (metav1.Object, error)

// TopController names the workload that controls an object (a pod) in namespace ns whose
// controller reference is c: a ReplicaSet's Deployment when the ReplicaSet has one, else the
// controller itself (StatefulSet, DaemonSet, a ReplicaSet of its own, a Job, a custom kind). It is
// the one place the injectors and the recorders resolve a pod's workload, so that both name the
// same workload for the same pod. kind is "" for an object without a controller; a ReplicaSet
// that cannot be read is returned as getRS's error (the caller decides what NotFound means).
func TopController(ctx context.Context, ns string, c *metav1.OwnerReference, getRS ReplicaSetGetter) (kind, name string, err error) {
	if c == nil {
		return "", "", nil
	}
	if c.Kind != "ReplicaSet" {
		return c.Kind, c.Name, nil
	}
	rs, err := getRS(ctx, ns, c.Name)
	if err != nil {
		return "", "", err
	}
	if d := metav1.GetControllerOf(rs); d != nil && d.Kind == "Deployment" {
		return "Deployment", d.Name, nil
	}
	return "ReplicaSet", c.Name, nil
}
