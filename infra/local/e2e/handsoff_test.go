package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	scheduler "cloud.google.com/go/scheduler/apiv1"
	"cloud.google.com/go/scheduler/apiv1/schedulerpb"
	"google.golang.org/api/iterator"

	"github.com/ai-square/coalmine/events"
	"github.com/ai-square/coalmine/infra/local/pubsubemu"
	"github.com/ai-square/coalmine/shared/rollout"
)

// handsOffPolicy judges with gates a few hundred requests can pass (the defaults need
// thousands at a 10% stage), bakes each stage 2s, and rolls back through a command hook
// that leaves a file behind. %s is the gates and alerts block, %s the hook's file.
const handsOffPolicy = `
services:
  - name: ai-square
    project: local-project
    region: local
    images: [local.dev/ai-square/web]
    stages:
      - {percent: 10, bake: 2s}
      - {percent: 50, bake: 2s}
      - {percent: 100}
%s
    windows:
      deny: []
    backup:
      required: false
    rollback:
      hook: {command: [/usr/bin/touch, %q], timeout: 30s}
    deadlines:
      stage: %s
`

// gatesOn: the judge decides; no alert policy.
const gatesOn = `    gates:
      minRequests: 100
      errorRate: {max: 0.02, maxIncreaseOverStable: 0.02}
      latencyP95: {maxMs: 1000, maxRatioToStable: 0}
      ingestionDelay: 0s
    alerts: []`

// gatesOffAlertsOn: the judge never decides (no minimum met, error gates off); the local
// alert policies do.
const gatesOffAlertsOn = `    gates:
      minRequests: 1000000000
      errorRate: {max: 1, maxIncreaseOverStable: 1}
      latencyP95: {maxMs: 60000, maxRatioToStable: 0}
      ingestionDelay: 0s
    alerts:
      - {policy: "ai-square error rate > 2%", action: rollback, errorRateAbove: 0.02, for: 0s}
      - {policy: "ai-square p95 > 2000ms", action: pause, latencyP95AboveMs: 2000, for: 0s}`

func handsOff(t *testing.T, gates, stageDeadline string) (pol, hookFile string) {
	t.Helper()
	hookFile = filepath.Join(t.TempDir(), "rolled-back")
	return fmt.Sprintf(handsOffPolicy, gates, hookFile, stageDeadline), hookFile
}

// steadyLoad sends requests to url from n clients until the test ends (or stop).
func steadyLoad(t *testing.T, url string, n int) (stop func()) {
	t.Helper()
	var loads []*load
	for range n {
		loads = append(loads, startLoad(url))
	}
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		for _, l := range loads {
			l.finish()
		}
	}
	t.Cleanup(stop)
	return stop
}

// tickJobs lists the per-rollout tick jobs through the official Cloud Scheduler client.
func (h *harness) tickJobs() []string {
	h.t.Helper()
	ctx := context.Background()
	c, err := scheduler.NewCloudSchedulerClient(ctx, h.cloud.Scheduler.ClientOptions()...)
	if err != nil {
		h.t.Fatalf("scheduler client: %v", err)
	}
	defer c.Close()
	it := c.ListJobs(ctx, &schedulerpb.ListJobsRequest{Parent: fmt.Sprintf("projects/%s/locations/%s", h.cloud.Project, region)})
	var out []string
	for {
		j, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return out
		}
		if err != nil {
			h.t.Fatalf("ListJobs: %v", err)
		}
		if id := lastSegment(j.GetName()); strings.HasPrefix(id, events.TickJobPrefix) {
			out = append(out, id)
		}
	}
}

