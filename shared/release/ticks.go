package release

import (
	"context"
	"errors"

	"github.com/ai-square/coalmine/shared/policy"
	"github.com/ai-square/coalmine/shared/rollout"
	"github.com/ai-square/coalmine/shared/schedule"
)

// Scheduler keeps the per-rollout Cloud Scheduler tick jobs (schedule.Client). Creating a
// job that exists and deleting one that does not are both success.
type Scheduler interface {
	EnsureTick(ctx context.Context, service, rollout, schedule string) error
	DeleteTick(ctx context.Context, service, rollout string) error
	// DeleteTickJob deletes a tick job by name (one whose payload names no rollout).
	DeleteTickJob(ctx context.Context, name string) error
	Ticks(ctx context.Context) ([]schedule.TickJob, error)
}

// tickSchedule is the cron schedule of a service's tick jobs.
func (e *Env) tickSchedule(pol *policy.Service) (string, error) {
	if e.TickSchedule != "" {
		return e.TickSchedule, nil
	}
	return schedule.Cron(pol.Gates.Interval.Duration)
}

// keepTicks makes the Scheduler hold a tick job for the service's rollout while it is in
// progress and none once it has ended. It is called after the writes that start or end a
// rollout and on every duplicate claim; a failure is logged, not returned: the sweep job
// re-creates a lost job and deletes a leftover one, so the step itself never waits on the
// Scheduler.
func (s *step) keepTicks(ctx context.Context) {
	e := s.e
	r := s.svc.State.Rollout
	if e.Scheduler == nil || r == nil {
		return
	}
	var err error
	if r.Active() {
		var cron string
		if cron, err = e.tickSchedule(s.pol); err == nil {
			err = e.Scheduler.EnsureTick(ctx, s.svc.Name, r.ID, cron)
		}
	} else {
		err = e.Scheduler.DeleteTick(ctx, s.svc.Name, r.ID)
	}
	if err != nil {
		s.logger().Warn("tick job not kept; the sweep job sees to it: "+err.Error(), "error", err.Error())
	}
}

// sweepTicks is the sweep's reconciliation of the tick jobs: every rollout in progress has
// its job (created again if it was lost), and no job outlives its rollout. jobs were listed
// before states were read, so that a rollout claimed (and its job made) while the sweep
// runs is never taken for a leftover. states holds each policy service's state as read by
// this sweep (nil for one that could not be read: its jobs are left alone).
func (e *Env) sweepTicks(ctx context.Context, jobs []schedule.TickJob, states map[string]*rollout.State) error {
	have := map[[2]string]bool{}
	var errs []error
	for _, j := range jobs {
		if j.Service == "" {
			// Its payload names no rollout: not a job coalmine made as it is.
			if err := e.Scheduler.DeleteTickJob(ctx, j.Name); err != nil {
				errs = append(errs, err)
			} else {
				e.log().Warn("sweep: tick job deleted: its payload names no rollout", "job", j.Name)
			}
			continue
		}
		st, known := states[j.Service]
		switch {
		case known && st == nil:
			continue // not read this time
		case known && st.Rollout != nil && st.Rollout.ID == j.Rollout && st.Rollout.Active():
			have[[2]string{j.Service, j.Rollout}] = true
			continue
		}
		// Its rollout has ended, another has begun, or its service is not in the policy.
		if err := e.Scheduler.DeleteTick(ctx, j.Service, j.Rollout); err != nil {
			errs = append(errs, err)
			continue
		}
		e.log().Info("sweep: tick job deleted: its rollout is not in progress", "job", j.Name, "service", j.Service, "rollout", j.Rollout)
	}
	for i := range e.Policy.Services {
		pol := &e.Policy.Services[i]
		st := states[pol.Name]
		if st == nil || !st.Rollout.Active() || have[[2]string{pol.Name, st.Rollout.ID}] {
			continue
		}
		cron, err := e.tickSchedule(pol)
		if err == nil {
			err = e.Scheduler.EnsureTick(ctx, pol.Name, st.Rollout.ID, cron)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		e.log().Warn("sweep: tick job re-created: the rollout in progress had none", "service", pol.Name, "rollout", st.Rollout.ID)
	}
	return errors.Join(errs...)
}
