package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/grpc/codes"

	"github.com/ai-square/coalmine/events"
	"github.com/ai-square/coalmine/infra/local/cloud"
	"github.com/ai-square/coalmine/infra/local/pubsubemu"
	"github.com/ai-square/coalmine/infra/local/runemu"
	"github.com/ai-square/coalmine/shared/release"
	"github.com/ai-square/coalmine/shared/rollout"
)

// The safety tests: a rollback always wins and nothing is lost. Each
// reproduces, on the local cloud, a way an unlucky operator or network
// broke a promise.

// TestHugeAbortReason: an abort whose reason is 20,000 characters rolls
// back under steady load with no failed request (it used to fail to encode
// the state and leave the canary at 10%); a 12,000-character rollback
// reason of '<' (six bytes each once JSON-escaped) ends rolled back too.
func TestHugeAbortReason(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend pubsubemu.Backend) {
		h := start(t, backend, options{})
		first := h.view()
		stable := lastSegment(first.svc.GetLatestReadyRevision())
		ld := startLoad(first.svc.GetUri())

		h.push(repo + ":v2")
		h.waitPhase(rollout.Progressing, 1)
		h.cli("abort", service, "--reason", strings.Repeat("operator typed a lot. ", 1000)[:20000])
		v := h.waitPhase(rollout.RolledBack, 1)
		if v.percent[stable] != 100 || v.tags[rollout.TagStable] != stable {
			t.Fatalf("after the abort: traffic %v tags %v, want %s at 100%%", v.percent, v.tags, stable)
		}
		if got := len(v.state.Rollout.Reason); got > rollout.MaxReason {
			t.Errorf("the state keeps a %d-byte reason, want at most %d", got, rollout.MaxReason)
		}
		ok, bad, failures, served := ld.finish()
		if bad != 0 || ok < 10 {
			t.Errorf("steady load through the abort: %d ok, %d failed (%v)", ok, bad, failures)
		}
		t.Logf("steady load through the 20,000-character abort: %d requests, %d failed; served by %v", ok, bad, served)

		h.push(repo + ":v3")
		v = h.waitPhase(rollout.Progressing, 1)
		h.publishCommand(events.Command{Type: events.CommandRollback, Service: service, Rollout: v.state.Rollout.ID,
			Generation: v.state.Generation, Step: events.StepRollback, Reason: strings.Repeat("<", 12000), Actor: "operator:test"}, 1)
		v = h.waitPhase(rollout.RolledBack, 1)
		if v.percent[stable] != 100 {
			t.Errorf("after the 12,000-character rollback: traffic %v", v.percent)
		}
		if h.logged(events.FunctionRollback, "giving up") {
			t.Errorf("the Rollback function gave up on a rollback")
		}
	})
}

// pushImage registers a local image running command and publishes its
// Artifact Registry notification, as `coalmine push` does for the sample
// app. It returns the image reference.
func (h *harness) pushImage(tag string, command ...string) string {
	h.t.Helper()
	ref := fmt.Sprintf("%s@sha256:%064x", repo, time.Now().UnixNano())
	if err := runemu.WriteImage(cloud.ImagesDir(h.cloud.Dir), ref, runemu.Image{Command: command}); err != nil {
		h.t.Fatal(err)
	}
	data, _ := json.Marshal(events.ArtifactNotification{Action: events.ActionInsert, Digest: ref, Tag: repo + ":" + tag})
	if _, err := h.cloud.Bus.Publish(context.Background(), events.TopicGCR, data, nil); err != nil {
		h.t.Fatal(err)
	}
	return ref
}

// fifo makes a named pipe: a program that reads it blocks until release is
// called.
func fifo(t *testing.T) (path string, release func()) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "gate")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	var once atomic.Bool
	release = func() {
		if once.Swap(true) {
			return
		}
		// Opening for writing waits for a reader; closing gives it EOF.
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err == nil {
			f.Close()
		}
	}
	t.Cleanup(func() {
		// Unblock any reader left, without waiting for one.
		if f, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
	})
	return path, release
}

