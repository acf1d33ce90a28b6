package runemu_test

import (
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/ai-square/coalmine/infra/local/runemu"
)

// TestFailedRevisionNeverServes: a revision that cannot start fails the operation, keeps
// the old routing (statuses unchanged, every request served by the old revision) and says
// why in its Ready condition.
func TestFailedRevisionNeverServes(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		image      string
		opts       runemu.Options
		canary     bool // no-traffic deploy with a tag, else a plain deploy (100% LATEST)
		wantReason string
		wantInMsg  string
	}{
		{"program exits at start", imageBroken, fastOpts(), false, runemu.ReasonContainerFailedToStart, "SAMPLE_FAIL_START=true"},
		{"program exits at start, canary", imageBroken, runemu.Options{}, true, runemu.ReasonContainerFailedToStart, "exit status 1"},
		{"unregistered image", "europe-docker.pkg.dev/local-project/apps/app:missing", fastOpts(), false, runemu.ReasonImageNotFound, "app:missing"},
		{"unregistered image, canary", "europe-docker.pkg.dev/local-project/apps/app:missing", fastOpts(), true, runemu.ReasonImageNotFound, "not found"},
		{"never listens", "sleeper", runemu.Options{StartTimeout: 300 * time.Millisecond, OperationPollHold: 10 * time.Second}, true, runemu.ReasonHealthCheckTimeout, "within the allocated timeout"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, tc.opts)
			e.srv.Registry().Register("sleeper", runemu.Image{Command: []string{"/bin/sh", "-c", "echo napping >&2; sleep 30"}})
			before := e.create(t, "svc", &runpb.Service{Template: template("svc-stable", imageA)})

			next := proto.CloneOf(before)
			next.Template = template("svc-bad", tc.image)
			if tc.canary {
				next.Traffic = pinnedTraffic(before, "svc-bad", "canary")
			}
			_, err := e.update(t, next)
			if got, want := codeOf(err), codes.FailedPrecondition; got != want {
				t.Fatalf("op.Wait: code %v (%v), want %v", got, err, want)
			}
			if want := "Revision 'svc-bad' is not ready and cannot serve traffic."; !strings.Contains(err.Error(), want) {
				t.Errorf("op.Wait error %q does not contain %q", err, want)
			}

			after := e.get(t, "svc")
			if diff := cmpStatuses(after.GetTrafficStatuses(), before.GetTrafficStatuses()); diff != "" {
				t.Errorf("traffic statuses changed after a failed deploy:\n%s", diff)
			}
			for _, c := range []struct{ field, got, want string }{
				{"LatestReadyRevision", after.GetLatestReadyRevision(), e.revisionName("svc", "svc-stable")},
				{"LatestCreatedRevision", after.GetLatestCreatedRevision(), e.revisionName("svc", "svc-bad")},
				{"Template.Revision (spec as submitted)", after.GetTemplate().GetRevision(), "svc-bad"},
				{"TerminalCondition.State", after.GetTerminalCondition().GetState().String(), runpb.Condition_CONDITION_FAILED.String()},
			} {
				if c.got != c.want {
					t.Errorf("after the failed deploy: %s = %q, want %q", c.field, c.got, c.want)
				}
			}
			if after.GetReconciling() || after.GetObservedGeneration() != after.GetGeneration() {
				t.Errorf("after the failed deploy: reconciling %v, observed %d, generation %d", after.GetReconciling(), after.GetObservedGeneration(), after.GetGeneration())
			}
			if !strings.Contains(after.GetTerminalCondition().GetMessage(), "svc-bad") {
				t.Errorf("terminal condition message %q does not name the revision", after.GetTerminalCondition().GetMessage())
			}

			rev, err := e.revs.GetRevision(testCtx(t), &runpb.GetRevisionRequest{Name: e.revisionName("svc", "svc-bad")})
			if err != nil {
				t.Fatalf("GetRevision: %v", err)
			}
			ready := readyCondition(rev.GetConditions())
			if ready.GetState() != runpb.Condition_CONDITION_FAILED || !strings.HasPrefix(ready.GetMessage(), tc.wantReason+":") || !strings.Contains(ready.GetMessage(), tc.wantInMsg) {
				t.Errorf("revision Ready condition %v; want FAILED with a message starting %q and containing %q", ready, tc.wantReason+":", tc.wantInMsg)
			}
			if e.srv.PIDs()["svc-bad"] != 0 {
				t.Errorf("a process of the failed revision is still running: %v", e.srv.PIDs())
			}

			byRev, byStatus := hits(t, after.GetUri(), 50)
			if byRev["svc-stable"] != 50 || byStatus[200] != 50 {
				t.Errorf("after the failed deploy: requests by revision %v, by status %v; want all 50 served by svc-stable", byRev, byStatus)
			}
			for _, r := range e.srv.Requests("svc") {
				if r.Revision == "svc-bad" {
					t.Fatalf("recorded a request routed to the failed revision: %+v", r)
				}
			}
		})
	}
}

