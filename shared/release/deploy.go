package release

import (
	"context"
	"errors"
	"fmt"

	"github.com/ai-square/coalmine/events"
	"github.com/ai-square/coalmine/shared/cloudrun"
	"github.com/ai-square/coalmine/shared/rollout"
)

// Deploy handles DeployCanary: it creates the canary revision at 0% with
// tag "canary" (one write that also records it in the state), waits until
// it is Ready, and publishes ShiftTraffic for stage 1. A revision that
// fails to start fails the rollout; traffic never moves. Delivered again
// after the write, it finds the canary recorded, waits for it and
// publishes the shift again.
func (e *Env) Deploy(ctx context.Context, c events.Command) error {
	return e.done(events.FunctionDeploy, "deploy "+c.Rollout, e.deploy(ctx, c))
}

func (e *Env) deploy(ctx context.Context, c events.Command) error {
	s, err := e.open(ctx, events.FunctionDeploy, c.Service, Point{Rollout: c.Rollout, Kind: rollout.CanaryCreated})
	if err != nil {
		return err
	}
	cmd := rollout.Command{Kind: rollout.CanaryCreated, Rollout: c.Rollout, Generation: c.Generation, Actor: c.Actor}
	r := s.svc.State.Rollout
	if r != nil && r.ID == c.Rollout {
		cmd.Revision = cloudrun.CanaryName(s.svc.Name, r.Digest, r.Claimed)
		if r.Phase == rollout.Deploying && r.Canary == "" {
			tmpl, err := s.crun.StableTemplate(ctx, s.svc)
			if err != nil {
				return classify(fmt.Errorf("stable template: %w", err))
			}
			cmd.Template = tmpl
		}
	}
	res := s.apply(cmd)
	wctx, cancel := context.WithTimeout(ctx, e.deployWait())
	defer cancel()
	switch res.Outcome {
	case rollout.Applied:
		if err := e.hook(ctx, e.Hooks.BeforeWrite, s.point(cmd.Kind)); err != nil {
			return err
		}
		after, err := s.crun.Deploy(wctx, s.svc, res.State, cloudrun.DeployRequest{Image: res.State.Rollout.Image, Container: s.pol.Container})
		if errors.Is(err, cloudrun.ErrRevisionFailed) {
			return s.failDeploy(ctx, c.Rollout, err)
		}
		if err != nil {
			return classify(fmt.Errorf("deploy canary: %w", err))
		}
		s.svc = after
		s.logger().Info("canary ready", "canary", after.Canary(), "image", res.State.Rollout.Image)
		if err := e.hook(ctx, e.Hooks.AfterWrite, s.point(cmd.Kind)); err != nil {
			return err
		}
		s.event(ctx, cmd)
	case rollout.Duplicate:
		rev, err := s.crun.WaitRevision(wctx, s.svc.Name, r.Canary)
		if errors.Is(err, cloudrun.ErrRevisionFailed) {
			return s.failDeploy(ctx, c.Rollout, err)
		}
		if err != nil {
			return classify(fmt.Errorf("wait for canary %s: %w", r.Canary, err))
		}
		s.logger().Info("canary ready", "canary", rev.Name)
	case rollout.Retry:
		return errors.New("deploy: " + res.Reason)
	default:
		return nil
	}
	return s.publish(ctx, events.CommandShiftTraffic, 1, "")
}

// failDeploy fails the rollout of a canary that could not start: the state
// records why, and the template goes back to the stable revision's. It
// names the rollout it deployed: by the time a slow revision fails, that
// rollout may have been superseded, and a newer one must not be failed.
func (s *step) failDeploy(ctx context.Context, rolloutID string, cause error) error {
	s.logger().Error("canary failed to start: "+cause.Error(), "error", cause.Error())
	svc, err := s.crun.Read(ctx, s.svc.Name)
	if err != nil {
		return classify(err)
	}
	s.svc = svc
	fail := rollout.Command{Kind: rollout.Fail, Rollout: rolloutID, Generation: svc.State.Generation, Reason: cause.Error(), Actor: events.FunctionDeploy}
	res := s.apply(fail)
	if res.Outcome != rollout.Applied {
		return nil
	}
	return s.write(ctx, fail, res.State)
}
