package runbooks

// AutoscalerSpec names one autoscaler to record. (Filled in by the autoscaler recorder's change.)
type AutoscalerSpec struct {
	Name string `yaml:"name" json:"name"`
}
