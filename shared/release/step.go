package release

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/ai-square/coalmine/events"
	"github.com/ai-square/coalmine/shared/cloudrun"
	"github.com/ai-square/coalmine/shared/policy"
	"github.com/ai-square/coalmine/shared/rollout"
)

// step is one command being applied to one service.
type step struct {
	e    *Env
	fn   string
	pol  *policy.Service
	crun CloudRun
	svc  *cloudrun.Service

	// asker is the command to answer (its sender waits), nil if none;
	// verdict is the state machine's decision on it; answered is set once
	// the outcome is published.
	asker    *events.Command
	verdict  *rollout.Result
	answered bool
}

// errPermanent wraps a failure that redelivery cannot fix; handle logs it
// and acknowledges.
var errPermanent = errors.New("permanent")

func permanent(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errPermanent, fmt.Sprintf(format, args...))
}

// open finds the service's policy and Cloud Run client and reads it; a
// rollout whose service was changed outside coalmine is stopped first.
func (e *Env) open(ctx context.Context, fn, service string, p Point) (*step, error) {
	return e.openStep(ctx, fn, service, p, nil)
}

// openStep is open; when keep is set and says so for the service as read,
// a change made outside coalmine does not stop the rollout.
func (e *Env) openStep(ctx context.Context, fn, service string, p Point, keep func(*cloudrun.Service) bool) (*step, error) {
	pol, err := e.Policy.Service(service)
	if err != nil {
		return nil, permanent("service %q is not in the policy", service)
	}
	crun, err := e.CloudRun(ctx, pol.Project, pol.Region)
	if err != nil {
		return nil, fmt.Errorf("cloud run client for %s/%s: %w", pol.Project, pol.Region, err)
	}
	p.Function, p.Service = fn, service
	if err := e.hook(ctx, e.Hooks.BeforeRead, p); err != nil {
		return nil, err
	}
	svc, err := crun.Read(ctx, service)
	if err != nil {
		return nil, classify(err)
	}
	s := &step{e: e, fn: fn, pol: pol, crun: crun, svc: svc}
	if keep != nil && keep(svc) {
		return s, nil
	}
	if err := s.stopIfChangedOutside(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// ReasonOutside begins the reason of a rollout stopped because its
// service changed outside coalmine.
const ReasonOutside = "service changed outside coalmine"

// stopIfChangedOutside stops the rollout in progress when the service's
// traffic is not the split its state describes: someone deployed or moved
// traffic outside coalmine. Going on would overwrite their change (a stage
// splits traffic against the stable revision recorded at claim), so the
// rollout ends here with the traffic left where they put it, and the step
// goes on with the stopped state (a push still claims, against the revision
// now serving). A rollout that is rolling back is left to finish: its split
// is the stable one, and a rollback always wins.
func (s *step) stopIfChangedOutside(ctx context.Context) error {
	r := s.svc.State.Rollout
	if !r.Active() || r.Phase == rollout.RollingBack {
		return nil
	}
	what := s.svc.ChangedOutside()
	if what == "" {
		return nil
	}
	c := rollout.Command{
		Kind: rollout.Stop, Rollout: r.ID, Generation: s.svc.State.Generation, Stable: s.svc.Serving, Actor: s.fn,
		Reason: fmt.Sprintf("%s: %s; the traffic is left as it is (deploy with coalmine: push the image, or coalmine release)", ReasonOutside, what),
	}
	res := s.apply(c)
	if res.Outcome != rollout.Applied {
		return nil
	}
	s.logger().Error("rollout stopped: "+c.Reason, "reason", c.Reason)
	return s.write(ctx, c, res.State)
}

// classify turns an adapter error into a redelivery (transient) or a
// logged permanent failure.
func classify(err error) error {
	if err == nil || errors.Is(err, errPermanent) {
		return err
	}
	if cloudrun.Transient(err) {
		return err
	}
	return fmt.Errorf("%w: %w", errPermanent, err)
}

func (s *step) state() rollout.State { return s.svc.State }

func (s *step) logger() *slog.Logger {
	l := s.e.log().With("function", s.fn, "service", s.svc.Name, "generation", s.svc.State.Generation)
	if r := s.svc.State.Rollout; r != nil {
		l = l.With("rollout", r.ID, "phase", string(r.Phase), "stage", r.Stage)
	}
	return l
}

func (s *step) point(k rollout.Kind) Point {
	p := Point{Function: s.fn, Service: s.svc.Name, Kind: k}
	if r := s.svc.State.Rollout; r != nil {
		p.Rollout, p.Stage = r.ID, r.Stage
	}
	return p
}

// apply asks the state machine and logs what it said.
func (s *step) apply(c rollout.Command) rollout.Result {
	res := rollout.Apply(s.svc.State, c, s.e.now(), Config(s.pol))
	l := s.logger().With("command", string(c.Kind), "outcome", res.Outcome.String(), "actor", c.Actor)
	switch res.Outcome {
	case rollout.Applied:
		l.Debug("command applies")
	case rollout.Rejected:
		l.Warn("command rejected: "+res.Reason, "reason", res.Reason)
	default:
		l.Info("command "+res.Outcome.String()+": "+res.Reason, "reason", res.Reason)
	}
	return res
}

// write stores next: traffic and state in one update, and the stable
// template too when the transition ends the canary. It then publishes the
// lifecycle event for c.
func (s *step) write(ctx context.Context, c rollout.Command, next rollout.State) error {
	if err := s.e.hook(ctx, s.e.Hooks.BeforeWrite, s.point(c.Kind)); err != nil {
		return err
	}
	var after *cloudrun.Service
	var err error
	ends := endsCanary(next)
	if ends {
		after, err = s.crun.Rollback(ctx, s.svc, next)
	} else {
		after, err = s.crun.SetTraffic(ctx, s.svc, next)
	}
	if errors.Is(err, cloudrun.ErrNotServed) {
		if !ends && (slices.Equal(s.svc.State.Traffic(), next.Traffic()) || len(next.Traffic()) == 0) {
			return s.keep(ctx, c, next, err)
		}
		return s.revert(ctx, c, next, err)
	}
	if err != nil {
		return classify(fmt.Errorf("write %s: %w", c.Kind, err))
	}
	s.svc = after
	return s.written(ctx, c, next)
}

// written is what follows a write that stuck: the log line, the lifecycle
// event and the release of a queued push the write freed.
func (s *step) written(ctx context.Context, c rollout.Command, next rollout.State) error {
	s.logger().Info(fmt.Sprintf("%s written", c.Kind), "command", string(c.Kind), "actor", c.Actor, "percent", next.Rollout.Percent(), "reason", c.Reason)
	if err := s.e.hook(ctx, s.e.Hooks.AfterWrite, s.point(c.Kind)); err != nil {
		return err
	}
	s.event(ctx, c)
	if r := next.Rollout; r != nil && (c.Kind == rollout.Claim || (c.Kind == rollout.Rollback && c.Revert) || r.Phase.Terminal()) {
		// The writes that start a rollout (a claim; a revert reopens a promoted one) make
		// its tick job, and those that end it delete it.
		s.keepTicks(ctx)
	}
	s.releaseQueued(ctx)
	return nil
}

// keep handles a write that changed only coalmine's state (a queued push,
// a watchdog's record) and that Cloud Run stored but whose operation
// failed, as every update does while the template's revision cannot serve:
// the state stored is the one written and the traffic served is the one it
// describes, so the write stands.
func (s *step) keep(ctx context.Context, c rollout.Command, next rollout.State, cause error) error {
	svc, err := s.crun.Read(ctx, s.svc.Name)
	if err != nil {
		return fmt.Errorf("write %s: %v; read it back: %w", c.Kind, cause, classify(err))
	}
	if svc.State.Generation < next.Generation {
		return fmt.Errorf("write %s: %w (and the state read back is generation %d)", c.Kind, cause, svc.State.Generation)
	}
	s.svc = svc
	s.logger().Warn(fmt.Sprintf("%s stored by Cloud Run, whose update failed; it changed no traffic, so it stands: %v", c.Kind, cause), "command", string(c.Kind))
	if svc.State.Generation != next.Generation {
		// Later writes, made on top of this one, have acted on it: what
		// would follow it here would act on their state instead.
		return fmt.Errorf("write %s: %w", c.Kind, errMovedOn)
	}
	return s.written(ctx, c, next)
}

// errMovedOn: a write stood, but the state moved on past it before the
// step could go on; the steps that moved it act on it. Acknowledged.
var errMovedOn = errors.New("the state has moved on since; nothing more to do here")

// revert handles a write Cloud Run stored but could not serve (its
// operation failed): the service now carries the new state while it
// serves the old traffic. A second write puts the state (and the traffic)
// back, with the reason in the history, so that nothing reads the step as
// done; it is tried again on a fresh read when it meets another write. If
// it cannot be put back, an operator is told (abort still rolls back). A
// rollback that was not served is delivered again; any other step fails
// as the cause says.
func (s *step) revert(ctx context.Context, c rollout.Command, next rollout.State, cause error) error {
	prev := s.svc.State
	s.logger().Error(fmt.Sprintf("%s stored by Cloud Run but not served; putting the state back: %v", c.Kind, cause), "command", string(c.Kind), "error", cause.Error())
	var err error
	for attempt := 1; attempt <= 5; attempt++ {
		if err = s.putBack(ctx, prev, c, next, cause); !errors.Is(err, cloudrun.ErrConflict) {
			break
		}
	}
	if err != nil {
		s.raise(ctx, fmt.Sprintf("%s was stored by Cloud Run but not served, and the state could not be put back (%v): the state may name a step that did not happen; abort rolls back", c.Kind, err))
		return fmt.Errorf("write %s: %v; putting the state back: %w", c.Kind, cause, err)
	}
	if c.Kind == rollout.Rollback || c.Kind == rollout.RollbackDone {
		// A rollback is never given up: deliver it again.
		return fmt.Errorf("write %s not served: %w", c.Kind, cause)
	}
	return classify(fmt.Errorf("write %s not served: %w", c.Kind, cause))
}

// putBack is one try at writing prev's content back over next.
func (s *step) putBack(ctx context.Context, prev rollout.State, c rollout.Command, next rollout.State, cause error) error {
	svc, err := s.crun.Read(ctx, s.svc.Name)
	if err != nil {
		return classify(err)
	}
	s.svc = svc
	cur := svc.State
	switch {
	case cur.Rollout == nil || next.Rollout == nil || cur.Rollout.ID != next.Rollout.ID:
		return nil // another rollout's write decided the traffic
	case cur.Rollout.Phase == rollout.RollingBack || (cur.Rollout.Phase.Terminal() && cur.Rollout.Phase != rollout.Promoted):
		return nil // a rollback (or failure) wrote the stable split and template since
	case cur.Generation != next.Generation:
		// A later write carried next forward; it stands if Cloud Run
		// serves what it says.
		if svc.Reconciling {
			return fmt.Errorf("a later write is still being applied: %w", cloudrun.ErrConflict)
		}
		if svc.ServesState() {
			return nil
		}
		return fmt.Errorf("a later write (generation %d) carried the unserved step forward", cur.Generation)
	}
	back := rollout.Revert(prev, cur, c, rootCause(cause), s.e.now(), Config(s.pol))
	after, err := s.crun.SetTraffic(ctx, svc, back)
	if errors.Is(err, cloudrun.ErrNotServed) {
		// Stored: the state is prev's again, which is what is served.
		s.logger().Warn("state put back; Cloud Run's update of it failed too: "+err.Error(), "command", string(c.Kind))
		after, err = s.crun.Read(ctx, s.svc.Name)
	}
	if err != nil {
		return err
	}
	s.svc = after
	return nil
}

// rootCause is the innermost message of err, for the history.
func rootCause(err error) string {
	for {
		var next error
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			next = u.Unwrap()
		case interface{ Unwrap() []error }:
			if es := u.Unwrap(); len(es) > 0 {
				next = es[len(es)-1]
			}
		}
		if next == nil {
			return err.Error()
		}
		err = next
	}
}

// releaseQueued publishes the release of the queued push once the rollout
// it waited for has ended. A lost publish is not lost work: the Scheduler
// tick publishes it again while the push is queued.
func (s *step) releaseQueued(ctx context.Context) {
	st := s.svc.State
	p := st.Pending
	if p == nil || st.Rollout == nil || st.Rollout.Active() {
		return
	}
	if err := s.publishRelease(ctx, p); err != nil {
		s.logger().Warn("release of the queued push not published; the next tick publishes it: "+err.Error(), "image", p.Image)
	}
}

// publishRelease publishes the release of a queued push.
func (s *step) publishRelease(ctx context.Context, p *rollout.Pending) error {
	c := events.Command{
		Type: events.CommandRelease, Service: s.svc.Name, Generation: s.svc.State.Generation, Step: events.StepRelease,
		Image: p.Image, Retry: p.Retry, Pushed: p.PublishTime, Actor: p.Actor,
		Reason: fmt.Sprintf("queued behind rollout %s", s.svc.State.Rollout.ID),
	}
	if p.OverrideWindow && p.Reason != "" {
		c.OverrideWindow, c.Reason = true, p.Reason
	}
	if c.Actor == "" {
		c.Actor = s.fn
	}
	if err := s.e.Bus.Command(ctx, c); err != nil {
		return fmt.Errorf("publish release of %s: %w", p.Image, err)
	}
	s.logger().Info("queued push released", "image", p.Image)
	return nil
}

// endsCanary reports whether next takes the canary out of service, so the
// write must restore the stable template as well as the traffic.
func endsCanary(next rollout.State) bool {
	r := next.Rollout
	if r == nil || r.Canary == "" || len(r.StableTemplate) == 0 {
		return false
	}
	switch r.Phase {
	case rollout.Failed, rollout.RollingBack, rollout.RolledBack, rollout.Superseded:
		return true
	}
	return false
}

// event publishes the lifecycle event for an applied command. Events are
// for watchers: a failure to publish one is logged, not retried.
func (s *step) event(ctx context.Context, c rollout.Command) {
	typ := lifecycleType(c.Kind, s.svc.State.Rollout.Phase)
	if typ == "" {
		return
	}
	st := s.svc.State
	r := st.Rollout
	reason := r.Reason
	switch c.Kind {
	case rollout.Queue, rollout.Dequeue, rollout.Escalate:
		// Not the rollout's own reason: what was queued, dropped or raised.
		if n := len(st.History); n > 0 {
			reason = st.History[n-1].Reason
		}
	}
	s.publishEvent(ctx, events.Lifecycle{
		Type: typ, Service: s.svc.Name, Rollout: r.ID, Generation: st.Generation, Phase: string(r.Phase),
		Stage: r.Stage, Percent: r.Percent(), Image: r.Image, Canary: r.Canary, Stable: st.Stable,
		Reason: reason, Actor: c.Actor,
	})
}

// publishEvent publishes a lifecycle event; a failure is logged.
func (s *step) publishEvent(ctx context.Context, e events.Lifecycle) {
	if err := s.e.Bus.Event(ctx, e); err != nil {
		s.logger().Warn("lifecycle event not published", "event", string(e.Type), "error", err.Error())
	}
}

// raise tells an operator that coalmine gave up on something: an ERROR
// log line naming what and why, and a needs-attention lifecycle event.
func (s *step) raise(ctx context.Context, why string) {
	s.logger().Error("needs attention: "+why, "reason", why)
	s.attentionEvent(ctx, why)
}

// attentionEvent publishes a needs-attention lifecycle event.
func (s *step) attentionEvent(ctx context.Context, why string) {
	st := s.svc.State
	e := events.Lifecycle{Type: events.EventNeedsAttention, Service: s.svc.Name, Generation: st.Generation, Reason: rollout.Clip(why, rollout.MaxReason), Actor: s.fn}
	if r := st.Rollout; r != nil {
		e.Rollout, e.Phase, e.Stage, e.Percent, e.Image, e.Canary, e.Stable = r.ID, string(r.Phase), r.Stage, r.Percent(), r.Image, r.Canary, st.Stable
	}
	if e.Rollout == "" {
		e.Rollout, e.Phase = "none", "none"
	}
	s.publishEvent(ctx, e)
}

func lifecycleType(k rollout.Kind, p rollout.Phase) events.LifecycleType {
	switch k {
	case rollout.Claim:
		if p == rollout.Waiting {
			return events.EventWaiting
		}
		return events.EventClaimed
	case rollout.Begin:
		return events.EventBackupStarted
	case rollout.BackupProgress:
		return events.EventBackupProgress
	case rollout.BackupDone:
		return events.EventBackupDone
	case rollout.CanaryCreated:
		return events.EventCanaryCreated
	case rollout.Shift:
		if p == rollout.Promoted {
			return events.EventPromoted
		}
		return events.EventTrafficShifted
	case rollout.Pause:
		return events.EventPaused
	case rollout.Resume:
		if p == rollout.BackingUp {
			return events.EventBackupStarted
		}
		return events.EventResumed
	case rollout.Escalate, rollout.Dequeue:
		return events.EventNeedsAttention
	case rollout.Queue:
		return events.EventQueued
	case rollout.Rollback, rollout.RollbackDone:
		switch p {
		case rollout.RollingBack:
			return events.EventRollingBack
		case rollout.Superseded:
			return events.EventSuperseded
		}
		return events.EventRolledBack
	case rollout.Fail:
		return events.EventFailed
	case rollout.Stop:
		return events.EventStopped
	}
	return ""
}

// publish sends the next command, naming the generation just written.
func (s *step) publish(ctx context.Context, typ events.CommandType, stage int, reason string) error {
	r := s.svc.State.Rollout
	c := events.Command{
		Type: typ, Service: s.svc.Name, Rollout: r.ID, Generation: s.svc.State.Generation,
		Stage: stage, Reason: reason, Actor: s.fn,
	}
	c.Step = stepOf(typ, stage)
	if err := s.e.Bus.Command(ctx, c); err != nil {
		return fmt.Errorf("publish %s: %w", typ, err)
	}
	s.logger().Debug("published", "next", string(typ), "target_stage", stage)
	return nil
}

func stepOf(typ events.CommandType, stage int) string {
	switch typ {
	case events.CommandRelease:
		return events.StepRelease
	case events.CommandBackup:
		return events.StepBackup
	case events.CommandDeployCanary:
		return events.StepDeploy
	case events.CommandShiftTraffic:
		return events.StepStage(stage)
	case events.CommandPause:
		return events.StepPause
	case events.CommandResume:
		return events.StepResume
	}
	return events.StepRollback
}

// republishNext is what a step does with a duplicate: publish again the
// command that follows the state as it is (the crash may have come between
// the write and the publish).
func (s *step) republishNext(ctx context.Context) error {
	r := s.svc.State.Rollout
	if r == nil {
		return nil
	}
	switch r.Phase {
	case rollout.BackingUp:
		return s.publish(ctx, events.CommandBackup, 0, "")
	case rollout.Deploying:
		return s.publish(ctx, events.CommandDeployCanary, 0, "")
	case rollout.RollingBack:
		return s.publish(ctx, events.CommandRollback, 0, r.Reason)
	}
	return nil
}

// done turns a step's error into the function's answer: nil (acknowledge)
// for success and permanent failures, which are logged; the error
// (deliver again) for transient ones.
func (e *Env) done(fn string, what string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, errPermanent) {
		e.log().Error(what+": giving up: "+err.Error(), "function", fn, "error", err.Error())
		return nil
	}
	if errors.Is(err, errMovedOn) {
		e.log().Info(what+": "+err.Error(), "function", fn)
		return nil
	}
	e.log().Warn(what+": will be delivered again: "+err.Error(), "function", fn, "error", err.Error())
	return err
}
