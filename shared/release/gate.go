package release

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ai-square/coalmine/events"
	"github.com/ai-square/coalmine/shared/judge"
	"github.com/ai-square/coalmine/shared/metrics"
	"github.com/ai-square/coalmine/shared/policy"
	"github.com/ai-square/coalmine/shared/rollout"
)

// FastGates returns g with the local cloud's fast Monitoring timing: 1s alignment periods
// and no ingestion delay. Only `coalmine local up --fast` judges with it.
func FastGates(g policy.Gates) policy.Gates {
	g.Alignment = policy.Dur(time.Second)
	g.IngestionDelay = policy.Dur(0)
	return g
}

// move is what a verdict does to a rollout: publish a command, or hold (typ "").
type move struct {
	typ   events.CommandType
	stage int
	// reason is the command's reason, or why the rollout holds.
	reason string
}

// decide turns a verdict on the rollout's current stage into a move. Unhealthy rolls back
// or pauses as the failing gates say, in or out of a deploy window (a rollback always
// may); a paused rollout is only ever rolled back (an operator resumes it). Healthy moves
// to the next stage (the last one promotes) once the data judged covers the stage's bake
// and a deploy window is open; before that, and on Inconclusive, the stage holds, and the
// deadlines.stage watchdog still applies.
func decide(v judge.Verdict, r *rollout.Rollout, pol *policy.Service, windowOpen bool) move {
	switch v.Status {
	case judge.Unhealthy:
		if v.Action == policy.ActionRollback {
			return move{typ: events.CommandRollback, reason: "gates failed: " + v.Reason}
		}
		if r.Phase == rollout.Paused {
			return move{reason: "unhealthy, and already paused: " + v.Reason}
		}
		return move{typ: events.CommandPause, stage: r.Stage, reason: "gates failed: " + v.Reason}
	case judge.Inconclusive:
		return move{reason: "inconclusive: " + v.Reason}
	}
	if r.Phase != rollout.Progressing {
		return move{reason: "healthy, but paused: an operator resumes or promotes it"}
	}
	if r.Stage < 1 || r.Stage >= len(r.Stages) {
		return move{reason: fmt.Sprintf("healthy at stage %d of %d: nothing to move to", r.Stage, len(r.Stages))}
	}
	var bake time.Duration
	if r.Stage <= len(pol.Stages) {
		bake = pol.Stages[r.Stage-1].Bake.Duration
	}
	if covered := v.End.Sub(StageStart(r)); covered < bake {
		return move{reason: fmt.Sprintf("healthy, baking: the data judged covers %s of the stage's %s bake", covered.Round(time.Second), bake)}
	}
	if !windowOpen {
		return move{reason: "healthy and baked, but outside the deploy windows: the stage holds until one opens"}
	}
	next := r.Stage + 1
	what := fmt.Sprintf("stage %d (%d%%)", next, r.Stages[next-1])
	if next == len(r.Stages) {
		what = "promotion"
	}
	return move{typ: events.CommandShiftTraffic, stage: next, reason: fmt.Sprintf("gates healthy after the %s bake, on to %s: %s", bake, what, v.Reason)}
}

// judgeCanary judges the canary of a rollout serving a stage, records the verdict when it
// says something new (another status, action or gate status: a tick that changes nothing
// writes nothing, so the figures kept are those of the last change), and publishes what
// the verdict asks for. Metrics that cannot be read leave the rollout as it is until
// the next tick.
func (s *step) judgeCanary(ctx context.Context) error {
	e := s.e
	r := s.svc.State.Rollout
	if e.Metrics == nil || r == nil || (r.Phase != rollout.Progressing && r.Phase != rollout.Paused) || r.Stage < 1 || r.Escalated != "" {
		return nil
	}
	if r.Attempts > 0 {
		// The watchdog has published this rollout's rollback (its stage or pause deadline
		// passed): nothing the judge says moves it on, and the watchdog bounds the retries.
		return nil
	}
	pol := s.pol
	if e.FastMetrics {
		p := *s.pol
		p.Gates = FastGates(p.Gates)
		pol = &p
	}
	m, err := e.Metrics(ctx, pol)
	if err != nil {
		s.logger().Warn("canary not judged: no metrics client: "+err.Error(), "error", err.Error())
		return nil
	}
	now := e.now()
	j, err := Judge(ctx, m, pol, s.svc.State, now)
	if errors.Is(err, ErrNothingToJudge) {
		return nil
	}
	if errors.Is(err, metrics.ErrPermanent) {
		s.logger().Error("canary not judged: Cloud Monitoring refuses the query (permissions, or a query it does not take); the stage holds until deadlines.stage: "+err.Error(), "error", err.Error())
		return nil
	}
	if err != nil {
		s.logger().Warn("canary not judged: metrics not read; the next tick tries again: "+err.Error(), "error", err.Error())
		return nil
	}
	v := j.Verdict
	mv := decide(v, r, pol, pol.Windows.Allows(now))
	rec := recordOf(j, r, now)
	var requests, errs int64
	if c := rec.Canary; c != nil {
		requests, errs = c.Requests, c.Errors
	}
	s.logger().Info("verdict "+v.Status.String()+" → "+decision(mv), "verdict", v.Status.String(), "action", string(v.Action), "reason", v.Reason,
		"requests", requests, "errors", errs)
	if mv.typ != "" || !rec.Same(r.Verdict) {
		c := rollout.Command{Kind: rollout.Judged, Rollout: r.ID, Generation: s.svc.State.Generation, Verdict: rec, Actor: events.FunctionVerify}
		if res := s.apply(c); res.Outcome == rollout.Applied {
			if err := s.write(ctx, c, res.State); err != nil {
				return err
			}
		}
	}
	if mv.typ == "" {
		return nil
	}
	return s.publish(ctx, mv.typ, mv.stage, mv.reason)
}

func decision(mv move) string {
	if mv.typ == "" {
		return "hold: " + mv.reason
	}
	return stepOf(mv.typ, mv.stage) + ": " + mv.reason
}

// recordOf is the verdict as the state keeps it.
func recordOf(j Judgement, r *rollout.Rollout, now time.Time) *rollout.Verdict {
	v := j.Verdict
	out := &rollout.Verdict{
		Stage: r.Stage, Status: v.Status.String(), Action: string(v.Action), Reason: v.Reason,
		At: now, Start: v.Start, End: v.End, Canary: figuresOf(j.Canary), Stable: figuresOf(j.Stable),
	}
	for _, g := range v.Gates {
		out.Gates = append(out.Gates, rollout.GateResult{Gate: g.Gate, Status: g.Status.String(), Detail: g.Detail})
	}
	return out
}

func figuresOf(m *metrics.Revision) *rollout.Figures {
	if m == nil {
		return nil
	}
	f := &rollout.Figures{Revision: m.Name, Requests: m.Total(), Errors: m.Classes["5xx"]}
	if p95, ok := m.Latency.Quantile(0.95); ok {
		f.P95Ms = p95
	}
	return f
}
