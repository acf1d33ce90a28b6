package cli

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/ai-square/coalmine/events"
	"github.com/ai-square/coalmine/infra/local/cloud"
	"github.com/ai-square/coalmine/infra/local/pubsubemu"
	"github.com/ai-square/coalmine/shared/logging"
	"github.com/ai-square/coalmine/shared/policy"
)

func init() {
	var backend string
	var fast bool
	register(&command{
		name:    "local up",
		args:    "[--dir DIR] [--config FILE] [--pubsub pstest|gcloud|external] [--fast]",
		summary: "Start the local cloud and the functions in the foreground until interrupted.",
		detail: `Starts Pub/Sub (embedded pstest; or Google's emulator with --pubsub gcloud; or the server
PUBSUB_EMULATOR_HOST names), the Cloud Run emulator with every policy service serving a stable
revision, Cloud Monitoring (fed by every request the services' URLs and tag URLs serve, and by
the local PostgreSQL's connections, and evaluating the policy's alert policies, whose incidents
go to coalmine-alerts), Cloud Scheduler (the sweep job every 10 minutes; the functions add a
tick job per rollout in progress, every gates.interval, and delete it when the rollout ends),
the functions and the Eventarc-like bridge. Monitoring and Scheduler keep Google's timing (each
minute's data visible 2–3 minutes after it ends, alignment periods of at least 60s, minute
schedules) unless --fast shortens it: no ingestion delay and 1s periods (the judge reads them
so), alert conditions that count a second for each minute, tick jobs every 2s and the sweep
every 30s. When ready it writes
DIR/local.env (KEY=value lines other coalmine commands and Google's clients read) and prints
"ready". The local cloud's logs (JSON lines) go to DIR/local.log, not to the terminal; an error
that stops start-up is printed. Without --config it uses the built-in example policy (one
service, ai-square).`,
		notes: builtinPolicyNotes,
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&backend, "pubsub", "", "the Pub/Sub server: `pstest|gcloud|external` (default: external if PUBSUB_EMULATOR_HOST is set, else pstest)")
			fs.BoolVar(&fast, "fast", false, "run Cloud Monitoring and Scheduler without Google's delays (data visible at once, 1s periods, ticks every 2s): for demos and tests; take no figure from it")
		},
		run: func(ctx context.Context, a *app, fs *flag.FlagSet) error {
			cfg := cloud.Config{Dir: a.dir, Pubsub: pubsubemu.Backend(backend), Fast: fast}
			if a.config != "" {
				b, err := os.ReadFile(a.config)
				if err != nil {
					return err
				}
				cfg.Policy = b
			} else {
				cfg.Policy = policy.Example()
			}
			fmt.Fprintf(a.stdout, "starting the local cloud in %s ...\n", a.dir)
			logs, err := openLog(a.dir)
			if err != nil {
				return err
			}
			defer logs.Close()
			cfg.Log = logging.New(logs, slog.LevelInfo)
			defer redirectStderr(logs)()
			c, err := cloud.Start(ctx, cfg)
			if err != nil {
				return err
			}
			defer c.Close()
			fmt.Fprintf(a.stdout, "Pub/Sub        %s\nCloud Run      %s\nfunctions      %s\n", c.Pubsub.Host(), c.Run.Addr(), c.FunctionsURL)
			fmt.Fprintf(a.stdout, "Monitoring     %s  %s\n", c.Monitoring.Addr(), monitoringMode(c))
			fmt.Fprintf(a.stdout, "Scheduler      %s  %s\n", c.Scheduler.Addr(), schedulerMode(c))
			if n := len(c.Alerts.Created) + len(c.Alerts.Updated) + len(c.Alerts.Unchanged); n > 0 {
				fmt.Fprintf(a.stdout, "alerts         %d alert policies (channel %s to %s)\n", n, c.Alerts.Channel, events.TopicAlerts)
			}
			for _, s := range c.Policy.Services {
				if svc, ok := c.Run.Service(fmt.Sprintf("projects/%s/locations/%s/services/%s", s.Project, s.Region, s.Name)); ok {
					fmt.Fprintf(a.stdout, "service        %s  %s  (images: %v)\n", s.Name, svc.GetUri(), s.Images)
					fmt.Fprintf(a.stdout, "               releases start %s\n", describeWindows(s.Windows))
				}
			}
			if c.DatabaseSkipped != "" {
				fmt.Fprintf(a.stdout, "database       %s\n", c.DatabaseSkipped)
			}
			fmt.Fprintf(a.stdout, "environment    %s\n", filepath.Join(c.Dir, cloud.EnvFile))
			fmt.Fprintf(a.stdout, "logs           %s\n", filepath.Join(c.Dir, cloud.LogFile))
			fmt.Fprintln(a.stdout, "ready")
			<-ctx.Done()
			fmt.Fprintln(a.stdout, "stopping ...")
			return nil
		},
	})
}

