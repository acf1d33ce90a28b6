package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ai-square/coalmine/events"
	"github.com/ai-square/coalmine/infra/local/pubsubemu"
	"github.com/ai-square/coalmine/shared/policy"
	"github.com/ai-square/coalmine/shared/release"
	"github.com/ai-square/coalmine/shared/rollout"
)

// TestPushOfTheServingDigestIsIgnored: pushing the digest the stable
// revision already runs (after a later rollout was rolled back) is
// recognised and ignored; it used to start a new canary of the stable
// image under the promoted rollout's ID.
func TestPushOfTheServingDigestIsIgnored(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend pubsubemu.Backend) {
		h := start(t, backend, options{})
		v2 := h.push(repo + ":v2")
		h.waitPhase(rollout.Progressing, 1)
		for stage := 2; stage <= 4; stage++ {
			h.cli("promote", service)
			if stage < 4 {
				h.waitPhase(rollout.Progressing, stage)
			}
		}
		h.waitPhase(rollout.Promoted, 4)
		h.push(repo + ":v3")
		h.waitPhase(rollout.Progressing, 1)
		h.cli("abort", service)
		before := h.waitPhase(rollout.RolledBack, 1)

		if got := h.push(repo + ":v2"); got != v2 {
			t.Fatalf("the second push of v2 made %s, want the same digest %s", got, v2)
		}
		after := h.waitFor("the push handled", func(v view) bool {
			return h.logged(events.FunctionBackup, "already serving") || v.state.Generation != before.state.Generation
		})
		if after.state.Generation != before.state.Generation || after.state.Rollout.ID != before.state.Rollout.ID {
			t.Errorf("state moved on: generation %d → %d, rollout %s → %s", before.state.Generation, after.state.Generation, before.state.Rollout.ID, after.state.Rollout.ID)
		}
	})
}

// TestOperatorCommandsReportTheirOutcome: an operator command waits for
// the function's answer and reports it. An abort that loses the race to the
// final promote says it came too late (it used to print "published" and
// exit 0 while the function dropped it as stale); a promote says applied.
func TestOperatorCommandsReportTheirOutcome(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend pubsubemu.Backend) {
		g := newGate(func(p release.Point) bool { return p.Function == events.FunctionRollback })
		g.arm()
		h := start(t, backend, options{hooks: release.Hooks{BeforeRead: g.hook}})
		h.push(repo + ":v2")
		h.waitPhase(rollout.Progressing, 1)
		for stage := 2; stage <= 3; stage++ {
			out := h.cli("promote", service)
			if !strings.Contains(out, "applied") || !strings.Contains(out, fmt.Sprintf("stage %d", stage)) {
				t.Errorf("promote to stage %d said %q, want applied at stage %d", stage, out, stage)
			}
		}
		abort := make(chan error, 1)
		var abortOut string
		go func() {
			var err error
			abortOut, err = h.tryCLI("abort", service)
			abort <- err
		}()
		select {
		case <-g.entered:
		case <-time.After(30 * time.Second):
			t.Fatal("the abort never reached the Rollback function")
		}
		h.cli("promote", service) // the final promote wins the race
		close(g.release)
		err := <-abort
		if err == nil || !strings.Contains(err.Error(), "too-late") || !strings.Contains(err.Error(), "already promoted") {
			t.Errorf("abort after the final promote: %q, %v; want a too-late error saying it was already promoted", abortOut, err)
		}
		if got := h.view().phase(); got != rollout.Promoted {
			t.Errorf("phase %s, want promoted", got)
		}
	})
}

// TestReleaseOfAnOlderFailedDigest: a digest that failed before, and is not
// the last rollout's, is refused with the reason (it used to be published
// and dropped without a word, and retry only knows the last rollout); with
// --force it is released.
func TestReleaseOfAnOlderFailedDigest(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend pubsubemu.Backend) {
		h := start(t, backend, options{})
		bad := h.push(repo + ":v2")
		h.waitPhase(rollout.Progressing, 1)
		h.cli("abort", service)
		h.waitPhase(rollout.RolledBack, 1)
		h.push(repo + ":v3")
		h.waitPhase(rollout.Progressing, 1)
		h.cli("abort", service)
		h.waitPhase(rollout.RolledBack, 1)

		out, err := h.tryCLI("release", service, bad)
		if err == nil || !strings.Contains(err.Error(), "refused") || !strings.Contains(err.Error(), "--force") {
			t.Errorf("release of the failed %s: %q, %v; want refused, naming --force", bad, out, err)
		}
		out = h.cli("release", service, bad, "--force", "--reason", "fixed the config, not the image")
		if !strings.Contains(out, "applied") {
			t.Errorf("release --force said %q, want applied", out)
		}
		v := h.waitPhase(rollout.Progressing, 1)
		if v.state.Rollout.Image != bad {
			t.Errorf("rollout of %s, want %s", v.state.Rollout.Image, bad)
		}
	})
}

// TestOperatorIsRecorded: the history names who ran a command (the gcloud
// account) and why (--reason); it used to say operator:unknown or $USER and
// had no --reason but on abort.
func TestOperatorIsRecorded(t *testing.T) {
	t.Setenv("CLOUDSDK_CORE_ACCOUNT", "alice@example.com")
	h := start(t, pubsubemu.BackendPstest, options{})
	h.push(repo + ":v2")
	h.waitPhase(rollout.Progressing, 1)
	h.cli("promote", service, "--reason", "error rate flat for an hour")
	v := h.waitPhase(rollout.Progressing, 2)
	e := v.state.History[len(v.state.History)-1]
	if e.Actor != "operator:alice@example.com" || e.Reason != "operator promote: bake and gates skipped: error rate flat for an hour" {
		t.Errorf("history entry %+v, want actor operator:alice@example.com and the reason, after the note that bake and gates were skipped", e)
	}
}

