package e2e

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/protobuf/proto"

	"github.com/ai-square/coalmine/events"
	"github.com/ai-square/coalmine/infra/local/pubsubemu"
	"github.com/ai-square/coalmine/shared/release"
	"github.com/ai-square/coalmine/shared/rollout"
)

// deployOutside does what `gcloud run deploy` does, with the official
// client: a new template (here one more environment variable) and 100% of
// the traffic to the latest revision. It returns the revision it created.
func (h *harness) deployOutside() string {
	h.t.Helper()
	ctx := context.Background()
	svc := h.service()
	upd := proto.Clone(svc).(*runpb.Service)
	upd.Template.Revision = ""
	upd.Template.Containers[0].Env = append(upd.Template.Containers[0].Env,
		&runpb.EnvVar{Name: "DEPLOYED_BY", Values: &runpb.EnvVar_Value{Value: "gcloud"}})
	upd.Traffic = []*runpb.TrafficTarget{{Type: runpb.TrafficTargetAllocationType_TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST, Percent: 100}}
	op, err := h.svcs.UpdateService(ctx, &runpb.UpdateServiceRequest{Service: upd})
	if err != nil {
		h.t.Fatalf("outside deploy: %v", err)
	}
	after, err := op.Wait(ctx)
	if err != nil {
		h.t.Fatalf("outside deploy: %v", err)
	}
	return lastSegment(after.GetLatestCreatedRevision())
}

// checkOperatorsTraffic checks that the service still sends 100% to the
// latest revision, rev, as the outside deploy left it.
func checkOperatorsTraffic(t *testing.T, v view, rev string) {
	t.Helper()
	spec := v.svc.GetTraffic()
	if len(spec) != 1 || spec[0].GetType() != runpb.TrafficTargetAllocationType_TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST || spec[0].GetPercent() != 100 {
		t.Errorf("traffic after the stop: %v, want the operator's LATEST 100%%", spec)
	}
	if got := v.percent[rev]; got != 100 {
		t.Errorf("served: %v, want 100%% on the operator's %s", v.percent, rev)
	}
}

func checkStopped(t *testing.T, v view) {
	t.Helper()
	r := v.state.Rollout
	if !strings.Contains(r.Reason, release.ReasonOutside) {
		t.Errorf("reason %q, want it to say %q", r.Reason, release.ReasonOutside)
	}
	if n := len(v.state.History); n == 0 || v.state.History[n-1].Kind != rollout.Stop {
		t.Errorf("last history entry: %+v, want a stop", v.state.History)
	}
}

// TestDeployOutsideBetweenStages: an operator's own deploy between two
// stages stops the rollout at the next step (here the operator's promote)
// and leaves the operator's traffic as it was; the stage is not applied.
func TestDeployOutsideBetweenStages(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend pubsubemu.Backend) {
		h := start(t, backend, options{})
		stopped := h.watchEvents(events.EventStopped)
		h.push(repo + ":v2")
		h.waitPhase(rollout.Progressing, 1)
		rev := h.deployOutside()

		// The promote finds the change, stops the rollout and says so.
		out, err := h.tryCLI("promote", service)
		if err == nil || !strings.Contains(err.Error(), "too-late") || !strings.Contains(err.Error(), release.ReasonOutside) {
			t.Errorf("promote after an outside deploy: %q, %v; want too-late because the %s", out, err, release.ReasonOutside)
		}
		v := h.waitFor("stopped", func(v view) bool { return v.phase() == rollout.Stopped })
		checkStopped(t, v)
		checkOperatorsTraffic(t, v, rev)
		if v.state.Stable != rev {
			t.Errorf("state's stable %q, want %q (the revision the operator serves)", v.state.Stable, rev)
		}
		select {
		case e := <-stopped:
			if !strings.Contains(e.Reason, release.ReasonOutside) {
				t.Errorf("stopped event reason %q", e.Reason)
			}
		case <-time.After(30 * time.Second):
			t.Error("no stopped lifecycle event")
		}
		// Later steps (a tick, another promote) leave it alone.
		h.tick()
		if out, err := h.tryCLI("promote", service); err == nil {
			t.Errorf("promote of a stopped rollout: %s, want a refusal", out)
		}
		checkOperatorsTraffic(t, h.view(), rev)
	})
}

// clock is a settable clock for the functions.
type clock struct{ t atomic.Pointer[time.Time] }

