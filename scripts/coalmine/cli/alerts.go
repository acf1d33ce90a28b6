package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/ai-square/coalmine/events"
	"github.com/ai-square/coalmine/infra/local/cloud"
	"github.com/ai-square/coalmine/shared/alerting"
	"github.com/ai-square/coalmine/shared/emulator"
	"github.com/ai-square/coalmine/shared/metrics"
	"github.com/ai-square/coalmine/shared/policy"
	"github.com/ai-square/coalmine/shared/release"
)

func init() {
	var project string
	register(&command{
		name:    "alerts",
		args:    "[--project PROJECT]",
		summary: "Create or update the policy's managed Cloud Monitoring alert policies and the pubsub notification channel to coalmine-alerts.",
		detail: `Makes sure project PROJECT has a pubsub notification channel to its coalmine-alerts topic
(found by type and topic, else created), then creates or updates, by display name, the alert
policy of every managed alert of the policy (an alert with errorRateAbove or latencyP95AboveMs),
in its service's project, notifying that channel; a service in another project gets a channel
there too. A second run changes nothing. It never deletes a policy, and it refuses (exit 1,
naming it) a policy of the same display name that coalmine does not manage, after doing the
others. A policy file with no managed alert still gets the channel: alert policies made by hand
notify it. It prints one line for the channel and one for each alert.

PROJECT is --project, else COALMINE_PROJECT (from DIR/local.env when a local cloud is there,
else the environment). It talks to the local Monitoring server when MONITORING_EMULATOR_HOST is
set (as DIR/local.env sets it), otherwise to Google's Cloud Monitoring with Application Default
Credentials. The conditions use Google's timing (60s alignment periods), or the local fast mode's
(5s periods, a second for each minute of an alert's for) when COALMINE_MONITORING_MODE=fast
(local.env of a local cloud in fast mode). In production it is meant to run as a Cloud Build step.`,
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&project, "project", "", "the `PROJECT` of coalmine's topics, where the channel is made (default: $COALMINE_PROJECT)")
		},
		run: func(ctx context.Context, a *app, fs *flag.FlagSet) error {
			t, err := a.target()
			if err != nil {
				return err
			}
			p := project
			if p == "" {
				p = t.env[release.EnvProject]
			}
			if p == "" {
				return usagef("no project: pass --project PROJECT or set %s (the project of coalmine's topics)", release.EnvProject)
			}
			host := t.env[metrics.EmulatorHostEnv]
			fast := t.env[cloud.MonitoringModeEnv] == cloud.MonitoringFast
			if fast && host == "" {
				return fmt.Errorf("%s=%s is the local Monitoring server's fast mode, but %s is not set: unset %s to make Google's alert policies",
					cloud.MonitoringModeEnv, cloud.MonitoringFast, metrics.EmulatorHostEnv, cloud.MonitoringModeEnv)
			}
			timing, where := alerting.GoogleTiming(), "Google's Cloud Monitoring (Application Default Credentials)"
			if host != "" {
				where = "the local Monitoring server at " + host
			}
			if fast {
				timing, where = alerting.FastTiming(), where+", in FAST MODE (5s periods, a second for each minute of for)"
			} else {
				where += ", Google's timing (60s periods)"
			}
			topic := "projects/" + p + "/topics/" + events.TopicAlerts
			fmt.Fprintf(a.stderr, "coalmine alerts: project %s, %s\n", p, where)
			res, err := alerting.Ensure(ctx, emulator.ClientOptions(host), p, topic, t.policy, timing)
			printAlerts(a.stdout, res, err != nil, p, topic, t.policy)
			return err
		},
	})
}

// printAlerts writes what Ensure did: the channel, then each alert of the policy in file
// order. failed says Ensure returned an error: a managed alert it reports nothing about
// failed.
func printAlerts(w io.Writer, res alerting.Result, failed bool, project, topic string, pol *policy.Policy) {
	if res.Channel == "" {
		return // Ensure stopped at the channel; its error says why
	}
	verb := "found"
	if slices.Contains(res.ChannelsCreated, res.Channel) {
		verb = "created"
	}
	fmt.Fprintf(w, "%s channel %s (pubsub to %s)\n", verb, res.Channel, topic)
	for _, ch := range res.ChannelsCreated {
		if ch != res.Channel {
			in, _, _ := strings.Cut(strings.TrimPrefix(ch, "projects/"), "/")
			fmt.Fprintf(w, "created channel %s (pubsub to %s, for the alert policies in project %s)\n", ch, topic, in)
		}
	}
	// take removes the first name from list, reporting whether it was there.
	take := func(list *[]string, name string) bool {
		i := slices.Index(*list, name)
		if i < 0 {
			return false
		}
		*list = slices.Delete(*list, i, i+1)
		return true
	}
	created, updated, unchanged := slices.Clone(res.Created), slices.Clone(res.Updated), slices.Clone(res.Unchanged)
	managed := 0
	for i := range pol.Services {
		svc := &pol.Services[i]
		in := ""
		if svc.Project != "" && svc.Project != project {
			in = " (in project " + svc.Project + ")"
		}
		for _, al := range svc.Alerts {
			if !al.Managed() {
				fmt.Fprintf(w, "not managed %s (no errorRateAbove or latencyP95AboveMs: make this alert policy yourself, notifying the channel)\n", al.Policy)
				continue
			}
			managed++
			switch {
			case take(&created, al.Policy):
				fmt.Fprintf(w, "created %s%s\n", al.Policy, in)
			case take(&updated, al.Policy):
				fmt.Fprintf(w, "updated %s%s\n", al.Policy, in)
			case take(&unchanged, al.Policy):
				fmt.Fprintf(w, "unchanged %s%s\n", al.Policy, in)
			case failed:
				fmt.Fprintf(w, "failed %s%s\n", al.Policy, in)
			}
		}
	}
	if managed == 0 {
		fmt.Fprintln(w, "no managed alerts in the policy (none has errorRateAbove or latencyP95AboveMs): no alert policy to create; the channel is kept for alert policies made by hand")
	}
}
