package release

import (
	"context"
	"errors"

	"github.com/ai-square/coalmine/events"
	"github.com/ai-square/coalmine/shared/rollout"
)

// Shift handles ShiftTraffic (the last stage promotes: the canary becomes
// stable, the old stable keeps 0% with tag "previous"), Pause and Resume.
// Shift owns forward motion; the next stage is asked for by verification
// or by an operator, so nothing is published after the write.
func (e *Env) Shift(ctx context.Context, c events.Command) error {
	return e.done(events.FunctionShift, string(c.Type)+" "+c.Rollout, e.shift(ctx, c))
}

func (e *Env) shift(ctx context.Context, c events.Command) error {
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
		return err
	}
	cmd := rollout.Command{Kind: kind, Rollout: c.Rollout, Generation: c.Generation, Stage: c.Stage, Manual: c.Manual, Reason: c.Reason, Actor: c.Actor}
	res := s.apply(cmd)
	switch res.Outcome {
	case rollout.Applied:
		return s.write(ctx, cmd, res.State)
	case rollout.Retry:
		return errors.New("shift: " + res.Reason)
	}
	return nil
}
