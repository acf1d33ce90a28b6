package rollout

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestClip(t *testing.T) {
	tests := []struct {
		name, in string
		n        int
		want     string
	}{
		{"short", "operator abort", 100, "operator abort"},
		{"control characters", "line one\nline\ttwo\x00", 100, "line one line two "},
		{"invalid utf-8", "a\xffb", 100, "a b"},
		{"line separators", "a\u2028b\u2029c", 100, "a b c"},
		{"cut", strings.Repeat("x", 100), 40, strings.Repeat("x", 21) + "… (79 bytes cut)"},
		{"n shorter than the note", strings.Repeat("x", 100), 5, "… ("},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Clip(tt.in, tt.n)
			if got != tt.want {
				t.Errorf("Clip(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
			}
			if len(got) > tt.n || !utf8.ValidString(got) {
				t.Errorf("Clip(%q, %d) = %q: %d bytes, valid UTF-8 %v", tt.in, tt.n, got, len(got), utf8.ValidString(got))
			}
		})
	}
	// A multi-byte character is never cut in half.
	for n := 20; n < 40; n++ {
		if got := Clip(strings.Repeat("é", 50), n); !utf8.ValidString(got) || len(got) > n {
			t.Errorf("Clip(é×50, %d) = %q", n, got)
		}
	}
}

// fullState is a progressing rollout whose history is at its cap, every
// entry carrying a reason as long as the bounds allow, with a stable
// template of a few kilobytes: the heaviest state the functions write.
func fullState(t *testing.T, cfg Config) State {
	t.Helper()
	s := stateAt(t, fixture(Progressing))
	tmpl, _ := json.Marshal(map[string]any{"containers": []any{map[string]any{"image": imageA, "env": strings.Repeat("E", 6000)}}})
	s.Rollout.StableTemplate = tmpl
	for i := range cfg.withDefaults().History {
		s.History = append(s.History, Entry{Rollout: s.Rollout.ID, Generation: int64(i), At: t0, Kind: Pause, Phase: Paused,
			Reason: Clip(strings.Repeat("\"", 1000), MaxEntryReason), Actor: Clip(strings.Repeat("a", 1000), MaxActor)})
	}
	s.Rollout.Reason = Clip(strings.Repeat("<", 5000), MaxReason)
	for i := range 20 {
		s.FailedDigests = append(s.FailedDigests, fmt.Sprintf("sha256:%064x", i))
	}
	return s
}

// TestRollbackAlwaysWritable: whatever an operator types as the reason, the
// rollback and its end are written (the 20,000-character abort and the
// 12,000-character rollback reproduced on the local cloud failed to encode).
func TestRollbackAlwaysWritable(t *testing.T) {
	cfg := DefaultConfig()
	for _, reason := range []string{
		strings.Repeat("r", 20000),
		strings.Repeat("<", 12000),
		strings.Repeat("\"\\", 9000),
		strings.Repeat("\x01", 9000),
		strings.Repeat("é", 9000),
	} {
		s := fullState(t, cfg)
		if _, err := Encode(s); err != nil {
			t.Fatalf("the starting state does not encode: %v", err)
		}
		rb := Command{Kind: Rollback, Rollout: s.Rollout.ID, Generation: s.Generation, Reason: reason, Actor: reason}
		res := Apply(s, rb, t0, cfg)
		if res.Outcome != Applied || res.State.Rollout.Phase != RollingBack {
			t.Fatalf("rollback with a %d-byte reason: %v (%s)", len(reason), res.Outcome, res.Reason)
		}
		enc, err := Encode(res.State)
		if err != nil {
			t.Fatalf("rollback with a %d-byte reason: %v", len(reason), err)
		}
		if len(enc) > MaxEncodedSize {
			t.Fatalf("encoded %d bytes", len(enc))
		}
		if got := len(res.State.Rollout.Reason); got > MaxReason {
			t.Errorf("rollout reason kept %d bytes, want at most %d", got, MaxReason)
		}
		done := Command{Kind: RollbackDone, Rollout: s.Rollout.ID, Generation: res.State.Generation, Reason: reason}
		res = Apply(res.State, done, t0, cfg)
		if res.Outcome != Applied || res.State.Rollout.Phase != RolledBack {
			t.Fatalf("rollback-done with a %d-byte reason: %v (%s)", len(reason), res.Outcome, res.Reason)
		}
		if _, err := Encode(res.State); err != nil {
			t.Fatalf("rollback-done with a %d-byte reason: %v", len(reason), err)
		}
	}
}

