package cloudrun_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	run "cloud.google.com/go/run/apiv2"
	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/api/iterator"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/ai-square/coalmine/infra/local/runemu"
	"github.com/ai-square/coalmine/infra/local/sampleapp"
	"github.com/ai-square/coalmine/shared/cloudrun"
	"github.com/ai-square/coalmine/shared/rollout"
)

func TestMain(m *testing.M) {
	sampleapp.RunIfChild()
	os.Exit(m.Run())
}

const (
	repo          = "local.dev/ai-square/web"
	stableDigest  = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	canaryDigest  = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
	brokenDigest  = "sha256:3333333333333333333333333333333333333333333333333333333333333333"
	stableImage   = repo + "@" + stableDigest
	canaryImage   = repo + "@" + canaryDigest
	brokenImage   = repo + "@" + brokenDigest
	service       = "web"
	stableRev     = "web-stable"
	project       = runemu.DefaultProject
	region        = runemu.DefaultRegion
	testTimeout   = 60 * time.Second
	pollInterval  = 20 * time.Millisecond
	annotationKey = rollout.AnnotationKey
)

var stages = []int{10, 30, 50, 100}

type env struct {
	emu  *runemu.Server
	run  *cloudrun.Client
	svcs *run.ServicesClient // the official client, for checks from outside
	revs *run.RevisionsClient
	now  time.Time
}

// newEnv starts the Cloud Run emulator with a stable, a canary and a broken
// image, creates service "web" serving the stable image from revision
// web-stable, and connects the adapter to it.
func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvWith(t, nil)
}

// stableTemplate is the template of revision web-stable.
func stableTemplate() *runpb.RevisionTemplate {
	return &runpb.RevisionTemplate{
		Revision:   stableRev,
		Labels:     map[string]string{"team": "ai-square"},
		Containers: []*runpb.Container{{Name: "web", Image: stableImage, Env: []*runpb.EnvVar{{Name: "USE_POSTGRES", Values: &runpb.EnvVar_Value{Value: "false"}}}}},
	}
}

