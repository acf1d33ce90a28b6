package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ai-square/coalmine/infra/local/cloud"
	"github.com/ai-square/coalmine/shared/emulator"
	"github.com/ai-square/coalmine/shared/judge"
	"github.com/ai-square/coalmine/shared/metrics"
	"github.com/ai-square/coalmine/shared/policy"
	"github.com/ai-square/coalmine/shared/release"
)

func init() {
	register(&command{
		name:    "verdict",
		args:    "SERVICE",
		summary: "Read the canary's metrics since its stage began and show the judge's verdict, gate by gate.",
		detail: `Reads from Cloud Monitoring (the local cloud's Monitoring server when MONITORING_EMULATOR_HOST
is set, as in local.env) the canary's and the stable revision's request counts by class and
latency distributions from the start of the current stage (a pause does not restart it) to now
minus gates.ingestionDelay, cut
to whole gates.alignment periods, and the database's connection use when gates.dbConnections is
on; then runs the judge (docs/verification.md) and prints each gate's figures and outcome.
This command only shows the verdict: the Verify function judges the same way at every tick of
the rollout's Scheduler job and acts on it (next stage, pause or rollback); coalmine status
shows the last verdict it recorded. Against a local cloud in fast mode (local.env says
COALMINE_MONITORING_MODE=fast) the judge reads 1s periods with no ingestion delay, as the Verify
function there does.`,
		run: func(ctx context.Context, a *app, fs *flag.FlagSet) error {
			t, err := a.target()
			if err != nil {
				return err
			}
			pol, c, err := t.service(ctx, fs.Arg(0))
			if err != nil {
				return err
			}
			svc, err := c.Read(ctx, pol.Name)
			c.Close()
			if err != nil {
				return err
			}
			if t.env[cloud.MonitoringModeEnv] == cloud.MonitoringFast {
				fmt.Fprintln(a.stdout, "note       the local Monitoring server runs in FAST MODE (no ingestion delay, 1s periods): take no figure from it")
				p := *pol
				p.Gates = release.FastGates(p.Gates)
				pol = &p
			}
			m, err := t.metrics(ctx, pol)
			if err != nil {
				return err
			}
			defer m.Close()
			j, err := release.Judge(ctx, m, pol, svc.State, a.now())
			if errors.Is(err, release.ErrNothingToJudge) {
				return fmt.Errorf("%s has no canary in a stage to judge: no rollout, or one that is not progressing or paused at a stage (see coalmine status %s)", pol.Name, pol.Name)
			}
			if err != nil {
				return err
			}
			printJudgement(a.stdout, pol, release.StageStart(svc.State.Rollout), j)
			return nil
		},
	})
}

// metrics connects to Cloud Monitoring in the service's project with its gates' alignment.
func (t *target) metrics(ctx context.Context, pol *policy.Service) (*metrics.Reader, error) {
	o := metrics.Options{Project: pol.Project, Alignment: pol.Gates.Alignment.Duration}
	if h := t.env[metrics.EmulatorHostEnv]; h != "" {
		o.ClientOptions = emulator.ClientOptions(h)
	}
	return metrics.New(ctx, o)
}

func printJudgement(w io.Writer, pol *policy.Service, stageStart time.Time, j release.Judgement) {
	v := j.Verdict
	fmt.Fprintf(w, "%s  stage began %s; data trusted up to %s ago (gates.ingestionDelay)\n", pol.Name, stageStart.Local().Format(time.DateTime), pol.Gates.IngestionDelay.Duration)
	if !v.End.IsZero() && v.End.After(v.Start) {
		fmt.Fprintf(w, "  window     %s – %s (whole %s periods)\n", v.Start.Local().Format(time.TimeOnly), v.End.Local().Format(time.TimeOnly), pol.Gates.Alignment.Duration)
	}
	for _, r := range []struct {
		role string
		rev  *metrics.Revision
	}{{"canary", j.Canary}, {"stable", j.Stable}} {
		if r.rev != nil {
			fmt.Fprintf(w, "  %-10s %s: %s\n", r.role, r.rev.Name, r.rev)
		}
	}
	for name, why := range j.NoData {
		fmt.Fprintf(w, "  no data    %s: %s\n", name, why)
	}
	if c := j.Connections; c != nil {
		fmt.Fprintf(w, "  database   %.0f of %d connections in use\n", c.InUse, c.Max)
	}
	head := strings.ToUpper(v.Status.String())
	if v.Status == judge.Unhealthy {
		head += " → the policy says " + string(v.Action)
	}
	fmt.Fprintf(w, "  verdict    %s\n", head)
	for _, g := range v.Gates {
		fmt.Fprintf(w, "    %-26s %-12s %s\n", g.Gate, g.Status, oneLine(g.Detail, 0))
	}
	fmt.Fprintln(w, "  acted on  by the Verify function at each tick of the rollout's Scheduler job (coalmine status shows the last verdict it recorded)")
}
