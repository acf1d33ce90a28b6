package runemu_test

import (
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/api/iterator"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
)

// sameSpec fails the test when two reads of a service differ in what an update changes.
func sameSpec(t *testing.T, what string, got, want *runpb.Service) {
	t.Helper()
	if got.GetGeneration() != want.GetGeneration() || got.GetEtag() != want.GetEtag() {
		t.Errorf("%s: generation %d etag %s, want generation %d etag %s", what, got.GetGeneration(), got.GetEtag(), want.GetGeneration(), want.GetEtag())
	}
	for _, c := range []struct {
		field     string
		got, want proto.Message
	}{
		{"template", got.GetTemplate(), want.GetTemplate()},
		{"traffic", &runpb.Service{Traffic: got.GetTraffic()}, &runpb.Service{Traffic: want.GetTraffic()}},
		{"traffic statuses", &runpb.Service{TrafficStatuses: got.GetTrafficStatuses()}, &runpb.Service{TrafficStatuses: want.GetTrafficStatuses()}},
		{"labels and annotations", &runpb.Service{Labels: got.GetLabels(), Annotations: got.GetAnnotations()}, &runpb.Service{Labels: want.GetLabels(), Annotations: want.GetAnnotations()}},
	} {
		if !proto.Equal(c.got, c.want) {
			t.Errorf("%s: %s changed:\ngot  %v\nwant %v", what, c.field, c.got, c.want)
		}
	}
}

// TestUpdateWithStaleEtagIsAborted: an update carrying an etag read before another write
// fails with ABORTED and changes nothing; an empty etag is accepted.
func TestUpdateWithStaleEtagIsAborted(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fastOpts())
	e.create(t, "svc", &runpb.Service{Template: template("svc-stable", imageA)})

	first := e.get(t, "svc")
	other := proto.CloneOf(first)
	other.Labels = map[string]string{"writer": "other"}
	e.mustUpdate(t, other)
	before := e.get(t, "svc")
	if before.GetEtag() == first.GetEtag() {
		t.Fatalf("etag did not change after an update: %s", before.GetEtag())
	}

	stale := proto.CloneOf(first)
	stale.Annotations = map[string]string{"coalmine.dev/rollout": `{"generation":2}`}
	stale.Template = template("svc-canary", imageB)
	stale.Traffic = pinnedTraffic(first, "svc-canary", "canary")
	_, err := e.svcs.UpdateService(testCtx(t), &runpb.UpdateServiceRequest{Service: stale})
	if got, want := codeOf(err), codes.Aborted; got != want {
		t.Fatalf("UpdateService with a stale etag: code %v (%v), want %v", got, err, want)
	}
	sameSpec(t, "after the stale update", e.get(t, "svc"), before)
	if pids := e.srv.PIDs(); pids["svc-canary"] != 0 {
		t.Errorf("stale update started revision svc-canary (pid %d)", pids["svc-canary"])
	}

	// The current etag, and no etag at all, are accepted.
	cur := e.get(t, "svc")
	cur.Labels = map[string]string{"writer": "fresh"}
	e.mustUpdate(t, cur)
	noEtag := e.get(t, "svc")
	noEtag.Etag = ""
	noEtag.Labels = map[string]string{"writer": "blind"}
	if got := e.mustUpdate(t, noEtag); got.GetLabels()["writer"] != "blind" {
		t.Errorf("update without etag: labels %v, want writer=blind", got.GetLabels())
	}
}

// listServices lists every service of the env's location.
func listServices(t *testing.T, e *env) []*runpb.Service {
	t.Helper()
	var out []*runpb.Service
	it := e.svcs.ListServices(testCtx(t), &runpb.ListServicesRequest{Parent: e.parent, PageSize: 2})
	for {
		s, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return out
		}
		if err != nil {
			t.Fatalf("ListServices: %v", err)
		}
		out = append(out, s)
	}
}

// listRevisions lists the revisions of service id ("-" for all).
func listRevisions(t *testing.T, e *env, id string) []*runpb.Revision {
	t.Helper()
	var out []*runpb.Revision
	it := e.revs.ListRevisions(testCtx(t), &runpb.ListRevisionsRequest{Parent: e.serviceName(id), PageSize: 2})
	for {
		r, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return out
		}
		if err != nil {
			t.Fatalf("ListRevisions(%s): %v", id, err)
		}
		out = append(out, r)
	}
}

