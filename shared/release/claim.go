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
		err := e.claim(ctx, svc, claimRequest{image: ref.Repository + "@" + ref.Digest, digest: ref.Digest, published: published, actor: "artifact-registry"})
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
		e.reply(ctx, c, events.OutcomeRefused, fmt.Sprintf("service %s is not in the policy", c.Service), rollout.State{})
		return nil
	}
	ref, err := events.ParseImageRef(c.Image)
	if err != nil || ref.Digest == "" {
		log.Warn("release ignored: image has no digest")
		e.reply(ctx, c, events.OutcomeRefused, fmt.Sprintf("%s names no digest", c.Image), rollout.State{})
		return nil
	}
	if !pol.AllowsImage(ref.Repository) {
		log.Warn("release ignored: repository not allowed for the service", "repository", ref.Repository)
		e.reply(ctx, c, events.OutcomeRefused, fmt.Sprintf("repository %s is not allowed for %s (allowed: %s)", ref.Repository, pol.Name, strings.Join(pol.Images, ", ")), rollout.State{})
		// A queued push of it (the policy changed since) is dropped.
		err := e.dequeue(ctx, pol.Name, ref.Digest, "repository "+ref.Repository+" is not allowed for the service")
		return e.done(events.FunctionBackup, "release "+c.Service, err)
	}
	image := ref.Repository + "@" + ref.Digest
	if e.Images != nil {
		if err := e.Images.Exists(ctx, image); errors.Is(err, ErrImageNotFound) {
			log.Warn("release refused: " + err.Error())
			e.reply(ctx, c, events.OutcomeRefused, err.Error(), rollout.State{})
			// A queued push of it (deleted from the registry since) is dropped.
			err := e.dequeue(ctx, pol.Name, ref.Digest, "the image is not in the registry")
			return e.done(events.FunctionBackup, "release "+c.Service, err)
		} else if err != nil {
			return e.done(events.FunctionBackup, "release "+c.Service, fmt.Errorf("check image %s: %w", image, err))
		}
	}
	actor := c.Actor
	if actor == "" {
		actor = "operator"
	}
	if !c.Pushed.IsZero() {
		// The release of a queued push: it is as old as the push.
		published = c.Pushed
	}
	err = e.claim(ctx, pol, claimRequest{
		image: image, digest: ref.Digest, published: published, retry: c.Retry,
		actor: actor, override: c.OverrideWindow, reason: c.Reason, ask: asking(c),
	})
	return e.done(events.FunctionBackup, "release "+c.Service, err)
}

// claimRequest is a push or release to claim a rollout for.
type claimRequest struct {
	image, digest string
	published     time.Time
	retry         bool
	actor         string
	// override starts the rollout now outside the deploy windows; reason
	// says why (both from an operator's release).
	override bool
	reason   string
	// ask is the operator's command to answer, nil if none.
	ask *events.Command
}

func (e *Env) claim(ctx context.Context, pol *policy.Service, req claimRequest) (err error) {
	image, digest := req.image, req.digest
	s, err := e.open(ctx, events.FunctionBackup, pol.Name, Point{Kind: rollout.Claim})
	if err != nil {
		e.refuse(ctx, req.ask, err)
		return err
	}
	s.asker = req.ask
	defer func() { s.answer(ctx, err) }()
	now := e.now()
	if r := s.svc.State.Rollout; !r.Active() && s.svc.Reconciling {
		// The revision serving 100% is about to change (an outside deploy
		// in progress, say): claiming against the one serving now would
		// pin the traffic back on it.
		return fmt.Errorf("claim %s: Cloud Run is still applying a change to the service; the claim is delivered again", pol.Name)
	}
	c := rollout.Command{
		Kind: rollout.Claim, Service: pol.Name, Image: image, Digest: digest, PublishTime: req.published,
		Retry: req.retry, Stages: pol.StagePercents(), Stable: s.svc.Serving, WindowOpen: pol.Windows.Allows(now),
		OverrideWindow: req.override, Actor: req.actor, Reason: req.reason,
	}
	if c.StableDigest, err = s.servingDigest(ctx); err != nil {
		return err
	}
	if !c.WindowOpen && !c.OverrideWindow {
		c.Reason = "waiting for a deploy window"
		if next := pol.Windows.NextAllowed(now); !next.IsZero() {
			c.Reason = "waiting for the deploy window, which opens " + windowOpens(next, pol.Windows.Timezone)
		}
	}
	res := s.apply(c)
	s.verdict = &res
	if r := s.svc.State.Rollout; res.Outcome == rollout.Duplicate && req.override && r.Phase == rollout.Waiting && r.Digest == digest {
		// An operator's release with an override of the rollout that waits
		// for its window: start it now, as resume --override-window does.
		return s.beginNow(ctx, req)
	}
	queued := s.svc.State.Pending != nil && s.svc.State.Pending.Digest == digest
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
		if queued {
			return s.supersede(ctx)
		}
		s.keepTicks(ctx) // the claim's tick job may not have been made
		return s.republishNext(ctx)
	case rollout.Supersede:
		// Queued in the state: acknowledged now, released when the
		// rollout in progress has ended, however long its rollback takes.
		q := c
		q.Kind = rollout.Queue
		if err := s.write(ctx, q, res.State); err != nil {
			return err
		}
		s.logger().Info("push queued: "+res.Reason, "image", image)
		return s.supersede(ctx)
	case rollout.Retry:
		return fmt.Errorf("claim: %s", res.Reason)
	case rollout.Rejected, rollout.Stale:
		if queued {
			return s.dequeue(ctx, digest, res.Reason)
		}
	}
	return nil // stale, rejected: logged by apply
}

