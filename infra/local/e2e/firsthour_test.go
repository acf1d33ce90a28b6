package e2e

import (
	"testing"
	"time"

	"github.com/ai-square/coalmine/events"
	"github.com/ai-square/coalmine/infra/local/pubsubemu"
	"github.com/ai-square/coalmine/shared/rollout"
)

// waitLogged waits until function logged a message containing text.
func (h *harness) waitLogged(function, text string) {
	h.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !h.logged(function, text) {
		if time.Now().After(deadline) {
			h.t.Fatalf("%s never logged %q", function, text)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

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
