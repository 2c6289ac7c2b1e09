package recorder

import (
	"time"

	"github.com/faultline-dev/faultline/experiments"
)

// recording turns the document into the engine's Recording; s.mu is held.
func (s *workloadSession) recording(end experiments.RecordingEnd) experiments.Recording {
	doc, recovered, reason := s.document(end.RevertedAt)
	return experiments.Recording{Recorder: "workloads", Recovered: recovered, Reason: reason, Data: doc}
}

var _ = time.Second