// TestOverrideWindow: on a Monday morning in Taipei (the AI Square plan's
// deny window) a push waits; resume --override-window starts it now and
// the history records who and why; release --override-window starts at
// once. Without --reason the override is refused.
func TestOverrideWindow(t *testing.T) {
	t.Setenv("CLOUDSDK_CORE_ACCOUNT", "bob@example.com")
	taipei, err := time.LoadLocation("Asia/Taipei")
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{}
	clk.set(time.Date(2026, 11, 30, 9, 0, 0, 0, taipei))
	pol := strings.Replace(testPolicy, "deny: []", `timezone: Asia/Taipei
      deny:
        - {days: [Mon], from: "00:00", to: "12:00"}`, 1)
	h := start(t, pubsubemu.BackendPstest, options{policy: pol, now: clk.now})
	h.push(repo + ":v2")
	h.waitPhase(rollout.Waiting, 0)
	if out, err := h.tryCLI("resume", service); err == nil || !strings.Contains(err.Error(), "--override-window") {
		t.Errorf("resume of a waiting rollout: %q, %v; want an error naming --override-window", out, err)
	}
	if _, err := h.tryCLI("resume", service, "--override-window"); err == nil || !strings.Contains(err.Error(), "--reason") {
		t.Errorf("--override-window without --reason: %v, want a usage error naming --reason", err)
	}
	out := h.cli("resume", service, "--override-window", "--reason", "hotfix for the login outage")
	if !strings.Contains(out, "applied") {
		t.Errorf("resume --override-window said %q, want applied", out)
	}
	v := h.waitPhase(rollout.Progressing, 1)
	found := false
	for _, e := range v.state.History {
		if e.Kind == rollout.Resume && e.Actor == "operator:bob@example.com" && strings.Contains(e.Reason, "deploy window overridden: hotfix for the login outage") {
			found = true
		}
	}
	if !found {
		t.Errorf("no history entry records the override with who and why: %+v", v.state.History)
	}

	// release --override-window of the image a rollout waits with starts it.
	h.cli("abort", service)
	h.waitPhase(rollout.RolledBack, 1)
	img := h.push(repo + ":v3")
	h.waitPhase(rollout.Waiting, 0)
	out = h.cli("release", service, img, "--override-window", "--reason", "second hotfix")
	if !strings.Contains(out, "applied") {
		t.Errorf("release --override-window of the waiting image said %q, want applied", out)
	}
	v = h.waitPhase(rollout.Progressing, 1)
	if e := historyOf(v.state, v.state.Rollout.ID)[1]; e.Kind != rollout.Resume || !strings.Contains(e.Reason, "deploy window overridden: second hotfix") {
		t.Errorf("history %+v, want the override recorded after the claim", historyOf(v.state, v.state.Rollout.ID))
	}

	// release --override-window of another image claims and starts at once.
	h.cli("abort", service)
	h.waitPhase(rollout.RolledBack, 1)
	out = h.cli("release", service, img, "--force", "--override-window", "--reason", "third try")
	if !strings.Contains(out, "applied") {
		t.Errorf("release --override-window said %q, want applied", out)
	}
	v = h.waitPhase(rollout.Progressing, 1)
	if e := historyOf(v.state, v.state.Rollout.ID)[0]; e.Kind != rollout.Claim || !strings.Contains(e.Reason, "deploy window overridden: third try") {
		t.Errorf("claim entry %+v, want the override recorded", e)
	}

	// push --override-window releases the pushed image at once.
	h.cli("abort", service)
	h.waitPhase(rollout.RolledBack, 1)
	out = h.cli("push", repo+":v5", "--override-window", "--reason", "fourth hotfix")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 2 || !strings.Contains(lines[1], "applied") {
		t.Fatalf("push --override-window said %q, want the image, then applied", out)
	}
	v = h.waitPhase(rollout.Progressing, 1)
	if v.state.Rollout.Image != lines[0] {
		t.Errorf("rollout of %s, want the pushed %s", v.state.Rollout.Image, lines[0])
	}
	if e := historyOf(v.state, v.state.Rollout.ID)[0]; e.Actor != "operator:bob@example.com" || !strings.Contains(e.Reason, "deploy window overridden: fourth hotfix") {
		t.Errorf("claim entry %+v, want who and why", e)
	}
}

// TestWalkthroughInADenyWindow runs the README's walkthrough with the
// built-in policy on a Monday morning in Taipei: the push waits, status says
// when the window opens and how to override it, and the override starts it.
func TestWalkthroughInADenyWindow(t *testing.T) {
	taipei, err := time.LoadLocation("Asia/Taipei")
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{}
	clk.set(time.Date(2026, 11, 30, 9, 0, 0, 0, taipei)) // Monday 09:00
	h := start(t, pubsubemu.BackendPstest, options{policy: string(policy.Example()), now: clk.now})
	h.push(repo + ":v2")
	h.waitPhase(rollout.Waiting, 0)
	out := h.cli("status", service)
	for _, want := range []string{"waiting", "which opens at Mon 2026-11-30 12:00 +08:00 (Asia/Taipei)", "coalmine resume ai-square --override-window --reason"} {
		if !strings.Contains(out, want) {
			t.Errorf("status of a waiting rollout lacks %q:\n%s", want, out)
		}
	}
	h.cli("resume", service, "--override-window", "--reason", "trying coalmine")
	h.waitPhase(rollout.Progressing, 1)
	for stage := 2; stage <= 4; stage++ {
		h.cli("promote", service)
	}
	h.waitPhase(rollout.Promoted, 4)
}
