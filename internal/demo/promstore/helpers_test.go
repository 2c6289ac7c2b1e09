package promstore

import "github.com/prometheus/prometheus/model/labels"

type labelsT = labels.Labels

func labelsFrom(kv ...string) labels.Labels { return labels.FromStrings(kv...) }