// TestEncodeWithoutHTMLEscaping: 3,000 '<' cost 3,000 bytes, not 18,000.
func TestEncodeWithoutHTMLEscaping(t *testing.T) {
	s := stateAt(t, fixture(Progressing))
	base, _ := Encode(s)
	s.Rollout.Reason = strings.Repeat("<", 3000)
	enc, err := Encode(s)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(enc) - len(base); got != 3000+len(`,"reason":""`) {
		t.Errorf("3000 '<' cost %d bytes", got)
	}
	got, err := Decode(enc)
	if err != nil || got.Rollout.Reason != s.Rollout.Reason {
		t.Errorf("round trip: %v, reason intact %v", err, got.Rollout.Reason == s.Rollout.Reason)
	}
}

// TestEncodeTrimsHistoryToFit: a state over the limit loses its oldest
// history entries, never the rollout; only a state too large without any
// history is refused.
func TestEncodeTrimsHistoryToFit(t *testing.T) {
	s := stateAt(t, fixture(Progressing))
	for i := range 100 {
		s.History = append(s.History, Entry{Rollout: s.Rollout.ID, Generation: int64(i), At: t0, Kind: Shift, Reason: strings.Repeat("x", 1000)})
	}
	enc, err := Encode(s)
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	got, err := Decode(enc)
	if err != nil {
		t.Fatal(err)
	}
	if len(enc) > MaxEncodedSize || len(got.History) == 0 || len(got.History) >= 100 {
		t.Fatalf("encoded %d bytes with %d history entries", len(enc), len(got.History))
	}
	if last := got.History[len(got.History)-1]; last.Generation != 99 {
		t.Errorf("newest entry kept has generation %d, want 99", last.Generation)
	}
	if got.Rollout == nil || got.Rollout.ID != s.Rollout.ID {
		t.Errorf("the rollout was lost")
	}
	if len(s.History) != 100 {
		t.Errorf("Encode changed its argument's history (%d entries)", len(s.History))
	}
	huge := stateAt(t, fixture(Progressing))
	huge.Rollout.StableTemplate = []byte(`"` + strings.Repeat("x", MaxEncodedSize) + `"`)
	if _, err := Encode(huge); err == nil {
		t.Errorf("a state too large without history encoded")
	}
}

// TestBackupAttemptsSurviveChunks: a backup whose every chunk fails (a
// database that is down) is failed by the watchdog after its retries, not
// kept alive by each redelivery taking the lease again (which reset the
// count to "attempt 1 of 3" every time).
func TestBackupAttemptsSurviveChunks(t *testing.T) {
	cfg := DefaultConfig()
	s := stateAt(t, fixture(BackingUp))
	now := t0
	apply := func(c Command) {
		t.Helper()
		c.Rollout, c.Generation = s.Rollout.ID, s.Generation
		res := Apply(s, c, now, cfg)
		if res.Outcome != Applied {
			t.Fatalf("%s: %v (%s)", c.Kind, res.Outcome, res.Reason)
		}
		s = res.State
	}
	republished := 0
	for tick := 0; ; tick++ {
		if tick > 50 {
			t.Fatalf("the backup of a database that is down is still running after %d ticks (attempts %d)", tick, s.Rollout.Attempts)
		}
		// Every delivery takes the lease, fails and lets go, twice
		// between ticks (Pub/Sub redelivers with backoff).
		for range 2 {
			apply(Command{Kind: BackupProgress, Holder: fmt.Sprintf("w%d", tick), Lease: 6 * time.Minute})
			apply(Command{Kind: BackupProgress, Holder: fmt.Sprintf("w%d", tick), Lease: -1,
				Backup: &Backup{Step: "database", LastError: "pg_dump: connection refused"}})
		}
		now = s.Rollout.Deadline.Add(time.Second)
		w := Watchdog(s, now, true, cfg)
		if w.Apply == nil {
			t.Fatalf("tick %d past the deadline did nothing", tick)
		}
		if w.Apply.Kind == Fail {
			if !strings.Contains(w.Reason, "connection refused") {
				t.Errorf("fail reason %q does not say why", w.Reason)
			}
			break
		}
		republished++
		apply(*w.Apply)
	}
	if republished != cfg.Deadlines.Retries {
		t.Errorf("republished %d times, want %d", republished, cfg.Deadlines.Retries)
	}
	// A chunk that makes progress does reset the count.
	s = stateAt(t, fixture(BackingUp))
	s.Rollout.Attempts = 2
	apply(Command{Kind: BackupProgress, Holder: "w", Lease: -1, Backup: &Backup{Step: "storage", Objects: 10}})
	if s.Rollout.Attempts != 0 {
		t.Errorf("attempts after a chunk that copied objects = %d, want 0", s.Rollout.Attempts)
	}
}

