package runemu_test

import (
	"context"
	"testing"
	"time"

	run "cloud.google.com/go/run/apiv2"
	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/grpc/codes"

	"github.com/ai-square/coalmine/infra/local/runemu"
)

// TestCloseStopsEverything: Close leaves no revision process, proxy or gRPC listener.
func TestCloseStopsEverything(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fastOpts())
	a := e.create(t, "alpha", &runpb.Service{Template: template("alpha-v1", imageA)})
	a.Template = template("alpha-v2", imageB)
	a.Traffic = pinnedTraffic(a, "alpha-v2", "canary")
	a = e.mustUpdate(t, a)
	b := e.create(t, "beta", &runpb.Service{Template: template("", imageA)})

	pids := e.srv.PIDs()
	if got, want := len(pids), 3; got != want {
		t.Fatalf("PIDs() = %v, want %d processes", pids, want)
	}
	if err := e.srv.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for rev, pid := range pids {
		t.Run(rev, func(t *testing.T) { assertGone(t, pid) })
	}
	if got := e.srv.PIDs(); len(got) != 0 {
		t.Errorf("PIDs() after Close = %v, want none", got)
	}
	for _, url := range []string{a.GetUri(), tagURI(t, a, "canary"), b.GetUri()} {
		if err := getErr(url); err == nil {
			t.Errorf("GET %s after Close: got a response, want a connection error", url)
		}
	}
	// The client retries UNAVAILABLE until its context ends: bound it.
	ctx, cancel := context.WithTimeout(testCtx(t), 500*time.Millisecond)
	defer cancel()
	if _, err := e.svcs.GetService(ctx, &runpb.GetServiceRequest{Name: e.serviceName("alpha")}); err == nil {
		t.Error("GetService after Close succeeded, want an error")
	}
	if err := e.srv.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestProjectAndLocation: names outside the configured project/location are refused.
func TestProjectAndLocation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, runemu.Options{Project: "p1", Region: "europe-west1"})
	for _, parent := range []string{"projects/other/locations/europe-west1", "projects/p1/locations/us-central1"} {
		_, err := e.svcs.CreateService(testCtx(t), &runpb.CreateServiceRequest{Parent: parent, ServiceId: "svc", Service: &runpb.Service{Template: template("", imageA)}})
		if err == nil {
			t.Errorf("CreateService(parent %s) succeeded, want an error", parent)
		}
	}
	op, err := e.svcs.CreateService(testCtx(t), &runpb.CreateServiceRequest{Parent: "projects/p1/locations/europe-west1", ServiceId: "svc", Service: &runpb.Service{Template: template("", imageA)}})
	if err != nil {
		t.Fatalf("CreateService in the configured location: %v", err)
	}
	svc, err := op.Wait(testCtx(t))
	if err != nil {
		t.Fatalf("op.Wait: %v", err)
	}
	if got, want := svc.GetName(), "projects/p1/locations/europe-west1/services/svc"; got != want {
		t.Errorf("service name %q, want %q", got, want)
	}
}

// TestClientOptions: the server's own client options reach it.
func TestClientOptions(t *testing.T) {
	t.Parallel()
	e := newEnv(t, runemu.Options{})
	c, err := run.NewRevisionsClient(context.Background(), e.srv.ClientOptions()...)
	if err != nil {
		t.Fatalf("NewRevisionsClient: %v", err)
	}
	defer c.Close()
	_, err = c.GetRevision(testCtx(t), &runpb.GetRevisionRequest{Name: e.revisionName("nope", "nope-1")})
	if got, want := codeOf(err), codes.NotFound; got != want {
		t.Errorf("GetRevision(unknown): code %v (%v), want %v", got, err, want)
	}
}
