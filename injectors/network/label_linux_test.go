package network_test

import (
	"testing"

	"github.com/faultline-dev/faultline/injectors/network"
)

func TestOwnerLabelRoundTrip(t *testing.T) {
	comment := network.OwnerLabelFor("run-1", "cut shard 2", "partition", "42.7")
	l, ok := network.ParseOwnerLabel(comment)
	want := network.Label{Run: "run-1", Fault: "cut_shard_2", Kind: "partition", Owner: "42.7"}
	if !ok || l != want {
		t.Fatalf("ParseOwnerLabel(%q) = %+v, %v; want %+v", comment, l, ok, want)
	}
	for _, other := range []string{"", "kube-proxy rule", "faultline", "faultline fault=x kind=y"} {
		if l, ok := network.ParseOwnerLabel(other); ok {
			t.Errorf("ParseOwnerLabel(%q) = %+v, want not a faultline label", other, l)
		}
	}
}