// TestWatchdogEscalatesStuckRollback: a rollback that never applies is
// published again a bounded number of times, then raised once; the
// watchdog then leaves the rollout to the operator.
func TestWatchdogEscalatesStuckRollback(t *testing.T) {
	cfg := DefaultConfig()
	s := stateAt(t, fixture(Progressing))
	now := s.Rollout.Deadline
	published, raised := 0, 0
	for tick := 0; tick < 200; tick++ {
		now = now.Add(11 * time.Minute)
		w := Watchdog(s, now, true, cfg)
		if w.Publish == StepRollback {
			published++
		}
		if w.Raise {
			raised++
			if w.Apply == nil || w.Apply.Kind != Escalate || !strings.Contains(w.Reason, "never applied") {
				t.Fatalf("raise without an escalation: %+v", w)
			}
		}
		if w.Apply != nil {
			res := Apply(s, *w.Apply, now, cfg)
			if res.Outcome != Applied {
				t.Fatalf("tick %d: %s: %v (%s)", tick, w.Apply.Kind, res.Outcome, res.Reason)
			}
			s = res.State // the rollback itself never applies
		}
	}
	if want := cfg.Deadlines.Retries + 1; published != want || raised != 1 {
		t.Errorf("200 ticks published the rollback %d times and raised %d times; want %d and 1", published, raised, want)
	}
	if s.Rollout.Escalated == "" || s.Rollout.Phase != Progressing {
		t.Errorf("after escalation: phase %s escalated %q", s.Rollout.Phase, s.Rollout.Escalated)
	}
	// The operator's abort applies and clears it.
	res := Apply(s, Command{Kind: Rollback, Rollout: s.Rollout.ID, Generation: s.Generation, Reason: "operator abort"}, now, cfg)
	if res.Outcome != Applied || res.State.Rollout.Escalated != "" || res.State.Rollout.Deadline.IsZero() {
		t.Errorf("abort after escalation: %v escalated %q deadline %v", res.Outcome, res.State.Rollout.Escalated, res.State.Rollout.Deadline)
	}
}

