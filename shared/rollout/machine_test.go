package rollout

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC) // a Tuesday

const (
	digestA = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	digestB = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	imageA  = "local.dev/ai-square/web@" + digestA
	imageB  = "local.dev/ai-square/web@" + digestB
)

var stages = []int{10, 30, 50, 100}

// fixture names a starting state for the table; deploying has two forms.
type fixture string

const deployingNoCanary fixture = "deploying (no canary)"

func fixtures() []fixture {
	var out []fixture
	for _, p := range Phases {
		if p == Deploying {
			out = append(out, deployingNoCanary)
		}
		out = append(out, fixture(p))
	}
	return out
}

// stateAt builds a state whose rollout (for imageA) is in the fixture's phase.
func stateAt(t *testing.T, f fixture) State {
	t.Helper()
	r := &Rollout{
		ID: ID("web", digestA), Image: imageA, Digest: digestA, PublishTime: t0.Add(-time.Minute),
		Attempt: 1, Claimed: 5, Stages: stages, Stable: "web-stable", Started: t0,
		StepStarted: t0, Deadline: t0.Add(time.Hour),
	}
	s := State{V: 1, Generation: 9, Service: "web", Stable: "web-stable", Rollout: r}
	switch f {
	case deployingNoCanary:
		r.Phase = Deploying
	case fixture(Deploying):
		r.Phase, r.Canary = Deploying, "web-canary"
	case fixture(Progressing), fixture(Paused), fixture(RollingBack):
		r.Phase, r.Canary, r.Stage = Phase(f), "web-canary", 2
	case fixture(Promoted):
		r.Phase, r.Canary, r.Stage = Promoted, "web-canary", 4
		s.Stable, s.Previous = "web-canary", "web-stable"
	case fixture(RolledBack), fixture(Superseded), fixture(Stopped):
		r.Phase, r.Canary, r.Stage = Phase(f), "web-canary", 2
	case fixture(Failed), fixture(Waiting), fixture(BackingUp):
		r.Phase = Phase(f)
	default:
		t.Fatalf("unknown fixture %q", f)
	}
	if r.Phase.Terminal() {
		r.Deadline = time.Time{}
	}
	return s
}

// commandFor builds the ordinary command of each kind for the fixture's
// rollout: shifts go to the next stage.
func commandFor(s State, k Kind) Command {
	r := s.Rollout
	c := Command{Kind: k, Rollout: r.ID, Generation: s.Generation, Actor: "test"}
	switch k {
	case Claim:
		c = Command{Kind: Claim, Service: "web", Image: imageA, Digest: digestA, PublishTime: r.PublishTime,
			Stages: stages, Stable: "web-stable", WindowOpen: true}
	case BackupProgress:
		c.Holder = "w1"
	case BackupDone:
		c.Holder, c.Backup = "w1", &Backup{Prefix: "gs://b/p/", Manifest: "gs://b/p/manifest.json"}
	case CanaryCreated:
		c.Revision = "web-canary"
	case Shift:
		c.Stage = r.Stage + 1
		if r.Phase == Promoted {
			c.Stage = r.Stage
		}
	case Republish:
		c.Step = StepDeploy
	case Rollback:
		c.Reason = "operator abort"
	case HookFailed:
		c.Holder, c.Reason = "w1", "post-rollback hook: status 500"
	case Escalate:
		c.Reason = "rollback never applied"
	case Dequeue:
		c.Digest, c.Reason = digestB, "refused"
	case Stop:
		c.Reason, c.Stable = "service changed outside coalmine: its traffic is LATEST 100%", "web-other"
	case Judged:
		c.Verdict = &Verdict{Stage: r.Stage, Status: VerdictHealthy, Reason: "every gate passes"}
	}
	return c
}

type want struct {
	outcome Outcome
	phase   Phase // after, when applied
}

