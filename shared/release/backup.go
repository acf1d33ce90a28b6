package release

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ai-square/coalmine/events"
	"github.com/ai-square/coalmine/shared/rollout"
)

// Backup handles a backup continuation: it takes (or renews) the lease,
// runs one chunk of the backup and either publishes the next continuation
// or records the finished backup and publishes DeployCanary. A backup that
// cannot succeed fails the rollout: no deploy without a backup. A chunk that
// fails for a transient reason records why, lets go of the lease and is
// delivered again; the watchdog fails the rollout once the policy's backup
// deadline has passed.
func (e *Env) Backup(ctx context.Context, c events.Command) error {
	return e.done(events.FunctionBackup, "backup "+c.Rollout, e.backup(ctx, c))
}

func (e *Env) backupLease() time.Duration {
	if e.BackupLease > 0 {
		return e.BackupLease
	}
	return 6 * time.Minute
}

func (e *Env) backup(ctx context.Context, c events.Command) error {
	s, err := e.open(ctx, events.FunctionBackup, c.Service, Point{Rollout: c.Rollout, Kind: rollout.BackupProgress})
	if err != nil {
		return err
	}
	holder := e.holder(c.ID)
	take := rollout.Command{Kind: rollout.BackupProgress, Rollout: c.Rollout, Generation: c.Generation, Holder: holder, Lease: e.backupLease(), Actor: c.Actor}
	res := s.apply(take)
	switch res.Outcome {
	case rollout.Duplicate:
		return s.republishNext(ctx)
	case rollout.Retry:
		return errors.New("backup: " + res.Reason)
	case rollout.Applied:
	default:
		return nil
	}
	// Take the lease before doing any work: a second delivery now finds it
	// held and leaves the backup to this worker.
	if err := s.write(ctx, take, res.State); err != nil {
		return err
	}
	r := s.svc.State.Rollout
	var b rollout.Backup
	done := true
	if e.Backups == nil {
		if s.pol.Backup.Required {
			err = fmt.Errorf("%w: this deployment has no backup runner and backup.required is true", ErrBackupFailed)
		}
		b = rollout.Backup{Skipped: "no backup runner in this deployment", Step: "done"}
	} else {
		b, done, err = e.Backups.Backup(ctx, s.pol, r)
	}
	if err != nil && errors.Is(err, ErrBackupFailed) && !s.pol.Backup.Required {
		// The policy allows a deploy without a backup: say so and go on.
		s.logger().Warn("backup failed; deploying without it (backup.required is false): "+err.Error(), "error", err.Error())
		b = rollout.Backup{Prefix: b.Prefix, Step: "done", Skipped: "backup failed and backup.required is false: " + err.Error()}
		err, done = nil, true
	}
	if err != nil {
		if errors.Is(err, ErrBackupFailed) {
			fail := rollout.Command{Kind: rollout.Fail, Rollout: r.ID, Generation: s.svc.State.Generation, Reason: err.Error(), Actor: events.FunctionBackup}
			if res := s.apply(fail); res.Outcome == rollout.Applied {
				return s.write(ctx, fail, res.State)
			}
			return nil
		}
		// Transient: remember why and let go of the lease, so the
		// redelivery (on any worker) continues at once.
		prev := b // the backuper returns where it got to, even on failure
		if prev.Step == "" && r.Backup != nil {
			prev = *r.Backup
		}
		prev.LastError = err.Error()
		release := rollout.Command{Kind: rollout.BackupProgress, Rollout: r.ID, Generation: s.svc.State.Generation, Holder: holder, Lease: -1, Backup: &prev, Actor: events.FunctionBackup}
		if res := s.apply(release); res.Outcome == rollout.Applied {
			if werr := s.write(ctx, release, res.State); werr != nil {
				s.logger().Warn("could not record the backup failure", "error", werr.Error())
			}
		}
		return err
	}
	if !done {
		more := rollout.Command{Kind: rollout.BackupProgress, Rollout: r.ID, Generation: s.svc.State.Generation, Holder: holder, Lease: -1, Backup: &b, Actor: events.FunctionBackup}
		if res := s.apply(more); res.Outcome == rollout.Applied {
			if err := s.write(ctx, more, res.State); err != nil {
				return err
			}
		}
		return s.publish(ctx, events.CommandBackup, 0, "")
	}
	fin := rollout.Command{Kind: rollout.BackupDone, Rollout: r.ID, Generation: s.svc.State.Generation, Holder: holder, Backup: &b, Actor: events.FunctionBackup}
	res = s.apply(fin)
	switch res.Outcome {
	case rollout.Applied:
		if err := s.write(ctx, fin, res.State); err != nil {
			return err
		}
	case rollout.Duplicate:
	default:
		return nil
	}
	return s.publish(ctx, events.CommandDeployCanary, 0, "")
}