// canaryThatFailsWhenOpened pushes an image whose revision starts only
// when open is called, and then fails; it returns once the canary is
// written (the rollout deploying).
func (h *harness) canaryThatFailsWhenOpened() (view, func()) {
	h.t.Helper()
	gate, open := fifo(h.t)
	h.pushImage("slow-then-fails", "sh", "-c", "cat "+gate+" >/dev/null; echo 'giving up after a slow start' >&2; exit 1")
	v := h.waitFor("the canary written", func(v view) bool { return v.phase() == rollout.Deploying && v.state.Rollout.Canary != "" })
	return v, open
}

// TestPromoteWhileCanaryStarts: promotes that arrive while the canary is
// still starting (and then fails) never move the state: it used to advance
// 10 → 30 → 50 → promoted on writes Cloud Run stored but never served,
// naming the dead canary stable and refusing every abort after.
func TestPromoteWhileCanaryStarts(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend pubsubemu.Backend) {
		h := start(t, backend, options{maxAttempts: 3})
		stable := lastSegment(h.view().svc.GetLatestReadyRevision())
		v, open := h.canaryThatFailsWhenOpened()
		id, canary := v.state.Rollout.ID, v.state.Rollout.Canary

		if _, err := h.tryCLI("promote", service); err == nil {
			t.Errorf("coalmine promote while the canary starts was accepted")
		}
		// What the CLI used to publish: four promotes, each from a fresh read.
		for range 4 {
			now := h.view()
			stage := now.stage() + 1
			h.publishCommand(events.Command{Type: events.CommandShiftTraffic, Service: service, Rollout: id, Generation: now.state.Generation,
				Stage: stage, Step: events.StepStage(stage), Manual: true, Actor: "operator:test"}, 1)
		}
		h.waitFor("the promotes to be refused", func(view) bool { return h.logged(events.FunctionShift, "is not ready yet") })
		if v := h.view(); v.phase() != rollout.Deploying || v.stage() != 0 {
			t.Fatalf("promotes on a canary that is not ready moved the state to %s stage %d", v.phase(), v.stage())
		}
		open()
		v = h.waitPhase(rollout.Failed, 0)
		if v.percent[stable] != 100 || v.percent[canary] != 0 || v.state.Stable != stable {
			t.Fatalf("after the canary failed: traffic %v, state stable %s; want %s at 100%%", v.percent, v.state.Stable, stable)
		}
		for _, e := range v.state.History {
			if e.Kind == rollout.Shift {
				t.Errorf("a shift on the dead canary is in the history: %+v", e)
			}
		}
		if got := v.svc.GetTemplate().GetContainers()[0].GetImage(); got != cloud.StableImage(&h.cloud.Policy.Services[0]) {
			t.Errorf("template image after the failure = %s", got)
		}
		// The service is usable: the next push releases.
		h.push(repo + ":after")
		h.waitPhase(rollout.Progressing, 1)
	})
}

// TestPushWhileCanaryFails: a push that arrives while the canary starts,
// and then fails, waits in the queue and is released once the failed
// canary is gone. Its queue write, which Cloud Run stores but whose update
// fails (every update fails while the template's revision cannot serve),
// used to be put back and the push acknowledged as a permanent failure.
func TestPushWhileCanaryFails(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend pubsubemu.Backend) {
		h := start(t, backend, options{maxAttempts: 3})
		stable := lastSegment(h.view().svc.GetLatestReadyRevision())
		_, open := h.canaryThatFailsWhenOpened()
		next := h.push(repo + ":next")
		h.waitFor("the push queued", func(v view) bool { return v.state.Pending != nil && v.state.Pending.Image == next })
		open()
		v := h.waitFor("the queued push released", func(v view) bool {
			return v.state.Rollout.Image == next && v.phase() == rollout.Progressing && !v.svc.GetReconciling()
		})
		if v.percent[stable] != 90 || v.percent[v.state.Rollout.Canary] != 10 {
			t.Errorf("the released push serves %v, want %s at 90%% and its canary at 10%%", v.percent, stable)
		}
		if v.state.Pending != nil {
			t.Errorf("the queue still holds %+v", v.state.Pending)
		}
	})
}