// table is the whole (phase, kind) matrix for the ordinary commands.
var table = map[fixture]map[Kind]want{
	fixture(Waiting): {
		Claim: {Duplicate, ""}, Begin: {Applied, BackingUp}, BackupProgress: {Rejected, ""},
		BackupDone: {Rejected, ""}, CanaryCreated: {Rejected, ""}, Shift: {Rejected, ""},
		Pause: {Rejected, ""}, Resume: {Rejected, ""}, Rollback: {Applied, RolledBack},
		RollbackDone: {Rejected, ""}, Fail: {Applied, Failed}, Republish: {Applied, Waiting},
		HookFailed: {Stale, ""}, Escalate: {Applied, Waiting}, Dequeue: {Stale, ""}, Stop: {Applied, Stopped}, Judged: {Stale, ""},
	},
	fixture(BackingUp): {
		Claim: {Duplicate, ""}, Begin: {Duplicate, ""}, BackupProgress: {Applied, BackingUp},
		BackupDone: {Applied, Deploying}, CanaryCreated: {Rejected, ""}, Shift: {Rejected, ""},
		Pause: {Rejected, ""}, Resume: {Rejected, ""}, Rollback: {Applied, RolledBack},
		RollbackDone: {Rejected, ""}, Fail: {Applied, Failed}, Republish: {Applied, BackingUp},
		HookFailed: {Stale, ""}, Escalate: {Applied, BackingUp}, Dequeue: {Stale, ""}, Stop: {Applied, Stopped}, Judged: {Stale, ""},
	},
	deployingNoCanary: {
		Claim: {Duplicate, ""}, Begin: {Stale, ""}, BackupProgress: {Duplicate, ""},
		BackupDone: {Duplicate, ""}, CanaryCreated: {Applied, Deploying}, Shift: {Rejected, ""},
		Pause: {Rejected, ""}, Resume: {Rejected, ""}, Rollback: {Applied, RolledBack},
		RollbackDone: {Rejected, ""}, Fail: {Applied, Failed}, Republish: {Applied, Deploying},
		HookFailed: {Stale, ""}, Escalate: {Applied, Deploying}, Dequeue: {Stale, ""}, Stop: {Applied, Stopped}, Judged: {Stale, ""},
	},
	fixture(Deploying): {
		Claim: {Duplicate, ""}, Begin: {Stale, ""}, BackupProgress: {Duplicate, ""},
		BackupDone: {Duplicate, ""}, CanaryCreated: {Duplicate, ""}, Shift: {Applied, Progressing},
		Pause: {Rejected, ""}, Resume: {Rejected, ""}, Rollback: {Applied, RollingBack},
		RollbackDone: {Rejected, ""}, Fail: {Applied, Failed}, Republish: {Applied, Deploying},
		HookFailed: {Stale, ""}, Escalate: {Applied, Deploying}, Dequeue: {Stale, ""}, Stop: {Applied, Stopped}, Judged: {Stale, ""},
	},
	fixture(Progressing): {
		Claim: {Duplicate, ""}, Begin: {Stale, ""}, BackupProgress: {Stale, ""},
		BackupDone: {Stale, ""}, CanaryCreated: {Stale, ""}, Shift: {Applied, Progressing},
		Pause: {Applied, Paused}, Resume: {Duplicate, ""}, Rollback: {Applied, RollingBack},
		RollbackDone: {Rejected, ""}, Fail: {Rejected, ""}, Republish: {Applied, Progressing},
		HookFailed: {Stale, ""}, Escalate: {Applied, Progressing}, Dequeue: {Stale, ""}, Stop: {Applied, Stopped}, Judged: {Applied, Progressing},
	},
	fixture(Paused): {
		Claim: {Duplicate, ""}, Begin: {Stale, ""}, BackupProgress: {Stale, ""},
		BackupDone: {Stale, ""}, CanaryCreated: {Stale, ""}, Shift: {Rejected, ""},
		Pause: {Duplicate, ""}, Resume: {Applied, Progressing}, Rollback: {Applied, RollingBack},
		RollbackDone: {Rejected, ""}, Fail: {Rejected, ""}, Republish: {Applied, Paused},
		HookFailed: {Stale, ""}, Escalate: {Applied, Paused}, Dequeue: {Stale, ""}, Stop: {Applied, Stopped}, Judged: {Applied, Paused},
	},
	fixture(Promoted): {
		Claim: {Stale, ""}, Begin: {Stale, ""}, BackupProgress: {Stale, ""},
		BackupDone: {Stale, ""}, CanaryCreated: {Stale, ""}, Shift: {Duplicate, ""},
		Pause: {Stale, ""}, Resume: {Stale, ""}, Rollback: {Stale, ""},
		RollbackDone: {Stale, ""}, Fail: {Stale, ""}, Republish: {Stale, ""},
		HookFailed: {Stale, ""}, Escalate: {Stale, ""}, Dequeue: {Stale, ""}, Stop: {Stale, ""}, Judged: {Stale, ""},
	},
	fixture(RollingBack): {
		Claim: {Duplicate, ""}, Begin: {Stale, ""}, BackupProgress: {Stale, ""},
		BackupDone: {Stale, ""}, CanaryCreated: {Stale, ""}, Shift: {Stale, ""},
		Pause: {Stale, ""}, Resume: {Stale, ""}, Rollback: {Duplicate, ""},
		RollbackDone: {Applied, RolledBack}, Fail: {Stale, ""}, Republish: {Applied, RollingBack},
		HookFailed: {Applied, RollingBack}, Escalate: {Applied, RollingBack}, Dequeue: {Stale, ""}, Stop: {Rejected, ""}, Judged: {Stale, ""},
	},
	fixture(RolledBack): {
		Claim: {Rejected, ""}, Begin: {Stale, ""}, BackupProgress: {Stale, ""},
		BackupDone: {Stale, ""}, CanaryCreated: {Stale, ""}, Shift: {Stale, ""},
		Pause: {Stale, ""}, Resume: {Stale, ""}, Rollback: {Duplicate, ""},
		RollbackDone: {Duplicate, ""}, Fail: {Stale, ""}, Republish: {Stale, ""},
		HookFailed: {Stale, ""}, Escalate: {Stale, ""}, Dequeue: {Stale, ""}, Stop: {Stale, ""}, Judged: {Stale, ""},
	},
	fixture(Failed): {
		Claim: {Rejected, ""}, Begin: {Stale, ""}, BackupProgress: {Stale, ""},
		BackupDone: {Stale, ""}, CanaryCreated: {Stale, ""}, Shift: {Stale, ""},
		Pause: {Stale, ""}, Resume: {Stale, ""}, Rollback: {Stale, ""},
		RollbackDone: {Stale, ""}, Fail: {Duplicate, ""}, Republish: {Stale, ""},
		HookFailed: {Stale, ""}, Escalate: {Stale, ""}, Dequeue: {Stale, ""}, Stop: {Stale, ""}, Judged: {Stale, ""},
	},
	fixture(Superseded): {
		Claim: {Stale, ""}, Begin: {Stale, ""}, BackupProgress: {Stale, ""},
		BackupDone: {Stale, ""}, CanaryCreated: {Stale, ""}, Shift: {Stale, ""},
		Pause: {Stale, ""}, Resume: {Stale, ""}, Rollback: {Duplicate, ""},
		RollbackDone: {Duplicate, ""}, Fail: {Stale, ""}, Republish: {Stale, ""},
		HookFailed: {Stale, ""}, Escalate: {Stale, ""}, Dequeue: {Stale, ""}, Stop: {Stale, ""}, Judged: {Stale, ""},
	},
	fixture(Stopped): {
		Claim: {Stale, ""}, Begin: {Stale, ""}, BackupProgress: {Stale, ""},
		BackupDone: {Stale, ""}, CanaryCreated: {Stale, ""}, Shift: {Stale, ""},
		Pause: {Stale, ""}, Resume: {Stale, ""}, Rollback: {Stale, ""},
		RollbackDone: {Stale, ""}, Fail: {Stale, ""}, Republish: {Stale, ""},
		HookFailed: {Stale, ""}, Escalate: {Stale, ""}, Dequeue: {Stale, ""}, Stop: {Stale, ""}, Judged: {Stale, ""},
	},
}

