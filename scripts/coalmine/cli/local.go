package cli

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/ai-square/coalmine/infra/local/cloud"
	"github.com/ai-square/coalmine/infra/local/pubsubemu"
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
"ready". Without --config it uses the built-in example policy (one service, ai-square).`,
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&backend, "pubsub", "", "the Pub/Sub server: `pstest|gcloud|external` (default: external if PUBSUB_EMULATOR_HOST is set, else pstest)")
			fs.DurationVar(&tick, "tick", 30*time.Second, "fire the Scheduler tick (the watchdog) every `DURATION`")
		},
		run: func(ctx context.Context, a *app, fs *flag.FlagSet) error {
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
			fmt.Fprintf(a.stdout, "environment    %s\n", filepath.Join(c.Dir, cloud.EnvFile))
			fmt.Fprintln(a.stdout, "ready")
			<-ctx.Done()
			fmt.Fprintln(a.stdout, "stopping ...")
			return nil
		},
	})
}
