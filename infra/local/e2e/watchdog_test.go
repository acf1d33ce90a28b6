package e2e

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ai-square/coalmine/events"
	"github.com/ai-square/coalmine/infra/local/pubsubemu"
	"github.com/ai-square/coalmine/shared/release"
	"github.com/ai-square/coalmine/shared/rollout"
)

// TestWatchdog: the Scheduler tick is the watchdog. A deploy whose
// command is lost is published again; a canary left at a stage past the
// stage deadline is rolled back.
func TestWatchdog(t *testing.T) {
	pol := testPolicy + `    deadlines: {deploy: 2s, stage: 4s, retries: 2}
`
	forEachBackend(t, func(t *testing.T, backend pubsubemu.Backend) {
		// The Deploy function "crashes" before its first read every time
		// until the watchdog has re-published the command once.
		var drops atomic.Int32
		hooks := release.Hooks{BeforeRead: func(ctx context.Context, p release.Point) error {
			if p.Function == events.FunctionDeploy && drops.Add(1) == 1 {
				return errors.New("injected: deploy command lost")
			}
			return nil
		}}
		h := start(t, backend, options{policy: pol, ticks: true, sweep: everySecond, hooks: hooks, maxAttempts: 1})
		h.push(repo + ":watched")
		v := h.waitPhase(rollout.Progressing, 1)
		if got := historyOf(v.state, v.state.Rollout.ID); !hasKind(got, rollout.Republish) {
			t.Errorf("the lost deploy was not re-published by the watchdog: %v", got)
		}
		v = h.waitFor("the stage deadline rollback", func(v view) bool { return v.phase() == rollout.RolledBack && !v.svc.GetReconciling() })
		if r := v.state.Rollout.Reason; !strings.Contains(r, "no progress at stage 1") {
			t.Errorf("rollback reason = %q, want the stage deadline", r)
		}
		if v.percent[v.tags[rollout.TagStable]] != 100 {
			t.Errorf("after the watchdog rollback: traffic %v", v.percent)
		}
	})
}

func hasKind(h []rollout.Entry, k rollout.Kind) bool {
	for _, e := range h {
		if e.Kind == k {
			return true
		}
	}
	return false
}