func TestApplyTableCoversEveryPhaseAndKind(t *testing.T) {
	for _, f := range fixtures() {
		row, ok := table[f]
		if !ok {
			t.Errorf("table has no row for %q", f)
			continue
		}
		for _, k := range Kinds {
			if _, ok := row[k]; !ok {
				t.Errorf("table row %q has no column %q", f, k)
			}
		}
	}
}

func TestApplyTable(t *testing.T) {
	for f, row := range table {
		for k, w := range row {
			t.Run(fmt.Sprintf("%s/%s", f, k), func(t *testing.T) {
				s := stateAt(t, f)
				before := mustEncode(t, s)
				c := commandFor(s, k)
				res := Apply(s, c, t0.Add(time.Minute), Config{})
				if got := res.Outcome; got != w.outcome {
					t.Fatalf("Apply(%s, %s) outcome = %v (%s), want %v", f, k, got, res.Reason, w.outcome)
				}
				if after := mustEncode(t, s); after != before {
					t.Errorf("Apply changed its input state")
				}
				if w.outcome != Applied {
					if res.Reason == "" {
						t.Errorf("outcome %v without a reason", res.Outcome)
					}
					if got := mustEncode(t, res.State); got != before {
						t.Errorf("outcome %v returned a changed state", res.Outcome)
					}
					return
				}
				checkApplied(t, s, res.State, w.phase, k)
			})
		}
	}
}