func (c *clock) now() time.Time  { return *c.t.Load() }
func (c *clock) set(t time.Time) { c.t.Store(&t) }

// TestDeployOutsideWhileWaiting: a rollout waits for its deploy window; the
// operator deploys with the official client; when the window opens the
// tick stops the rollout instead of splitting traffic against the stable
// revision recorded at claim (which dropped the operator's revision to 0%).
func TestDeployOutsideWhileWaiting(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend pubsubemu.Backend) {
		taipei, err := time.LoadLocation("Asia/Taipei")
		if err != nil {
			t.Fatal(err)
		}
		clk := &clock{}
		clk.set(time.Date(2026, 11, 30, 9, 0, 0, 0, taipei)) // Monday morning
		pol := strings.Replace(testPolicy, "deny: []", `timezone: Asia/Taipei
      deny:
        - {days: [Mon], from: "00:00", to: "12:00"}`, 1)
		h := start(t, backend, options{policy: pol, now: clk.now})
		h.push(repo + ":v2")
		h.waitPhase(rollout.Waiting, 0)
		rev := h.deployOutside()

		clk.set(time.Date(2026, 11, 30, 13, 0, 0, 0, taipei)) // the window is open
		h.tick()
		v := h.waitFor("stopped", func(v view) bool { return v.phase() == rollout.Stopped })
		checkStopped(t, v)
		checkOperatorsTraffic(t, v, rev)
		h.tick()
		checkOperatorsTraffic(t, h.view(), rev)
		if got := h.view().phase(); got != rollout.Stopped {
			t.Errorf("phase after another tick: %s", got)
		}
	})
}

// tick publishes one Scheduler tick and waits until it was handled.
func (h *harness) tick() {
	h.t.Helper()
	before := h.cloud.Bridge.Stats().Subscriptions[tickSub].Acks
	if _, err := h.cloud.Bus.Publish(context.Background(), events.TopicTicks, []byte(`{"job":"coalmine-tick","version":1}`), nil); err != nil {
		h.t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for h.cloud.Bridge.Stats().Subscriptions[tickSub].Acks == before {
		if time.Now().After(deadline) {
			h.t.Fatal("tick not handled within 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAbortAfterAnOutsideTrafficChange: an operator's abort still rolls
// back while the canary takes traffic (they moved traffic by hand, then
// asked for the canary to go); once an outside deploy took the canary out,
// the abort stops the rollout instead and leaves the traffic alone.
func TestAbortAfterAnOutsideTrafficChange(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend pubsubemu.Backend) {
		h := start(t, backend, options{})
		h.push(repo + ":v2")
		v := h.waitPhase(rollout.Progressing, 1)
		stable, canary := v.state.Stable, v.state.Rollout.Canary
		h.setTraffic(map[string]int32{stable: 50, canary: 50})
		h.cli("abort", service)
		v = h.waitPhase(rollout.RolledBack, 1)
		if v.percent[stable] != 100 {
			t.Errorf("after the abort: traffic %v, want %s at 100%%", v.percent, stable)
		}

		h.push(repo + ":v3")
		h.waitPhase(rollout.Progressing, 1)
		rev := h.deployOutside()
		out, err := h.tryCLI("abort", service)
		if err == nil || !strings.Contains(err.Error(), release.ReasonOutside) {
			t.Errorf("abort after an outside deploy: %q, %v; want it to say the %s", out, err, release.ReasonOutside)
		}
		v = h.waitFor("stopped", func(v view) bool { return v.phase() == rollout.Stopped })
		checkOperatorsTraffic(t, v, rev)
	})
}

// setTraffic pins traffic to revisions with the official client, as
// `gcloud run services update-traffic --to-revisions` does.
func (h *harness) setTraffic(split map[string]int32) {
	h.t.Helper()
	ctx := context.Background()
	upd := proto.Clone(h.service()).(*runpb.Service)
	upd.Traffic = nil
	for rev, p := range split {
		upd.Traffic = append(upd.Traffic, &runpb.TrafficTarget{Type: runpb.TrafficTargetAllocationType_TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION, Revision: rev, Percent: p})
	}
	op, err := h.svcs.UpdateService(ctx, &runpb.UpdateServiceRequest{Service: upd})
	if err != nil {
		h.t.Fatalf("update traffic: %v", err)
	}
	if _, err := op.Wait(ctx); err != nil {
		h.t.Fatalf("update traffic: %v", err)
	}
}
