package rollout

import (
	"testing"
	"time"
)

func TestWatchdog(t *testing.T) {
	cfg := DefaultConfig()
	d := cfg.Deadlines
	tests := []struct {
		name        string
		f           fixture
		edit        func(*State)
		at          time.Duration // after the step's deadline (negative: before)
		windowOpen  bool
		wantApply   Kind // "" for none
		wantPublish string
	}{
		{"waiting, window closed, in time", fixture(Waiting), nil, -time.Minute, false, "", ""},
		{"waiting, window opens", fixture(Waiting), nil, -time.Minute, true, Begin, StepBackup},
		{"waiting too long", fixture(Waiting), nil, time.Minute, false, Fail, ""},
		{"backing up, lease live", fixture(BackingUp), nil, -time.Second, true, "", ""},
		{"backing up, lease expired", fixture(BackingUp), nil, time.Second, true, Republish, StepBackup},
		{"backing up, retries used", fixture(BackingUp), func(s *State) { s.Rollout.Attempts = d.Retries }, time.Second, true, Fail, ""},
		{"backing up past the backup deadline", fixture(BackingUp), func(s *State) { s.Rollout.StepStarted = t0.Add(-d.Backup) }, -time.Second, true, Fail, ""},
		{"deploying in time", fixture(Deploying), nil, -time.Second, true, "", ""},
		{"deploying late", deployingNoCanary, nil, time.Second, true, Republish, StepDeploy},
		{"deploying, retries used", fixture(Deploying), func(s *State) { s.Rollout.Attempts = d.Retries }, time.Second, true, Fail, ""},
		{"progressing in time", fixture(Progressing), nil, -time.Second, true, "", ""},
		{"progressing too long", fixture(Progressing), nil, time.Second, true, Republish, StepRollback},
		{"progressing, rollback lost", fixture(Progressing), func(s *State) { s.Rollout.Attempts = d.Retries }, time.Second, true, Republish, StepRollback},
		{"progressing, rollback never applies", fixture(Progressing), func(s *State) { s.Rollout.Attempts = d.Retries + 1 }, time.Second, true, Escalate, ""},
		{"escalated", fixture(Progressing), func(s *State) {
			s.Rollout.Attempts, s.Rollout.Escalated, s.Rollout.Deadline = d.Retries+1, "stuck", time.Time{}
		}, 1000 * time.Hour, true, "", ""},
		{"rolled back with a queued push", fixture(RolledBack), func(s *State) {
			s.Pending = &Pending{Image: imageB, Digest: digestB, PublishTime: t0}
		}, time.Minute, true, "", StepRelease},
		{"paused too long", fixture(Paused), nil, time.Second, true, Republish, StepRollback},
		{"rolling back late", fixture(RollingBack), nil, time.Second, true, Republish, StepRollback},
		{"rolling back, retries used", fixture(RollingBack), func(s *State) { s.Rollout.Attempts = d.Retries }, time.Second, true, RollbackDone, ""},
		{"promoted", fixture(Promoted), nil, 1000 * time.Hour, true, "", ""},
		{"rolled back", fixture(RolledBack), nil, 1000 * time.Hour, true, "", ""},
		{"failed", fixture(Failed), nil, 1000 * time.Hour, true, "", ""},
		{"superseded", fixture(Superseded), nil, 1000 * time.Hour, true, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := stateAt(t, tt.f)
			if tt.edit != nil {
				tt.edit(&s)
			}
			base := s.Rollout.Deadline
			if base.IsZero() {
				base = t0
			}
			w := Watchdog(s, base.Add(tt.at), tt.windowOpen, cfg)
			var gotApply Kind
			if w.Apply != nil {
				gotApply = w.Apply.Kind
			}
			if gotApply != tt.wantApply || w.Publish != tt.wantPublish {
				t.Fatalf("Watchdog = apply %q publish %q (%s), want apply %q publish %q", gotApply, w.Publish, w.Reason, tt.wantApply, tt.wantPublish)
			}
			if w.Apply == nil {
				return
			}
			if w.Reason == "" && gotApply != Begin {
				t.Errorf("decision without a reason")
			}
			res := Apply(s, *w.Apply, base.Add(tt.at), cfg)
			if res.Outcome != Applied {
				t.Fatalf("applying the watchdog's command: %v (%s)", res.Outcome, res.Reason)
			}
			if gotApply == Republish {
				r := res.State.Rollout
				if r.Attempts != s.Rollout.Attempts+1 || !r.Deadline.After(base.Add(tt.at)) {
					t.Errorf("after republish: attempts %d deadline %v", r.Attempts, r.Deadline)
				}
				if again := Watchdog(res.State, base.Add(tt.at+time.Second), true, cfg); again.Apply != nil {
					t.Errorf("a second tick right after the republish acts again: %+v", again)
				}
			}
		})
	}
}