// checkApplied checks what every applied transition must do.
func checkApplied(t *testing.T, before, after State, phase Phase, kind ...Kind) {
	t.Helper()
	if got, want := after.Generation, before.Generation+1; got != want {
		t.Errorf("generation = %d, want %d", got, want)
	}
	if got := after.Rollout.Phase; got != phase {
		t.Errorf("phase = %s, want %s", got, phase)
	}
	if len(kind) > 0 && (kind[0] == HookFailed || (kind[0] == BackupProgress && before.Rollout != nil && before.Rollout.Phase == phase)) {
		if len(after.History) != len(before.History) {
			t.Errorf("a lease renewal or release went into the history")
		}
		return
	}
	if got, want := len(after.History), len(before.History)+1; got != want {
		t.Errorf("history has %d entries, want %d", got, want)
	}
	if e := after.History[len(after.History)-1]; e.Generation != after.Generation || e.Phase != phase {
		t.Errorf("last history entry = %+v, want generation %d phase %s", e, after.Generation, phase)
	}
	if escalated := len(kind) > 0 && kind[0] == Escalate; !escalated && phase.Terminal() != after.Rollout.Deadline.IsZero() {
		t.Errorf("phase %s has deadline %v", phase, after.Rollout.Deadline)
	}
	if _, err := Encode(after); err != nil {
		t.Errorf("Encode: %v", err)
	}
}

func mustEncode(t *testing.T, s State) string {
	t.Helper()
	v, err := Encode(s)
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	return v
}

// TestApplyStaleAndOutOfOrder covers, for every fixture and kind, a command
// for another rollout, one from before the claim, and one whose sender saw
// a newer generation than the state at hand.
func TestApplyStaleAndOutOfOrder(t *testing.T) {
	for _, f := range fixtures() {
		for _, k := range Kinds {
			if k == Claim {
				continue
			}
			s := stateAt(t, f)
			tests := []struct {
				name string
				edit func(*Command)
				want Outcome
			}{
				{"other rollout", func(c *Command) { c.Rollout = "web-0123456789ab" }, Stale},
				{"other rollout seen newer", func(c *Command) { c.Rollout = "web-0123456789ab"; c.Generation = s.Generation + 1 }, Retry},
				{"before the claim", func(c *Command) { c.Generation = s.Rollout.Claimed - 1 }, Stale},
				{"newer generation", func(c *Command) { c.Generation = s.Generation + 3 }, Retry},
				{"no rollout", func(c *Command) { c.Rollout = "" }, Rejected},
			}
			for _, tt := range tests {
				c := commandFor(s, k)
				tt.edit(&c)
				if got := Apply(s, c, t0, Config{}); got.Outcome != tt.want {
					t.Errorf("%s/%s/%s: outcome = %v (%s), want %v", f, k, tt.name, got.Outcome, got.Reason, tt.want)
				}
			}
		}
	}
}

func TestShiftOrdering(t *testing.T) {
	tests := []struct {
		name   string
		f      fixture
		stage  int
		manual bool
		want   Outcome
	}{
		{"same stage again", fixture(Progressing), 2, false, Duplicate},
		{"older stage", fixture(Progressing), 1, false, Stale},
		{"skip a stage", fixture(Progressing), 4, false, Rejected},
		{"stage 0", fixture(Progressing), 0, false, Rejected},
		{"beyond the last", fixture(Progressing), 5, false, Rejected},
		{"deploying to stage 2", fixture(Deploying), 2, false, Rejected},
		{"manual promote while paused", fixture(Paused), 3, true, Applied},
		{"paused, automatic shift", fixture(Paused), 3, false, Rejected},
		{"paused, its own stage", fixture(Paused), 2, true, Stale},
		{"promoted, older stage", fixture(Promoted), 3, false, Stale},
		{"rolled back, promote", fixture(RolledBack), 4, true, Stale},
		{"rolling back, promote", fixture(RollingBack), 3, true, Stale},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := stateAt(t, tt.f)
			c := commandFor(s, Shift)
			c.Stage, c.Manual = tt.stage, tt.manual
			if got := Apply(s, c, t0, Config{}); got.Outcome != tt.want {
				t.Errorf("outcome = %v (%s), want %v", got.Outcome, got.Reason, tt.want)
			}
		})
	}
}

