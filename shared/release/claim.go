package release

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ai-square/coalmine/events"
	"github.com/ai-square/coalmine/shared/policy"
	"github.com/ai-square/coalmine/shared/rollout"
)

// ErrSuperseding means a claim found another rollout in progress and asked
// for its rollback; the claim is delivered again once that has ended.
var ErrSuperseding = errors.New("superseding the rollout in progress")

// Artifact handles an Artifact Registry notification: an INSERT with a
// digest for a repository of configured services claims a rollout on each
// of them. Deletions, tag-only notifications and unknown repositories are
// logged and acknowledged.
func (e *Env) Artifact(ctx context.Context, n events.ArtifactNotification, published time.Time) error {
	log := e.log().With("function", events.FunctionBackup, "action", n.Action, "digest", n.Digest, "tag", n.Tag)
	if n.Action != events.ActionInsert {
		log.Info("ignored: not an image push")
		return nil
	}
	if n.Digest == "" {
		log.Info("ignored: tag notification without a digest")
		return nil
	}
	ref, err := events.ParseImageRef(n.Digest)
	if err != nil {
		log.Warn("ignored: unreadable digest: " + err.Error())
		return nil
	}
	services := e.Policy.ServicesForImage(ref.Repository)
	if len(services) == 0 {
		log.Info("ignored: repository not allowed for any configured service", "repository", ref.Repository)
		return nil
	}
	var errs []error
	for _, svc := range services {
		err := e.claim(ctx, svc, ref.Repository+"@"+ref.Digest, ref.Digest, published, false, "artifact-registry")
		errs = append(errs, e.done(events.FunctionBackup, "claim "+svc.Name, err))
	}
	return errors.Join(errs...)
}

// Release handles an operator's release or retry command.
func (e *Env) Release(ctx context.Context, c events.Command, published time.Time) error {
	log := e.log().With("function", events.FunctionBackup, "service", c.Service, "image", c.Image, "actor", c.Actor)
	pol, err := e.Policy.Service(c.Service)
	if err != nil {
		log.Warn("release ignored: service not in the policy")
		return nil
	}
	ref, err := events.ParseImageRef(c.Image)
	if err != nil || ref.Digest == "" {
		log.Warn("release ignored: image has no digest")
		return nil
	}
	if !pol.AllowsImage(ref.Repository) {
		log.Warn("release ignored: repository not allowed for the service", "repository", ref.Repository)
		return nil
	}
	actor := c.Actor
	if actor == "" {
		actor = "operator"
	}
	err = e.claim(ctx, pol, ref.Repository+"@"+ref.Digest, ref.Digest, published, c.Retry, actor)
	return e.done(events.FunctionBackup, "release "+c.Service, err)
}

func (e *Env) claim(ctx context.Context, pol *policy.Service, image, digest string, published time.Time, retry bool, actor string) error {
	s, err := e.open(ctx, events.FunctionBackup, pol.Name, Point{Kind: rollout.Claim})
	if err != nil {
		return err
	}
	now := e.now()
	c := rollout.Command{
		Kind: rollout.Claim, Service: pol.Name, Image: image, Digest: digest, PublishTime: published,
		Retry: retry, Stages: pol.StagePercents(), Stable: s.svc.Serving, WindowOpen: pol.Windows.Allows(now),
		Actor: actor,
	}
	if !c.WindowOpen {
		c.Reason = "waiting for a deploy window"
		if next := pol.Windows.NextAllowed(now); !next.IsZero() {
			c.Reason = fmt.Sprintf("waiting for the deploy window at %s", next.Format(time.RFC3339))
		}
	}
	res := s.apply(c)
	switch res.Outcome {
	case rollout.Applied:
		if err := s.write(ctx, c, res.State); err != nil {
			return err
		}
		if s.svc.State.Rollout.Phase == rollout.BackingUp {
			return s.publish(ctx, events.CommandBackup, 0, "")
		}
		return nil
	case rollout.Duplicate:
		return s.republishNext(ctx)
	case rollout.Supersede:
		r := s.svc.State.Rollout
		rb := events.Command{
			Type: events.CommandRollback, Service: pol.Name, Rollout: r.ID, Generation: s.svc.State.Generation,
			Step: events.StepRollback, Reason: events.ReasonSuperseded, Actor: events.FunctionBackup,
		}
		if err := e.Bus.Command(ctx, rb); err != nil {
			return fmt.Errorf("publish rollback of %s: %w", r.ID, err)
		}
		return fmt.Errorf("%w: %s", ErrSuperseding, res.Reason)
	case rollout.Retry:
		return fmt.Errorf("claim: %s", res.Reason)
	}
	return nil // stale, rejected: logged by apply
}
