package release

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

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
}

// errPermanent wraps a failure that redelivery cannot fix; handle logs it
// and acknowledges.
var errPermanent = errors.New("permanent")

func permanent(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errPermanent, fmt.Sprintf(format, args...))
}

// open finds the service's policy and Cloud Run client and reads it.
func (e *Env) open(ctx context.Context, fn, service string, p Point) (*step, error) {
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
	return &step{e: e, fn: fn, pol: pol, crun: crun, svc: svc}, nil
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
	if endsCanary(next) {
		after, err = s.crun.Rollback(ctx, s.svc, next)
	} else {
		after, err = s.crun.SetTraffic(ctx, s.svc, next)
	}
	if err != nil {
		return classify(fmt.Errorf("write %s: %w", c.Kind, err))
	}
	s.svc = after
	s.logger().Info(fmt.Sprintf("%s written", c.Kind), "command", string(c.Kind), "actor", c.Actor, "percent", next.Rollout.Percent(), "reason", c.Reason)
	if err := s.e.hook(ctx, s.e.Hooks.AfterWrite, s.point(c.Kind)); err != nil {
		return err
	}
	s.event(ctx, c)
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
	e := events.Lifecycle{
		Type: typ, Service: s.svc.Name, Rollout: r.ID, Generation: st.Generation, Phase: string(r.Phase),
		Stage: r.Stage, Percent: r.Percent(), Image: r.Image, Canary: r.Canary, Stable: st.Stable,
		Reason: r.Reason, Actor: c.Actor,
	}
	if err := s.e.Bus.Event(ctx, e); err != nil {
		s.logger().Warn("lifecycle event not published", "event", string(typ), "error", err.Error())
	}
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
		return events.EventResumed
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
	e.log().Warn(what+": will be delivered again: "+err.Error(), "function", fn, "error", err.Error())
	return err
}
