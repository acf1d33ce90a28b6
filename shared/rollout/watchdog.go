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
	// write ("" for none): "backup", "deploy" or "rollback".
	Publish string
	// Reason explains the decision for the log.
	Reason string
}

// Steps the watchdog publishes.
const (
	StepBackup   = "backup"
	StepDeploy   = "deploy"
	StepRollback = "rollback"
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
		why := fmt.Sprintf("no progress at stage %d within %s", r.Stage, d.Stage)
		if r.Phase == Paused {
			why = fmt.Sprintf("paused at stage %d for longer than %s", r.Stage, d.Paused)
		}
		if r.Attempts > 0 {
			why = fmt.Sprintf("rollback not applied yet; publishing it again (attempt %d)", r.Attempts+1)
		}
		return Watch{Apply: cmd(Republish, StepRollback, why), Publish: StepRollback, Reason: why}
	case RollingBack:
		if retry {
			why := fmt.Sprintf("rollback not finished within %s; publishing it again (attempt %d of %d)", d.RollingBack, r.Attempts+1, d.Retries)
			return Watch{Apply: cmd(Republish, StepRollback, ""), Publish: StepRollback, Reason: why}
		}
		why := fmt.Sprintf("post-rollback steps did not finish after %d re-publications; traffic is on the stable revision", r.Attempts)
		return Watch{Apply: cmd(RollbackDone, "", why), Reason: why}
	}
	return Watch{}
}
