package release

import (
	"strings"
	"testing"
	"time"

	"github.com/ai-square/coalmine/events"
	"github.com/ai-square/coalmine/shared/judge"
	"github.com/ai-square/coalmine/shared/policy"
	"github.com/ai-square/coalmine/shared/rollout"
)

var stageStart = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC) // a Tuesday

func gatePolicy() *policy.Service {
	s := policy.Defaults()
	s.Name = "web"
	s.Stages = []policy.Stage{{Percent: 10, Bake: policy.Dur(30 * time.Minute)}, {Percent: 50, Bake: policy.Dur(30 * time.Minute)}, {Percent: 100}}
	return &s
}

func TestDecide(t *testing.T) {
	progressing := func(stage int) *rollout.Rollout {
		return &rollout.Rollout{ID: "web-aaaa", Phase: rollout.Progressing, Stage: stage, Stages: []int{10, 50, 100}, Canary: "web-2", StageStarted: stageStart}
	}
	paused := progressing(1)
	paused.Phase = rollout.Paused
	verdict := func(st judge.Status, action policy.Action, covered time.Duration) judge.Verdict {
		return judge.Verdict{Status: st, Action: action, Reason: "why", Start: stageStart, End: stageStart.Add(covered)}
	}
	tests := []struct {
		name   string
		v      judge.Verdict
		r      *rollout.Rollout
		window bool
		typ    events.CommandType
		stage  int
		hold   string // a word of the reason, when it holds
	}{
		{"healthy after the bake moves on", verdict(judge.Healthy, "", 30*time.Minute), progressing(1), true, events.CommandShiftTraffic, 2, ""},
		{"healthy at the last stage before 100% promotes", verdict(judge.Healthy, "", 31*time.Minute), progressing(2), true, events.CommandShiftTraffic, 3, ""},
		{"healthy before the bake is covered holds", verdict(judge.Healthy, "", 29*time.Minute), progressing(1), true, "", 0, "baking"},
		{"healthy outside the deploy windows holds", verdict(judge.Healthy, "", time.Hour), progressing(1), false, "", 0, "deploy windows"},
		{"inconclusive holds", verdict(judge.Inconclusive, "", time.Hour), progressing(1), true, "", 0, "inconclusive"},
		{"unhealthy rollback rolls back", verdict(judge.Unhealthy, policy.ActionRollback, time.Minute), progressing(1), true, events.CommandRollback, 0, ""},
		{"unhealthy rollback rolls back outside the windows too", verdict(judge.Unhealthy, policy.ActionRollback, time.Minute), progressing(1), false, events.CommandRollback, 0, ""},
		{"unhealthy pause pauses", verdict(judge.Unhealthy, policy.ActionPause, time.Minute), progressing(2), true, events.CommandPause, 2, ""},
		{"unhealthy pause of a paused rollout holds", verdict(judge.Unhealthy, policy.ActionPause, time.Minute), paused, true, "", 0, "already paused"},
		{"unhealthy rollback of a paused rollout rolls back", verdict(judge.Unhealthy, policy.ActionRollback, time.Minute), paused, true, events.CommandRollback, 0, ""},
		{"healthy paused holds for an operator", verdict(judge.Healthy, "", time.Hour), paused, true, "", 0, "operator"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := decide(tt.v, tt.r, gatePolicy(), tt.window)
			if got.typ != tt.typ || got.stage != tt.stage {
				t.Fatalf("got %s stage %d (%s), want %s stage %d", got.typ, got.stage, got.reason, tt.typ, tt.stage)
			}
			if tt.hold != "" && !strings.Contains(got.reason, tt.hold) {
				t.Errorf("reason %q does not say %q", got.reason, tt.hold)
			}
		})
	}
}

