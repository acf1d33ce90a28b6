package release

import (
	"context"
	"errors"
	"fmt"

	"github.com/ai-square/coalmine/events"
	"github.com/ai-square/coalmine/shared/rollout"
	"github.com/ai-square/coalmine/shared/schedule"
)

// Tick handles a Cloud Scheduler tick. A rollout's own tick job names its service: that
// service is looked at, and the job is deleted if its rollout has ended. The sweep job
// names none: every service in the policy is looked at, and the tick jobs are reconciled
// (a rollout in progress whose job was lost gets it back; a job whose rollout has ended
// is deleted).
//
// Looking at a service runs the watchdog (a waiting rollout begins once its window
// opens; a step past its deadline has its command published again, then the rollout is
// failed or rolled back, or raised to an operator; a queued push whose rollout has ended
// is released) and, when the watchdog has nothing to do, judges the canary of a rollout
// serving a stage and acts on the verdict (see decide). A tick that finds nothing new
// writes nothing. Transient failures (Cloud Run unavailable, a conflicting write) are
// returned together, so the tick is delivered again; what a tick does is idempotent.
func (e *Env) Tick(ctx context.Context, t events.Tick) error {
	if !t.Sweep() {
		if _, err := e.Policy.Service(t.Service); err != nil {
			e.log().Warn("tick for a service not in the policy: its job is deleted", "function", events.FunctionVerify, "service", t.Service, "job", t.Job)
			e.dropTick(ctx, t.Service, t.Rollout)
			return nil
		}
		st, err := e.watch(ctx, t.Service)
		if (st != nil && (st.Rollout == nil || st.Rollout.ID != t.Rollout || !st.Rollout.Active())) || (st == nil && errors.Is(err, errPermanent)) {
			// The rollout has ended, or the service cannot be read at all (deleted,
			// its state corrupt): its job only costs.
			e.dropTick(ctx, t.Service, t.Rollout)
		}
		return e.done(events.FunctionVerify, "tick "+t.Service, err)
	}
	var jobs []schedule.TickJob
	var listErr error
	if e.Scheduler != nil {
		// Listed first: see sweepTicks.
		jobs, listErr = e.Scheduler.Ticks(ctx)
	}
	var errs []error
	states := map[string]*rollout.State{}
	for i := range e.Policy.Services {
		name := e.Policy.Services[i].Name
		st, err := e.watch(ctx, name)
		states[name] = st
		if err := e.done(events.FunctionVerify, "sweep "+name, err); err != nil {
			errs = append(errs, fmt.Errorf("sweep %s: %w", name, err))
		}
	}
	if e.Scheduler != nil {
		// The next sweep tries again; the rollouts themselves were looked at.
		if listErr != nil {
			e.log().Warn("sweep: tick jobs not listed, so not reconciled: "+listErr.Error(), "function", events.FunctionVerify, "error", listErr.Error())
		} else if err := e.sweepTicks(ctx, jobs, states); err != nil {
			e.log().Warn("sweep: tick jobs not reconciled: "+err.Error(), "function", events.FunctionVerify, "error", err.Error())
		}
	}
	return errors.Join(errs...)
}

// dropTick deletes the tick job of a rollout that has ended (a failure is logged: the
// sweep deletes it later).
func (e *Env) dropTick(ctx context.Context, service, id string) {
	if e.Scheduler == nil {
		return
	}
	if err := e.Scheduler.DeleteTick(ctx, service, id); err != nil {
		e.log().Warn("tick job of an ended rollout not deleted; the sweep deletes it: "+err.Error(), "function", events.FunctionVerify, "service", service, "rollout", id)
		return
	}
	e.log().Info("tick job deleted: its rollout is not in progress", "function", events.FunctionVerify, "service", service, "rollout", id)
}

// watch looks at one service: the watchdog, then the judge. It returns the state as it
// stands after the look (nil when the service could not be read).
func (e *Env) watch(ctx context.Context, service string) (*rollout.State, error) {
	s, err := e.open(ctx, events.FunctionVerify, service, Point{})
	if err != nil {
		return nil, err
	}
	stateOf := func() *rollout.State { st := s.svc.State; return &st }
	now := e.now()
	w := rollout.Watchdog(s.svc.State, now, s.pol.Windows.Allows(now), Config(s.pol))
	if w.Apply == nil && w.Publish == "" {
		return stateOf(), s.judgeCanary(ctx)
	}
	if w.Raise {
		s.logger().Error("watchdog: needs attention: "+w.Reason, "reason", w.Reason)
	} else {
		s.logger().Warn("watchdog: "+w.Reason, "reason", w.Reason)
	}
	if w.Apply != nil {
		res := s.apply(*w.Apply)
		if res.Outcome != rollout.Applied {
			return stateOf(), nil
		}
		if err := s.write(ctx, *w.Apply, res.State); err != nil {
			return stateOf(), err
		}
	}
	if w.Raise && (w.Apply == nil || w.Apply.Kind != rollout.Escalate) { // an escalation's write publishes its own
		s.attentionEvent(ctx, w.Reason)
	}
	switch w.Publish {
	case rollout.StepBackup:
		return stateOf(), s.publish(ctx, events.CommandBackup, 0, "")
	case rollout.StepDeploy:
		return stateOf(), s.publish(ctx, events.CommandDeployCanary, 0, "")
	case rollout.StepRollback:
		return stateOf(), s.publish(ctx, events.CommandRollback, 0, w.Reason)
	case rollout.StepRelease:
		if p := s.svc.State.Pending; p != nil {
			return stateOf(), s.publishRelease(ctx, p)
		}
	}
	return stateOf(), nil
}