func TestPromoteMakesCanaryStable(t *testing.T) {
	s := stateAt(t, fixture(Progressing))
	s.Rollout.Stage = 3
	c := commandFor(s, Shift)
	res := Apply(s, c, t0, Config{})
	if res.Outcome != Applied {
		t.Fatalf("outcome = %v (%s), want applied", res.Outcome, res.Reason)
	}
	got := res.State
	if got.Rollout.Phase != Promoted || got.Stable != "web-canary" || got.Previous != "web-stable" || got.StableImage != imageA {
		t.Errorf("after promote: phase %s stable %q previous %q image %q", got.Rollout.Phase, got.Stable, got.Previous, got.StableImage)
	}
	wantTraffic := []Target{{"web-canary", 100, TagStable}, {"web-stable", 0, TagPrevious}}
	if fmt.Sprint(got.Traffic()) != fmt.Sprint(wantTraffic) {
		t.Errorf("Traffic() = %v, want %v", got.Traffic(), wantTraffic)
	}
}

func TestClaim(t *testing.T) {
	fresh := State{}
	base := Command{Kind: Claim, Service: "web", Image: imageA, Digest: digestA, PublishTime: t0,
		Stages: stages, Stable: "web-00001-abc", WindowOpen: true}
	tests := []struct {
		name      string
		state     State
		edit      func(*Command)
		want      Outcome
		wantPhase Phase
		wantID    string
	}{
		{"first rollout", fresh, nil, Applied, BackingUp, "web-aaaaaaaaaaaa"},
		{"outside the window", fresh, func(c *Command) { c.WindowOpen = false }, Applied, Waiting, "web-aaaaaaaaaaaa"},
		{"no stable revision", fresh, func(c *Command) { c.Stable = "" }, Rejected, "", ""},
		{"traffic split by an operator after a rollout", stateAt(t, fixture(Promoted)), func(c *Command) {
			c.Image, c.Digest, c.Stable = imageB, digestB, ""
		}, Rejected, "", ""},
		{"no service", fresh, func(c *Command) { c.Service = "" }, Rejected, "", ""},
		{"no digest", fresh, func(c *Command) { c.Digest = "" }, Rejected, "", ""},
		{"stages not ending at 100", fresh, func(c *Command) { c.Stages = []int{10, 50} }, Rejected, "", ""},
		{"stages descending", fresh, func(c *Command) { c.Stages = []int{50, 10, 100} }, Rejected, "", ""},
		{"same digest in progress", stateAt(t, fixture(Progressing)), nil, Duplicate, "", ""},
		{"new digest while in progress", stateAt(t, fixture(Progressing)), func(c *Command) {
			c.Image, c.Digest = imageB, digestB
		}, Supersede, "", ""},
		{"older push delivered late", stateAt(t, fixture(Progressing)), func(c *Command) {
			c.Image, c.Digest, c.PublishTime = imageB, digestB, t0.Add(-time.Hour)
		}, Stale, "", ""},
		{"older push after the rollout ended", stateAt(t, fixture(Promoted)), func(c *Command) {
			c.Image, c.Digest, c.PublishTime = imageB, digestB, t0.Add(-time.Hour)
		}, Stale, "", ""},
		{"new digest after promotion", stateAt(t, fixture(Promoted)), func(c *Command) {
			c.Image, c.Digest = imageB, digestB
		}, Applied, BackingUp, "web-bbbbbbbbbbbb"},
		{"failed digest pushed again", stateAt(t, fixture(Failed)), nil, Rejected, "", ""},
		{"failed digest retried", stateAt(t, fixture(Failed)), func(c *Command) { c.Retry = true }, Applied, BackingUp, "web-aaaaaaaaaaaa-r10"},
		{"rolled back digest retried", stateAt(t, fixture(RolledBack)), func(c *Command) { c.Retry = true }, Applied, BackingUp, "web-aaaaaaaaaaaa-r10"},
		{"promoted digest retried", stateAt(t, fixture(Promoted)), func(c *Command) { c.Retry = true }, Stale, "", ""},
		{"superseded digest pushed again later", stateAt(t, fixture(Superseded)), func(c *Command) { c.PublishTime = t0.Add(time.Hour) }, Applied, BackingUp, "web-aaaaaaaaaaaa-r10"},
		{"digest in the failed list", State{V: 1, Generation: 3, Stable: "web-1", FailedDigests: []string{digestA}}, nil, Rejected, "", ""},
		{"digest in the failed list, retried", State{V: 1, Generation: 3, Stable: "web-1", FailedDigests: []string{digestA}}, func(c *Command) { c.Retry = true }, Applied, BackingUp, "web-aaaaaaaaaaaa-r4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base
			if tt.edit != nil {
				tt.edit(&c)
			}
			res := Apply(tt.state, c, t0.Add(time.Minute), Config{})
			if res.Outcome != tt.want {
				t.Fatalf("outcome = %v (%s), want %v", res.Outcome, res.Reason, tt.want)
			}
			if tt.want != Applied {
				return
			}
			checkApplied(t, tt.state, res.State, tt.wantPhase)
			r := res.State.Rollout
			if r.ID != tt.wantID {
				t.Errorf("rollout ID = %q, want %q", r.ID, tt.wantID)
			}
			if r.Claimed != res.State.Generation {
				t.Errorf("claimed generation = %d, want %d", r.Claimed, res.State.Generation)
			}
			if res.State.Stable != c.Stable || r.Stable != c.Stable {
				t.Errorf("stable = %q / %q, want %q", res.State.Stable, r.Stable, c.Stable)
			}
		})
	}
}

