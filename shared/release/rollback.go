package release

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ai-square/coalmine/events"
	"github.com/ai-square/coalmine/shared/cloudrun"
	"github.com/ai-square/coalmine/shared/policy"
	"github.com/ai-square/coalmine/shared/rollout"
)

// Rollback handles Rollback: one write returns all traffic to the stable
// revision and restores its template; then the post-rollback steps run and
// a second write ends the rollout (rolled back, or superseded). Valid from
// every non-terminal phase; delivered again it finishes what is left.
//
// The post-rollback hook runs under a lease kept in the state (taken in the
// write that moves the traffic): however many rollbacks were published, and
// however long the hook takes, one hook runs at a time. A rollback that
// finds the lease held by another delivery is acknowledged; the holder
// finishes, or its lease runs out and the watchdog publishes the rollback
// again.
func (e *Env) Rollback(ctx context.Context, c events.Command) error {
	return e.done(events.FunctionRollback, "rollback "+c.Rollout, e.rollback(ctx, c))
}

// hookLeaseMargin is how much longer than its timeout a hook's lease lasts:
// the writes around it.
const hookLeaseMargin = 30 * time.Second

func hookTimeout(h *policy.Hook) time.Duration {
	if h.Timeout.Duration > 0 {
		return h.Timeout.Duration
	}
	return 5 * time.Minute
}

func (e *Env) rollback(ctx context.Context, c events.Command) (err error) {
	// An operator's abort rolls back a service changed outside coalmine as
	// long as the canary still takes traffic there: they asked for the
	// canary to go (traffic and template back to the stable revision). Any
	// other rollback (superseded, the watchdog's), or one whose canary the
	// outside change already took out, stops such a rollout and leaves the
	// traffic as it is.
	operatorAbort := func(svc *cloudrun.Service) bool {
		r := svc.State.Rollout
		return strings.HasPrefix(c.Actor, "operator:") && r != nil && r.Canary != "" && svc.ConfiguredPercent(r.Canary) > 0
	}
	s, err := e.openStep(ctx, events.FunctionRollback, c.Service, Point{Rollout: c.Rollout, Kind: rollout.Rollback}, operatorAbort)
	if err != nil {
		e.refuse(ctx, asking(c), err)
		return err
	}
	s.asker = asking(c)
	defer func() { s.answer(ctx, err) }()
	reason := c.Reason
	if reason == "" {
		reason = "rollback requested"
	}
	hook := s.pol.Rollback.Hook
	cmd := rollout.Command{Kind: rollout.Rollback, Rollout: c.Rollout, Generation: c.Generation, Reason: reason, Actor: c.Actor, Revert: c.Revert, Incident: c.Incident}
	if hook != nil {
		cmd.Holder, cmd.Lease = e.holder(c.ID), hookTimeout(hook)+hookLeaseMargin
	}
	res := s.apply(cmd)
	s.verdict = &res
	switch res.Outcome {
	case rollout.Applied:
		if err := s.write(ctx, cmd, res.State); err != nil {
			if errors.Is(err, errPermanent) {
				s.raise(ctx, fmt.Sprintf("rollback of %s could not be written: %v", c.Rollout, err))
			}
			return err
		}
		// Traffic is back on the stable revision: that is the answer;
		// the post-rollback steps follow.
		s.answer(ctx, nil)
	case rollout.Duplicate:
		s.answer(ctx, nil) // before the post-rollback steps, which may take minutes
	case rollout.Retry:
		return errors.New("rollback: " + res.Reason)
	default:
		return nil // held by another delivery, stale, rejected: logged by apply
	}
	if s.svc.State.Rollout.Phase != rollout.RollingBack {
		return nil
	}
	// Post-rollback steps: the policy's hook, now that the stable revision
	// serves everything.
	if hook != nil {
		// The same message delivered twice to one instance shares a
		// holder: the second is acknowledged while the first runs.
		if _, running := e.hooksRunning.LoadOrStore(cmd.Holder, true); running {
			s.logger().Info("post-rollback steps already running for this command in this instance", "holder", cmd.Holder)
			return nil
		}
		defer e.hooksRunning.Delete(cmd.Holder)
		// The hook ends before its lease does, so that no other delivery
		// can take the lease while it still runs.
		limit := min(hookTimeout(hook), policy.MaxHookTimeout)
		if l := s.svc.State.Rollout.Lease; l != nil && l.Holder == cmd.Holder {
			limit = min(limit, l.Expires.Sub(e.now())-hookLeaseMargin/2)
		}
		if limit <= 0 {
			return fmt.Errorf("rollback %s: the lease on the post-rollback steps ran out before the hook could start", c.Rollout)
		}
		if err := e.runHook(ctx, hook, s.svc, limit); err != nil {
			fail := rollout.Command{Kind: rollout.HookFailed, Rollout: c.Rollout, Generation: s.svc.State.Generation, Holder: cmd.Holder, Reason: err.Error(), Actor: events.FunctionRollback}
			if res := s.apply(fail); res.Outcome == rollout.Applied {
				// The hook may have used up ctx: the record gets its own.
				wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
				defer cancel()
				if werr := s.write(wctx, fail, res.State); werr != nil {
					s.logger().Warn("could not record the hook failure", "error", werr.Error())
				}
			}
			return err
		}
		s.logger().Info("post-rollback hook done", "hook", hook.Path+strings.Join(hook.Command, " "))
	}
	return s.finishRollback(ctx, c.Rollout, cmd.Holder)
}

// finishRollback ends the rollout once its post-rollback steps are done. A
// write that meets another (a push queued meanwhile, say) is decided again
// on a fresh read rather than delivered again: delivered again, the hook
// would run again.
func (s *step) finishRollback(ctx context.Context, id, holder string) error {
	for attempt := 1; ; attempt++ {
		done := rollout.Command{Kind: rollout.RollbackDone, Rollout: id, Generation: s.svc.State.Generation, Holder: holder, Actor: events.FunctionRollback}
		res := s.apply(done)
		if res.Outcome != rollout.Applied {
			return nil
		}
		err := s.write(ctx, done, res.State)
		if !errors.Is(err, cloudrun.ErrConflict) || attempt == 5 {
			return err
		}
		svc, rerr := s.crun.Read(ctx, s.svc.Name)
		if rerr != nil {
			return classify(rerr)
		}
		s.svc = svc
	}
}
