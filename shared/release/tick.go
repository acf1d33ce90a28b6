package release

import (
	"context"
	"errors"
	"fmt"

	"github.com/ai-square/coalmine/events"
	"github.com/ai-square/coalmine/shared/rollout"
)

// Tick handles a Cloud Scheduler tick: for every service in the policy it
// runs the watchdog (a waiting rollout begins once its window opens; a
// step past its deadline has its command published again, then the
// rollout is failed or rolled back, or raised to an operator; a queued push
// whose rollout has ended is released). A tick that finds nothing due
// writes nothing. Every service is looked at; transient failures (Cloud
// Run unavailable, a conflicting write) are returned together, so the tick
// is delivered again; what the watchdog did is idempotent.
func (e *Env) Tick(ctx context.Context, t events.Tick) error {
	var errs []error
	for i := range e.Policy.Services {
		name := e.Policy.Services[i].Name
		if err := e.done(events.FunctionVerify, "watchdog "+name, e.watch(ctx, name)); err != nil {
			errs = append(errs, fmt.Errorf("watchdog %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

func (e *Env) watch(ctx context.Context, service string) error {
	s, err := e.open(ctx, events.FunctionVerify, service, Point{})
	if err != nil {
		return err
	}
	now := e.now()
	w := rollout.Watchdog(s.svc.State, now, s.pol.Windows.Allows(now), Config(s.pol))
	if w.Apply == nil && w.Publish == "" {
		return nil
	}
	if w.Raise {
		s.logger().Error("watchdog: needs attention: "+w.Reason, "reason", w.Reason)
	} else {
		s.logger().Warn("watchdog: "+w.Reason, "reason", w.Reason)
	}
	if w.Apply != nil {
		res := s.apply(*w.Apply)
		if res.Outcome != rollout.Applied {
			return nil
		}
		if err := s.write(ctx, *w.Apply, res.State); err != nil {
			return err
		}
	}
	if w.Raise && (w.Apply == nil || w.Apply.Kind != rollout.Escalate) { // an escalation's write publishes its own
		s.attentionEvent(ctx, w.Reason)
	}
	switch w.Publish {
	case rollout.StepBackup:
		return s.publish(ctx, events.CommandBackup, 0, "")
	case rollout.StepDeploy:
		return s.publish(ctx, events.CommandDeployCanary, 0, "")
	case rollout.StepRollback:
		return s.publish(ctx, events.CommandRollback, 0, w.Reason)
	case rollout.StepRelease:
		if p := s.svc.State.Pending; p != nil {
			return s.publishRelease(ctx, p)
		}
	}
	return nil
}