// TestHookLease: one post-rollback hook at a time, however many rollbacks
// were published; an expired lease is taken over; a failure lets go.
func TestHookLease(t *testing.T) {
	cfg := DefaultConfig()
	s := stateAt(t, fixture(Progressing))
	lease := 5 * time.Minute
	rb := func(s State, holder string, at time.Time) Result {
		return Apply(s, Command{Kind: Rollback, Rollout: s.Rollout.ID, Generation: s.Generation, Reason: "abort", Holder: holder, Lease: lease}, at, cfg)
	}
	res := rb(s, "h1", t0)
	if res.Outcome != Applied || res.State.Rollout.Lease == nil || res.State.Rollout.Lease.Holder != "h1" {
		t.Fatalf("first rollback: %v lease %+v", res.Outcome, res.State.Rollout.Lease)
	}
	s = res.State
	if !s.Rollout.Deadline.After(s.Rollout.Lease.Expires.Add(-time.Nanosecond)) {
		t.Errorf("deadline %v before the lease ends %v", s.Rollout.Deadline, s.Rollout.Lease.Expires)
	}
	for i := range 10 {
		if got := rb(s, fmt.Sprintf("other-%d", i), t0.Add(time.Minute)); got.Outcome != Held {
			t.Fatalf("another rollback inside the lease: %v (%s), want held", got.Outcome, got.Reason)
		}
	}
	if got := rb(s, "h1", t0.Add(time.Minute)); got.Outcome != Duplicate {
		t.Errorf("the holder's own redelivery: %v, want duplicate", got.Outcome)
	}
	taken := rb(s, "h2", t0.Add(lease+time.Second))
	if taken.Outcome != Applied || taken.State.Rollout.Lease.Holder != "h2" || len(taken.State.History) != len(s.History) {
		t.Fatalf("expired lease: %v holder %+v, history %d→%d", taken.Outcome, taken.State.Rollout.Lease, len(s.History), len(taken.State.History))
	}
	s = taken.State
	at := t0.Add(lease + 2*time.Second)
	if got := Apply(s, Command{Kind: HookFailed, Rollout: s.Rollout.ID, Holder: "h1", Reason: "late"}, at, cfg); got.Outcome != Held {
		t.Errorf("the old holder's failure under the new lease: %v, want held", got.Outcome)
	}
	failed := Apply(s, Command{Kind: HookFailed, Rollout: s.Rollout.ID, Holder: "h2", Reason: "status 500"}, at, cfg)
	if failed.Outcome != Applied || failed.State.Rollout.Lease != nil || failed.State.Rollout.LastError != "status 500" {
		t.Fatalf("hook failed: %v lease %+v error %q", failed.Outcome, failed.State.Rollout.Lease, failed.State.Rollout.LastError)
	}
	s = failed.State
	if got := rb(s, "h3", at); got.Outcome != Applied {
		t.Fatalf("after the failure a redelivery takes the lease at once: %v", got.Outcome)
	} else {
		s = got.State
	}
	if got := Apply(s, Command{Kind: RollbackDone, Rollout: s.Rollout.ID, Holder: "h2"}, at, cfg); got.Outcome != Held {
		t.Errorf("rollback-done by a holder that lost the lease: %v, want held", got.Outcome)
	}
	done := Apply(s, Command{Kind: RollbackDone, Rollout: s.Rollout.ID, Holder: "h3"}, at, cfg)
	if done.Outcome != Applied || done.State.Rollout.Phase != RolledBack || done.State.Rollout.Lease != nil {
		t.Errorf("rollback-done by the holder: %v %s lease %+v", done.Outcome, done.State.Rollout.Phase, done.State.Rollout.Lease)
	}
	// The watchdog's forced end needs no lease.
	if got := Apply(s, Command{Kind: RollbackDone, Rollout: s.Rollout.ID, Actor: "watchdog", Reason: "gave up"}, at, cfg); got.Outcome != Applied {
		t.Errorf("the watchdog's rollback-done: %v", got.Outcome)
	}
}

