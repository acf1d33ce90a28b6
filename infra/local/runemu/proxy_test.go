package runemu_test

import (
	"os"
	"testing"

	"cloud.google.com/go/run/apiv2/runpb"

	"github.com/ai-square/coalmine/infra/local/runemu"
)

// TestTagRemovalClosesListener checks a removed tag's URL stops answering.
func TestTagRemovalClosesListener(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fastOpts())
	svc := e.create(t, "svc", &runpb.Service{Template: template("svc-stable", imageA)})
	svc.Traffic = []*runpb.TrafficTarget{{Type: revision, Revision: "svc-stable", Percent: 100, Tag: "blue"}}
	svc = e.mustUpdate(t, svc)
	blue := tagURI(t, svc, "blue")
	if byRev, _ := hits(t, blue, 5); byRev["svc-stable"] != 5 {
		t.Fatalf("tag blue served %v, want 5 requests by svc-stable", byRev)
	}
	svc.Traffic = []*runpb.TrafficTarget{{Type: latest, Percent: 100}}
	svc = e.mustUpdate(t, svc)
	if got := len(svc.GetTrafficStatuses()); got != 1 || svc.GetTrafficStatuses()[0].GetTag() != "" {
		t.Fatalf("traffic statuses %v, want one untagged entry", svc.GetTrafficStatuses())
	}
	if err := getErr(blue); err == nil {
		t.Errorf("GET %s after the tag was removed: got a response, want a connection error", blue)
	}
}

// TestOnRequest: subscribers see every proxied request until they unsubscribe, and the
// kept history is bounded.
func TestOnRequest(t *testing.T) {
	t.Parallel()
	e := newEnv(t, runemu.Options{RequestBuffer: 10, OperationPollHold: fastOpts().OperationPollHold})
	svc := e.create(t, "svc", &runpb.Service{Template: template("svc-v1", imageA)})
	seen := make(chan runemu.Request, 100)
	cancel := e.srv.OnRequest(func(r runemu.Request) { seen <- r })
	hits(t, svc.GetUri()+"/missing", 15)
	cancel()
	hits(t, svc.GetUri(), 5)
	if got, want := len(seen), 15; got != want {
		t.Errorf("subscriber saw %d requests, want %d", got, want)
	}
	r := <-seen
	if r.Service != "svc" || r.Revision != "svc-v1" || r.Status != 404 || r.Tag != "" || !r.Reached {
		t.Errorf("first request seen %+v, want service svc, revision svc-v1, status 404, no tag, reached", r)
	}
	kept := e.srv.Requests(e.serviceName("svc"))
	if got, want := len(kept), 10; got != want {
		t.Fatalf("Requests kept %d, want the buffer size %d", got, want)
	}
	for i, r := range kept[5:] {
		if r.Status != 200 {
			t.Errorf("kept[%d] status %d, want 200 (the newest requests are kept)", i+5, r.Status)
		}
	}
}

// TestUnreachedRequests: when the revision's process is gone, the proxy answers itself and
// the request is marked as not having reached a container (Cloud Run does not count it).
func TestUnreachedRequests(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fastOpts())
	svc := e.create(t, "svc", &runpb.Service{Template: template("svc-v1", imageA)})
	seen := make(chan runemu.Request, 100)
	defer e.srv.OnRequest(func(r runemu.Request) { seen <- r })()
	pid := e.srv.PIDs()["svc-v1"]
	if pid == 0 {
		t.Fatalf("no process for svc-v1: %v", e.srv.PIDs())
	}
	p, err := os.FindProcess(pid)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	_, codes := hits(t, svc.GetUri(), 1)
	r := <-seen
	if r.Reached || (r.Status != 502 && r.Status != 503) {
		t.Errorf("request to a killed revision: %+v (codes %v), want 502 or 503 from the proxy, not reached", r, codes)
	}
}
