package release

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ai-square/coalmine/shared/judge"
	"github.com/ai-square/coalmine/shared/metrics"
	"github.com/ai-square/coalmine/shared/policy"
	"github.com/ai-square/coalmine/shared/rollout"
)

// Metrics is where a canary's figures come from (shared/metrics.Reader over Cloud
// Monitoring).
type Metrics interface {
	Revision(ctx context.Context, id metrics.RevisionID, w metrics.Window) (metrics.Revision, error)
	Connections(ctx context.Context, databaseID string, w metrics.Window) (float64, error)
}

// StageStart is when the canary's current stage began, or was last resumed (a pause does not
// restart it); for a state written before stages kept their own start, when its step began.
func StageStart(r *rollout.Rollout) time.Time {
	if r.StageStarted.IsZero() {
		return r.StepStarted
	}
	return r.StageStarted
}

// ErrNothingToJudge: the service has no rollout whose canary serves traffic in a stage
// (progressing, or paused at a stage, which keeps its traffic).
var ErrNothingToJudge = errors.New("no canary taking traffic")

// Judgement is a verdict with what it was read from.
type Judgement struct {
	Verdict judge.Verdict
	// Canary and Stable are what was read of each revision; NoData says why one is missing
	// (no series, or no whole alignment period yet), by revision name.
	Canary, Stable *metrics.Revision
	NoData         map[string]string
	// Connections is the connection use read, when the gate is on and data was there.
	Connections *judge.Connections
}

// Judge reads the figures of the rollout's current stage (progressing or paused) — the
// canary's and the stable revision's requests and latencies from the stage's start to now minus the policy's
// ingestion delay, and the database's connection use — and judges them. Missing data is
// passed to the judge as missing (Inconclusive), never as zero; a transient read failure is
// returned. It decides nothing on its own: the verdict is what the caller acts on (today
// only shown, by `coalmine verdict`).
func Judge(ctx context.Context, m Metrics, svc *policy.Service, st rollout.State, now time.Time) (Judgement, error) {
	r := st.Rollout
	if r == nil || (r.Phase != rollout.Progressing && r.Phase != rollout.Paused) || r.Canary == "" || r.Stage < 1 {
		return Judgement{}, fmt.Errorf("service %s: %w", svc.Name, ErrNothingToJudge)
	}
	g := svc.Gates
	w := metrics.Window{Start: StageStart(r), End: now.Add(-g.IngestionDelay.Duration)}
	out := Judgement{NoData: map[string]string{}}
	in := judge.Input{Gates: g, Start: w.Start, End: w.End}
	read := func(rev string) (*metrics.Revision, error) {
		got, err := m.Revision(ctx, metrics.RevisionID{Service: svc.Name, Revision: rev}, w)
		switch {
		case err == nil:
			return &got, nil
		case errors.Is(err, metrics.ErrNoData), errors.Is(err, metrics.ErrWindow):
			out.NoData[rev] = err.Error()
			return nil, nil
		}
		return nil, err
	}
	var err error
	if out.Canary, err = read(r.Canary); err != nil {
		return Judgement{}, err
	}
	if out.Canary != nil {
		in.Canary = out.Canary.Figures()
		in.Start, in.End = out.Canary.Window.Start, out.Canary.Window.End
	}
	if r.Stable != "" {
		if out.Stable, err = read(r.Stable); err != nil {
			return Judgement{}, err
		}
		if out.Stable != nil {
			in.Stable = out.Stable.Figures()
		}
	}
	if db := g.DBConnections; db != nil {
		used, err := m.Connections(ctx, db.DatabaseID(), w)
		switch {
		case err == nil:
			in.Connections = &judge.Connections{InUse: used, Max: db.MaxConnections}
			out.Connections = in.Connections
		case errors.Is(err, metrics.ErrNoData), errors.Is(err, metrics.ErrWindow):
			out.NoData[db.DatabaseID()] = err.Error()
		default:
			return Judgement{}, err
		}
	}
	out.Verdict = judge.Judge(in)
	return out, nil
}
