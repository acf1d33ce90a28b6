package runemu_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	run "cloud.google.com/go/run/apiv2"
	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/ai-square/coalmine/infra/local/runemu"
	"github.com/ai-square/coalmine/infra/local/sampleapp"
)

// TestMain lets the emulator re-execute this test binary as the sample app.
func TestMain(m *testing.M) {
	sampleapp.RunIfChild()
	os.Exit(m.Run())
}

// Image references registered by newEnv.
const (
	imageA      = "europe-docker.pkg.dev/local-project/apps/app:a"
	imageB      = "europe-docker.pkg.dev/local-project/apps/app:b"
	imageBroken = "europe-docker.pkg.dev/local-project/apps/app:broken"
)

// env is one emulator with official clients connected to it.
type env struct {
	srv    *runemu.Server
	svcs   *run.ServicesClient
	revs   *run.RevisionsClient
	parent string
}

// newEnv starts an emulator (closed at cleanup) with imageA, imageB and imageBroken
// registered, and official clients for it.
func newEnv(t *testing.T, opts runemu.Options) *env {
	t.Helper()
	if opts.Logger == nil {
		var w io.Writer = io.Discard
		if os.Getenv("RUNEMU_TEST_LOG") != "" {
			w = os.Stderr
		}
		opts.Logger = slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if opts.Registry == nil {
		opts.Registry = runemu.NewRegistry()
		opts.Registry.Register(imageA, runemu.Image{Env: map[string]string{"APP_VERSION": "a"}})
		opts.Registry.Register(imageB, runemu.Image{Env: map[string]string{"APP_VERSION": "b"}})
		opts.Registry.Register(imageBroken, runemu.Image{Env: map[string]string{sampleapp.EnvFailStart: "true"}})
	}
	srv, err := runemu.New(opts)
	if err != nil {
		t.Fatalf("runemu.New: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	ctx := context.Background()
	copts := []option.ClientOption{
		option.WithEndpoint(srv.Addr()),
		option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
	}
	svcs, err := run.NewServicesClient(ctx, copts...)
	if err != nil {
		t.Fatalf("NewServicesClient: %v", err)
	}
	t.Cleanup(func() { svcs.Close() })
	revs, err := run.NewRevisionsClient(ctx, copts...)
	if err != nil {
		t.Fatalf("NewRevisionsClient: %v", err)
	}
	t.Cleanup(func() { revs.Close() })
	project, region := opts.Project, opts.Region
	if project == "" {
		project = runemu.DefaultProject
	}
	if region == "" {
		region = runemu.DefaultRegion
	}
	return &env{srv: srv, svcs: svcs, revs: revs, parent: "projects/" + project + "/locations/" + region}
}

func (e *env) serviceName(id string) string { return e.parent + "/services/" + id }

func (e *env) revisionName(svc, rev string) string {
	return e.serviceName(svc) + "/revisions/" + rev
}

// testCtx is a context bounded well below the test timeout.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// template returns a one-container template running image, named revision (may be "").
func template(revision, image string, env ...string) *runpb.RevisionTemplate {
	c := &runpb.Container{Name: "app", Image: image}
	for i := 0; i+1 < len(env); i += 2 {
		c.Env = append(c.Env, &runpb.EnvVar{Name: env[i], Values: &runpb.EnvVar_Value{Value: env[i+1]}})
	}
	return &runpb.RevisionTemplate{Revision: revision, Containers: []*runpb.Container{c}}
}

// create creates service id and waits for it; it fails the test on any error.
func (e *env) create(t *testing.T, id string, svc *runpb.Service) *runpb.Service {
	t.Helper()
	ctx := testCtx(t)
	op, err := e.svcs.CreateService(ctx, &runpb.CreateServiceRequest{Parent: e.parent, ServiceId: id, Service: svc})
	if err != nil {
		t.Fatalf("CreateService(%s): %v", id, err)
	}
	got, err := op.Wait(ctx)
	if err != nil {
		t.Fatalf("CreateService(%s) op.Wait: %v", id, err)
	}
	return got
}

// update sends svc and waits for the operation.
func (e *env) update(t *testing.T, svc *runpb.Service) (*runpb.Service, error) {
	t.Helper()
	ctx := testCtx(t)
	op, err := e.svcs.UpdateService(ctx, &runpb.UpdateServiceRequest{Service: svc})
	if err != nil {
		return nil, err
	}
	return op.Wait(ctx)
}

// mustUpdate is update that fails the test on error.
func (e *env) mustUpdate(t *testing.T, svc *runpb.Service) *runpb.Service {
	t.Helper()
	got, err := e.update(t, svc)
	if err != nil {
		t.Fatalf("UpdateService(%s): %v", svc.GetName(), err)
	}
	return got
}

// get reads service id.
func (e *env) get(t *testing.T, id string) *runpb.Service {
	t.Helper()
	svc, err := e.svcs.GetService(testCtx(t), &runpb.GetServiceRequest{Name: e.serviceName(id)})
	if err != nil {
		t.Fatalf("GetService(%s): %v", id, err)
	}
	return svc
}

// hits sends n GET requests to url over a few connections and counts them by the
// X-Revision header ("" for none) and status.
func hits(t *testing.T, url string, n int) (byRevision map[string]int, byStatus map[int]int) {
	t.Helper()
	const workers = 8
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	defer client.CloseIdleConnections()
	byRevision, byStatus = make(map[string]int), make(map[int]int)
	var mu sync.Mutex
	var wg sync.WaitGroup
	jobs := make(chan struct{}, n)
	for range n {
		jobs <- struct{}{}
	}
	close(jobs)
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			for range jobs {
				resp, err := client.Get(url)
				if err != nil {
					errs <- err
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				mu.Lock()
				byRevision[resp.Header.Get(sampleapp.HeaderRevision)]++
				byStatus[resp.StatusCode]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("GET %s: %v", url, err)
	}
	return byRevision, byStatus
}

// codeOf is the gRPC code of err (OK for nil).
func codeOf(err error) codes.Code { return status.Code(err) }

// readyCondition is the Ready condition in conds, if any.
func readyCondition(conds []*runpb.Condition) *runpb.Condition {
	for _, c := range conds {
		if c.GetType() == "Ready" {
			return c
		}
	}
	return nil
}

// tagURI returns the URI of tag in svc's traffic statuses.
func tagURI(t *testing.T, svc *runpb.Service, tag string) string {
	t.Helper()
	for _, st := range svc.GetTrafficStatuses() {
		if st.GetTag() == tag {
			if st.GetUri() == "" {
				t.Fatalf("traffic status of tag %q has no URI", tag)
			}
			return st.GetUri()
		}
	}
	t.Fatalf("tag %q not in traffic statuses %v", tag, svc.GetTrafficStatuses())
	return ""
}

// lastSegment is the short name of a resource name.
func lastSegment(name string) string {
	for i := len(name) - 1; i >= 0; i-- {
		if name[i] == '/' {
			return name[i+1:]
		}
	}
	return name
}

// Traffic target types, shortened.
const (
	latest   = runpb.TrafficTargetAllocationType_TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST
	revision = runpb.TrafficTargetAllocationType_TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION
)

// fastOpts makes op.Wait return as soon as an operation is done.
func fastOpts() runemu.Options { return runemu.Options{OperationPollHold: 10 * time.Second} }

// pinnedTraffic is the reference's no-traffic deploy: the current split pinned to named
// revisions, plus newRev at 0% under tag.
func pinnedTraffic(svc *runpb.Service, newRev, tag string) []*runpb.TrafficTarget {
	var pinned []*runpb.TrafficTarget
	for _, ts := range svc.GetTrafficStatuses() {
		rev := ts.GetRevision()
		if ts.GetType() == latest {
			rev = svc.GetLatestReadyRevision()
		}
		pinned = append(pinned, &runpb.TrafficTarget{Type: revision, Revision: lastSegment(rev), Percent: ts.GetPercent(), Tag: ts.GetTag()})
	}
	return append(pinned, &runpb.TrafficTarget{Type: revision, Revision: newRev, Percent: 0, Tag: tag})
}

// getErr performs one GET and returns its transport error, if any.
func getErr(url string) error {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// slowImage runs the sample app (this test binary) after a delay.
func slowImage(t *testing.T, d time.Duration) runemu.Image {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatalf("os.Executable: %v", err)
	}
	return runemu.Image{
		Command: []string{"/bin/sh", "-c", fmt.Sprintf(`sleep %.3f; exec "$0"`, d.Seconds()), exe},
		Env:     map[string]string{sampleapp.EnvChild: "1"},
	}
}

// assertGone fails the test unless process pid is gone (reaped) within a second.
func assertGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for {
		err := syscall.Kill(pid, 0)
		if errors.Is(err, syscall.ESRCH) {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("process %d still exists after stop (kill -0: %v)", pid, err)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// killPID kills one process (not its group), as a crash would.
func killPID(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }
