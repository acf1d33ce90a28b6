package release

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/ai-square/coalmine/events"
	"github.com/ai-square/coalmine/shared/policy"
	"github.com/ai-square/coalmine/shared/rollout"
)

// AlertServiceLabel is the alert policy user label that names the Cloud Run service an
// incident is about, when the incident's resource does not (a policy over a metric
// without the service_name label).
const AlertServiceLabel = "coalmine-service"

// alertMove is what an open incident does: publish a command, or nothing (typ "", why
// says why).
type alertMove struct {
	typ    events.CommandType
	revert bool
	why    string
}

// alertDecision decides what an open incident of a policy whose action is action does to
// the service's state at now. It acts on the rollout in progress when the incident is
// about its canary (or names no revision): rollback rolls it back, pause pauses it, in or
// out of a deploy window. After a promotion it reverts to the revision the promotion
// replaced, while the guard period lasts and the action is rollback. Everything else —
// an incident already answered, one that began before the rollout, one about another
// revision, a rollout with no canary serving — changes nothing.
func alertDecision(inc events.Incident, action policy.Action, st rollout.State, now time.Time, guard time.Duration) alertMove {
	r := st.Rollout
	rev := inc.Revision()
	switch {
	case r == nil:
		return alertMove{why: "no rollout on the service"}
	case r.HasIncident(inc.ID):
		return alertMove{why: fmt.Sprintf("incident %s already answered for rollout %s", inc.ID, r.ID)}
	case !inc.StartedAt.IsZero() && inc.StartedAt.Before(r.Started):
		return alertMove{why: fmt.Sprintf("the incident began at %s, before rollout %s was claimed", inc.StartedAt.UTC().Format(time.RFC3339), r.ID)}
	case rev != "" && rev != r.Canary:
		return alertMove{why: fmt.Sprintf("the incident is about revision %s, not the canary %s of rollout %s", rev, canaryName(r), r.ID)}
	}
	switch r.Phase {
	case rollout.Progressing, rollout.Paused:
		if action == policy.ActionRollback {
			// Revert too: a promotion that wins the race against this rollback is then
			// reverted (within the guard period) instead of the rollback being stale.
			return alertMove{typ: events.CommandRollback, revert: true}
		}
		if r.Phase == rollout.Paused {
			return alertMove{why: "rollout " + r.ID + " is already paused"}
		}
		return alertMove{typ: events.CommandPause}
	case rollout.Promoted:
		switch {
		case action != policy.ActionRollback:
			return alertMove{why: fmt.Sprintf("rollout %s is promoted: nothing to pause", r.ID)}
		case guard <= 0 || !now.Before(r.Ended.Add(guard)):
			return alertMove{why: fmt.Sprintf("rollout %s was promoted at %s, outside the guard period (deadlines.guard %s)", r.ID, r.Ended.UTC().Format(time.RFC3339), guard)}
		}
		return alertMove{typ: events.CommandRollback, revert: true}
	case rollout.RollingBack:
		return alertMove{why: "rollout " + r.ID + " is already rolling back"}
	}
	if r.Phase.Terminal() {
		return alertMove{why: fmt.Sprintf("rollout %s has ended (%s)", r.ID, r.Phase)}
	}
	return alertMove{why: fmt.Sprintf("the canary of rollout %s takes no traffic yet (%s)", r.ID, r.Phase)}
}

func canaryName(r *rollout.Rollout) string {
	if r.Canary == "" {
		return "(none yet)"
	}
	return r.Canary
}

// Alert handles a Cloud Monitoring incident notification. An open incident of an alert
// policy the service's policy lists is answered with its action (see alertDecision);
// closed incidents, test notifications, incidents for services or alert policies the
// policy does not name are logged and acknowledged. The command carries the incident, so
// a notification delivered again changes nothing once it is answered.
func (e *Env) Alert(ctx context.Context, inc events.Incident) error {
	log := e.log().With("function", events.FunctionAlert, "incident", inc.ID, "state", inc.State, "policy", inc.PolicyName)
	if inc.Test {
		log.Info("test notification acknowledged: nothing to do")
		return nil
	}
	if inc.State != events.IncidentOpen {
		log.Info("incident " + inc.State + ": nothing to do (a rollback or pause is not undone when an alert clears)")
		return nil
	}
	service := inc.Service()
	if service == "" {
		service = inc.PolicyUserLabels[AlertServiceLabel]
	}
	if service == "" {
		log.Warn("incident names no service (no resource label service_name, no policy user label " + AlertServiceLabel + "): ignored")
		return nil
	}
	log = log.With("service", service)
	pol, err := e.Policy.Service(service)
	if err != nil {
		log.Info("incident for a service not in the policy: ignored")
		return nil
	}
	if p := inc.ResourceLabels["project_id"]; p != "" && p != pol.Project {
		log.Info(fmt.Sprintf("incident for service %s in project %s, not the policy's %s: ignored", service, p, pol.Project))
		return nil
	}
	action, ok := pol.AlertAction(inc.PolicyName)
	if !ok {
		log.Warn(fmt.Sprintf("alert policy %q is not in the service's alerts: ignored", inc.PolicyName))
		return nil
	}
	if len(inc.ID) > events.MaxIncidentID {
		log.Warn(fmt.Sprintf("incident id of %d characters (at most %d): ignored", len(inc.ID), events.MaxIncidentID))
		return nil
	}
	return e.done(events.FunctionAlert, "alert "+inc.ID, e.alert(ctx, log, pol, inc, action))
}

func (e *Env) alert(ctx context.Context, log *slog.Logger, pol *policy.Service, inc events.Incident, action policy.Action) error {
	s, err := e.open(ctx, events.FunctionAlert, pol.Name, Point{Kind: rollout.Rollback})
	if err != nil {
		return err
	}
	mv := alertDecision(inc, action, s.svc.State, e.now(), pol.Deadlines.Guard.Duration)
	if r := s.svc.State.Rollout; mv.revert && r != nil && r.Phase == rollout.Promoted {
		if what := s.svc.ChangedOutside(); what != "" {
			mv = alertMove{why: "the service changed outside coalmine since the promotion (" + what + "): a revert would undo that change; roll back by hand"}
		}
	}
	if mv.typ == "" {
		log.Info("incident changes nothing: " + mv.why)
		return nil
	}
	r := s.svc.State.Rollout
	reason := fmt.Sprintf("alert %q", inc.PolicyName)
	if inc.Summary != "" {
		reason += ": " + inc.Summary
	}
	c := events.Command{
		Type: mv.typ, Service: pol.Name, Rollout: r.ID, Generation: s.svc.State.Generation, Step: stepOf(mv.typ, 0),
		Reason: rollout.Clip(reason, rollout.MaxReason), Actor: rollout.Clip("alert:"+inc.PolicyName, rollout.MaxActor),
		Revert: mv.revert, Incident: inc.ID,
	}
	if mv.typ == events.CommandPause {
		c.Stage = r.Stage
	}
	if err := e.Bus.Command(ctx, c); err != nil {
		return fmt.Errorf("publish %s for incident %s: %w", mv.typ, inc.ID, err)
	}
	log.Warn(fmt.Sprintf("incident answered: %s of rollout %s", stepOf(mv.typ, 0), r.ID), "rollout", r.ID, "revert", mv.revert && r.Phase == rollout.Promoted)
	return nil
}