// TestNotServedWriteIsReverted: a shift Cloud Run stores but cannot serve
// (the canary died between the readiness check and the write) puts the
// state back with the reason, and the canary can still be removed.
func TestNotServedWriteIsReverted(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend pubsubemu.Backend) {
		var armed atomic.Bool
		var h *harness
		hooks := release.Hooks{BeforeWrite: func(ctx context.Context, p release.Point) error {
			if p.Function != events.FunctionShift || p.Kind != rollout.Shift || !armed.CompareAndSwap(true, false) {
				return nil
			}
			canary := h.view().state.Rollout.Canary
			pid := h.cloud.Run.PIDs()[canary]
			if pid == 0 {
				return errors.New("test: no process for the canary")
			}
			syscall.Kill(pid, syscall.SIGKILL)
			for ctx.Err() == nil {
				rev, err := h.revs.GetRevision(ctx, &runpb.GetRevisionRequest{Name: h.serviceName() + "/revisions/" + canary})
				if err == nil && !ready(rev) {
					return nil
				}
				time.Sleep(20 * time.Millisecond)
			}
			return ctx.Err()
		}}
		h = start(t, backend, options{hooks: hooks, maxAttempts: 3})
		h.push(repo + ":dies")
		v := h.waitPhase(rollout.Progressing, 1)
		stable, canary := v.tags[rollout.TagStable], v.state.Rollout.Canary
		armed.Store(true)
		// The operator hears that the promote did not happen, and why.
		if out, err := h.tryCLI("promote", service); err == nil || !strings.Contains(err.Error(), "refused") {
			t.Errorf("promote whose write was not served: %q, %v; want it refused", out, err)
		}
		v = h.waitFor("the shift put back", func(v view) bool {
			n := len(v.state.History)
			return n > 0 && v.state.History[n-1].Kind == rollout.NotServed && !v.svc.GetReconciling()
		})
		if v.phase() != rollout.Progressing || v.stage() != 1 || v.percent[canary] != 10 {
			t.Fatalf("after the unserved shift: phase %s stage %d traffic %v; want stage 1 with %s at 10%%", v.phase(), v.stage(), v.percent, canary)
		}
		h.cli("abort", service)
		v = h.waitPhase(rollout.RolledBack, 1)
		if v.percent[stable] != 100 {
			t.Errorf("after the abort: traffic %v, want %s at 100%%", v.percent, stable)
		}
	})
}

func ready(rev *runpb.Revision) bool {
	for _, c := range rev.GetConditions() {
		if c.GetType() == "Ready" {
			return c.GetState() == runpb.Condition_CONDITION_SUCCEEDED
		}
	}
	return false
}

// slowHookPolicy: the post-rollback hook is a command that blocks on a
// named pipe and logs each start and end.
func slowHookPolicy(gate, log string) string {
	return testPolicy + fmt.Sprintf(`    rollback:
      hook:
        command: [sh, -c, "echo start >> %s; cat %s >/dev/null; echo end >> %s"]
        timeout: 1m
`, log, gate, log)
}

func countLines(t *testing.T, path, word string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, l := range strings.Split(string(b), "\n") {
		if l == word {
			n++
		}
	}
	return n
}

