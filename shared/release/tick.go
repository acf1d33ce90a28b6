package release

import (
	"context"

	"github.com/ai-square/coalmine/events"
	"github.com/ai-square/coalmine/shared/rollout"
)

// Tick handles a Cloud Scheduler tick: for every service in the policy it
// runs the watchdog (a waiting rollout begins once its window opens; a
// step past its deadline has its command published again, then the
// rollout is failed or rolled back). A tick that finds nothing due writes
// nothing. Errors are logged per service; the next tick tries again, so a
// tick is never delivered twice on purpose.
func (e *Env) Tick(ctx context.Context, t events.Tick) error {
	for i := range e.Policy.Services {
		name := e.Policy.Services[i].Name
		if err := e.done(events.FunctionVerify, "watchdog "+name, e.watch(ctx, name)); err != nil {
			e.log().Warn("watchdog: retrying at the next tick", "service", name, "tick", t.PublishTime)
		}
	}
	return nil
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
	s.logger().Warn("watchdog: "+w.Reason, "reason", w.Reason)
	if w.Apply != nil {
		res := s.apply(*w.Apply)
		if res.Outcome != rollout.Applied {
			return nil
		}
		if err := s.write(ctx, *w.Apply, res.State); err != nil {
			return err
		}
	}
	switch w.Publish {
	case rollout.StepBackup:
		return s.publish(ctx, events.CommandBackup, 0, "")
	case rollout.StepDeploy:
		return s.publish(ctx, events.CommandDeployCanary, 0, "")
	case rollout.StepRollback:
		return s.publish(ctx, events.CommandRollback, 0, w.Reason)
	}
	return nil
}
