package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"cloud.google.com/go/storage"
	"google.golang.org/api/option"

	"github.com/ai-square/coalmine/infra/local/gcsemu"
	"github.com/ai-square/coalmine/shared/backup"
	"github.com/ai-square/coalmine/shared/backup/cloudsql"
	"github.com/ai-square/coalmine/shared/policy"
)

// runner connects the backup runner for the target: the local cloud's
// storage emulator when local.env names one, Google's otherwise.
func (t *target) runner(ctx context.Context) (*backup.Runner, func(), error) {
	var opts []option.ClientOption
	if h := t.env[gcsemu.EnvEmulatorHost]; h != "" {
		opts = []option.ClientOption{option.WithEndpoint("http://" + h + "/storage/v1/"), option.WithoutAuthentication()}
	}
	c, err := storage.NewClient(ctx, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("cloud storage: %w", err)
	}
	r := &backup.Runner{Storage: c, Getenv: func(k string) string {
		if v := t.env[k]; v != "" {
			return v
		}
		return os.Getenv(k)
	}}
	if h := t.env[cloudsql.EmulatorHostEnv]; h != "" {
		r.CloudSQL = func(ctx context.Context, project, instance string) (*cloudsql.Driver, error) {
			return cloudsql.New(ctx, project, instance, cloudsql.EmulatorOptions()...)
		}
	}
	return r, func() { c.Close() }, nil
}

func init() {
	for _, k := range []string{"DATABASE_URL", gcsemu.EnvEmulatorHost, cloudsql.EmulatorHostEnv} {
		extraEnv = append(extraEnv, k)
	}
	register(&command{
		name:    "backups list",
		args:    "SERVICE",
		summary: "List a service's backups, newest first.",
		run: func(ctx context.Context, a *app, fs *flag.FlagSet) error {
			t, err := a.target()
			if err != nil {
				return err
			}
			pol, err := t.policyService(fs.Arg(0))
			if err != nil {
				return err
			}
			r, done, err := t.runner(ctx)
			if err != nil {
				return err
			}
			defer done()
			all, err := r.List(ctx, pol)
			if err != nil {
				return err
			}
			if len(all) == 0 {
				fmt.Fprintf(a.stdout, "no backups in %s\n", backup.Where(pol, "").URL())
				return nil
			}
			for _, s := range all {
				printSummary(a.stdout, s)
			}
			return nil
		},
	})
	var pruneYes bool
	register(&command{
		name:    "backups prune",
		args:    "[SERVICE] [--yes]",
		summary: "Delete the backups the policy's retention no longer keeps (dry run unless --yes).",
		detail: `The newest backup.retention.keep backups are always kept; older ones are deleted once older
than backup.retention.maxAge. The backup of a rollout in progress is never deleted. Without
SERVICE, every service in the policy.`,
		flags: func(fs *flag.FlagSet) {
			fs.BoolVar(&pruneYes, "yes", false, "delete (without it, only show what would go)")
		},
		run: func(ctx context.Context, a *app, fs *flag.FlagSet) error {
			t, err := a.target()
			if err != nil {
				return err
			}
			var services []*policy.Service
			if fs.NArg() == 1 {
				p, err := t.policyService(fs.Arg(0))
				if err != nil {
					return err
				}
				services = append(services, p)
			} else {
				for i := range t.policy.Services {
					services = append(services, &t.policy.Services[i])
				}
			}
			r, done, err := t.runner(ctx)
			if err != nil {
				return err
			}
			defer done()
			for _, pol := range services {
				keep := map[string]bool{}
				if _, c, err := t.service(ctx, pol.Name); err == nil {
					if svc, err := c.Read(ctx, pol.Name); err == nil && svc.State.Rollout.Active() {
						keep[svc.State.Rollout.ID] = true
					}
					c.Close()
				}
				gone, err := r.Prune(ctx, pol, keep, !pruneYes)
				verb := "would delete"
				if pruneYes {
					verb = "deleted"
				}
				for _, s := range gone {
					fmt.Fprintf(a.stdout, "%s %s %s (%s)\n", pol.Name, verb, backup.Where(pol, s.Rollout).URL(), age(s.Created))
				}
				if err != nil {
					return err
				}
				if len(gone) == 0 {
					fmt.Fprintf(a.stdout, "%s: nothing to prune (keep %d, max age %s)\n", pol.Name, pol.Backup.Retention.Keep, pol.Backup.Retention.MaxAge.Duration)
				}
			}
			if !pruneYes {
				fmt.Fprintln(a.stdout, "dry run: pass --yes to delete")
			}
			return nil
		},
	})
	var (
		id                                         string
		onlyDB, onlyStorage, yes, deleteNew, force bool
	)
	register(&command{
		name:    "restore",
		args:    "SERVICE [--rollout ID] [--database] [--storage] [--delete-new] [--force] [--yes]",
		summary: "Put a backup back: the database and the Cloud Storage objects (dry run unless --yes).",
		detail: `Restores the backup taken before rollout ID (default: the newest complete backup). Both the
database and the objects are restored unless --database or --storage picks one. Objects written
after the backup are listed, and deleted only with --delete-new. Before it changes anything it
checks the whole backup (every copy against the manifest, the database backup read through): a
damaged backup changes nothing. Without --yes it checks, prints what it would do and changes
nothing. It refuses while a rollout is in progress (abort it first) unless --force.`,
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&id, "rollout", "", "restore the backup taken before rollout `ID` (default: the newest)")
			fs.BoolVar(&onlyDB, "database", false, "restore the database only")
			fs.BoolVar(&onlyStorage, "storage", false, "restore the Cloud Storage objects only")
			fs.BoolVar(&deleteNew, "delete-new", false, "delete objects written after the backup")
			fs.BoolVar(&force, "force", false, "restore even while a rollout is in progress")
			fs.BoolVar(&yes, "yes", false, "do it (without it: a dry run)")
		},
		run: func(ctx context.Context, a *app, fs *flag.FlagSet) error {
			t, err := a.target()
			if err != nil {
				return err
			}
			pol, c, err := t.service(ctx, fs.Arg(0))
			if err != nil {
				return err
			}
			defer c.Close()
			svc, err := c.Read(ctx, pol.Name)
			if err != nil {
				return err
			}
			if r := svc.State.Rollout; r.Active() && !force {
				return fmt.Errorf("rollout %s is %s; abort it first (coalmine abort %s) or pass --force", r.ID, r.Phase, pol.Name)
			}
			runner, done, err := t.runner(ctx)
			if err != nil {
				return err
			}
			defer done()
			s, err := runner.Find(ctx, pol, id)
			if err != nil {
				return err
			}
			o := backup.RestoreOptions{Storage: !onlyDB || onlyStorage, Database: !onlyStorage || onlyDB, DryRun: !yes, DeleteNew: deleteNew}
			if o.DryRun {
				fmt.Fprintf(a.stdout, "dry run: nothing changes without --yes\n")
			}
			printSummary(a.stdout, s)
			fmt.Fprintf(a.stdout, "checking the whole backup before changing anything (every copy read back, the database backup read through) ...\n")
			rep, err := runner.Restore(ctx, pol, s, o)
			printRestore(a.stdout, rep, o)
			if err != nil {
				return err
			}
			if o.DryRun {
				fmt.Fprintf(a.stdout, "dry run done: pass --yes to restore\n")
			} else {
				fmt.Fprintf(a.stdout, "restored from %s\n", s.Location)
			}
			return nil
		},
	})
}

