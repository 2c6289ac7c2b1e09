package prom

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/common/model"
)

func TestStartScrapesTarget(t *testing.T) {
	t.Parallel()
	s := Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	s.Target.Value.WithLabelValues("a").Set(42)
	set := time.Now()
	scraped, err := s.Target.ScrapeAfter(ctx, set)
	if err != nil {
		t.Fatal(err)
	}
	seen, err := s.WaitIngested(ctx, set)
	if err != nil {
		t.Fatal(err)
	}
	if seen.Before(set.Add(-time.Millisecond)) {
		t.Fatalf("ingested sample at %v is older than the change at %v", seen, set)
	}
	v, err := s.WaitVector(ctx, `test_value{series="a"}`, func(v model.Vector) bool { return len(v) == 1 && v[0].Value == 42 })
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("set %v, served %v (+%s), ingested at %v; value %v", set.Format(time.StampMilli), scraped.Format(time.StampMilli), scraped.Sub(set), seen.Format(time.StampMilli), v)
}

func TestTLSAndBasicAuth(t *testing.T) {
	t.Parallel()
	s := Start(t, WithTLS(), WithBasicAuth())
	// Without credentials the real server refuses.
	req, _ := http.NewRequest(http.MethodGet, s.URL+"/api/v1/query?query=up", nil)
	c := &http.Client{Transport: s.HTTPClient().Transport.(basicAuthRT).next}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("status without credentials = %d, want 401", resp.StatusCode)
	}
	// The proxy checks the bearer token and the tenant header.
	p := StartProxy(t, s, "s3cret", map[string]string{"X-Scope-OrgID": "team-a"})
	for _, tc := range []struct {
		auth, org string
		want      int
	}{{"Bearer s3cret", "team-a", 200}, {"Bearer wrong", "team-a", 401}, {"Bearer s3cret", "", 403}} {
		req, _ := http.NewRequest(http.MethodGet, p.URL+"/api/v1/query?query=up", nil)
		req.Header.Set("Authorization", tc.auth)
		if tc.org != "" {
			req.Header.Set("X-Scope-OrgID", tc.org)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s: status %d, want %d", fmt.Sprint(tc), resp.StatusCode, tc.want)
		}
	}
}
