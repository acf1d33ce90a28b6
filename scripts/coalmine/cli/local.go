package cli

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/ai-square/coalmine/infra/local/cloud"
	"github.com/ai-square/coalmine/infra/local/pubsubemu"
	"github.com/ai-square/coalmine/shared/logging"
	"github.com/ai-square/coalmine/shared/policy"
)

func init() {
	var backend string
	var tick time.Duration
	register(&command{
		name:    "local up",
		args:    "[--dir DIR] [--config FILE] [--pubsub pstest|gcloud|external] [--tick 30s]",
		summary: "Start the local cloud and the functions in the foreground until interrupted.",
		detail: `Starts Pub/Sub (embedded pstest; or Google's emulator with --pubsub gcloud; or the server
PUBSUB_EMULATOR_HOST names), the Cloud Run emulator with every policy service serving a stable
revision, the functions, the Eventarc-like bridge and a Scheduler tick. When ready it writes
DIR/local.env (KEY=value lines other coalmine commands and Google's clients read) and prints
"ready". The local cloud's logs (JSON lines) go to DIR/local.log, not to the terminal; an error
that stops start-up is printed. Without --config it uses the built-in example policy (one
service, ai-square).`,
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&backend, "pubsub", "", "Pub/Sub server: pstest, gcloud or external (default: external if PUBSUB_EMULATOR_HOST is set, else pstest)")
			fs.DurationVar(&tick, "tick", 30*time.Second, "how often the Scheduler tick (watchdog) fires")
		},
		run: func(ctx context.Context, a *app, fs *flag.FlagSet) error {
			if fs.NArg() != 0 {
				return usagef("unexpected arguments %v", fs.Args())
			}
			cfg := cloud.Config{Dir: a.dir, Pubsub: pubsubemu.Backend(backend), TickEvery: tick}
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
			for _, s := range c.Policy.Services {
				if svc, ok := c.Run.Service(fmt.Sprintf("projects/%s/locations/%s/services/%s", s.Project, s.Region, s.Name)); ok {
					fmt.Fprintf(a.stdout, "service        %s  %s  (images: %v)\n", s.Name, svc.GetUri(), s.Images)
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