func printSummary(w io.Writer, s backup.Summary) {
	state := "complete"
	if !s.Complete {
		state = "INCOMPLETE"
	}
	fmt.Fprintf(w, "%s  %s  %s  %s\n", s.Rollout, state, s.Created.Local().Format(time.DateTime), s.Location)
	if s.Complete {
		fmt.Fprintf(w, "    image     %s\n    objects   %d (%d bytes)\n", s.Image, s.Objects, s.ObjectBytes)
		if s.Database != "" {
			fmt.Fprintf(w, "    database  %s %s (%d bytes, %s)\n", s.DatabaseName, s.Database, s.DatabaseBytes, s.Driver)
		}
		if s.Skipped != "" {
			fmt.Fprintf(w, "    skipped   %s\n", s.Skipped)
		}
	}
}

func printRestore(w io.Writer, rep backup.RestoreReport, o backup.RestoreOptions) {
	verb := map[bool]string{true: "would", false: "did"}[o.DryRun]
	if p := rep.Storage; p != nil {
		fmt.Fprintf(w, "objects: %s restore %d, %d unchanged, %d written after the backup\n", verb, len(p.Restore), len(p.Unchanged), len(p.New))
		for _, n := range first(p.Restore, 20) {
			fmt.Fprintf(w, "    restore  %s\n", n)
		}
		action := "keep    "
		if o.DeleteNew {
			action = "delete  "
		}
		for _, n := range first(p.New, 20) {
			fmt.Fprintf(w, "    %s %s\n", action, n)
		}
		if len(p.New) > 0 && !o.DeleteNew {
			fmt.Fprintf(w, "    (objects written after the backup are kept; --delete-new removes them)\n")
		}
	} else if o.Storage {
		fmt.Fprintf(w, "objects: none in this backup\n")
	}
	if rep.Database != "" {
		fmt.Fprintf(w, "database: %s restore %s\n", verb, rep.Database)
	} else if o.Database {
		fmt.Fprintf(w, "database: none in this backup\n")
	}
}

func first(xs []string, n int) []string {
	if len(xs) > n {
		return append(xs[:n:n], fmt.Sprintf("… and %d more", len(xs)-n))
	}
	return xs
}

func age(t time.Time) string {
	if t.IsZero() {
		return "age unknown"
	}
	return strings.TrimSuffix(time.Since(t).Round(time.Minute).String(), "0s") + " old"
}