// waitJobs waits until the tick jobs are exactly want.
func (h *harness) waitJobs(what string, want ...string) {
	h.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var got []string
	for time.Now().Before(deadline) {
		if got = h.tickJobs(); slices.Equal(got, want) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	h.t.Fatalf("tick jobs %s: got %v, want %v", what, got, want)
}

func hookRan(t *testing.T, file string) {
	t.Helper()
	if _, err := os.Stat(file); err != nil {
		t.Errorf("the rollback hook did not run: %v", err)
	}
}

// entries returns the rollout's history entries of kind k.
func entries(st rollout.State, id string, k rollout.Kind) []rollout.Entry {
	var out []rollout.Entry
	for _, e := range historyOf(st, id) {
		if e.Kind == k {
			out = append(out, e)
		}
	}
	return out
}

// TestHandsOffPromotion: a good image pushed and never touched again is promoted through
// every stage by its tick job and the gates, while requests flow; the history shows each
// verdict that moved it; the rollout's tick job exists only while it is in progress.
func TestHandsOffPromotion(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend pubsubemu.Backend) {
		pol, _ := handsOff(t, gatesOn, "10m")
		h := start(t, backend, options{policy: pol, ticks: true})
		if got := h.tickJobs(); len(got) != 0 {
			t.Fatalf("tick jobs before any rollout: %v, want none", got)
		}
		steadyLoad(t, h.service().GetUri(), 4)
		image := h.push(repo + ":good")
		v := h.waitPhase(rollout.Progressing, 1)
		id := v.state.Rollout.ID
		h.waitJobs("during the rollout", events.TickJobID(service, id))
		v = h.waitFor("promotion by the gates", func(v view) bool { return v.phase() == rollout.Promoted || v.state.Rollout.Phase.Terminal() })
		if v.phase() != rollout.Promoted {
			t.Fatalf("phase %s (%s), want promoted", v.phase(), reasonOf(v))
		}
		if got := v.state.Rollout.Image; got != image {
			t.Errorf("promoted image %s, want %s", got, image)
		}
		shifts := entries(v.state, id, rollout.Shift)
		if len(shifts) != 3 {
			t.Fatalf("shifts in the history: %+v, want 3 (stage 1 by Deploy, 2 and 3 by the gates)", shifts)
		}
		for _, e := range shifts[1:] {
			if !strings.HasPrefix(e.Reason, "gates healthy") || e.Actor != events.FunctionVerify {
				t.Errorf("shift to stage %d: by %q (%q), want by %s saying the gates are healthy", e.Stage, e.Actor, e.Reason, events.FunctionVerify)
			}
		}
		var healthy []int
		for _, e := range entries(v.state, id, rollout.Judged) {
			if strings.HasPrefix(e.Reason, "verdict healthy") {
				healthy = append(healthy, e.Stage)
			}
		}
		if !slices.Equal(healthy, []int{1, 2}) {
			t.Errorf("healthy verdicts in the history at stages %v, want [1 2]", healthy)
		}
		h.waitJobs("after the rollout")
		out := h.cli("status", service)
		if !strings.Contains(out, "verdict    HEALTHY at stage 2") {
			t.Errorf("status does not show the last verdict:\n%s", out)
		}
	})
}

// TestJudgeRollsBackAndPauses: a canary failing 5% of its requests is rolled back by the
// judge (its error-rate gate says rollback), the rollback hook included, with no operator
// and no alert policy; a canary 2.5s slow is paused (its latency gate says pause).
func TestJudgeRollsBackAndPauses(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend pubsubemu.Backend) {
		pol, hookFile := handsOff(t, gatesOn, "10m")
		h := start(t, backend, options{policy: pol, ticks: true})
		stop := steadyLoad(t, h.service().GetUri(), 4)
		h.push(repo+":bad", "--error-rate", "0.05")
		id := h.waitPhase(rollout.Progressing, 1).state.Rollout.ID
		v := h.waitPhase(rollout.RolledBack, 1)
		rb := entries(v.state, id, rollout.Rollback)
		if len(rb) != 1 || rb[0].Actor != events.FunctionVerify || !strings.Contains(rb[0].Reason, "gates failed") || !strings.Contains(rb[0].Reason, "errorRate") {
			t.Errorf("rollback entries %+v, want one by %s naming the failed errorRate gate", rb, events.FunctionVerify)
		}
		hookRan(t, hookFile)
		stop()

		// 2.5s per request: 16 clients keep the canary busy.
		steadyLoad(t, h.service().GetUri(), 16)
		h.push(repo+":slow", "--latency-ms", "2500")
		v = h.waitFor("the slow canary paused", func(v view) bool { return v.state.Rollout.ID != id && v.phase() == rollout.Paused })
		p := entries(v.state, v.state.Rollout.ID, rollout.Pause)
		if len(p) != 1 || p[0].Actor != events.FunctionVerify || !strings.Contains(p[0].Reason, "latencyP95") {
			t.Errorf("pause entries %+v, want one by %s naming latencyP95", p, events.FunctionVerify)
		}
		if vd := v.state.Rollout.Verdict; vd == nil || vd.Status != rollout.VerdictUnhealthy || vd.Action != "pause" {
			t.Errorf("last verdict %+v, want unhealthy → pause", vd)
		}
	})
}