// newEnvWith is newEnv with web-stable's template changed by edit (if not nil).
func newEnvWith(t *testing.T, edit func(*runpb.RevisionTemplate)) *env {
	t.Helper()
	reg := runemu.NewRegistry()
	reg.Register(stableImage, runemu.Image{Env: map[string]string{"APP_VERSION": "stable"}})
	reg.Register(canaryImage, runemu.Image{Env: map[string]string{"APP_VERSION": "canary"}})
	reg.Register(brokenImage, runemu.Image{Env: map[string]string{sampleapp.EnvFailStart: "true"}})
	emu, err := runemu.New(runemu.Options{Registry: reg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatalf("runemu.New: %v", err)
	}
	t.Cleanup(func() { emu.Close() })
	ctx := ctxFor(t)
	c, err := cloudrun.New(ctx, cloudrun.Options{Project: project, Region: region, PollInterval: pollInterval, ClientOptions: emu.ClientOptions()})
	if err != nil {
		t.Fatalf("cloudrun.New: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	svcs, err := run.NewServicesClient(ctx, emu.ClientOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svcs.Close() })
	revs, err := run.NewRevisionsClient(ctx, emu.ClientOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { revs.Close() })
	tmpl := stableTemplate()
	if edit != nil {
		edit(tmpl)
	}
	op, err := svcs.CreateService(ctx, &runpb.CreateServiceRequest{
		Parent: "projects/" + project + "/locations/" + region, ServiceId: service,
		Service: &runpb.Service{Template: tmpl},
	})
	if err != nil {
		t.Fatalf("CreateService: %v", err)
	}
	if _, err := op.Wait(ctx); err != nil {
		t.Fatalf("CreateService wait: %v", err)
	}
	return &env{emu: emu, run: c, svcs: svcs, revs: revs, now: time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)}
}

func ctxFor(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

func (e *env) read(t *testing.T) *cloudrun.Service {
	t.Helper()
	svc, err := e.run.Read(ctxFor(t), service)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	return svc
}

// apply runs the state machine and fails the test unless it applies.
func (e *env) apply(t *testing.T, s rollout.State, c rollout.Command) rollout.State {
	t.Helper()
	e.now = e.now.Add(time.Minute)
	res := rollout.Apply(s, c, e.now, rollout.Config{})
	if res.Outcome != rollout.Applied {
		t.Fatalf("Apply(%s): %v (%s)", c.Kind, res.Outcome, res.Reason)
	}
	return res.State
}

// deployed claims a rollout for image, records a backup and deploys the
// canary, returning the service read back and the canary's name.
func (e *env) deployed(t *testing.T, image, digest string) (*cloudrun.Service, error) {
	t.Helper()
	ctx := ctxFor(t)
	svc := e.read(t)
	st := e.apply(t, svc.State, rollout.Command{Kind: rollout.Claim, Service: service, Image: image, Digest: digest,
		PublishTime: e.now, Stages: stages, Stable: svc.Serving, WindowOpen: true})
	svc, err := e.run.SetTraffic(ctx, svc, st)
	if err != nil {
		t.Fatalf("claim write: %v", err)
	}
	id := st.Rollout.ID
	st = e.apply(t, svc.State, rollout.Command{Kind: rollout.BackupDone, Rollout: id, Backup: &rollout.Backup{Prefix: "gs://b/" + id + "/"}})
	if svc, err = e.run.SetTraffic(ctx, svc, st); err != nil {
		t.Fatalf("backup write: %v", err)
	}
	tmpl, err := e.run.StableTemplate(ctx, svc)
	if err != nil {
		t.Fatalf("StableTemplate: %v", err)
	}
	name := cloudrun.CanaryName(service, digest, st.Rollout.Claimed)
	st = e.apply(t, svc.State, rollout.Command{Kind: rollout.CanaryCreated, Rollout: id, Revision: name, Template: tmpl})
	return e.run.Deploy(ctx, svc, st, cloudrun.DeployRequest{Image: image})
}

func (e *env) shift(t *testing.T, svc *cloudrun.Service, stage int) *cloudrun.Service {
	t.Helper()
	st := e.apply(t, svc.State, rollout.Command{Kind: rollout.Shift, Rollout: svc.State.Rollout.ID, Generation: svc.State.Generation, Stage: stage})
	after, err := e.run.SetTraffic(ctxFor(t), svc, st)
	if err != nil {
		t.Fatalf("shift to stage %d: %v", stage, err)
	}
	return after
}

// statuses reads TrafficStatuses with the official client: revision -> percent and tag -> revision.
func (e *env) statuses(t *testing.T) (percent map[string]int32, tags map[string]string, raw *runpb.Service) {
	t.Helper()
	raw, err := e.svcs.GetService(ctxFor(t), &runpb.GetServiceRequest{Name: e.run.ServiceName(service)})
	if err != nil {
		t.Fatal(err)
	}
	percent, tags = map[string]int32{}, map[string]string{}
	for _, ts := range raw.GetTrafficStatuses() {
		percent[ts.GetRevision()] += ts.GetPercent()
		if ts.GetTag() != "" {
			tags[ts.GetTag()] = ts.GetRevision()
		}
	}
	return percent, tags, raw
}

func (e *env) revisionCount(t *testing.T) int {
	t.Helper()
	it := e.revs.ListRevisions(ctxFor(t), &runpb.ListRevisionsRequest{Parent: e.run.ServiceName(service)})
	n := 0
	for {
		_, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return n
		}
		if err != nil {
			t.Fatalf("ListRevisions: %v", err)
		}
		n++
	}
}

// servedBy sends n requests to url and counts them by X-Revision.
func servedBy(t *testing.T, url string, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	client := &http.Client{Timeout: 10 * time.Second}
	for range n {
		resp, err := client.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: status %d", url, resp.StatusCode)
		}
		got[resp.Header.Get(sampleapp.HeaderRevision)]++
	}
	return got
}

func TestReadFreshService(t *testing.T) {
	e := newEnv(t)
	svc := e.read(t)
	if svc.Serving != stableRev || svc.Stable() != stableRev || svc.Canary() != "" {
		t.Errorf("serving %q stable %q canary %q, want %s and no canary", svc.Serving, svc.Stable(), svc.Canary(), stableRev)
	}
	if svc.State.Generation != 0 || svc.State.Rollout != nil {
		t.Errorf("fresh service has state %+v", svc.State)
	}
	if svc.Image != stableImage || svc.URI == "" || svc.Etag == "" {
		t.Errorf("image %q uri %q etag %q", svc.Image, svc.URI, svc.Etag)
	}
	if _, err := e.run.Read(ctxFor(t), "nope"); !errors.Is(err, cloudrun.ErrNotFound) || cloudrun.Transient(err) {
		t.Errorf("Read(unknown) = %v, want permanent ErrNotFound", err)
	}
}

func TestCanaryToPromotion(t *testing.T) {
	e := newEnv(t)
	svc, err := e.deployed(t, canaryImage, canaryDigest)
	if err != nil {
		t.Fatalf("Deploy: %v", err)
	}
	canary := svc.Canary()
	percent, tags, raw := e.statuses(t)
	if percent[stableRev] != 100 || percent[canary] != 0 || tags["canary"] != canary || tags["stable"] != stableRev {
		t.Fatalf("after deploy: percent %v tags %v, want %s 100%% (stable), %s 0%% (canary)", percent, tags, stableRev, canary)
	}
	for _, tr := range raw.GetTraffic() {
		if tr.GetType() != runpb.TrafficTargetAllocationType_TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION || tr.GetRevision() == "" {
			t.Errorf("traffic target %v is not pinned to a named revision", tr)
		}
	}
	if got := servedBy(t, svc.TagURI("canary"), 20); got[canary] != 20 {
		t.Errorf("canary tag URL served by %v, want only %s", got, canary)
	}
	if got := raw.GetAnnotations()[annotationKey]; !strings.Contains(got, canary) {
		t.Errorf("annotation does not name the canary: %s", got)
	}

	svc = e.shift(t, svc, 1)
	if percent, _, _ := e.statuses(t); percent[stableRev] != 90 || percent[canary] != 10 {
		t.Fatalf("stage 1: TrafficStatuses %v, want 90/10", percent)
	}
	svc = e.shift(t, svc, 2)
	svc = e.shift(t, svc, 3)
	svc = e.shift(t, svc, 4)
	percent, tags, raw = e.statuses(t)
	if percent[canary] != 100 || tags["stable"] != canary || tags["previous"] != stableRev || tags["canary"] != "" {
		t.Fatalf("promoted: percent %v tags %v, want %s 100%% tagged stable, %s tagged previous", percent, tags, canary, stableRev)
	}
	if svc.State.Rollout.Phase != rollout.Promoted || svc.Stable() != canary {
		t.Errorf("state after promotion: phase %s stable %s", svc.State.Rollout.Phase, svc.Stable())
	}
	if got := raw.GetTemplate().GetContainers()[0].GetImage(); got != canaryImage {
		t.Errorf("template image after promotion = %s, want %s", got, canaryImage)
	}
	if got := servedBy(t, svc.URI, 20); got[canary] != 20 {
		t.Errorf("service URL served by %v, want only %s", got, canary)
	}
}

func TestRollbackRestoresTrafficAndTemplate(t *testing.T) {
	e := newEnv(t)
	svc, err := e.deployed(t, canaryImage, canaryDigest)
	if err != nil {
		t.Fatalf("Deploy: %v", err)
	}
	svc = e.shift(t, svc, 1)
	revisions := e.revisionCount(t)
	st := e.apply(t, svc.State, rollout.Command{Kind: rollout.Rollback, Rollout: svc.State.Rollout.ID, Generation: svc.State.Generation, Reason: "operator abort"})
	svc, err = e.run.Rollback(ctxFor(t), svc, st)
	if err != nil {
		t.Fatalf("Rollback: %v", err)
	}
	percent, tags, raw := e.statuses(t)
	if percent[stableRev] != 100 || len(percent) != 1 || tags["stable"] != stableRev || tags["canary"] != "" {
		t.Errorf("after rollback: percent %v tags %v, want only %s at 100%%", percent, tags, stableRev)
	}
	tmpl := raw.GetTemplate()
	if got := tmpl.GetContainers()[0].GetImage(); got != stableImage {
		t.Errorf("template image after rollback = %s, want %s", got, stableImage)
	}
	if tmpl.GetRevision() != stableRev || tmpl.GetLabels()["team"] != "ai-square" || tmpl.GetContainers()[0].GetEnv()[0].GetValue() != "false" {
		t.Errorf("template not restored to the stable revision's: %v", tmpl)
	}
	if got := e.revisionCount(t); got != revisions {
		t.Errorf("rollback created a revision: %d revisions, had %d", got, revisions)
	}
	if got := servedBy(t, svc.URI, 20); got[stableRev] != 20 {
		t.Errorf("service URL served by %v, want only %s", got, stableRev)
	}
	st = e.apply(t, svc.State, rollout.Command{Kind: rollout.RollbackDone, Rollout: svc.State.Rollout.ID, Generation: svc.State.Generation})
	if svc, err = e.run.SetTraffic(ctxFor(t), svc, st); err != nil || svc.State.Rollout.Phase != rollout.RolledBack {
		t.Fatalf("rollback done: %v, phase %v", err, svc.State.Rollout.Phase)
	}
}

func TestRevisionThatCannotStartNeverTakesTraffic(t *testing.T) {
	e := newEnv(t)
	_, deployErr := e.deployed(t, brokenImage, brokenDigest)
	if !errors.Is(deployErr, cloudrun.ErrRevisionFailed) || cloudrun.Transient(deployErr) {
		t.Fatalf("Deploy of a broken image = %v, want permanent ErrRevisionFailed", deployErr)
	}
	if !strings.Contains(deployErr.Error(), "ContainerFailedToStart") || !strings.Contains(deployErr.Error(), sampleapp.EnvFailStart) {
		t.Errorf("error does not say why the revision failed: %v", deployErr)
	}
	svc := e.read(t)
	canary := svc.Canary()
	percent, _, _ := e.statuses(t)
	if percent[stableRev] != 100 || percent[canary] != 0 {
		t.Errorf("after a failed deploy: TrafficStatuses %v, want %s 100%%", percent, stableRev)
	}
	if got := servedBy(t, svc.URI, 30); got[stableRev] != 30 {
		t.Errorf("service URL served by %v, want only %s", got, stableRev)
	}
	rev, err := e.run.Revision(ctxFor(t), service, canary)
	if err != nil || !rev.Failed || rev.Ready {
		t.Errorf("Revision(%s) = %+v, %v; want failed", canary, rev, err)
	}
	// The Deploy function then fails the rollout: traffic stays, the template goes back.
	st := e.apply(t, svc.State, rollout.Command{Kind: rollout.Fail, Rollout: svc.State.Rollout.ID, Reason: deployErr.Error()})
	svc, err = e.run.Rollback(ctxFor(t), svc, st)
	if err != nil {
		t.Fatalf("failing the rollout: %v", err)
	}
	if svc.State.Rollout.Phase != rollout.Failed || svc.Image != stableImage || !svc.State.Failed(brokenDigest) {
		t.Errorf("after fail: phase %s image %s failed digests %v", svc.State.Rollout.Phase, svc.Image, svc.State.FailedDigests)
	}
}

func TestWriteConflicts(t *testing.T) {
	e := newEnv(t)
	svc := e.read(t)
	claim := e.apply(t, svc.State, rollout.Command{Kind: rollout.Claim, Service: service, Image: canaryImage, Digest: canaryDigest,
		PublishTime: e.now, Stages: stages, Stable: svc.Serving, WindowOpen: true})

	// Someone changes the service between our read and our write.
	raw, err := e.svcs.GetService(ctxFor(t), &runpb.GetServiceRequest{Name: svc.FullName})
	if err != nil {
		t.Fatal(err)
	}
	raw.Labels = map[string]string{"touched": "yes"}
	op, err := e.svcs.UpdateService(ctxFor(t), &runpb.UpdateServiceRequest{Service: raw})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := op.Wait(ctxFor(t)); err != nil {
		t.Fatal(err)
	}
	_, err = e.run.SetTraffic(ctxFor(t), svc, claim)
	if !errors.Is(err, cloudrun.ErrConflict) || !cloudrun.Transient(err) {
		t.Fatalf("write after a concurrent change = %v, want transient ErrConflict", err)
	}
	if got := e.read(t); got.State.Generation != 0 {
		t.Errorf("conflicting write changed the state to generation %d", got.State.Generation)
	}

	// Cloud Run itself refuses the etag (the read-before-write saw nothing).
	svc = e.read(t)
	claim = e.apply(t, svc.State, rollout.Command{Kind: rollout.Claim, Service: service, Image: canaryImage, Digest: canaryDigest,
		PublishTime: e.now, Stages: stages, Stable: svc.Serving, WindowOpen: true})
	e.emu.InjectFault("UpdateService", runemu.Fault{Code: codes.Aborted, Times: 1})
	if _, err := e.run.SetTraffic(ctxFor(t), svc, claim); !errors.Is(err, cloudrun.ErrConflict) || !cloudrun.Transient(err) {
		t.Fatalf("ABORTED update = %v, want transient ErrConflict", err)
	}
	e.emu.InjectFault("UpdateService", runemu.Fault{Code: codes.Unavailable, Times: 1})
	if _, err := e.run.SetTraffic(ctxFor(t), svc, claim); err == nil || !cloudrun.Transient(err) {
		t.Fatalf("UNAVAILABLE update = %v, want a transient error", err)
	}
	if got := e.read(t); got.State.Generation != 0 {
		t.Errorf("failed writes changed the state to generation %d", got.State.Generation)
	}
	if _, err := e.run.SetTraffic(ctxFor(t), svc, claim); err != nil {
		t.Fatalf("write after the faults cleared: %v", err)
	}

	// A write whose generation does not follow the one read is refused before any call.
	svc = e.read(t)
	skip := svc.State.Clone()
	skip.Generation += 2
	if _, err := e.run.SetTraffic(ctxFor(t), svc, skip); !errors.Is(err, cloudrun.ErrInvalid) {
		t.Errorf("write skipping a generation = %v, want ErrInvalid", err)
	}
}

func TestDeployRedeliveredAfterItsWrite(t *testing.T) {
	e := newEnv(t)
	ctx := ctxFor(t)
	svc := e.read(t)
	st := e.apply(t, svc.State, rollout.Command{Kind: rollout.Claim, Service: service, Image: canaryImage, Digest: canaryDigest,
		PublishTime: e.now, Stages: stages, Stable: svc.Serving, WindowOpen: true})
	svc, err := e.run.SetTraffic(ctx, svc, st)
	if err != nil {
		t.Fatal(err)
	}
	st = e.apply(t, svc.State, rollout.Command{Kind: rollout.BackupDone, Rollout: st.Rollout.ID, Backup: &rollout.Backup{Prefix: "p"}})
	if svc, err = e.run.SetTraffic(ctx, svc, st); err != nil {
		t.Fatal(err)
	}
	tmpl, err := e.run.StableTemplate(ctx, svc)
	if err != nil {
		t.Fatal(err)
	}
	name := cloudrun.CanaryName(service, canaryDigest, st.Rollout.Claimed)
	cmd := rollout.Command{Kind: rollout.CanaryCreated, Rollout: st.Rollout.ID, Generation: svc.State.Generation, Revision: name, Template: tmpl}
	next := e.apply(t, svc.State, cmd)
	// The update is applied but the caller sees an error, as when a
	// function dies between its write and its ack.
	e.emu.InjectFault("UpdateService", runemu.Fault{Code: codes.Unavailable, Times: 1, After: true})
	if _, err := e.run.Deploy(ctx, svc, next, cloudrun.DeployRequest{Image: canaryImage}); err == nil || !cloudrun.Transient(err) {
		t.Fatalf("Deploy with a lost reply = %v, want a transient error", err)
	}
	// Redelivery: the state says the step is applied; the revision is there.
	again := e.read(t)
	if res := rollout.Apply(again.State, cmd, e.now, rollout.Config{}); res.Outcome != rollout.Duplicate {
		t.Fatalf("redelivered deploy: %v (%s), want duplicate", res.Outcome, res.Reason)
	}
	rev, err := e.run.WaitRevision(ctx, service, name)
	if err != nil || !rev.Ready || rev.Image != canaryImage {
		t.Fatalf("WaitRevision = %+v, %v; want the canary ready", rev, err)
	}
	if got := e.revisionCount(t); got != 2 {
		t.Errorf("%d revisions after a redelivered deploy, want 2", got)
	}
}

func TestCanaryName(t *testing.T) {
	long := strings.Repeat("s", 49)
	tests := []struct {
		service string
		claimed int64
		want    string
	}{
		{"web", 5, "web-2222222-5"},
		{"web", 36, "web-2222222-10"},
		{long, 5, long + "-2222222-5"},
		{long, 1e9, long + "-222222-gjdgxs"},
	}
	for _, tt := range tests {
		got := cloudrun.CanaryName(tt.service, canaryDigest, tt.claimed)
		if got != tt.want {
			t.Errorf("CanaryName(%q, %d) = %q, want %q", tt.service, tt.claimed, got, tt.want)
		}
		if len(got) > 63 || !strings.HasPrefix(got, tt.service+"-") {
			t.Errorf("CanaryName(%q, %d) = %q: over 63 characters or not prefixed by the service", tt.service, tt.claimed, got)
		}
	}
	if cloudrun.CanaryName("web", canaryDigest, 5) == cloudrun.CanaryName("web", canaryDigest, 9) {
		t.Errorf("a retry (new claim) gets the same canary name")
	}
}

func TestServesState(t *testing.T) {
	st := rollout.State{Stable: "s-1", Previous: "s-0", Rollout: &rollout.Rollout{
		ID: "r", Phase: rollout.Progressing, Stage: 2, Stages: []int{10, 30, 100}, Canary: "s-2"}}
	for _, tc := range []struct {
		name  string
		split []cloudrun.Split
		want  bool
	}{
		{"as written", []cloudrun.Split{{Revision: "s-1", Percent: 70, Tag: "stable"}, {Revision: "s-2", Percent: 30, Tag: "canary"}, {Revision: "s-0", Tag: "previous"}}, true},
		{"the stage before", []cloudrun.Split{{Revision: "s-1", Percent: 90}, {Revision: "s-2", Percent: 10}}, false},
		{"all on stable", []cloudrun.Split{{Revision: "s-1", Percent: 100}}, false},
		{"previous serving", []cloudrun.Split{{Revision: "s-1", Percent: 60}, {Revision: "s-2", Percent: 30}, {Revision: "s-0", Percent: 10}}, false},
	} {
		svc := &cloudrun.Service{State: st, Split: tc.split}
		if got := svc.ServesState(); got != tc.want {
			t.Errorf("%s: ServesState() = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// traffic is one traffic-only write of a rollout (SetTraffic).
func (e *env) traffic(t *testing.T, svc *cloudrun.Service, c rollout.Command) (*cloudrun.Service, error) {
	t.Helper()
	c.Rollout, c.Generation = svc.State.Rollout.ID, svc.State.Generation
	return e.run.SetTraffic(ctxFor(t), svc, e.apply(t, svc.State, c))
}

// TestTrafficWritesNeverCreateRevisions: stages, a pause, a resume and the promotion send
// the template as read and create no revision; when Cloud Run refuses such a write
// (ALREADY_EXISTS), the write fails as invalid rather than send the template without its
// name, which would create one.
func TestTrafficWritesNeverCreateRevisions(t *testing.T) {
	e := newEnv(t)
	svc, err := e.deployed(t, canaryImage, canaryDigest)
	if err != nil {
		t.Fatalf("Deploy: %v", err)
	}
	canary := svc.Canary()
	revisions := e.revisionCount(t)
	check := func(what string) {
		t.Helper()
		_, _, raw := e.statuses(t)
		if got, want := raw.GetLatestCreatedRevision(), e.run.RevisionName(service, canary); got != want {
			t.Errorf("after %s: latest created revision %s, want %s", what, got, want)
		}
		if got, want := raw.GetTemplate().GetRevision(), canary; got != want {
			t.Errorf("after %s: template revision %q, want %q", what, got, want)
		}
		if got := e.revisionCount(t); got != revisions {
			t.Errorf("after %s: %d revisions, want %d", what, got, revisions)
		}
	}

	for _, step := range []struct {
		what string
		cmd  rollout.Command
	}{
		{"stage 1", rollout.Command{Kind: rollout.Shift, Stage: 1}},
		{"pause", rollout.Command{Kind: rollout.Pause, Reason: "look at the logs"}},
		{"resume", rollout.Command{Kind: rollout.Resume}},
		{"stage 2", rollout.Command{Kind: rollout.Shift, Stage: 2}},
	} {
		if svc, err = e.traffic(t, svc, step.cmd); err != nil {
			t.Fatalf("%s: %v", step.what, err)
		}
		check(step.what)
	}

	// Cloud Run refuses the template it was sent back (as it may when its defaults moved on).
	e.emu.InjectFault("UpdateService", runemu.Fault{Code: codes.AlreadyExists, Times: 1,
		Message: "Revision named '" + canary + "' with different configuration already exists."})
	before := e.read(t)
	_, err = e.traffic(t, svc, rollout.Command{Kind: rollout.Shift, Stage: 3})
	if !errors.Is(err, cloudrun.ErrInvalid) || cloudrun.Transient(err) {
		t.Errorf("stage 3 refused with ALREADY_EXISTS = %v, want permanent ErrInvalid", err)
	}
	check("the refused stage 3")
	if got := e.read(t); got.State.Generation != before.State.Generation || got.Etag != before.Etag {
		t.Errorf("the refused write changed the service: generation %d etag %s, want %d %s", got.State.Generation, got.Etag, before.State.Generation, before.Etag)
	}

	for _, step := range []struct {
		what string
		cmd  rollout.Command
	}{
		{"stage 3", rollout.Command{Kind: rollout.Shift, Stage: 3}},
		{"promotion", rollout.Command{Kind: rollout.Shift, Stage: 4}},
	} {
		if svc, err = e.traffic(t, svc, step.cmd); err != nil {
			t.Fatalf("%s: %v", step.what, err)
		}
		check(step.what)
	}
	if svc.State.Rollout.Phase != rollout.Promoted {
		t.Errorf("phase %s, want promoted", svc.State.Rollout.Phase)
	}
}

// rollback rolls the rollout of svc back (operator abort) and fails the test on error.
func (e *env) rollback(t *testing.T, svc *cloudrun.Service) *cloudrun.Service {
	t.Helper()
	st := e.apply(t, svc.State, rollout.Command{Kind: rollout.Rollback, Rollout: svc.State.Rollout.ID, Generation: svc.State.Generation, Reason: "operator abort"})
	after, err := e.run.Rollback(ctxFor(t), svc, st)
	if err != nil {
		t.Fatalf("Rollback: %v", err)
	}
	return after
}

// TestRollbackRestoresTheStableTemplateExactly: when the stable revision is the latest
// created, its template is the service's own, and a rollback restores it field for field,
// fields the Revision resource does not carry (health_check_disabled) included, without
// creating a revision.
func TestRollbackRestoresTheStableTemplateExactly(t *testing.T) {
	e := newEnvWith(t, func(tmpl *runpb.RevisionTemplate) {
		tmpl.HealthCheckDisabled = true
		tmpl.Annotations = map[string]string{"example.com/owner": "platform"}
	})
	_, _, before := e.statuses(t)
	svc, err := e.deployed(t, canaryImage, canaryDigest)
	if err != nil {
		t.Fatalf("Deploy: %v", err)
	}
	svc = e.shift(t, svc, 1)
	revisions := e.revisionCount(t)
	e.rollback(t, svc)

	percent, _, after := e.statuses(t)
	if percent[stableRev] != 100 || len(percent) != 1 {
		t.Errorf("after rollback: TrafficStatuses %v, want only %s at 100%%", percent, stableRev)
	}
	if got, want := after.GetTemplate(), before.GetTemplate(); !proto.Equal(got, want) {
		t.Errorf("template after rollback:\ngot  %v\nwant %v (as before the rollout)", got, want)
	}
	if got := e.revisionCount(t); got != revisions {
		t.Errorf("rollback created a revision: %d revisions, had %d", got, revisions)
	}
	if got, want := after.GetLatestCreatedRevision(), e.run.RevisionName(service, stableRev); got != want {
		t.Errorf("latest created revision %s, want %s", got, want)
	}
}

// TestRollbackAfterTheTemplateMovedOn: when another revision was created after the stable
// one (here a no-traffic deploy from outside coalmine), the stable template is rebuilt from
// the Revision resource. Without fields the Revision lacks, it is the stable revision's
// configuration and the rollback creates no revision; with one (health_check_disabled) it is
// lost, Cloud Run refuses the stable name (ALREADY_EXISTS), and the rollback writes the
// template without a name: one new revision, a copy at 0%, while traffic is all on stable.
func TestRollbackAfterTheTemplateMovedOn(t *testing.T) {
	for _, tc := range []struct {
		name              string
		healthCheckOff    bool
		wantNewRevisions  int
		wantTemplateNamed bool
	}{
		{"no field lost", false, 0, true},
		{"health_check_disabled lost", true, 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnvWith(t, func(tmpl *runpb.RevisionTemplate) { tmpl.HealthCheckDisabled = tc.healthCheckOff })
			// gcloud run deploy --no-traffic --revision-suffix other, from outside coalmine.
			_, _, raw := e.statuses(t)
			raw.Template.Revision = service + "-other"
			raw.Template.Containers[0].Env = append(raw.Template.Containers[0].Env, &runpb.EnvVar{Name: "EXTRA", Values: &runpb.EnvVar_Value{Value: "1"}})
			raw.Traffic = []*runpb.TrafficTarget{{Type: runpb.TrafficTargetAllocationType_TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION, Revision: stableRev, Percent: 100}}
			op, err := e.svcs.UpdateService(ctxFor(t), &runpb.UpdateServiceRequest{Service: raw})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := op.Wait(ctxFor(t)); err != nil {
				t.Fatal(err)
			}
			if got := e.read(t); got.LatestCreated != service+"-other" || got.Serving != stableRev {
				t.Fatalf("after the outside deploy: latest created %s serving %s, want %s-other and %s", got.LatestCreated, got.Serving, service, stableRev)
			}

			svc, err := e.deployed(t, canaryImage, canaryDigest)
			if err != nil {
				t.Fatalf("Deploy: %v", err)
			}
			revisions := e.revisionCount(t)
			svc = e.rollback(t, svc)

			if got, want := e.revisionCount(t), revisions+tc.wantNewRevisions; got != want {
				t.Errorf("%d revisions after the rollback, want %d", got, want)
			}
			percent, _, after := e.statuses(t)
			if percent[stableRev] != 100 || len(percent) != 1 {
				t.Errorf("after rollback: TrafficStatuses %v, want only %s at 100%%", percent, stableRev)
			}
			tmpl := after.GetTemplate()
			if got := tmpl.GetRevision() == stableRev; got != tc.wantTemplateNamed {
				t.Errorf("template revision %q: named %s = %v, want %v", tmpl.GetRevision(), stableRev, got, tc.wantTemplateNamed)
			}
			if got := tmpl.GetContainers()[0].GetImage(); got != stableImage {
				t.Errorf("template image %s, want %s", got, stableImage)
			}
			if tmpl.GetHealthCheckDisabled() {
				t.Errorf("template has health_check_disabled; the rebuilt template cannot carry it")
			}
			if svc.Serving != stableRev {
				t.Errorf("serving %s, want %s", svc.Serving, stableRev)
			}
		})
	}
}
