package daemon

import (
	"encoding/json"
	"testing"

	"github.com/faultline-dev/faultline/safety/ledger"
)

// Entries written before incarnations existed still decode, and count as a dead predecessor's
// for a replica under the same identity; only this very process's entries are its own.
func TestNotSelfAndOldEntries(t *testing.T) {
	var old ledger.Entry
	if err := json.Unmarshal([]byte(`{"id":"r1-pause-00","runId":"r1","state":"applied","owner":{"id":"replica-a","pid":9988,"host":"vm","start":1}}`), &old); err != nil {
		t.Fatalf("an entry without an incarnation: %v", err)
	}
	if old.Owner.ID != "replica-a" || old.Owner.Incarnation != "" {
		t.Fatalf("decoded owner %+v", old.Owner)
	}
	inc := NewIncarnation()
	if len(inc) != 12 || inc == NewIncarnation() {
		t.Fatalf("incarnation %q: want 12 random hex digits", inc)
	}
	gone := NotSelf("replica-a", inc)
	for _, c := range []struct {
		o    ledger.Owner
		gone bool
	}{
		{old.Owner, true}, // a predecessor under the same name, from before incarnations
		{ledger.Owner{ID: "replica-a", Incarnation: "0123456789ab"}, true}, // a predecessor
		{ledger.Owner{ID: "replica-b", Incarnation: inc}, true},            // another replica
		{ledger.Owner{ID: "replica-a", Incarnation: inc}, false},           // this process
	} {
		if got := gone(c.o); got != c.gone {
			t.Errorf("NotSelf(%v) = %v, want %v", c.o, got, c.gone)
		}
	}
	b, err := json.Marshal(ledger.Owner{ID: "replica-a", Incarnation: inc})
	if err != nil {
		t.Fatal(err)
	}
	var back ledger.Owner
	if err := json.Unmarshal(b, &back); err != nil || back.Incarnation != inc {
		t.Fatalf("round trip %s: %+v %v", b, back, err)
	}
	if h := Holder("replica-a", inc); HolderIdentity(h) != "replica-a" || HolderIdentity("replica-a") != "replica-a" {
		t.Fatalf("holder %q does not give back its identity", h)
	}
}
