package recorder

import (
	"context"
	"testing"
	"time"

	"github.com/faultline-dev/faultline/internal/testenv/prom"
)

// Reading a window back in pieces returns exactly the samples one read returns: no sample lost or
// doubled at the seams.
func TestFetchWindowChunks(t *testing.T) {
	srv := prom.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	from := time.Now()
	if _, err := srv.WaitIngested(ctx, from.Add(3*time.Second)); err != nil {
		t.Fatal(err)
	}
	to := time.Now()
	// Both reads must see the same samples: wait until everything scraped up to `to` is stored,
	// or a scrape landing between the two reads is in one and not the other.
	if _, err := srv.WaitIngested(ctx, to.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	whole, err := fetchWindow(ctx, srv.API(), `up{job="target"}`, from, to, 10*time.Second, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pieces, err := fetchWindow(ctx, srv.API(), `up{job="target"}`, from, to, 10*time.Second, 230*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if len(whole) != 1 || len(pieces) != 1 || len(whole[0].Values) < 10 {
		t.Fatalf("whole %d series, pieces %d series, %d samples", len(whole), len(pieces), len(whole[0].Values))
	}
	a, b := whole[0].Values, pieces[0].Values
	if len(a) != len(b) {
		t.Fatalf("%d samples in one read, %d in pieces", len(a), len(b))
	}
	for i := range a {
		if a[i].Timestamp != b[i].Timestamp {
			t.Fatalf("sample %d at %v in one read, %v in pieces", i, a[i].Timestamp, b[i].Timestamp)
		}
	}
}
