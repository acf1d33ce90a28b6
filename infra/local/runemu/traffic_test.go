package runemu_test

import (
	"math"
	"testing"

	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/protobuf/proto"
)

// TestCanaryTrafficSplit walks a canary release through the official client: a stable
// revision, a canary deployed at 0% with a tag while the current split is pinned, then a
// 10/90 split measured through the front proxy.
func TestCanaryTrafficSplit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fastOpts())
	svc := e.create(t, "svc", &runpb.Service{Template: template("svc-stable", imageA)})
	if got, want := svc.GetLatestReadyRevision(), e.revisionName("svc", "svc-stable"); got != want {
		t.Fatalf("after create: LatestReadyRevision = %q, want %q", got, want)
	}

	// No-traffic deploy of the canary, tagged.
	svc.Template = template("svc-canary", imageB)
	svc.Traffic = pinnedTraffic(svc, "svc-canary", "canary")
	svc = e.mustUpdate(t, svc)
	for _, c := range []struct{ field, got, want string }{
		{"LatestReadyRevision", svc.GetLatestReadyRevision(), e.revisionName("svc", "svc-canary")},
		{"LatestCreatedRevision", svc.GetLatestCreatedRevision(), e.revisionName("svc", "svc-canary")},
	} {
		if c.got != c.want {
			t.Errorf("after canary deploy: %s = %q, want %q", c.field, c.got, c.want)
		}
	}
	canaryURI := tagURI(t, svc, "canary")
	wantStatuses := []*runpb.TrafficTargetStatus{
		{Type: revision, Revision: "svc-stable", Percent: 100},
		{Type: revision, Revision: "svc-canary", Percent: 0, Tag: "canary", Uri: canaryURI},
	}
	if diff := cmpStatuses(svc.GetTrafficStatuses(), wantStatuses); diff != "" {
		t.Errorf("after canary deploy: traffic statuses differ (-got +want):\n%s", diff)
	}
	if got, want := svc.GetObservedGeneration(), svc.GetGeneration(); got != want || svc.GetReconciling() {
		t.Errorf("after canary deploy: observed generation %d, generation %d, reconciling %v; want equal and false", got, want, svc.GetReconciling())
	}
	byRev, _ := hits(t, svc.GetUri(), 200)
	if got, want := byRev["svc-stable"], 200; got != want {
		t.Errorf("at 0%% canary: %d of 200 service requests went to svc-stable (all: %v), want %d", got, byRev, want)
	}

	// 10% canary.
	svc.Traffic = []*runpb.TrafficTarget{
		{Type: revision, Revision: "svc-stable", Percent: 90},
		{Type: revision, Revision: "svc-canary", Percent: 10, Tag: "canary"},
	}
	svc = e.mustUpdate(t, svc)
	if got, want := tagURI(t, svc, "canary"), canaryURI; got != want {
		t.Errorf("tag URI changed across updates: got %q, want %q", got, want)
	}

	const n, p = 2000, 0.10
	byRev, byStatus := hits(t, svc.GetUri(), n)
	if got := byStatus[200]; got != n {
		t.Fatalf("statuses %v: got %d OK responses, want %d", byStatus, got, n)
	}
	// Binomial bound: mean n·p, sigma sqrt(n·p·(1-p)) ≈ 13.4; we accept mean ± 4.5 sigma
	// (≈ ±60 requests, false-failure probability about 7e-6 per revision).
	sigma := math.Sqrt(n * p * (1 - p))
	for _, c := range []struct {
		rev   string
		share float64
	}{{"svc-canary", p}, {"svc-stable", 1 - p}} {
		mean := n * c.share
		if got := byRev[c.rev]; math.Abs(float64(got)-mean) > 4.5*sigma {
			t.Errorf("revision %s served %d of %d requests, want %.0f ± %.0f (4.5 sigma)", c.rev, got, n, mean, 4.5*sigma)
		}
	}
	if got := byRev["svc-canary"] + byRev["svc-stable"]; got != n {
		t.Errorf("requests by revision %v add up to %d, want %d", byRev, got, n)
	}

	// The tag URL is served by the tagged revision only.
	tagged, _ := hits(t, canaryURI, 100)
	if got, want := tagged["svc-canary"], 100; got != want {
		t.Errorf("tag URL: %d of 100 requests served by svc-canary (all: %v), want %d", got, tagged, want)
	}

	// Every request was recorded, per revision and tag.
	type key struct{ rev, tag string }
	recorded := make(map[key]int)
	for _, r := range e.srv.Requests("svc") {
		if r.Status != 200 || r.Service != "svc" || r.Latency <= 0 || r.Time.IsZero() {
			t.Errorf("recorded request %+v: want status 200, service svc, positive latency and a time", r)
		}
		recorded[key{r.Revision, r.Tag}]++
	}
	want := map[key]int{
		{"svc-stable", ""}:       200 + byRev["svc-stable"],
		{"svc-canary", ""}:       byRev["svc-canary"],
		{"svc-canary", "canary"}: 100,
	}
	if !mapsEqual(recorded, want) {
		t.Errorf("recorded requests by (revision, tag) = %v, want %v", recorded, want)
	}
}

// cmpStatuses returns "" when got equals want, else both rendered.
func cmpStatuses(got, want []*runpb.TrafficTargetStatus) string {
	if len(got) == len(want) {
		same := true
		for i := range got {
			if !proto.Equal(got[i], want[i]) {
				same = false
			}
		}
		if same {
			return ""
		}
	}
	return "got:  " + statusesString(got) + "\nwant: " + statusesString(want)
}

// statusesString renders traffic statuses compactly.
func statusesString(sts []*runpb.TrafficTargetStatus) string {
	s := ""
	for _, st := range sts {
		s += "{" + st.String() + "} "
	}
	return s
}

// mapsEqual compares two count maps (missing keys count as zero).
func mapsEqual[K comparable](a, b map[K]int) bool {
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	for k, v := range b {
		if a[k] != v {
			return false
		}
	}
	return true
}