// TestPushDuringSlowRollback: a push that arrives while a rollback's hook
// is still running is queued in the state and released once the rollback
// ends, however long that takes; one hook runs, however many rollbacks are
// delivered. It used to publish another rollback on every redelivery (11
// hooks at once), then dead-letter the push.
func TestPushDuringSlowRollback(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend pubsubemu.Backend) {
		gate, open := fifo(t)
		hookLog := filepath.Join(t.TempDir(), "hook.log")
		h := start(t, backend, options{policy: slowHookPolicy(gate, hookLog), maxAttempts: 4})
		h.push(repo + ":v3")
		v := h.waitPhase(rollout.Progressing, 1)
		v3 := v.state.Rollout.ID
		h.cli("abort", service)
		h.waitFor("the hook to start", func(view) bool { return countLines(t, hookLog, "start") == 1 })

		v4 := h.push(repo + ":v4")
		v = h.waitFor("v4 queued", func(v view) bool { return v.state.Pending != nil && v.state.Rollout.ID == v3 })
		if got := v.state.Pending.Image; got != v4 {
			t.Fatalf("queued %s, want %s", got, v4)
		}
		// The push delivered again, and the rollback delivered again: all
		// acknowledged, one hook running.
		h.push(repo + ":v4")
		again := events.Command{Type: events.CommandRollback, Service: service, Rollout: v3, Generation: v.state.Generation,
			Step: events.StepRollback, Reason: "again", Actor: "operator:test"}
		h.publishCommand(again, 5)
		// Google's emulator loses a message now and then under load (docs/local-cloud.md):
		// one more every 10s until five were held.
		last := time.Now()
		h.waitFor("the extra rollbacks held", func(view) bool {
			if h.countLogged(events.FunctionRollback, "command held") >= 5 {
				return true
			}
			if time.Since(last) > 10*time.Second {
				h.publishCommand(again, 1)
				last = time.Now()
			}
			return false
		})
		// The lease holder's own message delivered again to the same
		// instance while its hook runs (it shares the holder's name).
		lease := h.view().state.Rollout.Lease
		if lease == nil {
			t.Fatal("no lease on the post-rollback steps while the hook runs")
		}
		h.publishCommand(events.Command{Type: events.CommandRollback, Service: service, Rollout: v3, Generation: v.state.Generation,
			Step: events.StepRollback, Reason: "delivered again", Actor: "operator:test", ID: lease.Holder[strings.LastIndex(lease.Holder, "-")+1:]}, 2)
		h.waitFor("the redelivered rollbacks acknowledged", func(view) bool {
			return h.countLogged(events.FunctionRollback, "already running for this command") >= 2
		})
		if n := countLines(t, hookLog, "start"); n != 1 {
			t.Fatalf("%d post-rollback hooks started, want 1", n)
		}
		if v := h.view(); v.phase() != rollout.RollingBack || v.state.Pending == nil {
			t.Fatalf("while the hook runs: phase %s, queued %v", v.phase(), v.state.Pending)
		}

		open()
		v = h.waitFor("v4 released", func(v view) bool { return v.state.Rollout.Image == v4 && v.phase() == rollout.Progressing })
		if v.state.Pending != nil {
			t.Errorf("the queue still holds %+v", v.state.Pending)
		}
		if e := historyOf(v.state, v3); len(e) == 0 || e[len(e)-1].Phase != rollout.RolledBack {
			t.Errorf("rollout %s did not end rolled back: %v", v3, e)
		}
		if n := countLines(t, hookLog, "end"); n != 1 {
			t.Errorf("%d hooks finished, want 1", n)
		}
		if st := h.cloud.Bridge.Stats(); st.DeadLetters != 0 {
			t.Errorf("%d messages dead-lettered: %+v", st.DeadLetters, st)
		}
	})
}

// countLogged counts the messages function logged containing text.
func (h *harness) countLogged(function, text string) int {
	n := 0
	for _, l := range h.logs.lines() {
		msg, _ := l["msg"].(string)
		if l["function"] == function && strings.Contains(msg, text) {
			n++
		}
	}
	return n
}

