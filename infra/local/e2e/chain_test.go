package e2e

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ai-square/coalmine/events"
	"github.com/ai-square/coalmine/infra/local/bridge"
	"github.com/ai-square/coalmine/infra/local/pubsubemu"
	"github.com/ai-square/coalmine/shared/release"
	"github.com/ai-square/coalmine/shared/rollout"
)

// TestWalkthrough is the README's walkthrough: push, three promotes to
// 100%, a second push aborted, an image that cannot start; steady requests
// to the service URL never fail while the images are good.
func TestWalkthrough(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend pubsubemu.Backend) {
		h := start(t, backend, options{})
		first := h.view()
		stable := first.tags[rollout.TagStable]
		if stable == "" {
			stable = lastSegment(first.svc.GetLatestReadyRevision())
		}
		ld := startLoad(first.svc.GetUri())

		// A push reaches stage 1: 10/90, the canary tag answering.
		h.push(repo + ":v2")
		v := h.waitPhase(rollout.Progressing, 1)
		canary := v.state.Rollout.Canary
		if v.percent[canary] != 10 || v.percent[stable] != 90 {
			t.Fatalf("stage 1 TrafficStatuses = %v, want %s 10%%, %s 90%%", v.percent, canary, stable)
		}
		if rev, code := get(t, v.tagURI[rollout.TagCanary]); rev != canary || code != 200 {
			t.Fatalf("canary tag URL served by %q (%d), want %s", rev, code, canary)
		}
		out := h.cli("status", service)
		for _, want := range []string{"progressing", "stage 1/4 (10%)", canary + " 10% (canary)"} {
			if !strings.Contains(out, want) {
				t.Errorf("status does not show %q:\n%s", want, out)
			}
		}

		// Three promotes reach 100%, the canary tagged stable.
		for stage := 2; stage <= 4; stage++ {
			h.cli("promote", service)
			if stage < 4 {
				h.waitPhase(rollout.Progressing, stage)
			}
		}
		v = h.waitPhase(rollout.Promoted, 4)
		if v.percent[canary] != 100 || v.tags[rollout.TagStable] != canary || v.tags[rollout.TagPrevious] != stable {
			t.Fatalf("promoted: traffic %v tags %v, want %s at 100%% tagged stable, %s tagged previous", v.percent, v.tags, canary, stable)
		}
		promotedImage := v.svc.GetTemplate().GetContainers()[0].GetImage()

		// A second push, then abort: the previous stable keeps 100% and the template is restored.
		second := h.push(repo + ":v3")
		v = h.waitPhase(rollout.Progressing, 1)
		if v.state.Rollout.Image != second {
			t.Fatalf("rollout image %s, want %s", v.state.Rollout.Image, second)
		}
		canary2 := v.state.Rollout.Canary
		h.cli("abort", service)
		v = h.waitPhase(rollout.RolledBack, 1)
		if v.percent[canary] != 100 || v.percent[canary2] != 0 || v.tags[rollout.TagStable] != canary {
			t.Fatalf("after abort: traffic %v tags %v, want %s at 100%%", v.percent, v.tags, canary)
		}
		if got := v.svc.GetTemplate().GetContainers()[0].GetImage(); got != promotedImage {
			t.Fatalf("template image after abort = %s, want the stable %s", got, promotedImage)
		}

		// An image that cannot start fails its rollout and never takes traffic.
		h.push(repo+":broken", "--fail-start")
		v = h.waitPhase(rollout.Failed, 0)
		broken := v.state.Rollout.Canary
		if broken == "" || v.percent[broken] != 0 || v.percent[canary] != 100 {
			t.Fatalf("after a failed start: canary %q traffic %v", broken, v.percent)
		}
		if !strings.Contains(v.state.Rollout.Reason, "SAMPLE_FAIL_START") {
			t.Errorf("failure reason does not say why: %q", v.state.Rollout.Reason)
		}
		if got := v.svc.GetTemplate().GetContainers()[0].GetImage(); got != promotedImage {
			t.Errorf("template image after the failed deploy = %s, want %s", got, promotedImage)
		}
		ok, bad, failures, served := ld.finish()
		if bad != 0 || ok < 10 {
			t.Errorf("steady load: %d ok, %d failed (%v)", ok, bad, failures)
		}
		if served[broken] != 0 {
			t.Errorf("the revision that cannot start served %d requests", served[broken])
		}
		t.Logf("steady load: %d requests, %d failed; served by %v", ok, bad, served)
	})
}

// TestDuplicates: the same push five times concurrently and every delivery
// doubled by the bridge give one canary revision and each step once.
func TestDuplicates(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend pubsubemu.Backend) {
		h := start(t, backend, options{chaos: bridge.Chaos{Seed: 1, Duplicate: 1}})
		before := len(h.revisions())
		var wg sync.WaitGroup
		for range 5 {
			wg.Go(func() { h.push(repo + ":dup") })
		}
		wg.Wait()
		v := h.waitPhase(rollout.Progressing, 1)
		id := v.state.Rollout.ID
		for stage := 2; stage <= 4; stage++ {
			c := events.Command{Type: events.CommandShiftTraffic, Service: service, Rollout: id, Generation: h.view().state.Generation,
				Stage: stage, Step: events.StepStage(stage), Manual: true, Actor: "operator:test"}
			h.publishCommand(c, 2)
			if stage < 4 {
				h.waitPhase(rollout.Progressing, stage)
			}
		}
		v = h.waitPhase(rollout.Promoted, 4)
		time.Sleep(500 * time.Millisecond) // let late duplicates land
		v = h.view()
		if got := len(h.revisions()); got != before+1 {
			t.Errorf("%d revisions, want %d (one canary)", got, before+1)
		}
		checkStepsOnce(t, v.state, id)
		if st := h.cloud.Bridge.Stats(); st.Duplicates == 0 {
			t.Errorf("the bridge duplicated nothing: %+v", st)
		}
	})
}

// TestCrashAfterWrite: a function that dies after its write and before its
// ack (and its publish) is delivered again, finds the step applied and
// publishes the next command.
func TestCrashAfterWrite(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend pubsubemu.Backend) {
		var mu sync.Mutex
		crashed := map[string]bool{}
		hooks := release.Hooks{AfterWrite: func(ctx context.Context, p release.Point) error {
			mu.Lock()
			defer mu.Unlock()
			key := string(p.Kind) + "/" + p.Function
			if crashed[key] {
				return nil
			}
			crashed[key] = true
			return errors.New("injected crash after the write")
		}}
		h := start(t, backend, options{hooks: hooks})
		h.push(repo + ":crash")
		v := h.waitPhase(rollout.Progressing, 1)
		id := v.state.Rollout.ID
		h.cli("promote", service)
		h.waitPhase(rollout.Progressing, 2)
		h.cli("abort", service)
		v = h.waitPhase(rollout.RolledBack, 2)
		checkStepsOnce(t, v.state, id)
		mu.Lock()
		defer mu.Unlock()
		for _, want := range []string{"claim/Backup", "canary-created/Deploy", "shift/Shift", "rollback/Rollback"} {
			if !crashed[want] {
				t.Errorf("no crash injected after %s", want)
			}
		}
	})
}