// TestNoRequestsNeverPromoted: a canary nobody calls is inconclusive at every tick and is
// never promoted; the stage deadline's watchdog rolls it back. The sweep re-creates its tick
// job when the job is lost.
func TestNoRequestsNeverPromoted(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend pubsubemu.Backend) {
		pol, _ := handsOff(t, gatesOn, "12s")
		h := start(t, backend, options{policy: pol, ticks: true, sweep: everySecond})
		h.push(repo + ":quiet")
		id := h.waitPhase(rollout.Progressing, 1).state.Rollout.ID
		job := events.TickJobID(service, id)
		h.waitJobs("during the rollout", job)
		// Lose the job: the sweep makes it again.
		ctx := context.Background()
		c, err := scheduler.NewCloudSchedulerClient(ctx, h.cloud.Scheduler.ClientOptions()...)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		name := fmt.Sprintf("projects/%s/locations/%s/jobs/%s", h.cloud.Project, region, job)
		if err := c.DeleteJob(ctx, &schedulerpb.DeleteJobRequest{Name: name}); err != nil {
			t.Fatalf("DeleteJob: %v", err)
		}
		h.waitJobs("after the sweep", job)
		v := h.waitFor("the watchdog's rollback", func(v view) bool { return v.state.Rollout.Phase.Terminal() })
		if v.phase() != rollout.RolledBack {
			t.Fatalf("phase %s (%s), want rolled back by the stage deadline", v.phase(), reasonOf(v))
		}
		if s := entries(v.state, id, rollout.Shift); len(s) != 1 {
			t.Errorf("shifts %+v: a canary with no requests moved past stage 1", s)
		}
		if j := entries(v.state, id, rollout.Judged); len(j) == 0 || !strings.HasPrefix(j[0].Reason, "verdict inconclusive") {
			t.Errorf("verdicts %+v, want inconclusive", j)
		}
		if rb := entries(v.state, id, rollout.Republish); len(rb) == 0 || !strings.Contains(rb[0].Reason, "no progress at stage 1") {
			t.Errorf("watchdog entries %+v, want the stage deadline's rollback", rb)
		}
		h.waitJobs("after the rollout")
	})
}

