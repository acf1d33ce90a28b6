package cli

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/ai-square/coalmine/events"
	"github.com/ai-square/coalmine/shared/cloudrun"
	"github.com/ai-square/coalmine/shared/rollout"
)

// operatorCommand reads the service to name the step the command expects,
// publishes it, and does not touch Cloud Run itself: the functions do.
type operatorCommand struct {
	name, args, summary, detail string
	// build returns the command for the service as read, or an error
	// saying why it does not apply now.
	build func(svc *cloudrun.Service, fs *flag.FlagSet) (events.Command, error)
	flags func(fs *flag.FlagSet)
}

func actor() string {
	u := os.Getenv("USER")
	if u == "" {
		u = "unknown"
	}
	return "operator:" + u
}

func registerOperator(o operatorCommand) {
	register(&command{
		name: o.name, args: o.args, summary: o.summary, detail: o.detail, flags: o.flags,
		run: func(ctx context.Context, a *app, fs *flag.FlagSet) error {
			if fs.NArg() < 1 {
				return usagef("which SERVICE?")
			}
			t, err := a.target()
			if err != nil {
				return err
			}
			_, c, err := t.service(ctx, fs.Arg(0))
			if err != nil {
				return err
			}
			defer c.Close()
			svc, err := c.Read(ctx, fs.Arg(0))
			if err != nil {
				return err
			}
			cmd, err := o.build(svc, fs)
			if err != nil {
				return err
			}
			if len(cmd.Reason) > rollout.MaxReason {
				fmt.Fprintf(a.stderr, "note: the reason is %d bytes; the rollout keeps the first %d\n", len(cmd.Reason), rollout.MaxReason)
			}
			cmd.Service, cmd.Actor = svc.Name, actor()
			cmd.Generation = svc.State.Generation
			bus, err := t.bus(ctx)
			if err != nil {
				return err
			}
			defer bus.Close()
			if err := bus.Command(ctx, cmd); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "published %s for %s (rollout %s, step %s, generation %d)\n", o.name, svc.Name, orDash(cmd.Rollout), cmd.Step, cmd.Generation)
			return nil
		},
	})
}

func activeRollout(svc *cloudrun.Service) (*rollout.Rollout, error) {
	r := svc.State.Rollout
	if r == nil {
		return nil, fmt.Errorf("%s has no rollout", svc.Name)
	}
	if !r.Active() {
		return nil, fmt.Errorf("%s has no rollout in progress (rollout %s is %s)", svc.Name, r.ID, r.Phase)
	}
	return r, nil
}

func init() {
	registerOperator(operatorCommand{
		name: "promote", args: "SERVICE",
		summary: "Move the canary to its next stage now (the last stage promotes it to stable).",
		detail: `A manual promote is an operator's decision: it skips the stage's bake time and gates, and
also moves a paused rollout on.`,
		build: func(svc *cloudrun.Service, _ *flag.FlagSet) (events.Command, error) {
			r, err := activeRollout(svc)
			if err != nil {
				return events.Command{}, err
			}
			switch {
			case r.Phase == rollout.Progressing, r.Phase == rollout.Paused:
			case r.Phase == rollout.Deploying:
				return events.Command{}, fmt.Errorf("the canary of rollout %s is still starting (deploying): it takes stage 1 by itself once Cloud Run has it Ready; promote it then", r.ID)
			default:
				return events.Command{}, fmt.Errorf("nothing to promote yet: rollout %s is %s", r.ID, r.Phase)
			}
			stage := r.Stage + 1
			return events.Command{Type: events.CommandShiftTraffic, Rollout: r.ID, Stage: stage, Step: events.StepStage(stage), Manual: true}, nil
		},
	})
	var reason string
	registerOperator(operatorCommand{
		name: "abort", args: "SERVICE [--reason TEXT]",
		summary: "Roll the rollout back: all traffic and the template back to the stable revision.",
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&reason, "reason", "aborted by operator", "why, for the history and the events")
		},
		build: func(svc *cloudrun.Service, _ *flag.FlagSet) (events.Command, error) {
			r, err := activeRollout(svc)
			if err != nil {
				return events.Command{}, err
			}
			return events.Command{Type: events.CommandRollback, Rollout: r.ID, Step: events.StepRollback, Reason: reason}, nil
		},
	})
	registerOperator(operatorCommand{
		name: "pause", args: "SERVICE",
		summary: "Hold the canary at its current stage until resumed (or the pause deadline rolls it back).",
		build: func(svc *cloudrun.Service, _ *flag.FlagSet) (events.Command, error) {
			r, err := activeRollout(svc)
			if err != nil {
				return events.Command{}, err
			}
			if r.Phase != rollout.Progressing {
				return events.Command{}, fmt.Errorf("cannot pause: rollout %s is %s (only a canary with traffic pauses)", r.ID, r.Phase)
			}
			return events.Command{Type: events.CommandPause, Rollout: r.ID, Stage: r.Stage, Step: events.StepPause}, nil
		},
	})
	registerOperator(operatorCommand{
		name: "resume", args: "SERVICE",
		summary: "Continue a paused rollout at its stage.",
		build: func(svc *cloudrun.Service, _ *flag.FlagSet) (events.Command, error) {
			r, err := activeRollout(svc)
			if err != nil {
				return events.Command{}, err
			}
			if r.Phase != rollout.Paused {
				return events.Command{}, fmt.Errorf("cannot resume: rollout %s is %s, not paused", r.ID, r.Phase)
			}
			return events.Command{Type: events.CommandResume, Rollout: r.ID, Stage: r.Stage, Step: events.StepResume}, nil
		},
	})
	registerOperator(operatorCommand{
		name: "release", args: "SERVICE IMAGE@DIGEST",
		summary: "Start a rollout of an image already in the registry (as a push would).",
		build: func(svc *cloudrun.Service, fs *flag.FlagSet) (events.Command, error) {
			if fs.NArg() != 2 {
				return events.Command{}, usagef("want SERVICE and IMAGE@DIGEST")
			}
			ref, err := digestRef(fs.Arg(1))
			if err != nil {
				return events.Command{}, err
			}
			return events.Command{Type: events.CommandRelease, Image: ref.Repository + "@" + ref.Digest, Step: events.StepRelease}, nil
		},
	})
	registerOperator(operatorCommand{
		name: "retry", args: "SERVICE",
		summary: "Release the last rollout's image again after it failed or was rolled back.",
		build: func(svc *cloudrun.Service, _ *flag.FlagSet) (events.Command, error) {
			r := svc.State.Rollout
			if r == nil {
				return events.Command{}, fmt.Errorf("%s has no rollout to retry", svc.Name)
			}
			switch r.Phase {
			case rollout.Failed, rollout.RolledBack, rollout.Superseded:
			default:
				return events.Command{}, fmt.Errorf("nothing to retry: rollout %s is %s", r.ID, r.Phase)
			}
			return events.Command{Type: events.CommandRelease, Image: r.Image, Retry: true, Step: events.StepRelease}, nil
		},
	})
}
