package runbooks

// BreakerSpec names circuit breakers to record. (Filled in by the breaker recorder's change.)
type BreakerSpec struct {
	Name string `yaml:"name" json:"name"`
}