// openLog starts DIR/local.log afresh. Every write appends, so the local
// cloud's records and what is written to stderr never overwrite each other.
func openLog(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return os.OpenFile(filepath.Join(dir, cloud.LogFile), os.O_CREATE|os.O_WRONLY|os.O_TRUNC|os.O_APPEND, 0o644)
}

// redirectStderr points os.Stderr at f until the returned function is
// called. The local cloud logs to f already, but functions-framework writes
// its "Function error: ..." lines and panic reports to os.Stderr itself, as
// on Cloud Run, whose logs collect them. The command's own output (a.stdout,
// a.stderr: an error that stops start-up) does not go through os.Stderr and
// stays on the terminal, and so does a crash of the process.
func redirectStderr(f *os.File) (restore func()) {
	old := os.Stderr
	os.Stderr = f
	return func() { os.Stderr = old }
}

// builtinPolicyNotes says when the built-in policy lets releases start, and
// how to use another policy.
func builtinPolicyNotes() string {
	var b strings.Builder
	pol, err := policy.Parse(policy.Example())
	if err != nil {
		fmt.Fprintf(&b, "The built-in policy does not load: %v\n", err)
	} else {
		b.WriteString("Release windows of the built-in policy (a push outside them waits, status shows it waiting,\nand the Scheduler tick starts it when the window opens):\n")
		for _, s := range pol.Services {
			fmt.Fprintf(&b, "  %s: a release starts %s\n", s.Name, describeWindows(s.Windows))
		}
	}
	b.WriteString(`For other services or windows pass --config FILE (docs/policy.md): DIR/policy.yaml holds the
policy in use, a starting point; "windows: {deny: []}" lets releases start at any time.`)
	return b.String()
}

// describeWindows says when windows let a release start, in their zone:
// "at any time but Mon 00:00-12:00 and Fri 12:00-24:00 (Asia/Taipei)".
func describeWindows(w policy.Windows) string {
	ranges := func(rs []policy.TimeRange, conj string) string {
		var out []string
		for _, r := range rs {
			out = append(out, describeRange(r))
		}
		if len(out) < 2 {
			return strings.Join(out, "")
		}
		return strings.Join(out[:len(out)-1], ", ") + " " + conj + " " + out[len(out)-1]
	}
	zone := w.Timezone
	if zone == "" {
		zone = "UTC"
	}
	var when string
	switch {
	case len(w.Allow) == 0 && len(w.Deny) == 0:
		when = "at any time"
	case len(w.Allow) == 0:
		when = "at any time but " + ranges(w.Deny, "and")
	case len(w.Deny) == 0:
		when = "only in " + ranges(w.Allow, "or")
	default:
		when = "only in " + ranges(w.Allow, "or") + ", and not in " + ranges(w.Deny, "or")
	}
	return when + " (" + zone + ")"
}

// describeRange writes a range as "Mon,Tue 09:00-17:00" or "every day 22:00-24:00".
func describeRange(r policy.TimeRange) string {
	days := "every day"
	if len(r.Days) > 0 {
		var names []string
		for _, d := range r.Days {
			if wd, ok := policy.ParseDay(d); ok {
				names = append(names, wd.String()[:3])
			} else {
				names = append(names, d)
			}
		}
		days = strings.Join(names, ",")
	}
	from, to := r.From, r.To
	if from == "" {
		from = "00:00"
	}
	if to == "" {
		to = "24:00"
	}
	return days + " " + from + "-" + to
}

// schedulerMode says how the local Scheduler fires its jobs.
func schedulerMode(c *cloud.Cloud) string {
	if c.Scheduler.Fast() {
		return "FAST MODE: seconds schedules; tick jobs every 2s, sweep " + c.SweepSchedule
	}
	return "minute schedules like Google's; sweep " + c.SweepSchedule
}

// monitoringMode says how the local Monitoring server times its data.
func monitoringMode(c *cloud.Cloud) string {
	if c.Monitoring.Fast() {
		return "FAST MODE: no ingestion delay, 1s periods; for demos and tests only, take no figure from it"
	}
	return "Google's timing: each minute's data visible 2–3 minutes after it ends"
}