// beginNow starts the waiting rollout now, overriding the deploy window.
func (s *step) beginNow(ctx context.Context, req claimRequest) error {
	r := s.svc.State.Rollout
	c := rollout.Command{Kind: rollout.Resume, Rollout: r.ID, Generation: s.svc.State.Generation, OverrideWindow: true, Reason: req.reason, Actor: req.actor}
	res := s.apply(c)
	s.verdict = &res
	if res.Outcome != rollout.Applied {
		return nil
	}
	if err := s.write(ctx, c, res.State); err != nil {
		return err
	}
	return s.publish(ctx, events.CommandBackup, 0, "")
}

// supersede publishes the rollback (reason superseded) of the rollout a
// queued push waits for, unless it is already rolling back: one rollback
// however many times the push is delivered.
func (s *step) supersede(ctx context.Context) error {
	r := s.svc.State.Rollout
	if r == nil || !r.Active() || r.Phase == rollout.RollingBack {
		return nil
	}
	return s.publish(ctx, events.CommandRollback, 0, events.ReasonSuperseded)
}

// dequeue drops the queued push of digest on service: its claim was
// refused for the reason given. Nothing else is dropped, and nothing
// silently: the history and a needs-attention event say why.
func (e *Env) dequeue(ctx context.Context, service, digest, why string) error {
	s, err := e.open(ctx, events.FunctionBackup, service, Point{Kind: rollout.Dequeue})
	if err != nil {
		return err
	}
	if p := s.svc.State.Pending; p == nil || p.Digest != digest {
		return nil
	}
	return s.dequeue(ctx, digest, why)
}

func (s *step) dequeue(ctx context.Context, digest, why string) error {
	st := s.svc.State
	d := rollout.Command{Kind: rollout.Dequeue, Rollout: st.Rollout.ID, Generation: st.Generation, Digest: digest, Reason: why, Actor: events.FunctionBackup}
	res := s.apply(d)
	if res.Outcome != rollout.Applied {
		return nil
	}
	s.logger().Error("queued push dropped: "+why, "digest", digest)
	return s.write(ctx, d, res.State)
}

// servingDigest is the digest of the image the revision serving 100% runs
// ("" when traffic is split or the image is named by tag only).
func (s *step) servingDigest(ctx context.Context) (string, error) {
	if s.svc.Serving == "" {
		return "", nil
	}
	rev, err := s.crun.Revision(ctx, s.svc.Name, s.svc.Serving)
	if err != nil {
		if cloudrun.Transient(err) {
			return "", err
		}
		return "", nil // not known: the claim goes on without the check
	}
	ref, err := events.ParseImageRef(rev.Image)
	if err != nil {
		return "", nil
	}
	return ref.Digest, nil
}

// windowOpens says when a deploy window opens, on the policy's wall clock.
func windowOpens(t time.Time, tz string) string {
	if tz == "" {
		tz = "UTC"
	}
	if loc, err := time.LoadLocation(tz); err == nil {
		t = t.In(loc)
	}
	return fmt.Sprintf("at %s (%s)", t.Format("Mon 2006-01-02 15:04 -07:00"), tz)
}
