package release

import (
	"context"
	"errors"

	"github.com/ai-square/coalmine/events"
	"github.com/ai-square/coalmine/shared/rollout"
)

// The answer to a command whose sender waits for it (events.Command.Reply,
// set by the CLI): an EventOutcome naming the command, published once the
// function has decided. A command delivered again (a transient failure)
// is answered by the delivery that decides.

// asking returns the command to answer, nil when its sender does not wait.
func asking(c events.Command) *events.Command {
	if !c.Reply || c.ID == "" {
		return nil
	}
	return &c
}

// answer publishes the outcome of the command s answers, from the verdict
// of its main decision and the error the step ends with; at most once per
// step, and not at all when the command will be delivered again.
func (s *step) answer(ctx context.Context, err error) {
	if s.asker == nil || s.answered {
		return
	}
	var outcome, reason string
	switch {
	case s.verdict == nil && errors.Is(err, errPermanent):
		outcome, reason = events.OutcomeRefused, rootCause(err)
	case s.verdict == nil:
		return // undecided: delivered again, or nothing to say
	case err != nil && errors.Is(err, errPermanent):
		outcome, reason = events.OutcomeRefused, rootCause(err)
	case err != nil && !errors.Is(err, errMovedOn):
		return // delivered again: that delivery answers
	default:
		switch s.verdict.Outcome {
		case rollout.Applied:
			outcome = events.OutcomeApplied
		case rollout.Duplicate, rollout.Held:
			outcome = events.OutcomeAlready
		case rollout.Supersede:
			outcome = events.OutcomeQueued
		case rollout.Stale:
			outcome = events.OutcomeTooLate
		case rollout.Rejected:
			outcome = events.OutcomeRefused
		default:
			return // retry: delivered again
		}
		reason = s.verdict.Reason
	}
	s.answered = true
	s.e.reply(ctx, *s.asker, outcome, reason, s.svc.State)
}

// refuse answers command c (nil: nobody waits) that failed before a step
// could decide, when the failure is permanent (it is not delivered again).
func (e *Env) refuse(ctx context.Context, c *events.Command, err error) {
	if c == nil || !errors.Is(err, errPermanent) {
		return
	}
	e.reply(ctx, *c, events.OutcomeRefused, rootCause(err), rollout.State{})
}

// reply publishes the outcome of command c; st is the state after it.
func (e *Env) reply(ctx context.Context, c events.Command, outcome, reason string, st rollout.State) {
	if !c.Reply || c.ID == "" {
		return
	}
	if outcome == events.OutcomeApplied && reason == "" {
		// What the step wrote: its own history entry says why.
		if n := len(st.History); n > 0 {
			reason = st.History[n-1].Reason
		}
	}
	ev := events.Lifecycle{
		Type: events.EventOutcome, Service: c.Service, Generation: st.Generation, Command: c.ID, Outcome: outcome,
		Reason: rollout.Clip(reason, rollout.MaxReason), Actor: c.Actor,
	}
	if r := st.Rollout; r != nil {
		ev.Rollout, ev.Phase, ev.Stage, ev.Percent, ev.Image, ev.Canary, ev.Stable = r.ID, string(r.Phase), r.Stage, r.Percent(), r.Image, r.Canary, st.Stable
	}
	if err := e.Bus.Event(ctx, ev); err != nil {
		e.log().Warn("outcome not published; the sender will not hear of it", "command", c.ID, "outcome", outcome, "error", err.Error())
	}
}