func TestAlertDecision(t *testing.T) {
	now := stageStart.Add(2 * time.Hour)
	state := func(phase rollout.Phase, mutate ...func(*rollout.State)) rollout.State {
		st := rollout.State{Stable: "web-1", Rollout: &rollout.Rollout{
			ID: "web-aaaa", Phase: phase, Stage: 1, Stages: []int{10, 50, 100}, Canary: "web-2", Stable: "web-1", Started: stageStart,
		}}
		if phase == rollout.Promoted {
			st.Stable, st.Previous, st.Rollout.Stage, st.Rollout.Ended = "web-2", "web-1", 3, now.Add(-30*time.Minute)
		}
		for _, m := range mutate {
			m(&st)
		}
		return st
	}
	inc := func(rev string, started time.Time) events.Incident {
		i := events.Incident{ID: "0.abc", State: events.IncidentOpen, PolicyName: "error rate", StartedAt: started,
			ResourceLabels: map[string]string{"service_name": "web"}}
		if rev != "" {
			i.ResourceLabels["revision_name"] = rev
		}
		return i
	}
	during := stageStart.Add(time.Hour)
	tests := []struct {
		name   string
		inc    events.Incident
		action policy.Action
		st     rollout.State
		guard  time.Duration
		typ    events.CommandType
		revert bool
	}{
		// Every rollback an alert asks for also asks to revert: a promotion that wins the race
		// is reverted within the guard period instead of the alert being lost.
		{"canary incident rolls back", inc("web-2", during), policy.ActionRollback, state(rollout.Progressing), time.Hour, events.CommandRollback, true},
		{"service-wide incident rolls back", inc("", during), policy.ActionRollback, state(rollout.Progressing), time.Hour, events.CommandRollback, true},
		{"pause action pauses", inc("web-2", during), policy.ActionPause, state(rollout.Progressing), time.Hour, events.CommandPause, false},
		{"paused rollout is rolled back by a rollback alert", inc("web-2", during), policy.ActionRollback, state(rollout.Paused), time.Hour, events.CommandRollback, true},
		{"pause of a paused rollout changes nothing", inc("web-2", during), policy.ActionPause, state(rollout.Paused), time.Hour, "", false},
		{"stable revision's incident changes nothing", inc("web-1", during), policy.ActionRollback, state(rollout.Progressing), time.Hour, "", false},
		{"incident from before the rollout changes nothing", inc("", stageStart.Add(-time.Minute)), policy.ActionRollback, state(rollout.Progressing), time.Hour, "", false},
		{"answered incident changes nothing", inc("web-2", during), policy.ActionRollback, state(rollout.Paused, func(s *rollout.State) { s.Rollout.Incidents = []string{"0.abc"} }), time.Hour, "", false},
		{"promoted within the guard reverts", inc("web-2", during), policy.ActionRollback, state(rollout.Promoted), time.Hour, events.CommandRollback, true},
		{"promoted outside the guard changes nothing", inc("web-2", during), policy.ActionRollback, state(rollout.Promoted), 20 * time.Minute, "", false},
		{"promoted and a pause alert changes nothing", inc("web-2", during), policy.ActionPause, state(rollout.Promoted), time.Hour, "", false},
		{"rolling back changes nothing", inc("web-2", during), policy.ActionRollback, state(rollout.RollingBack), time.Hour, "", false},
		{"rolled back changes nothing", inc("web-2", during), policy.ActionRollback, state(rollout.RolledBack), time.Hour, "", false},
		{"backing up changes nothing", inc("", during), policy.ActionRollback, state(rollout.BackingUp), time.Hour, "", false},
		{"no rollout changes nothing", inc("", during), policy.ActionRollback, rollout.State{Stable: "web-1"}, time.Hour, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := alertDecision(tt.inc, tt.action, tt.st, now, tt.guard)
			if got.typ != tt.typ || got.revert != tt.revert {
				t.Errorf("got %q revert=%v (%s), want %q revert=%v", got.typ, got.revert, got.why, tt.typ, tt.revert)
			}
			if got.typ == "" && got.why == "" {
				t.Errorf("changes nothing without saying why")
			}
		})
	}
}
