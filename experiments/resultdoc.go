package experiments

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/faultline-dev/faultline/runbooks"
)

// ResultSchemaVersion is the version of the result document this faultline writes. It changes
// only when a field changes meaning or is removed; added fields keep the version (readers ignore
// what they do not know). DecodeResult reads every version up to this one.
const ResultSchemaVersion = 1

// EnvironmentIdentity says where a run ran, so that two results can be told apart when they come
// from different places under the same environment name.
type EnvironmentIdentity struct {
	// Type is the runbook's environment type (staging, golden-copy, local).
	Type string `json:"type,omitempty"`
	// Host is the host name of the machine faultline ran on.
	Host string `json:"host,omitempty"`
	// ClusterID is the UID of the kube-system namespace of the cluster the runbook pins; the
	// golden-copy guard refuses the run before anything is touched when the live cluster's differs.
	ClusterID string `json:"clusterId,omitempty"`
	// Server is the Kubernetes API server the runbook pins.
	Server string `json:"server,omitempty"`
}

// stamp fills the document's version and identity fields at the start of a run.
func (e *Engine) stamp(res *Result, rb *runbooks.Runbook) {
	res.SchemaVersion = ResultSchemaVersion
	res.FaultlineVersion = e.Version
	if d, err := runbooks.Digest(rb); err == nil {
		res.RunbookDigest = d
	}
	for _, x := range rb.Experiments {
		res.ExperimentNames = append(res.ExperimentNames, x.Name)
	}
	id := &EnvironmentIdentity{Type: rb.Environment.Type}
	id.Host, _ = os.Hostname()
	if k := rb.Environment.Kubernetes; k != nil {
		id.ClusterID, id.Server = k.ClusterID, k.Server
	}
	res.Identity = id
}

// ErrResultVersion is returned (wrapped) by DecodeResult for a document of a newer schema version.
var ErrResultVersion = errors.New("unsupported result schema version")

// DecodeResult reads a result document of any version this faultline knows. A document without
// schemaVersion predates versioning and reads as version 1. Unknown fields are ignored (a newer
// faultline of the same version may add some); a document that is not a result at all is refused.
func DecodeResult(data []byte) (*Result, error) {
	var probe struct {
		SchemaVersion *int            `json:"schemaVersion"`
		RunID         *string         `json:"runId"`
		Verdict       *string         `json:"verdict"`
		Experiments   json.RawMessage `json:"experiments"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		return nil, fmt.Errorf("not a faultline result document: %w", err)
	}
	if probe.RunID == nil || probe.Verdict == nil {
		return nil, errors.New("not a faultline result document: runId and verdict are missing")
	}
	v := 1
	if probe.SchemaVersion != nil {
		v = *probe.SchemaVersion
	}
	if v < 1 || v > ResultSchemaVersion {
		return nil, fmt.Errorf("%w %d (this faultline reads versions 1 to %d; use a newer faultline)", ErrResultVersion, v, ResultSchemaVersion)
	}
	var res Result
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&res); err != nil {
		return nil, fmt.Errorf("decode result document: %w", err)
	}
	if res.SchemaVersion == 0 {
		res.SchemaVersion = 1
	}
	return &res, nil
}

// ReadResultFile reads and decodes a result document from a file.
func ReadResultFile(path string) (*Result, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read result: %w", err)
	}
	res, err := DecodeResult(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return res, nil
}
