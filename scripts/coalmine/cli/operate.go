package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/ai-square/coalmine/events"
	"github.com/ai-square/coalmine/shared/cloudrun"
	"github.com/ai-square/coalmine/shared/rollout"
)

// operatorCommand reads the service to name the step the command expects,
// publishes it, and does not touch Cloud Run itself: the functions do.
// By default it then waits for the function's answer and reports it:
// applied, refused and why, or too late and why.
type operatorCommand struct {
	name, args, summary, detail string
	// build returns the command for the service as read, or an error
	// saying why it does not apply now.
	build func(svc *cloudrun.Service, fs *flag.FlagSet) (events.Command, error)
	flags func(fs *flag.FlagSet)
	// reason is the default --reason ("" for none).
	reason string
	// check, if set, runs before the service is read: an error refuses
	// the command before any work.
	check func(ctx context.Context, t *target, fs *flag.FlagSet) error
}

// operatorFlags are the flags every operator command has.
type operatorFlags struct {
	reason  string
	noWait  bool
	timeout time.Duration
}

func registerOperator(o operatorCommand) {
	var of operatorFlags
	register(&command{
		name: o.name, args: o.args, summary: o.summary, detail: o.detail,
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&of.reason, "reason", o.reason, "why, for the rollout's history (recorded with who ran the command)")
			fs.BoolVar(&of.noWait, "no-wait", false, "publish the command and exit without waiting for its outcome (for scripts)")
			fs.DurationVar(&of.timeout, "timeout", 2*time.Minute, "how long to wait for the outcome")
			if o.flags != nil {
				o.flags(fs)
			}
		},
		run: func(ctx context.Context, a *app, fs *flag.FlagSet) error {
			if fs.NArg() < 1 {
				return usagef("which SERVICE?")
			}
			if of.timeout <= 0 {
				return usagef("--timeout must be positive")
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
			if o.check != nil {
				if err := o.check(ctx, t, fs); err != nil {
					return err
				}
			}
			svc, err := c.Read(ctx, fs.Arg(0))
			if err != nil {
				return err
			}
			cmd, err := o.build(svc, fs)
			if err != nil {
				return err
			}
			if of.reason != "" {
				cmd.Reason = of.reason
			}
			if cmd.OverrideWindow && strings.TrimSpace(cmd.Reason) == "" {
				return usagef("--override-window needs --reason: the history records who overrode the deploy window and why")
			}
			if len(cmd.Reason) > rollout.MaxReason {
				fmt.Fprintf(a.stderr, "note: the reason is %d bytes; the rollout keeps the first %d\n", len(cmd.Reason), rollout.MaxReason)
			}
			cmd.Service, cmd.Actor = svc.Name, actor(ctx)
			cmd.Generation = svc.State.Generation
			cmd.ID = newCommandID()
			cmd.Reply = !of.noWait
			return send(ctx, a, t, cmd, o.name+" "+svc.Name, of)
		},
	})
}

// send publishes cmd and, unless --no-wait, waits for its outcome and
// reports it.
func send(ctx context.Context, a *app, t *target, cmd events.Command, what string, of operatorFlags) error {
	var l *listener
	if cmd.Reply {
		var err error
		if l, err = t.listen(ctx, cmd.ID); err != nil {
			return err
		}
		defer l.close()
	}
	bus, err := t.bus(ctx)
	if err != nil {
		return err
	}
	defer bus.Close()
	if err := bus.Command(ctx, cmd); err != nil {
		return err
	}
	if l == nil {
		fmt.Fprintf(a.stdout, "published %s (rollout %s, step %s, generation %d, command %s)\n", what, orDash(cmd.Rollout), cmd.Step, cmd.Generation, cmd.ID)
		return nil
	}
	fmt.Fprintf(a.stderr, "%s: published; waiting for the outcome ...\n", what)
	e, err := l.wait(ctx, of.timeout)
	if errors.Is(err, errNoAnswer) {
		return fmt.Errorf("no answer within %s: the command (%s) was published and may still be acted on; see coalmine status %s", of.timeout, cmd.ID, cmd.Service)
	}
	if err != nil {
		return err
	}
	return report(a, what, e)
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
	registerOperator(operatorCommand{
		name: "abort", args: "SERVICE",
		summary: "Roll the rollout back: all traffic and the template back to the stable revision.",
		reason:  "aborted by operator",
		build: func(svc *cloudrun.Service, _ *flag.FlagSet) (events.Command, error) {
			r, err := activeRollout(svc)
			if err != nil {
				return events.Command{}, err
			}
			return events.Command{Type: events.CommandRollback, Rollout: r.ID, Step: events.StepRollback}, nil
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
	var resumeOverride bool
	registerOperator(operatorCommand{
		name: "resume", args: "SERVICE",
		summary: "Continue a paused rollout at its stage, or start a waiting one now with --override-window.",
		detail: `A rollout claimed outside the policy's deploy windows waits until one opens (coalmine status
says when). --override-window starts it now; --reason is then required, and the history records
who overrode the window and why.`,
		flags: func(fs *flag.FlagSet) {
			fs.BoolVar(&resumeOverride, "override-window", false, "start a rollout that waits for its deploy window now (needs --reason)")
		},
		build: func(svc *cloudrun.Service, _ *flag.FlagSet) (events.Command, error) {
			r, err := activeRollout(svc)
			if err != nil {
				return events.Command{}, err
			}
			switch {
			case r.Phase == rollout.Paused:
			case r.Phase == rollout.Waiting && resumeOverride:
			case r.Phase == rollout.Waiting:
				return events.Command{}, fmt.Errorf("rollout %s waits for a deploy window (%s); to start it now: coalmine resume %s --override-window --reason TEXT", r.ID, r.Reason, svc.Name)
			default:
				return events.Command{}, fmt.Errorf("cannot resume: rollout %s is %s, not paused", r.ID, r.Phase)
			}
			return events.Command{Type: events.CommandResume, Rollout: r.ID, Stage: r.Stage, Step: events.StepResume, OverrideWindow: resumeOverride && r.Phase == rollout.Waiting}, nil
		},
	})
	var releaseForce, releaseOverride bool
	registerOperator(operatorCommand{
		name: "release", args: "SERVICE IMAGE@DIGEST",
		summary: "Start a rollout of an image already in the registry (as a push would).",
		detail: `The image is looked up in its registry first (the local cloud's when there is one): an
image that is not there is refused and nothing is published. A digest that failed or was rolled
back on the service before is refused unless --force is given (retry does the same for the last
rollout's image only). Outside the policy's deploy windows the rollout waits for the next one;
--override-window starts it now (--reason required; the history records who and why).`,
		flags: func(fs *flag.FlagSet) {
			fs.BoolVar(&releaseForce, "force", false, "release a digest that failed or was rolled back on this service before")
			fs.BoolVar(&releaseOverride, "override-window", false, "start now even outside the deploy windows (needs --reason)")
		},
		check: func(ctx context.Context, t *target, fs *flag.FlagSet) error {
			image, err := releaseImage(fs)
			if err != nil {
				return err
			}
			return t.checkImage(ctx, image)
		},
		build: func(svc *cloudrun.Service, fs *flag.FlagSet) (events.Command, error) {
			image, err := releaseImage(fs)
			if err != nil {
				return events.Command{}, err
			}
			return events.Command{Type: events.CommandRelease, Image: image, Step: events.StepRelease, Retry: releaseForce, OverrideWindow: releaseOverride}, nil
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