// TestRevisionRules covers explicit-name reuse (the rollback that restores the stable
// template), deletion preconditions, and a process that dies after becoming ready.
func TestRevisionRules(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fastOpts())
	stable := e.create(t, "svc", &runpb.Service{Template: template("svc-stable", imageA)})
	stableTemplate := proto.CloneOf(stable.GetTemplate())

	canary := proto.CloneOf(stable)
	canary.Template = template("svc-canary", imageB)
	canary.Traffic = pinnedTraffic(stable, "svc-canary", "canary")
	canary = e.mustUpdate(t, canary)

	// Deletion preconditions.
	for _, c := range []struct {
		rev, why string
	}{
		{"svc-stable", "serving traffic"},
		{"svc-canary", "tag (and latest created)"},
	} {
		_, err := e.revs.DeleteRevision(testCtx(t), &runpb.DeleteRevisionRequest{Name: e.revisionName("svc", c.rev)})
		if got, want := codeOf(err), codes.FailedPrecondition; got != want {
			t.Errorf("DeleteRevision(%s, %s): code %v (%v), want %v", c.rev, c.why, got, err, want)
		}
	}

	// Rollback: traffic back to stable and the stable template restored (same explicit name,
	// same template): no new revision, latest created/ready move back to stable.
	rollback := proto.CloneOf(canary)
	rollback.Template = stableTemplate
	rollback.Traffic = []*runpb.TrafficTarget{{Type: revision, Revision: "svc-stable", Percent: 100}}
	rolled := e.mustUpdate(t, rollback)
	for _, c := range []struct{ field, got, want string }{
		{"LatestCreatedRevision", rolled.GetLatestCreatedRevision(), e.revisionName("svc", "svc-stable")},
		{"LatestReadyRevision", rolled.GetLatestReadyRevision(), e.revisionName("svc", "svc-stable")},
	} {
		if c.got != c.want {
			t.Errorf("after rollback: %s = %q, want %q", c.field, c.got, c.want)
		}
	}
	if got, want := len(listRevisions(t, e, "svc")), 2; got != want {
		t.Errorf("after rollback: %d revisions, want %d", got, want)
	}

	// The canary is now unreferenced: it can be deleted and its process stops.
	pid := e.srv.PIDs()["svc-canary"]
	op, err := e.revs.DeleteRevision(testCtx(t), &runpb.DeleteRevisionRequest{Name: e.revisionName("svc", "svc-canary")})
	if err != nil {
		t.Fatalf("DeleteRevision(svc-canary): %v", err)
	}
	if _, err := op.Wait(testCtx(t)); err != nil {
		t.Fatalf("DeleteRevision op.Wait: %v", err)
	}
	assertGone(t, pid)
	if _, err := e.revs.GetRevision(testCtx(t), &runpb.GetRevisionRequest{Name: e.revisionName("svc", "svc-canary")}); codeOf(err) != codes.NotFound {
		t.Errorf("GetRevision after delete: %v, want NotFound", err)
	}

	// A ready revision whose process dies is marked not ready and its traffic gets 503s.
	pid = e.srv.PIDs()["svc-stable"]
	if pid == 0 {
		t.Fatalf("no process for svc-stable: %v", e.srv.PIDs())
	}
	if err := killPID(pid); err != nil {
		t.Fatalf("kill %d: %v", pid, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		rev, err := e.revs.GetRevision(testCtx(t), &runpb.GetRevisionRequest{Name: e.revisionName("svc", "svc-stable")})
		if err != nil {
			t.Fatalf("GetRevision: %v", err)
		}
		c := readyCondition(rev.GetConditions())
		if c.GetState() == runpb.Condition_CONDITION_FAILED {
			if !strings.HasPrefix(c.GetMessage(), runemu.ReasonContainerExited+":") {
				t.Errorf("Ready condition message %q, want prefix %s:", c.GetMessage(), runemu.ReasonContainerExited)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("revision still %v 5s after its process was killed", c)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, byStatus := hits(t, rolled.GetUri(), 10); byStatus[503] != 10 {
		t.Errorf("requests to a dead revision: statuses %v, want 10 × 503", byStatus)
	}
}
