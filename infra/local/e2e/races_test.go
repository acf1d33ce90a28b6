package e2e

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/ai-square/coalmine/events"
	"github.com/ai-square/coalmine/infra/local/pubsubemu"
	"github.com/ai-square/coalmine/infra/local/runemu"
	"github.com/ai-square/coalmine/shared/release"
	"github.com/ai-square/coalmine/shared/rollout"
)

// gate blocks the first call of a hook that matches (once armed) until
// released.
type gate struct {
	match   func(release.Point) bool
	entered chan struct{}
	release chan struct{}
	armed   chan struct{} // one token: only the first matching call blocks
}

func newGate(match func(release.Point) bool) *gate {
	return &gate{match: match, entered: make(chan struct{}), release: make(chan struct{}), armed: make(chan struct{}, 1)}
}

// promotes matches the Shift function applying a shift.
func promotes(p release.Point) bool {
	return p.Function == events.FunctionShift && p.Kind == rollout.Shift
}

// arm lets the next matching call block (calls before it pass).
func (g *gate) arm() { g.armed <- struct{}{} }

func (g *gate) hook(ctx context.Context, p release.Point) error {
	if !g.match(p) {
		return nil
	}
	select {
	case <-g.armed:
	default:
		return nil
	}
	close(g.entered)
	select {
	case <-g.release:
	case <-ctx.Done():
	}
	return nil
}

// TestAbortRacesPromote: an abort against a promote at each point of the
// promote's step ends rolled back and stays rolled back.
func TestAbortRacesPromote(t *testing.T) {
	points := []struct {
		name  string
		hooks func(g *gate) release.Hooks
		// shiftLog is what the Shift function must have logged: proof the
		// race took the path named.
		shiftLog string
	}{
		{"before the promote reads", func(g *gate) release.Hooks { return release.Hooks{BeforeRead: g.hook} }, "command stale"},
		{"between its read and its write", func(g *gate) release.Hooks { return release.Hooks{BeforeWrite: g.hook} }, "service changed since it was read"},
		{"after its write before its publish", func(g *gate) release.Hooks { return release.Hooks{AfterWrite: g.hook} }, "shift written"},
	}
	forEachBackend(t, func(t *testing.T, backend pubsubemu.Backend) {
		for _, pt := range points {
			t.Run(pt.name, func(t *testing.T) {
				g := newGate(promotes)
				h := start(t, backend, options{hooks: pt.hooks(g)})
				h.push(repo + ":race")
				v := h.waitPhase(rollout.Progressing, 1)
				stable := v.tags[rollout.TagStable]
				g.arm()
				h.cli("promote", service, "--no-wait") // it blocks at the hook until the abort is done
				select {
				case <-g.entered:
				case <-time.After(30 * time.Second):
					t.Fatal("the promote never reached the hook")
				}
				h.cli("abort", service)
				h.waitFor("rolled back", func(v view) bool { return v.phase() == rollout.RolledBack && !v.svc.GetReconciling() })
				close(g.release)
				h.stays(rollout.RolledBack, time.Second)
				v = h.view()
				if v.percent[stable] != 100 {
					t.Errorf("after the race: traffic %v, want %s at 100%%", v.percent, stable)
				}
				for _, e := range historyOf(v.state, v.state.Rollout.ID) {
					if e.Kind == rollout.Shift && e.Phase == rollout.Promoted {
						t.Errorf("promoted after the rollback: %+v", e)
					}
				}
				if !h.logged(events.FunctionShift, pt.shiftLog) {
					t.Errorf("the Shift function never logged %q: the race did not take this path", pt.shiftLog)
				}
			})
		}
		t.Run("a promote redelivered after the rollback", func(t *testing.T) {
			h := start(t, backend, options{})
			h.push(repo + ":race")
			v := h.waitPhase(rollout.Progressing, 1)
			promote := events.Command{Type: events.CommandShiftTraffic, Service: service, Rollout: v.state.Rollout.ID,
				Generation: v.state.Generation, Stage: 2, Step: events.StepStage(2), Manual: true, Actor: "operator:test"}
			h.cli("abort", service)
			v = h.waitPhase(rollout.RolledBack, 1)
			gen := v.state.Generation
			h.publishCommand(promote, 2)
			h.stays(rollout.RolledBack, time.Second)
			if got := h.view().state.Generation; got != gen {
				t.Errorf("a stale promote wrote: generation %d, want %d", got, gen)
			}
		})
	})
}

// TestFaults: UNAVAILABLE and ABORTED from Cloud Run are delivered again
// and end applied; a command that fails every attempt ends in the
// dead-letter topic.
func TestFaults(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend pubsubemu.Backend) {
		h := start(t, backend, options{maxAttempts: 6})
		emu := h.cloud.Run
		emu.InjectFault("UpdateService", runemu.Fault{Code: codes.Unavailable, Times: 2})
		emu.InjectFault("UpdateService", runemu.Fault{Code: codes.Aborted, Times: 1})
		emu.InjectFault("UpdateService", runemu.Fault{Code: codes.Unavailable, Times: 1, After: true})
		h.push(repo + ":faults")
		v := h.waitPhase(rollout.Progressing, 1)
		checkStepsOnce(t, v.state, v.state.Rollout.ID)
		if st := h.cloud.Bridge.Stats(); st.Failures < 3 {
			t.Errorf("bridge saw %d failed deliveries, want at least 3 (the injected faults)", st.Failures)
		}

		// Every write now fails: the pause is dead-lettered after 6 attempts.
		emu.InjectFault("UpdateService", runemu.Fault{Code: codes.Unavailable})
		pause := events.Command{Type: events.CommandPause, Service: service, Rollout: v.state.Rollout.ID, Generation: v.state.Generation,
			Step: events.StepPause, Stage: 1, Actor: "operator:test"}
		h.publishCommand(pause, 1)
		msg := h.deadLetter(30 * time.Second)
		emu.ClearFaults()
		got, err := events.DecodeCommand(msg.Data)
		if err != nil || got.Type != events.CommandPause {
			t.Fatalf("dead letter = %s (%v), want the pause", msg.Data, err)
		}
		if n := msg.Attributes["CloudPubSubDeadLetterSourceDeliveryCount"]; n != "6" {
			t.Errorf("dead letter delivery count = %q, want 6", n)
		}
		if v := h.view(); v.phase() != rollout.Progressing {
			t.Errorf("phase after the dead-lettered pause = %s, want progressing", v.phase())
		}
	})
}
