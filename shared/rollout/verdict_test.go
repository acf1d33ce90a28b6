package rollout

import (
	"strings"
	"testing"
	"time"
)

func TestJudgedAddsHistoryOnlyWhenTheStatusChanges(t *testing.T) {
	s := stateAt(t, fixture(Progressing))
	cfg := DefaultConfig()
	judge := func(s State, status string, requests int64, at time.Time) State {
		t.Helper()
		c := Command{Kind: Judged, Rollout: s.Rollout.ID, Generation: s.Generation, Actor: "Verify",
			Verdict: &Verdict{Stage: s.Rollout.Stage, Status: status, At: at, Canary: &Figures{Revision: "web-canary", Requests: requests}}}
		res := Apply(s, c, at, cfg)
		if res.Outcome != Applied {
			t.Fatalf("%s verdict: got %s (%s), want applied", status, res.Outcome, res.Reason)
		}
		return res.State
	}
	entries := func(s State) int {
		n := 0
		for _, e := range s.History {
			if e.Kind == Judged {
				n++
			}
		}
		return n
	}
	s = judge(s, VerdictInconclusive, 10, t0.Add(time.Minute))
	s = judge(s, VerdictInconclusive, 50, t0.Add(2*time.Minute))
	if got, want := entries(s), 1; got != want {
		t.Errorf("verdict entries after two inconclusive verdicts: got %d, want %d", got, want)
	}
	if got, want := s.Rollout.Verdict.Canary.Requests, int64(50); got != want {
		t.Errorf("the state keeps the last figures: got %d requests, want %d", got, want)
	}
	s = judge(s, VerdictHealthy, 500, t0.Add(3*time.Minute))
	if got, want := entries(s), 2; got != want {
		t.Errorf("verdict entries after the change to healthy: got %d, want %d", got, want)
	}
	if last := s.History[len(s.History)-1]; !strings.HasPrefix(last.Reason, "verdict healthy") {
		t.Errorf("history reason: got %q, want it to start with %q", last.Reason, "verdict healthy")
	}
	if got, want := s.Rollout.Deadline, t0.Add(time.Hour); !got.Equal(want) {
		t.Errorf("a verdict moved the deadline: got %s, want %s", got, want)
	}
	// A verdict about another stage is stale.
	c := Command{Kind: Judged, Rollout: s.Rollout.ID, Generation: s.Generation, Verdict: &Verdict{Stage: 1, Status: VerdictHealthy}}
	if got := Apply(s, c, t0, cfg).Outcome; got != Stale {
		t.Errorf("verdict about stage 1 at stage 2: got %s, want stale", got)
	}
}

func TestJudgedBoundsWhatItKeeps(t *testing.T) {
	s := stateAt(t, fixture(Progressing))
	v := &Verdict{Stage: 2, Status: VerdictUnhealthy, Reason: strings.Repeat("r", 5000)}
	for i := 0; i < 20; i++ {
		v.Gates = append(v.Gates, GateResult{Gate: "errorRate", Status: VerdictUnhealthy, Detail: strings.Repeat("d", 5000)})
	}
	res := Apply(s, Command{Kind: Judged, Rollout: s.Rollout.ID, Generation: s.Generation, Verdict: v}, t0, DefaultConfig())
	got := res.State.Rollout.Verdict
	if len(got.Reason) > MaxReason || len(got.Gates) != MaxGates || len(got.Gates[0].Detail) > MaxGateDetail {
		t.Errorf("verdict not bounded: reason %d bytes, %d gates, detail %d bytes", len(got.Reason), len(got.Gates), len(got.Gates[0].Detail))
	}
	if _, err := Encode(res.State); err != nil {
		t.Errorf("Encode: %v", err)
	}
}

