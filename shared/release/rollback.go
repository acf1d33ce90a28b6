package release

import (
	"context"
	"errors"
	"strings"

	"github.com/ai-square/coalmine/events"
	"github.com/ai-square/coalmine/shared/rollout"
)

// Rollback handles Rollback: one write returns all traffic to the stable
// revision and restores its template; then the post-rollback steps run and
// a second write ends the rollout (rolled back, or superseded). Valid from
// every non-terminal phase; delivered again it finishes what is left.
func (e *Env) Rollback(ctx context.Context, c events.Command) error {
	return e.done(events.FunctionRollback, "rollback "+c.Rollout, e.rollback(ctx, c))
}

func (e *Env) rollback(ctx context.Context, c events.Command) error {
	s, err := e.open(ctx, events.FunctionRollback, c.Service, Point{Rollout: c.Rollout, Kind: rollout.Rollback})
	if err != nil {
		return err
	}
	reason := c.Reason
	if reason == "" {
		reason = "rollback requested"
	}
	cmd := rollout.Command{Kind: rollout.Rollback, Rollout: c.Rollout, Generation: c.Generation, Reason: reason, Actor: c.Actor}
	res := s.apply(cmd)
	switch res.Outcome {
	case rollout.Applied:
		if err := s.write(ctx, cmd, res.State); err != nil {
			return err
		}
	case rollout.Duplicate:
	case rollout.Retry:
		return errors.New("rollback: " + res.Reason)
	default:
		return nil
	}
	if s.svc.State.Rollout.Phase != rollout.RollingBack {
		return nil
	}
	// Post-rollback steps: the policy's hook, now that the stable revision
	// serves everything.
	if h := s.pol.Rollback.Hook; h != nil {
		if err := e.runHook(ctx, h, s.svc); err != nil {
			return err
		}
		s.logger().Info("post-rollback hook done", "hook", h.Path+strings.Join(h.Command, " "))
	}
	done := rollout.Command{Kind: rollout.RollbackDone, Rollout: c.Rollout, Generation: s.svc.State.Generation, Actor: events.FunctionRollback}
	if res := s.apply(done); res.Outcome == rollout.Applied {
		return s.write(ctx, done, res.State)
	}
	return nil
}