func TestRollbackRecordsFailedDigestButNotSupersede(t *testing.T) {
	for _, tt := range []struct {
		reason     string
		wantPhase  Phase
		wantFailed bool
	}{
		{"operator abort", RolledBack, true},
		{"superseded", Superseded, false},
	} {
		s := stateAt(t, fixture(Progressing))
		c := commandFor(s, Rollback)
		c.Reason = tt.reason
		res := Apply(s, c, t0, Config{})
		res = Apply(res.State, Command{Kind: RollbackDone, Rollout: s.Rollout.ID, Generation: res.State.Generation}, t0, Config{})
		if res.Outcome != Applied || res.State.Rollout.Phase != tt.wantPhase {
			t.Fatalf("%s: outcome %v phase %s, want applied %s", tt.reason, res.Outcome, res.State.Rollout.Phase, tt.wantPhase)
		}
		if got := res.State.Failed(digestA); got != tt.wantFailed {
			t.Errorf("%s: Failed(digest) = %v, want %v", tt.reason, got, tt.wantFailed)
		}
		if got := res.State.Rollout.Reason; got != tt.reason {
			t.Errorf("%s: reason = %q", tt.reason, got)
		}
		if tr := res.State.Traffic(); len(tr) != 1 || tr[0].Revision != "web-stable" || tr[0].Percent != 100 {
			t.Errorf("%s: traffic = %v, want web-stable 100%%", tt.reason, tr)
		}
	}
}

func TestBackupLease(t *testing.T) {
	s := stateAt(t, fixture(BackingUp))
	lease := time.Minute
	progress := func(s State, holder string, at time.Time) Result {
		return Apply(s, Command{Kind: BackupProgress, Rollout: s.Rollout.ID, Generation: s.Generation, Holder: holder, Lease: lease,
			Backup: &Backup{Objects: 7}}, at, Config{})
	}
	res := progress(s, "w1", t0)
	if res.Outcome != Applied {
		t.Fatalf("first worker: %v (%s)", res.Outcome, res.Reason)
	}
	s = res.State
	if got := progress(s, "w2", t0.Add(30*time.Second)); got.Outcome != Held {
		t.Errorf("second worker inside the lease: %v, want held", got.Outcome)
	}
	if got := progress(s, "w1", t0.Add(30*time.Second)); got.Outcome != Applied {
		t.Errorf("holder renews: %v, want applied", got.Outcome)
	}
	taken := progress(s, "w2", t0.Add(2*time.Minute))
	if taken.Outcome != Applied || taken.State.Rollout.Lease.Holder != "w2" {
		t.Fatalf("expired lease taken over: %v, holder %+v", taken.Outcome, taken.State.Rollout.Lease)
	}
	if got := taken.State.Rollout.Backup.Objects; got != 7 {
		t.Errorf("progress lost: objects = %d, want 7", got)
	}
	done := Apply(taken.State, Command{Kind: BackupDone, Rollout: s.Rollout.ID, Holder: "w1", Backup: &Backup{Prefix: "p"}}, t0.Add(2*time.Minute+time.Second), Config{})
	if done.Outcome != Held {
		t.Errorf("old holder finishing under the new lease: %v, want held", done.Outcome)
	}
}