func TestRevertWithinGuard(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Deadlines.Guard = time.Hour
	promoted := func() State {
		s := stateAt(t, fixture(Promoted))
		s.Rollout.Ended = t0
		s.Rollout.StableTemplate = []byte(`{"revision":"web-stable"}`)
		s.StableImage, s.PreviousImage = imageA, "local.dev/ai-square/web@sha256:0000"
		return s
	}
	rb := func(s State, revert bool) Command {
		return Command{Kind: Rollback, Rollout: s.Rollout.ID, Generation: s.Generation, Reason: "alert: error rate", Actor: "alert:x", Revert: revert, Incident: "0.abc"}
	}
	tests := []struct {
		name    string
		now     time.Time
		revert  bool
		guard   time.Duration
		outcome Outcome
	}{
		{"an alert within the guard reverts", t0.Add(59 * time.Minute), true, time.Hour, Applied},
		{"after the guard it is too late", t0.Add(time.Hour), true, time.Hour, Stale},
		{"a rollback that does not ask to revert", t0.Add(time.Minute), false, time.Hour, Stale},
		{"no guard period", t0.Add(time.Minute), true, 0, Stale},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := promoted()
			cfg := cfg
			cfg.Deadlines.Guard = tt.guard
			res := Apply(s, rb(s, tt.revert), tt.now, cfg)
			if res.Outcome != tt.outcome {
				t.Fatalf("got %s (%s), want %s", res.Outcome, res.Reason, tt.outcome)
			}
			if res.Outcome != Applied {
				return
			}
			n := res.State
			if n.Stable != "web-stable" || n.StableImage != s.PreviousImage || n.Previous != "" {
				t.Errorf("after revert: stable %q image %q previous %q; want web-stable, %q, none", n.Stable, n.StableImage, n.Previous, s.PreviousImage)
			}
			if n.Rollout.Phase != RollingBack || !n.Rollout.Ended.IsZero() || !n.Rollout.HasIncident("0.abc") {
				t.Errorf("rollout after revert: phase %s, ended %s, incidents %v", n.Rollout.Phase, n.Rollout.Ended, n.Rollout.Incidents)
			}
			tr := n.Traffic()
			if len(tr) != 1 || tr[0].Revision != "web-stable" || tr[0].Percent != 100 {
				t.Errorf("traffic after revert: got %+v, want web-stable 100%%", tr)
			}
			// The rollback finishes as any other: the digest is remembered as failed.
			done := Apply(n, Command{Kind: RollbackDone, Rollout: n.Rollout.ID, Generation: n.Generation}, tt.now, cfg)
			if done.Outcome != Applied || done.State.Rollout.Phase != RolledBack || !done.State.Failed(digestA) {
				t.Errorf("rollback done: got %s %s failed=%v", done.Outcome, done.State.Rollout.Phase, done.State.Failed(digestA))
			}
			// Delivered again, it changes nothing.
			if again := Apply(done.State, rb(done.State, true), tt.now, cfg); again.Outcome == Applied {
				t.Errorf("revert delivered again after it finished: applied")
			}
		})
	}
}

func TestIncidentsRemembered(t *testing.T) {
	s := stateAt(t, fixture(Progressing))
	res := Apply(s, Command{Kind: Pause, Rollout: s.Rollout.ID, Generation: s.Generation, Incident: "0.p95", Actor: "alert:p95"}, t0, DefaultConfig())
	if res.Outcome != Applied || !res.State.Rollout.HasIncident("0.p95") {
		t.Fatalf("pause for an incident: got %s, incidents %v", res.Outcome, res.State.Rollout.Incidents)
	}
	r := &Rollout{}
	for i := 0; i < MaxIncidents+5; i++ {
		rememberIncident(r, string(rune('a'+i)))
	}
	if got := len(r.Incidents); got != MaxIncidents {
		t.Errorf("incidents kept: got %d, want %d", got, MaxIncidents)
	}
	if !r.HasIncident(string(rune('a'+MaxIncidents+4))) || r.HasIncident("a") {
		t.Errorf("incidents kept are not the newest: %v", r.Incidents)
	}
}

func TestManualPromoteSaysItSkippedTheGates(t *testing.T) {
	s := stateAt(t, fixture(Progressing))
	s.StableImage = "local.dev/ai-square/web@sha256:0000"
	res := Apply(s, Command{Kind: Shift, Rollout: s.Rollout.ID, Generation: s.Generation, Stage: 3, Manual: true, Actor: "operator:ann"}, t0, DefaultConfig())
	if res.Outcome != Applied {
		t.Fatalf("got %s (%s)", res.Outcome, res.Reason)
	}
	if got, want := res.State.History[len(res.State.History)-1].Reason, "operator promote: bake and gates skipped"; got != want {
		t.Errorf("history reason: got %q, want %q", got, want)
	}
	res = Apply(res.State, Command{Kind: Shift, Rollout: s.Rollout.ID, Generation: res.State.Generation, Stage: 4}, t0, DefaultConfig())
	if got, want := res.State.PreviousImage, s.StableImage; got != want {
		t.Errorf("previous image after promotion: got %q, want %q", got, want)
	}
}

// TestWatchdogRollbackBeatsAVerdictsShift: once the watchdog has published the rollback of a
// rollout past its stage deadline, a shift from a verdict is refused (it would reset the
// watchdog's count and forget the rollback); an operator's promote still moves it.
func TestWatchdogRollbackBeatsAVerdictsShift(t *testing.T) {
	s := stateAt(t, fixture(Progressing))
	s.Rollout.Attempts = 1
	c := Command{Kind: Shift, Rollout: s.Rollout.ID, Generation: s.Generation, Stage: s.Rollout.Stage + 1, Actor: "Verify"}
	if res := Apply(s, c, t0, DefaultConfig()); res.Outcome != Rejected {
		t.Errorf("a verdict's shift with a rollback pending: got %s (%s), want rejected", res.Outcome, res.Reason)
	}
	c.Manual = true
	if res := Apply(s, c, t0, DefaultConfig()); res.Outcome != Applied {
		t.Errorf("an operator's promote with a rollback pending: got %s (%s), want applied", res.Outcome, res.Reason)
	}
}
