package rollout

import (
	"fmt"
	"time"
)

// Watch is what the Scheduler tick does for a rollout as its watchdog.
type Watch struct {
	// Apply is a transition the tick applies itself (nil: nothing to write).
	Apply *Command
	// Publish names the step whose command the tick publishes after the
	// write ("" for none): "backup", "deploy", "rollback" or "release" (of
	// the queued push, State.Pending).
	Publish string
	// Reason explains the decision for the log.
	Reason string
	// Raise: the watchdog has given up on something an operator must look
	// at; the tick logs the reason at ERROR and publishes a needs-attention
	// lifecycle event.
	Raise bool
}

// Steps the watchdog publishes.
const (
	StepBackup   = "backup"
	StepDeploy   = "deploy"
	StepRollback = "rollback"
	StepRelease  = "release"
)

// Watchdog decides what the tick does about a rollout at time now. A tick
// that finds nothing past its deadline does nothing (and writes nothing). A
// step past its deadline has its command published again, up to the
// configured number of times; then a rollout whose canary has traffic is
// rolled back and one whose canary has none is failed. A waiting rollout
// begins once its window is open.
func Watchdog(s State, now time.Time, windowOpen bool, cfg Config) Watch {
	cfg = cfg.withDefaults()
	r := s.Rollout
	if r == nil || r.Phase.Terminal() {
		if p := s.Pending; p != nil && r != nil {
			// The function that ended the rollout published the queued
			// release; publish it again until a claim takes it or drops it.
			return Watch{Publish: StepRelease, Reason: fmt.Sprintf("rollout %s %s; releasing the queued %s", r.ID, r.Phase, p.Image)}
		}
		return Watch{}
	}
	d := cfg.Deadlines
	cmd := func(k Kind, step, reason string) *Command {
		return &Command{Kind: k, Rollout: r.ID, Generation: s.Generation, Step: step, Reason: reason, Actor: "watchdog"}
	}
	if r.Phase == Waiting && windowOpen {
		return Watch{Apply: cmd(Begin, "", ""), Publish: StepBackup, Reason: "deploy window open"}
	}
	if r.Phase == BackingUp && !now.Before(r.StepStarted.Add(d.Backup)) {
		why := fmt.Sprintf("backup did not finish within %s", d.Backup)
		if r.Backup != nil && r.Backup.LastError != "" {
			why += ": " + r.Backup.LastError
		}
		return Watch{Apply: cmd(Fail, "", why), Reason: why}
	}
	if r.Deadline.IsZero() || now.Before(r.Deadline) {
		return Watch{}
	}
	retry := r.Attempts < d.Retries
	switch r.Phase {
	case Waiting:
		why := fmt.Sprintf("no deploy window opened within %s", d.Waiting)
		return Watch{Apply: cmd(Fail, "", why), Reason: why}
	case BackingUp:
		if retry {
			why := fmt.Sprintf("backup made no progress; publishing it again (attempt %d of %d)", r.Attempts+1, d.Retries)
			return Watch{Apply: cmd(Republish, StepBackup, ""), Publish: StepBackup, Reason: why}
		}
		why := fmt.Sprintf("backup made no progress after %d re-publications", r.Attempts)
		if r.Backup != nil && r.Backup.LastError != "" {
			why += ": " + r.Backup.LastError
		}
		return Watch{Apply: cmd(Fail, "", why), Reason: why}
	case Deploying:
		if retry {
			why := fmt.Sprintf("canary not ready within %s; publishing deploy again (attempt %d of %d)", d.Deploy, r.Attempts+1, d.Retries)
			return Watch{Apply: cmd(Republish, StepDeploy, ""), Publish: StepDeploy, Reason: why}
		}
		why := fmt.Sprintf("canary not ready after %d re-publications", r.Attempts)
		return Watch{Apply: cmd(Fail, "", why), Reason: why}
	case Progressing, Paused:
		// The first publication rolls back a rollout past its deadline;
		// then the rollback is published again up to Retries times; then
		// the watchdog stops and raises it: something keeps the rollback
		// from applying, and publishing it every few minutes forever helps
		// nobody.
		if r.Attempts > d.Retries {
			why := fmt.Sprintf("rollback of %s published %d times and never applied: the canary %s still serves %d%% at stage %d (%s); "+
				"the Rollback function's log says why; fix it and run coalmine abort again", r.ID, r.Attempts, r.Canary, r.Percent(), r.Stage, r.Phase)
			return Watch{Apply: cmd(Escalate, "", why), Reason: why, Raise: true}
		}
		why := fmt.Sprintf("no progress at stage %d within %s", r.Stage, d.Stage)
		if r.Phase == Paused {
			why = fmt.Sprintf("paused at stage %d for longer than %s", r.Stage, d.Paused)
		}
		if r.Attempts > 0 {
			why = fmt.Sprintf("rollback not applied yet; publishing it again (attempt %d of %d)", r.Attempts+1, d.Retries+1)
		}
		return Watch{Apply: cmd(Republish, StepRollback, why), Publish: StepRollback, Reason: why}
	case RollingBack:
		if retry {
			why := fmt.Sprintf("rollback not finished within %s; publishing it again (attempt %d of %d)", d.RollingBack, r.Attempts+1, d.Retries)
			return Watch{Apply: cmd(Republish, StepRollback, ""), Publish: StepRollback, Reason: why}
		}
		why := fmt.Sprintf("post-rollback steps did not finish after %d re-publications; traffic is on the stable revision, but the data may need a restore", r.Attempts)
		if r.LastError != "" {
			why += ": " + r.LastError
		}
		return Watch{Apply: cmd(RollbackDone, "", why), Reason: why, Raise: true}
	}
	return Watch{}
}
