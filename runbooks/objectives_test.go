package runbooks

import (
	"testing"
	"time"
)

// The runbook's objectives are every experiment's default; a group an experiment sets replaces
// the default's group, the others stay.
func TestObjectivesFor(t *testing.T) {
	rb, err := Parse("rb.yaml", []byte(`apiVersion: faultline.dev/v1alpha1
kind: Runbook
metadata: {name: t}
environment: {name: t, type: local}
guardrails:
  - name: up
    http: {url: "http://127.0.0.1:9/healthz"}
objectives:
  detection: {within: 10s}
experiments:
  - name: default
    duration: 1s
    faults: [{processPause: {exe: sleep}}]
  - name: own
    duration: 1s
    faults: [{processPause: {exe: sleep}}]
    objectives: {detection: {within: 2s}}
`))
	if err != nil {
		t.Fatal(err)
	}
	if o := rb.ObjectivesFor(0); o == nil || o.Detection.Within.D() != 10*time.Second {
		t.Errorf("experiment without objectives: %+v, want the runbook's", o)
	}
	if o := rb.ObjectivesFor(1); o == nil || o.Detection.Within.D() != 2*time.Second {
		t.Errorf("experiment with its own detection: %+v", o)
	}
	rb.Objectives = nil
	if o := rb.ObjectivesFor(0); o != nil {
		t.Errorf("no objectives anywhere: %+v", o)
	}
}
