// Package agentapi is the wire between a run and a node agent (`faultline agent`): the JSON types
// of its HTTPS API, a Go client, and the mutual-TLS configuration both ends use. It imports only
// runbooks, so that injectors can use it without pulling in the agent itself.
//
// The API:
//
//	POST   /v1/faults              FaultRequest → 201 Fault (200 when the id is already held)
//	POST   /v1/plans               FaultRequest → 200 Fault (state planned; describe: the targets)
//	POST   /v1/faults/{id}/renew   RenewRequest → 200 Fault; 410 Fault when already reverted
//	DELETE /v1/faults/{id}         → 200 Fault (state reverted); 404 unknown
//	GET    /v1/faults              → []Fault, held and recently reverted
//	GET    /healthz, /readyz       plain, no client certificate needed
//
// Errors are JSON ErrorBody with a status: 400 bad input, 401 no client certificate, 403 not
// allowed (rule "node": the pod is not on this agent's node), 404 unknown pod or fault, 409
// conflict, 410 gone. Nothing is applied when a request fails.
package agentapi

import (
	"time"

	"github.com/faultline-dev/faultline/runbooks"
)

// DefaultPort is the port agents listen on.
const DefaultPort = 7470

// ServerName is the name a client expects in the agent's certificate (a DNS subject alternative
// name), whatever address it dials: one certificate then serves every agent of a DaemonSet,
// whose pod and host IPs are not known when the certificate is made.
const ServerName = "faultline-agent"

// Fault states.
const (
	StateApplied  = "applied"
	StateReverted = "reverted"
	// StateRevertFailed is a fault the agent no longer holds but could not revert yet; it retries.
	StateRevertFailed = "revert-failed"
	// StatePlanned is the answer to a plan: nothing applied, nothing held.
	StatePlanned = "planned"
)

// Revert reasons.
const (
	ReasonLeaseExpired = "lease expired"
	ReasonPodGone      = "pod gone"
	ReasonRequested    = "requested"
)

// FaultRequest asks an agent to apply one network fault and hold it for a lease.
type FaultRequest struct {
	// ID is chosen by the caller and makes the request idempotent: the same ID again returns the
	// fault already held.
	ID    string `json:"id"`
	RunID string `json:"runID"`
	// Owner names the caller (e.g. the run's host and pid, or the daemon's identity); it is
	// recorded with the fault and labels its iptables chain.
	Owner string `json:"owner"`
	// Lease is how long the fault is held without a renewal; the agent reverts it after that.
	Lease  runbooks.Duration `json:"lease"`
	Target Target            `json:"target"`
	// Fault is a network fault (partition, reject, loss, shardIsolation, bandwidth, latency)
	// whose netns and netnsPath are empty: the agent fills them in from Target; or, for an agent
	// on a plain host (--host-only) and target {host: true}, a process fault (processKill
	// without interval, processPause).
	Fault runbooks.Fault `json:"fault"`
	// Seed seeds a random pick of processes (a process fault with count or percent), so that the
	// run's seed repeats it.
	Seed uint64 `json:"seed,omitempty"`
	// MaxTargets is the runbook's policy.maxTargets: a fault that would touch more is refused.
	MaxTargets int `json:"maxTargets,omitempty"`
}

// Target is where a fault goes; exactly one field is set.
type Target struct {
	Pod *PodRef `json:"pod,omitempty"`
	// Host is the agent's own network namespace (a plain Linux host running the agent).
	Host bool `json:"host,omitempty"`
	// Netns is a named network namespace on the agent's host (as `ip netns` names it).
	Netns string `json:"netns,omitempty"`
}

// PodRef names a pod. UID is optional; when set, it must match.
type PodRef struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	UID       string `json:"uid,omitempty"`
}

// Netns is the network namespace a fault was applied in, as the agent resolved it.
type Netns struct {
	Path string `json:"path,omitempty"`
	// ID is "dev:inode" of the namespace: a revert reaches exactly this namespace, or none.
	ID string `json:"id"`
	// PausePID is the pod's sandbox (pause) process, when the target is a pod.
	PausePID int `json:"pausePID,omitempty"`
}

// Fault is a fault an agent holds or has reverted.
type Fault struct {
	ID           string    `json:"id"`
	RunID        string    `json:"runID"`
	Owner        string    `json:"owner"`
	Kind         string    `json:"kind,omitempty"`
	Name         string    `json:"name,omitempty"`
	State        string    `json:"state"`
	Target       Target    `json:"target"`
	Netns        Netns     `json:"netns"`
	AppliedAt    time.Time `json:"appliedAt,omitzero"`
	ExpiresAt    time.Time `json:"expiresAt,omitzero"`
	RevertedAt   time.Time `json:"revertedAt,omitzero"`
	RevertReason string    `json:"revertReason,omitempty"`
	// Describe says what was put in place (iptables rules, qdiscs), as the injector words it.
	Describe []string `json:"describe,omitempty"`
	// RevertError is set when a revert failed; the agent keeps trying.
	RevertError string `json:"revertError,omitempty"`
}

// RenewRequest extends a fault's lease from now.
type RenewRequest struct {
	Lease runbooks.Duration `json:"lease"`
}

// ErrorBody is the JSON body of every error response.
type ErrorBody struct {
	Error string `json:"error"`
	// Rule names the refusal, when the error is one: "node", "tls", "netns", "lease", ...
	Rule string `json:"rule,omitempty"`
}

// GoneBody is the body of 410 Gone: the fault as the agent reverted it, with the error fields, so
// that it reads both as a Fault and as an ErrorBody.
type GoneBody struct {
	Fault
	ErrorBody
}
