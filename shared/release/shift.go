package release

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/ai-square/coalmine/events"
	"github.com/ai-square/coalmine/shared/cloudrun"
	"github.com/ai-square/coalmine/shared/rollout"
)

// Shift handles ShiftTraffic (the last stage promotes: the canary becomes
// stable, the old stable keeps 0% with tag "previous"), Pause and Resume.
// Shift owns forward motion; the next stage is asked for by verification
// or by an operator, so nothing is published after the write.
func (e *Env) Shift(ctx context.Context, c events.Command) error {
	return e.done(events.FunctionShift, string(c.Type)+" "+c.Rollout, e.shift(ctx, c))
}

func (e *Env) shift(ctx context.Context, c events.Command) (err error) {
	var kind rollout.Kind
	switch c.Type {
	case events.CommandShiftTraffic:
		kind = rollout.Shift
	case events.CommandPause:
		kind = rollout.Pause
	case events.CommandResume:
		kind = rollout.Resume
	default:
		return permanent("Shift does not handle %s", c.Type)
	}
	s, err := e.open(ctx, events.FunctionShift, c.Service, Point{Rollout: c.Rollout, Kind: kind, Stage: c.Stage})
	if err != nil {
		e.refuse(ctx, asking(c), err)
		return err
	}
	s.asker = asking(c)
	defer func() { s.answer(ctx, err) }()
	cmd := rollout.Command{Kind: kind, Rollout: c.Rollout, Generation: c.Generation, Stage: c.Stage, Manual: c.Manual, Reason: c.Reason, Actor: c.Actor, OverrideWindow: c.OverrideWindow, Incident: c.Incident}
	res := s.apply(cmd)
	s.verdict = &res
	switch res.Outcome {
	case rollout.Applied:
		if kind == rollout.Shift {
			if err := s.canaryReady(ctx, res.State); err != nil {
				return err
			}
		}
		if err := s.write(ctx, cmd, res.State); err != nil {
			return err
		}
		if s.svc.State.Rollout.Phase == rollout.BackingUp {
			// A waiting rollout resumed with --override-window begins.
			return s.publish(ctx, events.CommandBackup, 0, "")
		}
		return nil
	case rollout.Duplicate:
		if kind == rollout.Resume {
			// A waiting rollout resumed with an override has begun: its
			// backup command may not have been published yet.
			return s.republishNext(ctx)
		}
		// Already done, as far as the state says: make sure Cloud Run
		// serves it (a write stored but not served, whose state could not
		// be put back, must not pass as done in silence).
		if !s.svc.Reconciling && !s.svc.ServesState() {
			s.raise(ctx, fmt.Sprintf("the state says %s at stage %d, but Cloud Run serves %s: the step did not happen; abort rolls back",
				s.svc.State.Rollout.Phase, s.svc.State.Rollout.Stage, served(s.svc)))
		}
	case rollout.Retry:
		return errors.New("shift: " + res.Reason)
	}
	return nil
}

// served describes the split Cloud Run serves, for messages.
func served(svc *cloudrun.Service) string {
	var parts []string
	for _, sp := range svc.Split {
		parts = append(parts, fmt.Sprintf("%s %d%%", sp.Revision, sp.Percent))
	}
	if len(parts) == 0 {
		return "nothing"
	}
	return strings.Join(parts, ", ")
}

// canaryReady checks, before traffic moves to the canary, that Cloud Run
// has it Ready: a stage never advances on a revision that cannot serve
// (an operator's promote while the canary is still starting, say). A
// canary still starting is a transient error (the shift is delivered
// again); one that failed is permanent, and Deploy fails the rollout.
func (s *step) canaryReady(ctx context.Context, next rollout.State) error {
	r := next.Rollout
	if r == nil || r.Canary == "" {
		return nil
	}
	rev, err := s.crun.Revision(ctx, s.svc.Name, r.Canary)
	if err != nil {
		return classify(fmt.Errorf("read canary %s: %w", r.Canary, err))
	}
	switch {
	case rev.Ready:
		return nil
	case rev.Failed:
		return permanent("canary %s failed (%s): traffic stays where it is", r.Canary, rev.Why())
	}
	return fmt.Errorf("canary %s is not ready yet: traffic stays where it is until it is", r.Canary)
}