// TestServiceLifecycle covers listing, generated revision names, no-op updates, forced
// revisions, upserts, update masks and deletion.
func TestServiceLifecycle(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fastOpts())
	a := e.create(t, "alpha", &runpb.Service{Template: template("", imageA)})
	e.create(t, "beta", &runpb.Service{Template: template("", imageA)})
	e.create(t, "gamma", &runpb.Service{Template: template("", imageA)})

	var names []string
	for _, s := range listServices(t, e) {
		names = append(names, lastSegment(s.GetName()))
	}
	if got, want := strings.Join(names, ","), "gamma,beta,alpha"; got != want {
		t.Errorf("ListServices order = %s, want %s (newest first)", got, want)
	}

	generated := regexp.MustCompile(`^alpha-0000(\d)-[a-z]{3}$`)
	if m := generated.FindStringSubmatch(lastSegment(a.GetLatestCreatedRevision())); m == nil || m[1] != "1" {
		t.Errorf("first generated revision name %q, want alpha-00001-xyz", a.GetLatestCreatedRevision())
	}

	// The same template again creates no revision but still bumps the generation.
	same := e.mustUpdate(t, proto.CloneOf(a))
	if got, want := same.GetLatestCreatedRevision(), a.GetLatestCreatedRevision(); got != want {
		t.Errorf("unchanged template: latest created %q, want %q (no new revision)", got, want)
	}
	if got, want := same.GetGeneration(), a.GetGeneration()+1; got != want {
		t.Errorf("unchanged template: generation %d, want %d", got, want)
	}

	// ForceNewRevision creates one from the same template.
	op, err := e.svcs.UpdateService(testCtx(t), &runpb.UpdateServiceRequest{Service: same, ForceNewRevision: true})
	if err != nil {
		t.Fatalf("UpdateService(force): %v", err)
	}
	forced, err := op.Wait(testCtx(t))
	if err != nil {
		t.Fatalf("UpdateService(force) op.Wait: %v", err)
	}
	if m := generated.FindStringSubmatch(lastSegment(forced.GetLatestCreatedRevision())); m == nil || m[1] != "2" {
		t.Errorf("forced revision name %q, want alpha-00002-xyz", forced.GetLatestCreatedRevision())
	}
	if got, want := len(listRevisions(t, e, "alpha")), 2; got != want {
		t.Errorf("alpha has %d revisions, want %d", got, want)
	}
	if got, want := len(listRevisions(t, e, "-")), 4; got != want {
		t.Errorf("services/- lists %d revisions, want %d", got, want)
	}

	// A template change makes a new generated revision; env reaches the process.
	changed := proto.CloneOf(forced)
	changed.Template = template("", imageA, "GREETING", "hi")
	changed = e.mustUpdate(t, changed)
	if m := generated.FindStringSubmatch(lastSegment(changed.GetLatestCreatedRevision())); m == nil || m[1] != "3" {
		t.Errorf("changed-template revision name %q, want alpha-00003-xyz", changed.GetLatestCreatedRevision())
	}

	// Update mask: only the named field changes.
	masked := proto.CloneOf(changed)
	masked.Labels = map[string]string{"team": "platform"}
	masked.Template = template("", imageB)
	op, err = e.svcs.UpdateService(testCtx(t), &runpb.UpdateServiceRequest{Service: masked, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"labels"}}})
	if err != nil {
		t.Fatalf("UpdateService(mask labels): %v", err)
	}
	got, err := op.Wait(testCtx(t))
	if err != nil {
		t.Fatalf("UpdateService(mask labels) op.Wait: %v", err)
	}
	if got.GetLabels()["team"] != "platform" || !proto.Equal(got.GetTemplate(), changed.GetTemplate()) {
		t.Errorf("masked update: labels %v template %v; want team=platform and the template unchanged", got.GetLabels(), got.GetTemplate())
	}

	// AllowMissing creates a missing service.
	op, err = e.svcs.UpdateService(testCtx(t), &runpb.UpdateServiceRequest{
		Service:      &runpb.Service{Name: e.serviceName("delta"), Template: template("delta-v1", imageA)},
		AllowMissing: true,
	})
	if err != nil {
		t.Fatalf("UpdateService(allow missing): %v", err)
	}
	delta, err := op.Wait(testCtx(t))
	if err != nil {
		t.Fatalf("UpdateService(allow missing) op.Wait: %v", err)
	}
	if got, want := delta.GetLatestReadyRevision(), e.revisionName("delta", "delta-v1"); got != want {
		t.Errorf("upserted service: latest ready %q, want %q", got, want)
	}

	// Delete stops the processes and the proxy; Get then answers NOT_FOUND.
	pid := e.srv.PIDs()["delta-v1"]
	if pid == 0 {
		t.Fatalf("no process for delta-v1 in %v", e.srv.PIDs())
	}
	dop, err := e.svcs.DeleteService(testCtx(t), &runpb.DeleteServiceRequest{Name: e.serviceName("delta")})
	if err != nil {
		t.Fatalf("DeleteService: %v", err)
	}
	if _, err := e.svcs.GetService(testCtx(t), &runpb.GetServiceRequest{Name: e.serviceName("delta")}); codeOf(err) != codes.NotFound {
		t.Errorf("GetService after delete: %v, want NotFound", err)
	}
	deleted, err := dop.Wait(testCtx(t))
	if err != nil {
		t.Fatalf("DeleteService op.Wait: %v", err)
	}
	if deleted.GetName() != e.serviceName("delta") {
		t.Errorf("DeleteService response name %q, want %q", deleted.GetName(), e.serviceName("delta"))
	}
	assertGone(t, pid)
	if err := getErr(delta.GetUri()); err == nil {
		t.Errorf("GET %s after delete: got a response, want a connection error", delta.GetUri())
	}
}