// incident is a Cloud Monitoring notification (schema 1.2) for the test service, built on
// the fixture: state, policy, revision (omitted when empty) and start time set.
func incident(t *testing.T, id, state, policy, svc, revision string, started time.Time) []byte {
	t.Helper()
	b, err := os.ReadFile("../../../events/testdata/monitoring-incident-open-cloudrun.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	inc := doc["incident"].(map[string]any)
	inc["incident_id"], inc["state"], inc["policy_name"], inc["started_at"] = id, state, policy, started.Unix()
	if state == events.IncidentClosed {
		inc["ended_at"] = started.Add(time.Minute).Unix()
	}
	labels := inc["resource"].(map[string]any)["labels"].(map[string]any)
	labels["service_name"], labels["project_id"] = svc, project
	delete(labels, "revision_name")
	if revision != "" {
		labels["revision_name"] = revision
	}
	out, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (h *harness) alert(data []byte) {
	h.t.Helper()
	if _, err := h.cloud.Bus.Publish(context.Background(), events.TopicAlerts, data, nil); err != nil {
		h.t.Fatalf("publish to %s: %v", events.TopicAlerts, err)
	}
}

// waitLogged waits until function logs a message containing text.
func (h *harness) waitLogged(function, text string) {
	h.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if h.logged(function, text) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	h.t.Fatalf("%s never logged %q", function, text)
}

// TestAlertRollsBack: with the gates unable to decide, the local alert policy's incident
// rolls back a canary failing 5% of its requests through the Alert function, hook
// included. Before that, notifications that must change nothing change nothing: a closed
// incident, a console test notification, an incident for another service, one for an
// alert policy the service does not list; and after it, the replayed open incident.
func TestAlertRollsBack(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend pubsubemu.Backend) {
		pol, hookFile := handsOff(t, gatesOffAlertsOn, "10m")
		// No ticks: nothing but the notifications may write the state.
		h := start(t, backend, options{policy: pol})
		if got := len(h.cloud.Alerts.Created); got != 2 {
			t.Fatalf("alert policies created: %v, want 2", h.cloud.Alerts.Created)
		}
		h.push(repo+":bad", "--error-rate", "0.05")
		v := h.waitPhase(rollout.Progressing, 1)
		id, canary, gen := v.state.Rollout.ID, v.state.Rollout.Canary, v.state.Generation
		now := time.Now()
		test, err := os.ReadFile("../../../events/testdata/monitoring-notification-test-payload.json")
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range []struct {
			data []byte
			log  string
		}{
			{incident(t, "0.closed", events.IncidentClosed, "ai-square error rate > 2%", service, canary, now), "incident closed: nothing to do"},
			{test, "test notification acknowledged"},
			{incident(t, "0.other", events.IncidentOpen, "ai-square error rate > 2%", "other-service", "", now), "incident for a service not in the policy"},
			{incident(t, "0.unknown", events.IncidentOpen, "someone else's policy", service, canary, now), `alert policy "someone else's policy" is not in the service's alerts`},
		} {
			h.alert(n.data)
			h.waitLogged(events.FunctionAlert, n.log)
		}
		if got := h.view(); got.state.Generation != gen || got.phase() != rollout.Progressing {
			t.Fatalf("notifications that must change nothing changed the state: generation %d phase %s, want %d progressing; history %+v",
				got.state.Generation, got.phase(), gen, got.state.History)
		}

		// Now the real thing: the canary fails, the alert policy fires, the Alert function rolls back.
		steadyLoad(t, h.service().GetUri(), 4)
		v = h.waitPhase(rollout.RolledBack, 1)
		rb := entries(v.state, id, rollout.Rollback)
		if len(rb) != 1 || rb[0].Actor != `alert:ai-square error rate > 2%` {
			t.Fatalf("rollback entries %+v, want one by the alert", rb)
		}
		hookRan(t, hookFile)
		incidents := v.state.Rollout.Incidents
		if len(incidents) != 1 {
			t.Fatalf("incidents answered %v, want the one", incidents)
		}
		var open []byte
		for _, inc := range h.cloud.Monitoring.Incidents() {
			if inc.ID == incidents[0] {
				open = incident(t, inc.ID, events.IncidentOpen, "ai-square error rate > 2%", service, canary, inc.Started)
			}
		}
		if open == nil {
			t.Fatalf("the Monitoring server has no incident %s", incidents[0])
		}
		gen = v.state.Generation
		h.alert(open)
		h.waitLogged(events.FunctionAlert, "incident "+incidents[0]+" already answered")
		if got := h.view().state.Generation; got != gen {
			t.Errorf("the replayed incident changed the state: generation %d, want %d", got, gen)
		}
	})
}