// TestStuckRollbackIsRaised: a rollback that can never apply is published
// again a bounded number of times, then raised (an ERROR log and a
// needs-attention event) and left to the operator; it used to be published
// every few minutes forever. Once the cause is gone, an abort works.
func TestStuckRollbackIsRaised(t *testing.T) {
	pol := testPolicy + `    deadlines: {stage: 2s, rollback: 1s, retries: 2}
`
	forEachBackend(t, func(t *testing.T, backend pubsubemu.Backend) {
		var broken atomic.Bool
		broken.Store(true)
		hooks := release.Hooks{BeforeWrite: func(ctx context.Context, p release.Point) error {
			if p.Function == events.FunctionRollback && p.Kind == rollout.Rollback && broken.Load() {
				return errors.New("injected: the rollback write fails")
			}
			return nil
		}}
		h := start(t, backend, options{policy: pol, hooks: hooks, ticks: true, sweep: everySecond, maxAttempts: 2})
		attention := h.watchEvents(events.EventNeedsAttention)
		h.push(repo + ":stuck")
		v := h.waitFor("the escalation", func(v view) bool { return v.state.Rollout != nil && v.state.Rollout.Escalated != "" })
		id := v.state.Rollout.ID
		republished := 0
		for _, e := range historyOf(v.state, id) {
			if e.Kind == rollout.Republish {
				republished++
			}
		}
		if republished != 3 { // the stage deadline, then 2 retries
			t.Errorf("the rollback was published %d times before the escalation, want 3", republished)
		}
		select {
		case e := <-attention:
			if e.Rollout != id || !strings.Contains(e.Reason, "never applied") {
				t.Errorf("needs-attention event = %+v", e)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("no needs-attention event")
		}
		if !h.loggedAt(events.FunctionVerify, "ERROR", "never applied") {
			t.Errorf("the escalation was not logged at ERROR")
		}
		// More ticks change nothing.
		gen, ticks := v.state.Generation, h.cloud.Bridge.Stats().Subscriptions[tickSub].Acks
		h.waitFor("ten more ticks", func(view) bool { return h.cloud.Bridge.Stats().Subscriptions[tickSub].Acks >= ticks+10 })
		if got := h.view(); got.state.Generation != gen {
			t.Errorf("the watchdog wrote again after the escalation: generation %d → %d", gen, got.state.Generation)
		}
		broken.Store(false)
		h.cli("abort", service)
		v = h.waitPhase(rollout.RolledBack, 1)
		if v.state.Rollout.Escalated != "" {
			t.Errorf("escalation not cleared by the abort: %q", v.state.Rollout.Escalated)
		}
	})
}

var tickSub = "coalmine-verify-" + events.TopicTicks

// loggedAt reports whether function logged text at level.
func (h *harness) loggedAt(function, level, text string) bool {
	for _, l := range h.logs.lines() {
		msg, _ := l["msg"].(string)
		if l["function"] == function && l["level"] == level && strings.Contains(msg, text) {
			return true
		}
	}
	return false
}

// watchEvents delivers the lifecycle events of type typ from now on.
func (h *harness) watchEvents(typ events.LifecycleType) <-chan events.Lifecycle {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan events.Lifecycle, 16)
	sub := h.cloud.PubsubClient.Subscriber(events.SubscriptionWatch)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sub.Receive(ctx, func(_ context.Context, m *pubsub.Message) {
			m.Ack()
			e, err := events.DecodeLifecycle(m.Data)
			if err == nil && e.Type == typ {
				select {
				case out <- e:
				default:
				}
			}
		})
	}()
	h.t.Cleanup(func() { cancel(); <-done })
	return out
}

// TestTickRedeliveredOnTransientError: a tick that meets a transient Cloud
// Run error (INTERNAL; the client retries UNAVAILABLE itself) returns an error, so Pub/Sub delivers it again; it used to log
// "will be delivered again" and acknowledge.
func TestTickRedeliveredOnTransientError(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend pubsubemu.Backend) {
		h := start(t, backend, options{maxAttempts: 5})
		h.cloud.Run.InjectFault("GetService", runemu.Fault{Code: codes.Internal, Times: 2})
		if _, err := h.cloud.Bus.Publish(context.Background(), events.TopicTicks, []byte(`{"job":"coalmine-tick","version":1}`), nil); err != nil {
			t.Fatal(err)
		}
		// (Not h.waitFor: its reads would meet the injected faults.)
		for end := time.Now().Add(30 * time.Second); h.cloud.Bridge.Stats().Subscriptions[tickSub].Acks == 0 && time.Now().Before(end); {
			time.Sleep(20 * time.Millisecond)
		}
		if got := h.cloud.Bridge.Stats().Subscriptions[tickSub]; got.Failures != 2 {
			t.Errorf("tick deliveries: %+v, want 2 failures then an ack", got)
		}
	})
}