func TestHistoryAndFailedDigestsAreCapped(t *testing.T) {
	cfg := Config{History: 5, FailedDigests: 3}
	s := State{V: 1, Stable: "web-1"}
	now := t0
	for i := 0; i < 20; i++ {
		now = now.Add(time.Minute)
		d := fmt.Sprintf("sha256:%064x", i)
		res := Apply(s, Command{Kind: Claim, Service: "web", Image: "local.dev/x/y@" + d, Digest: d, PublishTime: now, Stages: stages, Stable: "web-1", WindowOpen: true}, now, cfg)
		if res.Outcome != Applied {
			t.Fatalf("claim %d: %v (%s)", i, res.Outcome, res.Reason)
		}
		res = Apply(res.State, Command{Kind: Fail, Rollout: res.State.Rollout.ID, Reason: "backup failed"}, now, cfg)
		if res.Outcome != Applied {
			t.Fatalf("fail %d: %v (%s)", i, res.Outcome, res.Reason)
		}
		s = res.State
		if len(s.History) > cfg.History || len(s.FailedDigests) > cfg.FailedDigests {
			t.Fatalf("after %d rollouts: %d history entries, %d failed digests", i+1, len(s.History), len(s.FailedDigests))
		}
	}
	if got, want := s.FailedDigests[len(s.FailedDigests)-1], fmt.Sprintf("sha256:%064x", 19); got != want {
		t.Errorf("newest failed digest = %s, want %s", got, want)
	}
	if got := s.History[len(s.History)-1].Kind; got != Fail {
		t.Errorf("newest history entry kind = %s, want fail", got)
	}
}

func TestEncodeDecode(t *testing.T) {
	s := stateAt(t, fixture(Progressing))
	s.Rollout.StableTemplate = []byte(`{"containers":[{"image":"x"}]}`)
	s.History = []Entry{{Rollout: s.Rollout.ID, Generation: 9, At: t0, Kind: Shift, Phase: Progressing, Stage: 2}}
	v := mustEncode(t, s)
	got, err := Decode(v)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if again := mustEncode(t, got); again != v {
		t.Errorf("round trip changed the state:\n got %s\nwant %s", again, v)
	}
	if got, err := Decode(""); err != nil || got.Generation != 0 || got.Rollout != nil {
		t.Errorf(`Decode("") = %+v, %v; want the zero state`, got, err)
	}
	for _, bad := range []string{
		"{", `{"gen":1}`, `{"v":2,"gen":1}`, `{"v":1,"gen":-1}`, `{"v":1,"rollout":{"phase":"progressing"}}`,
		`{"v":1,"rollout":{"id":"x","phase":"flying"}}`, `{"v":1,"rollout":{"id":"x","phase":"progressing","stage":3,"stages":[100]}}`,
	} {
		if _, err := Decode(bad); err == nil || !strings.Contains(err.Error(), ErrCorrupt.Error()) {
			t.Errorf("Decode(%s) error = %v, want ErrCorrupt", bad, err)
		}
	}
	big := s.Clone()
	big.Rollout.StableTemplate = []byte(`"` + strings.Repeat("x", MaxEncodedSize) + `"`)
	if _, err := Encode(big); err == nil {
		t.Errorf("Encode of an oversized state succeeded")
	}
}

// TestStopLeavesTheSplitToTheOperator: a rollout stopped for an outside
// change describes no split (the write keeps the service's traffic), names
// the revision the operator serves as stable, and the same digest may be
// released again.
func TestStopLeavesTheSplitToTheOperator(t *testing.T) {
	s := stateAt(t, fixture(Progressing))
	c := commandFor(s, Stop)
	res := Apply(s, c, t0, Config{})
	if res.Outcome != Applied {
		t.Fatalf("stop: %v %s", res.Outcome, res.Reason)
	}
	st := res.State
	if got := st.Traffic(); got != nil {
		t.Errorf("traffic of a stopped rollout: %v, want none", got)
	}
	if st.Stable != "web-other" {
		t.Errorf("stable %q, want web-other", st.Stable)
	}
	if st.Failed(digestA) {
		t.Error("a stop marked the digest failed; it was not the image's fault")
	}
	again := commandFor(st, Claim)
	again.PublishTime, again.Stable = t0.Add(time.Minute), "web-other"
	res = Apply(st, again, t0.Add(time.Minute), Config{})
	if res.Outcome != Applied || res.State.Rollout.Attempt != 2 || res.State.Stable != "web-other" {
		t.Errorf("claim after stop: %v %s attempt %d stable %q", res.Outcome, res.Reason, res.State.Rollout.Attempt, res.State.Stable)
	}
}