// TestReconcilingWhileUpdating: an update's operation and the service show reconciling
// until the new revision is up; queued updates are applied in order.
func TestReconcilingWhileUpdating(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fastOpts())
	e.srv.Registry().Register("slow", slowImage(t, 300*time.Millisecond))
	svc := e.create(t, "svc", &runpb.Service{Template: template("svc-v1", imageA)})

	ctx := testCtx(t)
	first := proto.CloneOf(svc)
	first.Template = template("svc-v2", "slow")
	op1, err := e.svcs.UpdateService(ctx, &runpb.UpdateServiceRequest{Service: first})
	if err != nil {
		t.Fatalf("UpdateService(v2): %v", err)
	}
	md, err := op1.Metadata()
	if err != nil || md == nil {
		t.Fatalf("operation metadata: %v, %v", md, err)
	}
	if !md.GetReconciling() || md.GetGeneration() != svc.GetGeneration()+1 {
		t.Errorf("operation metadata: reconciling %v generation %d, want true and %d", md.GetReconciling(), md.GetGeneration(), svc.GetGeneration()+1)
	}
	if !strings.HasPrefix(op1.Name(), e.parent+"/operations/") {
		t.Errorf("operation name %q, want prefix %s/operations/", op1.Name(), e.parent)
	}
	mid := e.get(t, "svc")
	if !mid.GetReconciling() || mid.GetObservedGeneration() != svc.GetGeneration() ||
		mid.GetTerminalCondition().GetState() != runpb.Condition_CONDITION_RECONCILING {
		t.Errorf("during the update: reconciling %v observed %d terminal %v; want true, %d, RECONCILING",
			mid.GetReconciling(), mid.GetObservedGeneration(), mid.GetTerminalCondition().GetState(), svc.GetGeneration())
	}
	if got, want := mid.GetLatestReadyRevision(), e.revisionName("svc", "svc-v1"); got != want {
		t.Errorf("during the update: latest ready %q, want %q", got, want)
	}

	// A second update queued behind the first; the latest etag is accepted.
	second := proto.CloneOf(mid)
	second.Template = template("svc-v3", "slow")
	op2, err := e.svcs.UpdateService(ctx, &runpb.UpdateServiceRequest{Service: second})
	if err != nil {
		t.Fatalf("UpdateService(v3): %v", err)
	}
	if _, err := op1.Wait(ctx); err != nil {
		t.Fatalf("op1.Wait: %v", err)
	}
	done, err := op2.Wait(ctx)
	if err != nil {
		t.Fatalf("op2.Wait: %v", err)
	}
	if got, want := done.GetLatestReadyRevision(), e.revisionName("svc", "svc-v3"); got != want {
		t.Errorf("after both updates: latest ready %q, want %q", got, want)
	}
	if done.GetReconciling() || done.GetObservedGeneration() != done.GetGeneration() || done.GetGeneration() != svc.GetGeneration()+2 {
		t.Errorf("after both updates: reconciling %v observed %d generation %d; want false, equal, %d",
			done.GetReconciling(), done.GetObservedGeneration(), done.GetGeneration(), svc.GetGeneration()+2)
	}
	if byRev, _ := hits(t, done.GetUri(), 20); byRev["svc-v3"] != 20 {
		t.Errorf("after both updates: requests served by %v, want all by svc-v3", byRev)
	}
}