// TestQueue: a push while a rollout is in progress is queued in the state
// (never lost, never multiplying rollbacks); the newest queued push wins;
// the queue is released once the rollout ends, and dropped with a reason
// when its claim is refused.
func TestQueue(t *testing.T) {
	cfg := DefaultConfig()
	digestC := "sha256:" + strings.Repeat("c", 64)
	imageC := "local.dev/ai-square/web@" + digestC
	push := func(s State, image, digest string, at time.Time) Result {
		return Apply(s, Command{Kind: Claim, Service: "web", Image: image, Digest: digest, PublishTime: at,
			Stages: stages, Stable: s.Stable, WindowOpen: true, Actor: "artifact-registry"}, at, cfg)
	}
	s := stateAt(t, fixture(RollingBack))
	res := push(s, imageB, digestB, t0.Add(time.Minute))
	if res.Outcome != Supersede || res.State.Pending == nil || res.State.Pending.Digest != digestB || res.State.Generation != s.Generation+1 {
		t.Fatalf("push during a rollback: %v pending %+v", res.Outcome, res.State.Pending)
	}
	if e := res.State.History[len(res.State.History)-1]; e.Kind != Queue {
		t.Errorf("history entry %+v, want a queue entry", e)
	}
	s = res.State
	for range 10 {
		if got := push(s, imageB, digestB, t0.Add(time.Minute)); got.Outcome != Duplicate {
			t.Fatalf("the same push delivered again: %v", got.Outcome)
		}
	}
	if got := push(s, imageC, digestC, t0.Add(30*time.Second)); got.Outcome != Stale {
		t.Errorf("an older push than the queued one: %v, want stale", got.Outcome)
	}
	res = push(s, imageC, digestC, t0.Add(2*time.Minute))
	if res.Outcome != Supersede || res.State.Pending.Digest != digestC {
		t.Fatalf("a newer push: %v pending %+v", res.Outcome, res.State.Pending)
	}
	s = res.State
	done := Apply(s, Command{Kind: RollbackDone, Rollout: s.Rollout.ID, Generation: s.Generation}, t0.Add(3*time.Minute), cfg)
	if done.Outcome != Applied || done.State.Pending == nil {
		t.Fatalf("the rollback's end lost the queue: %v %+v", done.Outcome, done.State.Pending)
	}
	s = done.State
	retryA := Command{Kind: Claim, Service: "web", Image: imageA, Digest: digestA, PublishTime: t0.Add(90 * time.Second),
		Stages: stages, Stable: s.Stable, WindowOpen: true, Retry: true}
	if got := Apply(s, retryA, t0.Add(3*time.Minute), cfg); got.Outcome != Stale {
		t.Errorf("a retry of the rolled-back digest published before the queued push: %v (%s), want stale", got.Outcome, got.Reason)
	}
	if w := Watchdog(s, t0.Add(time.Hour), true, cfg); w.Publish != StepRelease {
		t.Errorf("watchdog with a queued push: %+v, want a release", w)
	}
	claimed := push(s, imageC, digestC, t0.Add(2*time.Minute))
	if claimed.Outcome != Applied || claimed.State.Pending != nil || claimed.State.Rollout.Digest != digestC {
		t.Fatalf("claim of the queued push: %v (%s) pending %+v", claimed.Outcome, claimed.Reason, claimed.State.Pending)
	}

	// A queued push whose claim is refused is dropped with the reason.
	s.FailedDigests = append(s.FailedDigests, digestC)
	if got := push(s, imageC, digestC, t0.Add(2*time.Minute)); got.Outcome != Rejected {
		t.Fatalf("claim of a failed digest: %v", got.Outcome)
	}
	drop := Apply(s, Command{Kind: Dequeue, Rollout: s.Rollout.ID, Generation: s.Generation, Digest: digestC, Reason: "digest failed before"}, t0.Add(4*time.Minute), cfg)
	if drop.Outcome != Applied || drop.State.Pending != nil || !strings.Contains(drop.State.History[len(drop.State.History)-1].Reason, "digest failed before") {
		t.Fatalf("dequeue: %v pending %+v", drop.Outcome, drop.State.Pending)
	}
	if w := Watchdog(drop.State, t0.Add(time.Hour), true, cfg); w.Publish != "" || w.Apply != nil {
		t.Errorf("watchdog after the queue was dropped: %+v", w)
	}
}

// TestRevert: a write Cloud Run stored but could not serve is undone: the
// state goes back one generation later, with the reason in the history.
func TestRevert(t *testing.T) {
	cfg := DefaultConfig()
	prev := stateAt(t, fixture(Deploying))
	c := Command{Kind: Shift, Rollout: prev.Rollout.ID, Generation: prev.Generation, Stage: 1, Manual: true, Actor: "operator:ann"}
	res := Apply(prev, c, t0, cfg)
	if res.Outcome != Applied {
		t.Fatal(res.Reason)
	}
	got := Revert(prev, res.State, c, "Revision 'web-canary' is not ready and cannot serve traffic.", t0, cfg)
	if got.Generation != res.State.Generation+1 || got.Rollout.Phase != Deploying || got.Rollout.Stage != 0 {
		t.Fatalf("reverted: generation %d phase %s stage %d", got.Generation, got.Rollout.Phase, got.Rollout.Stage)
	}
	e := got.History[len(got.History)-1]
	if e.Kind != NotServed || !strings.Contains(e.Reason, "not ready") || e.Generation != got.Generation {
		t.Errorf("history entry %+v", e)
	}
	if _, err := Encode(got); err != nil {
		t.Error(err)
	}
}