// TestClaimOfTheServingDigest: a push of the digest the stable revision
// runs is ignored when nothing is in progress, and supersedes a rollout in
// progress like any newer push (how a team cancels one).
func TestClaimOfTheServingDigest(t *testing.T) {
	done := stateAt(t, fixture(Promoted))
	c := Command{Kind: Claim, Service: "web", Image: imageB, Digest: digestB, PublishTime: t0, Stages: stages,
		Stable: "web-canary", StableDigest: digestB, WindowOpen: true}
	if res := Apply(done, c, t0, Config{}); res.Outcome != Stale || !strings.Contains(res.Reason, "already serving") {
		t.Errorf("claim of the serving digest: %v %q, want stale, already serving", res.Outcome, res.Reason)
	}
	live := stateAt(t, fixture(Progressing))
	c.Stable, c.StableDigest = "", digestB
	if res := Apply(live, c, t0, Config{}); res.Outcome != Supersede {
		t.Errorf("claim of the stable digest during a rollout: %v %q, want supersede", res.Outcome, res.Reason)
	}
}

// TestOverrideWindow: a claim with an override begins at once and says why;
// a queued one keeps its override for its release; a resume with an
// override delivered again after the rollout began is a duplicate.
func TestOverrideWindow(t *testing.T) {
	c := Command{Kind: Claim, Service: "web", Image: imageA, Digest: digestA, PublishTime: t0, Stages: stages,
		Stable: "web-stable", OverrideWindow: true, Reason: "hotfix", Actor: "operator:bob"}
	res := Apply(State{}, c, t0, Config{})
	if res.Outcome != Applied || res.State.Rollout.Phase != BackingUp || res.State.History[0].Reason != "deploy window overridden: hotfix" {
		t.Errorf("claim with override: %v %s %+v", res.Outcome, res.Reason, res.State.History)
	}
	q := c
	q.Image, q.Digest, q.PublishTime = imageB, digestB, t0.Add(time.Minute)
	res = Apply(res.State, q, t0.Add(time.Minute), Config{})
	if p := res.State.Pending; res.Outcome != Supersede || p == nil || !p.OverrideWindow || p.Reason != "hotfix" {
		t.Errorf("queued claim with override: %v, pending %+v", res.Outcome, res.State.Pending)
	}
	begun := stateAt(t, fixture(BackingUp))
	resume := Command{Kind: Resume, Rollout: begun.Rollout.ID, Generation: begun.Generation, OverrideWindow: true, Reason: "hotfix"}
	if res := Apply(begun, resume, t0, Config{}); res.Outcome != Duplicate {
		t.Errorf("resume with override of a rollout that began: %v %q, want duplicate", res.Outcome, res.Reason)
	}
}

// TestStageStartedSurvivesPause: a shift starts the stage's clock; a pause moves the step's
// clock but not the stage's, so a paused canary is still judged from the stage's start; a
// resume starts the stage's judgement afresh (the figures that paused it must not pause it
// again at once).
func TestStageStartedSurvivesPause(t *testing.T) {
	s := stateAt(t, fixture(Progressing))
	c := commandFor(s, Shift)
	c.Stage = s.Rollout.Stage + 1
	shifted := Apply(s, c, t0, Config{})
	if shifted.Outcome != Applied || !shifted.State.Rollout.StageStarted.Equal(t0) {
		t.Fatalf("shift: %v, stage started %v; want applied at %v", shifted.Outcome, shifted.State.Rollout.StageStarted, t0)
	}
	paused := Apply(shifted.State, commandFor(shifted.State, Pause), t0.Add(time.Minute), Config{})
	resumed := Apply(paused.State, commandFor(paused.State, Resume), t0.Add(2*time.Minute), Config{})
	if paused.Outcome != Applied || resumed.Outcome != Applied {
		t.Fatalf("pause %v (%s), resume %v (%s)", paused.Outcome, paused.Reason, resumed.Outcome, resumed.Reason)
	}
	if p := paused.State.Rollout; !p.StageStarted.Equal(t0) || !p.StepStarted.Equal(t0.Add(time.Minute)) {
		t.Errorf("after pause: stage started %v, step started %v; want %v and %v", p.StageStarted, p.StepStarted, t0, t0.Add(time.Minute))
	}
	r := resumed.State.Rollout
	if !r.StageStarted.Equal(t0.Add(2*time.Minute)) || !r.StepStarted.Equal(t0.Add(2*time.Minute)) {
		t.Errorf("after resume: stage started %v, step started %v; want both %v", r.StageStarted, r.StepStarted, t0.Add(2*time.Minute))
	}
}