// TestDenyWindowAndGuard: inside a deny window a healthy stage does not advance, and an
// alert still rolls it back. An operator's promote skips bake and gates and says so; an
// alert within deadlines.guard after the promotion reverts the service to the revision the
// promotion replaced (traffic and template), and its replay changes nothing.
func TestDenyWindowAndGuard(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend pubsubemu.Backend) {
		const policyName = "ai-square errors (made by hand)"
		gates := strings.Replace(gatesOn, "    alerts: []", "    alerts:\n      - {policy: \""+policyName+"\", action: rollback}", 1)
		pol, hookFile := handsOff(t, gates, "10m")
		pol = strings.Replace(pol, "      deny: []", "      deny: [{from: \"00:00\", to: \"24:00\"}]", 1)
		h := start(t, backend, options{policy: pol, ticks: true})
		if n := len(h.cloud.Alerts.Created); n != 0 {
			t.Errorf("alert policies created for an alert with no condition: %v", h.cloud.Alerts.Created)
		}
		stable := h.view().state.Stable
		if stable == "" {
			stable = lastSegment(h.service().GetLatestReadyRevision())
		}
		stableImage := h.service().GetTemplate().GetContainers()[0].GetImage()
		steadyLoad(t, h.service().GetUri(), 4)

		// A release started in a deny window by an operator's override: healthy, it holds.
		h.push(repo+":good", "--override-window", "--reason", "e2e: a release in a deny window")
		v := h.waitPhase(rollout.Progressing, 1)
		id, canary := v.state.Rollout.ID, v.state.Rollout.Canary
		h.waitLogged(events.FunctionVerify, "outside the deploy windows")
		if v := h.view(); v.stage() != 1 || v.phase() != rollout.Progressing || v.state.Rollout.Verdict == nil || v.state.Rollout.Verdict.Status != rollout.VerdictHealthy {
			t.Fatalf("phase %s stage %d verdict %+v, want held at stage 1 while healthy", v.phase(), v.stage(), v.state.Rollout.Verdict)
		}
		// An alert rolls it back, window or not.
		h.alert(incident(t, "0.deny", events.IncidentOpen, policyName, service, canary, time.Now()))
		v = h.waitPhase(rollout.RolledBack, 1)
		if rb := entries(v.state, id, rollout.Rollback); len(rb) != 1 || rb[0].Actor != "alert:"+policyName {
			t.Errorf("rollback entries %+v, want one by the alert", rb)
		}
		hookRan(t, hookFile)
		os.Remove(hookFile)

		// An operator promotes through every stage; the history says the gates were skipped.
		h.push(repo+":good2", "--override-window", "--reason", "e2e: the guard")
		v = h.waitFor("the second rollout at stage 1", func(v view) bool {
			return v.state.Rollout.ID != id && v.phase() == rollout.Progressing && v.stage() == 1 && !v.svc.GetReconciling()
		})
		id2, canary2 := v.state.Rollout.ID, v.state.Rollout.Canary
		for stage := 2; stage <= 3; stage++ {
			h.cli("promote", service)
		}
		v = h.waitPhase(rollout.Promoted, 3)
		for _, e := range entries(v.state, id2, rollout.Shift)[1:] {
			if !strings.HasPrefix(e.Reason, "operator promote: bake and gates skipped") {
				t.Errorf("promote to stage %d says %q, want it to say bake and gates were skipped", e.Stage, e.Reason)
			}
		}
		if v.state.Stable != canary2 || v.state.Previous != stable {
			t.Fatalf("after promotion: stable %s previous %s, want %s and %s", v.state.Stable, v.state.Previous, canary2, stable)
		}
		// An alert on the promoted revision within the guard period reverts it.
		open := incident(t, "0.guard", events.IncidentOpen, policyName, service, canary2, time.Now())
		h.alert(open)
		v = h.waitFor("the revert", func(v view) bool {
			return v.state.Rollout.ID == id2 && v.phase() == rollout.RolledBack && !v.svc.GetReconciling()
		})
		if v.state.Stable != stable || v.percent[stable] != 100 {
			t.Errorf("after the revert: stable %s, traffic %v; want %s at 100%%", v.state.Stable, v.percent, stable)
		}
		if got := v.svc.GetTemplate().GetContainers()[0].GetImage(); got != stableImage {
			t.Errorf("template image after the revert: %s, want %s", got, stableImage)
		}
		if !v.state.Failed(v.state.Rollout.Digest) {
			t.Errorf("the reverted digest is not remembered as failed")
		}
		if rb := entries(v.state, id2, rollout.Rollback); len(rb) != 1 || !strings.HasPrefix(rb[0].Reason, "reverted within the guard period") {
			t.Errorf("rollback entries %+v, want the revert", rb)
		}
		hookRan(t, hookFile)
		gen := v.state.Generation
		h.alert(open)
		h.waitLogged(events.FunctionAlert, "incident 0.guard already answered")
		if got := h.view().state.Generation; got != gen {
			t.Errorf("the replayed incident changed the state: generation %d, want %d", got, gen)
		}
	})
}
