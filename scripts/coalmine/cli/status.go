package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ai-square/coalmine/shared/cloudrun"
	"github.com/ai-square/coalmine/shared/rollout"
)

func init() {
	var history int
	register(&command{
		name:    "status",
		args:    "[SERVICE] [--history N]",
		summary: "Show each service's rollout: phase, stage, traffic split, revisions, image, recent history.",
		flags: func(fs *flag.FlagSet) {
			fs.IntVar(&history, "history", 8, "show the newest `N` history entries (0: none)")
		},
		run: func(ctx context.Context, a *app, fs *flag.FlagSet) error {
			if history < 0 {
				return usagef("--history %d: want a count of 0 or more (0 shows no history)", history)
			}
			t, err := a.target()
			if err != nil {
				return err
			}
			names := []string{fs.Arg(0)}
			if fs.NArg() == 0 {
				names = nil
				for _, s := range t.policy.Services {
					names = append(names, s.Name)
				}
			}
			for i, name := range names {
				_, c, err := t.service(ctx, name)
				if err != nil {
					return err
				}
				svc, err := c.Read(ctx, name)
				c.Close()
				if err != nil {
					return err
				}
				if i > 0 {
					fmt.Fprintln(a.stdout)
				}
				printStatus(a.stdout, svc, history)
			}
			return nil
		},
	})
}

func printStatus(w io.Writer, svc *cloudrun.Service, history int) {
	st := svc.State
	fmt.Fprintf(w, "%s  %s\n", svc.Name, svc.URI)
	r := st.Rollout
	if r == nil {
		fmt.Fprintf(w, "  phase      no rollout yet (generation %d)\n", st.Generation)
	} else {
		stage := "-"
		if r.Stage > 0 {
			stage = fmt.Sprintf("%d/%d (%d%%)", r.Stage, len(r.Stages), r.Percent())
		}
		fmt.Fprintf(w, "  rollout    %s\n  phase      %s   stage %s   stages %v\n", r.ID, r.Phase, stage, r.Stages)
		fmt.Fprintf(w, "  image      %s\n", r.Image)
		if r.Canary != "" {
			fmt.Fprintf(w, "  canary     %s\n", r.Canary)
		}
		if r.Reason != "" {
			fmt.Fprintf(w, "  reason     %s\n", oneLine(r.Reason, 0))
		}
		switch r.Phase {
		case rollout.Waiting:
			fmt.Fprintf(w, "  start now  coalmine resume %s --override-window --reason TEXT (recorded in the history)\n", svc.Name)
		case rollout.Stopped:
			fmt.Fprintf(w, "  next       the traffic is as it was left; push an image or coalmine release %s IMAGE@DIGEST to start again\n", svc.Name)
		}
		if r.Backup != nil {
			fmt.Fprintf(w, "  backup     %s\n", backupLine(r.Backup))
		}
		if r.LastError != "" {
			fmt.Fprintf(w, "  last error %s\n", oneLine(r.LastError, 0))
		}
		if r.Escalated != "" {
			fmt.Fprintf(w, "  ATTENTION  %s\n", oneLine(r.Escalated, 0))
		}
		if !r.Deadline.IsZero() {
			fmt.Fprintf(w, "  deadline   %s (watchdog attempts %d)\n", r.Deadline.Local().Format(time.DateTime), r.Attempts)
		}
		if v := r.Verdict; v != nil {
			printVerdict(w, v)
		}
	}
	if p := st.Pending; p != nil {
		fmt.Fprintf(w, "  queued     %s (pushed %s; released once the rollout above has ended)\n", p.Image, p.PublishTime.Local().Format(time.DateTime))
	}
	fmt.Fprintf(w, "  stable     %s\n", orDash(svc.Stable()))
	fmt.Fprintf(w, "  template   %s\n", svc.Image)
	fmt.Fprintf(w, "  traffic   ")
	for _, sp := range svc.Split {
		tag := ""
		if sp.Tag != "" {
			tag = " (" + sp.Tag + ")"
		}
		fmt.Fprintf(w, " %s %d%%%s", sp.Revision, sp.Percent, tag)
	}
	fmt.Fprintln(w)
	for _, sp := range svc.Split {
		if sp.Tag != "" && sp.URI != "" {
			fmt.Fprintf(w, "  tag url    %s  %s\n", sp.Tag, sp.URI)
		}
	}
	if len(st.FailedDigests) > 0 {
		fmt.Fprintf(w, "  failed     %d digest(s), newest %s\n", len(st.FailedDigests), short(st.FailedDigests[len(st.FailedDigests)-1]))
	}
	h := st.History
	if history < 0 {
		history = 0
	}
	if len(h) > history {
		h = h[len(h)-history:]
	}
	if len(h) > 0 {
		fmt.Fprintln(w, "  history")
	}
	for _, e := range h {
		line := fmt.Sprintf("    %s  gen %-4d %-16s %-12s", e.At.Local().Format(time.TimeOnly), e.Generation, e.Kind, e.Phase)
		if e.Stage > 0 {
			line += fmt.Sprintf(" stage %d", e.Stage)
		}
		if e.Actor != "" {
			line += "  by " + e.Actor
		}
		if e.Reason != "" {
			line += "  (" + oneLine(e.Reason, 100) + ")"
		}
		fmt.Fprintln(w, strings.TrimRight(line, " "))
	}
}

// printVerdict shows the last verdict the Verify function recorded, with its figures.
func printVerdict(w io.Writer, v *rollout.Verdict) {
	line := fmt.Sprintf("  verdict    %s at stage %d", strings.ToUpper(v.Status), v.Stage)
	if v.Action != "" {
		line += " → " + v.Action
	}
	line += fmt.Sprintf(" (judged %s, data %s – %s)", v.At.Local().Format(time.TimeOnly), v.Start.Local().Format(time.TimeOnly), v.End.Local().Format(time.TimeOnly))
	fmt.Fprintln(w, line)
	for _, f := range []struct {
		who string
		f   *rollout.Figures
	}{{"canary", v.Canary}, {"stable", v.Stable}} {
		if f.f == nil {
			continue
		}
		fl := fmt.Sprintf("    %-8s %s: %d requests, %d 5xx", f.who, f.f.Revision, f.f.Requests, f.f.Errors)
		if f.f.P95Ms > 0 {
			fl += fmt.Sprintf(", p95 %.0fms", f.f.P95Ms)
		}
		fmt.Fprintln(w, fl)
	}
	for _, g := range v.Gates {
		fmt.Fprintf(w, "    %-24s %-12s %s\n", g.Gate, g.Status, oneLine(g.Detail, 120))
	}
}

func backupLine(b *rollout.Backup) string {
	var parts []string
	if b.Prefix != "" {
		parts = append(parts, b.Prefix)
	}
	if b.Database != "" {
		parts = append(parts, "db "+b.Database)
	}
	if b.Objects > 0 {
		parts = append(parts, fmt.Sprintf("%d objects", b.Objects))
	}
	if b.Progress != "" {
		parts = append(parts, b.Progress)
	}
	if b.Skipped != "" {
		parts = append(parts, "skipped: "+b.Skipped)
	}
	return strings.Join(parts, ", ")
}

// oneLine folds s onto one line and cuts it to max runes (0: no limit).
func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); max > 0 && len(r) > max {
		return string(r[:max-1]) + "…"
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func short(digest string) string {
	if len(digest) > 19 {
		return digest[:19]
	}
	return digest
}
