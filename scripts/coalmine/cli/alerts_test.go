package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	monitoring "cloud.google.com/go/monitoring/apiv3/v2"
	"cloud.google.com/go/monitoring/apiv3/v2/monitoringpb"
	"google.golang.org/api/iterator"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/ai-square/coalmine/infra/local/cloud"
	"github.com/ai-square/coalmine/infra/local/monitoringemu"
	"github.com/ai-square/coalmine/shared/metrics"
	"github.com/ai-square/coalmine/shared/release"
)

// alertsProject is the project of coalmine's topics in the alerts tests, and of service web.
const alertsProject = "my-project"

// alertsTopic is the topic the channel of alertsProject publishes to.
const alertsTopic = "projects/" + alertsProject + "/topics/coalmine-alerts"

// twoAlerts are the alerts of service web in the alerts tests: both managed.
const twoAlerts = `
      - {policy: "web error rate > 5%", action: rollback, errorRateAbove: 0.05, for: 1m}
      - {policy: "web p95 > 2000ms", action: pause, latencyP95AboveMs: 2000}`

// monitoringServer starts a local Monitoring server (closed at cleanup) that evaluates
// nothing by itself.
func monitoringServer(t *testing.T, fast bool) *monitoringemu.Server {
	t.Helper()
	srv, err := monitoringemu.New(monitoringemu.Options{Fast: fast, AlertsManual: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("monitoringemu.New: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// alertsPolicy writes a policy whose service web, in project my-project, has alerts
// (YAML list items), and returns its path.
func alertsPolicy(t *testing.T, dir, alerts string) string {
	t.Helper()
	path := filepath.Join(dir, "policy.yaml")
	yaml := fmt.Sprintf("services:\n  - name: web\n    project: my-project\n    region: asia-east1\n    images: [%s]\n    backup: {required: false}\n    alerts:%s\n", testRepository, alerts)
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// alertsCloud returns a --dir whose local.env points at srv, with project alertsProject,
// a policy with alerts and, when fast, the fast mode.
func alertsCloud(t *testing.T, srv *monitoringemu.Server, alerts string) string {
	t.Helper()
	dir := t.TempDir()
	env := map[string]string{
		metrics.EmulatorHostEnv: srv.Addr(),
		release.EnvProject:      alertsProject,
		release.EnvPolicy:       alertsPolicy(t, dir, alerts),
		cloud.MonitoringModeEnv: cloud.MonitoringGoogle,
	}
	if srv.Fast() {
		env[cloud.MonitoringModeEnv] = cloud.MonitoringFast
	}
	if err := cloud.WriteEnv(filepath.Join(dir, cloud.EnvFile), env); err != nil {
		t.Fatal(err)
	}
	return dir
}

// noAlertsEnv clears the variables that would point the command elsewhere.
func noAlertsEnv(t *testing.T) {
	t.Helper()
	for _, k := range []string{release.EnvProject, release.EnvPolicy, metrics.EmulatorHostEnv, cloud.MonitoringModeEnv, "PUBSUB_EMULATOR_HOST", "CLOUDRUN_EMULATOR_HOST"} {
		t.Setenv(k, "")
	}
}

// listAll lists what a Monitoring list call returns.
func listAll[T any](t *testing.T, next func() (T, error)) []T {
	t.Helper()
	var out []T
	for {
		x, err := next()
		if errors.Is(err, iterator.Done) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, x)
	}
}

// monitoringState is what the official client lists on srv: the alert policies of
// my-project and the notification channels of project.
func monitoringState(t *testing.T, srv *monitoringemu.Server, project string) ([]*monitoringpb.AlertPolicy, []*monitoringpb.NotificationChannel) {
	t.Helper()
	ctx := context.Background()
	ap, err := monitoring.NewAlertPolicyClient(ctx, srv.ClientOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	defer ap.Close()
	nc, err := monitoring.NewNotificationChannelClient(ctx, srv.ClientOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	policies := listAll(t, ap.ListAlertPolicies(ctx, &monitoringpb.ListAlertPoliciesRequest{Name: "projects/my-project"}).Next)
	channels := listAll(t, nc.ListNotificationChannels(ctx, &monitoringpb.ListNotificationChannelsRequest{Name: "projects/" + project}).Next)
	return policies, channels
}

// outputLines splits output into its lines.
func outputLines(s string) []string { return strings.Split(strings.TrimSuffix(s, "\n"), "\n") }

func TestAlertsCreatesThePoliciesAndTheChannelOnce(t *testing.T) {
	noAlertsEnv(t)
	srv := monitoringServer(t, false)
	dir := alertsCloud(t, srv, twoAlerts)

	code, stdout, stderr := runCLI(t, "--dir", dir, "alerts")
	if code != 0 {
		t.Fatalf("coalmine alerts: exit %d, stderr %q", code, stderr)
	}
	policies, channels := monitoringState(t, srv, alertsProject)
	if len(channels) != 1 || channels[0].GetType() != "pubsub" || channels[0].GetLabels()["topic"] != alertsTopic {
		t.Fatalf("channels of %s: got %v, want one pubsub channel to %s", alertsProject, channels, alertsTopic)
	}
	channel := channels[0].GetName()
	want := []string{
		"created channel " + channel + " (pubsub to " + alertsTopic + ")",
		"created web error rate > 5%",
		"created web p95 > 2000ms",
	}
	if got := outputLines(stdout); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("first run: got output\n%s\nwant\n%s", stdout, strings.Join(want, "\n"))
	}
	if want := "project " + alertsProject + ", the local Monitoring server at " + srv.Addr() + ", Google's timing"; !strings.Contains(stderr, want) {
		t.Errorf("first run: stderr %q does not say %q", stderr, want)
	}
	if len(policies) != 2 {
		t.Fatalf("alert policies of my-project: got %d, want 2: %v", len(policies), policies)
	}
	for i, name := range []string{"web error rate > 5%", "web p95 > 2000ms"} {
		p := policies[i]
		th := p.GetConditions()[0].GetConditionThreshold()
		if p.GetDisplayName() != name || p.GetUserLabels()["managed-by"] != "coalmine" || p.GetUserLabels()["coalmine-service"] != "web" ||
			fmt.Sprint(p.GetNotificationChannels()) != "["+channel+"]" || th.GetAggregations()[0].GetAlignmentPeriod().AsDuration() != time.Minute {
			t.Errorf("policy %d: got %q labels %v channels %v alignment %v; want %q, managed by coalmine for web, notifying %s, 60s periods",
				i, p.GetDisplayName(), p.GetUserLabels(), p.GetNotificationChannels(), th.GetAggregations()[0].GetAlignmentPeriod().AsDuration(), name, channel)
		}
	}

	code, stdout, stderr = runCLI(t, "--dir", dir, "alerts")
	if code != 0 {
		t.Fatalf("second coalmine alerts: exit %d, stderr %q", code, stderr)
	}
	want = []string{
		"found channel " + channel + " (pubsub to " + alertsTopic + ")",
		"unchanged web error rate > 5%",
		"unchanged web p95 > 2000ms",
	}
	if got := outputLines(stdout); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("second run: got output\n%s\nwant\n%s", stdout, strings.Join(want, "\n"))
	}
	after, channelsAfter := monitoringState(t, srv, alertsProject)
	if len(channelsAfter) != 1 || len(after) != 2 || !proto.Equal(after[0], policies[0]) || !proto.Equal(after[1], policies[1]) {
		t.Errorf("the second run changed something: channels %v, policies\nbefore %v\n after %v", channelsAfter, policies, after)
	}
}

func TestAlertsUpdatesAChangedAlert(t *testing.T) {
	noAlertsEnv(t)
	srv := monitoringServer(t, false)
	dir := alertsCloud(t, srv, twoAlerts)
	if code, _, stderr := runCLI(t, "--dir", dir, "alerts"); code != 0 {
		t.Fatalf("coalmine alerts: exit %d, stderr %q", code, stderr)
	}
	changed := alertsPolicy(t, t.TempDir(), strings.Replace(twoAlerts, "errorRateAbove: 0.05", "errorRateAbove: 0.1", 1))
	code, stdout, stderr := runCLI(t, "--dir", dir, "--config", changed, "alerts")
	if code != 0 {
		t.Fatalf("coalmine alerts --config CHANGED: exit %d, stderr %q", code, stderr)
	}
	if got, want := strings.Join(outputLines(stdout)[1:], "\n"), "updated web error rate > 5%\nunchanged web p95 > 2000ms"; got != want {
		t.Errorf("after a threshold change: got\n%s\nwant\n%s", got, want)
	}
	policies, _ := monitoringState(t, srv, alertsProject)
	if got := policies[0].GetConditions()[0].GetConditionThreshold().GetThresholdValue(); got != 0.1 {
		t.Errorf("threshold after the update: got %v, want 0.1", got)
	}
}

func TestAlertsFastModeTiming(t *testing.T) {
	noAlertsEnv(t)
	srv := monitoringServer(t, true)
	dir := alertsCloud(t, srv, twoAlerts)
	code, _, stderr := runCLI(t, "--dir", dir, "alerts")
	if code != 0 {
		t.Fatalf("coalmine alerts (fast local cloud): exit %d, stderr %q", code, stderr)
	}
	if !strings.Contains(stderr, "FAST MODE") {
		t.Errorf("stderr %q does not say FAST MODE", stderr)
	}
	policies, _ := monitoringState(t, srv, alertsProject)
	for _, p := range policies {
		th := p.GetConditions()[0].GetConditionThreshold()
		if got, want := th.GetAggregations()[0].GetAlignmentPeriod().AsDuration(), 5*time.Second; got != want {
			t.Errorf("%s: alignment period %v, want %v", p.GetDisplayName(), got, want)
		}
		if p.GetDisplayName() == "web error rate > 5%" && th.GetDuration().AsDuration() != time.Second {
			t.Errorf("%s: duration %v, want 1s (for: 1m, a second for each minute)", p.GetDisplayName(), th.GetDuration().AsDuration())
		}
	}
}

// TestAlertsProject: the channel is made in --project, else COALMINE_PROJECT, from local.env or
// the environment.
func TestAlertsProject(t *testing.T) {
	tests := []struct {
		name    string
		local   bool     // a local.env with project coalmine-ops
		env     string   // COALMINE_PROJECT in the environment
		args    []string // before the command
		project string
	}{
		{"local.env", true, "", nil, alertsProject},
		{"flag over local.env", true, "", []string{"alerts", "--project", "other-ops"}, "other-ops"},
		{"environment", false, "env-ops", nil, "env-ops"},
		{"flag over environment", false, "env-ops", []string{"alerts", "--project", "other-ops"}, "other-ops"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			noAlertsEnv(t)
			srv := monitoringServer(t, false)
			var args []string
			if tt.local {
				args = []string{"--dir", alertsCloud(t, srv, twoAlerts)}
			} else {
				dir := t.TempDir()
				t.Setenv(metrics.EmulatorHostEnv, srv.Addr())
				t.Setenv(release.EnvProject, tt.env)
				args = []string{"--dir", dir, "--config", alertsPolicy(t, dir, twoAlerts)}
			}
			if tt.args == nil {
				tt.args = []string{"alerts"}
			}
			code, stdout, stderr := runCLI(t, append(args, tt.args...)...)
			if code != 0 {
				t.Fatalf("coalmine %v: exit %d, stderr %q", tt.args, code, stderr)
			}
			topic := "projects/" + tt.project + "/topics/coalmine-alerts"
			_, channels := monitoringState(t, srv, tt.project)
			if len(channels) != 1 || channels[0].GetLabels()["topic"] != topic {
				t.Fatalf("channels of %s: got %v, want one to %s", tt.project, channels, topic)
			}
			if want := "created channel " + channels[0].GetName() + " (pubsub to " + topic + ")\n"; !strings.HasPrefix(stdout, want) {
				t.Errorf("output %q does not start with %q", stdout, want)
			}
			if tt.project == alertsProject {
				return
			}
			// The policies of web, in my-project, notify a channel of their own project.
			policies, theirs := monitoringState(t, srv, alertsProject)
			if len(theirs) != 1 || theirs[0].GetLabels()["topic"] != topic || len(policies) != 2 || policies[0].GetNotificationChannels()[0] != theirs[0].GetName() {
				t.Fatalf("my-project: got channels %v, policies %v; want one channel to %s that both policies notify", theirs, policies, topic)
			}
			want := []string{
				"created channel " + theirs[0].GetName() + " (pubsub to " + topic + ", for the alert policies in project my-project)",
				"created web error rate > 5% (in project my-project)",
				"created web p95 > 2000ms (in project my-project)",
			}
			if got := strings.Join(outputLines(stdout)[1:], "\n"); got != strings.Join(want, "\n") {
				t.Errorf("got output\n%s\nwant after the first line\n%s", stdout, strings.Join(want, "\n"))
			}
		})
	}
}

func TestAlertsRefusesAnIncompleteSetup(t *testing.T) {
	noAlertsEnv(t)
	dir := t.TempDir()
	policy := alertsPolicy(t, dir, twoAlerts)
	tests := []struct {
		name     string
		env      map[string]string
		args     []string
		code     int
		mentions []string
	}{
		{"no project", nil, []string{"--dir", dir, "--config", policy, "alerts"}, 2,
			[]string{"no project", "--project PROJECT", release.EnvProject, "Usage: coalmine alerts"}},
		{"no policy", map[string]string{release.EnvProject: alertsProject}, []string{"--dir", dir, "alerts"}, 1,
			[]string{"no policy", "--config FILE", release.EnvPolicy}},
		{"fast mode without a local server", map[string]string{cloud.MonitoringModeEnv: cloud.MonitoringFast}, []string{"--dir", dir, "--config", policy, "alerts", "--project", alertsProject}, 1,
			[]string{cloud.MonitoringModeEnv + "=fast", metrics.EmulatorHostEnv + " is not set"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			code, stdout, stderr := runCLI(t, tt.args...)
			if code != tt.code || stdout != "" {
				t.Errorf("coalmine %v: exit %d, stdout %q; want exit %d and no output", tt.args, code, stdout, tt.code)
			}
			for _, want := range tt.mentions {
				if !strings.Contains(stderr, want) {
					t.Errorf("coalmine %v: stderr %q does not mention %q", tt.args, stderr, want)
				}
			}
		})
	}
}

// TestAlertsConflictWithAnUnmanagedPolicy: a policy of a managed alert's display name that
// coalmine does not manage is refused, named, and left alone; the other alert is done.
func TestAlertsConflictWithAnUnmanagedPolicy(t *testing.T) {
	noAlertsEnv(t)
	srv := monitoringServer(t, false)
	dir := alertsCloud(t, srv, twoAlerts)
	ctx := context.Background()
	ap, err := monitoring.NewAlertPolicyClient(ctx, srv.ClientOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	defer ap.Close()
	mine, err := ap.CreateAlertPolicy(ctx, &monitoringpb.CreateAlertPolicyRequest{Name: "projects/my-project", AlertPolicy: &monitoringpb.AlertPolicy{
		DisplayName: "web error rate > 5%",
		UserLabels:  map[string]string{"team": "web"},
		Combiner:    monitoringpb.AlertPolicy_OR,
		Conditions: []*monitoringpb.AlertPolicy_Condition{{
			DisplayName: "any 5xx",
			Condition: &monitoringpb.AlertPolicy_Condition_ConditionThreshold{ConditionThreshold: &monitoringpb.AlertPolicy_Condition_MetricThreshold{
				Filter:     `metric.type = "run.googleapis.com/request_count" AND resource.type = "cloud_run_revision" AND metric.labels.response_code_class = "5xx"`,
				Comparison: monitoringpb.ComparisonType_COMPARISON_GT,
				Aggregations: []*monitoringpb.Aggregation{{
					AlignmentPeriod: durationpb.New(time.Minute), PerSeriesAligner: monitoringpb.Aggregation_ALIGN_DELTA,
				}},
			}},
		}},
	}})
	if err != nil {
		t.Fatalf("CreateAlertPolicy (the user's own): %v", err)
	}

	code, stdout, stderr := runCLI(t, "--dir", dir, "alerts")
	if code != 1 {
		t.Errorf("coalmine alerts with a conflicting policy: exit %d, want 1", code)
	}
	for _, want := range []string{`"web error rate > 5%"`, mine.GetName(), "not managed by coalmine", "alert policy conflict"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr %q does not mention %q", stderr, want)
		}
	}
	if got, want := strings.Join(outputLines(stdout)[1:], "\n"), "failed web error rate > 5%\ncreated web p95 > 2000ms"; got != want || !strings.HasPrefix(stdout, "created channel ") {
		t.Errorf("partial results: got output\n%s\nwant the channel, then\n%s", stdout, want)
	}
	policies, _ := monitoringState(t, srv, alertsProject)
	if len(policies) != 2 || !proto.Equal(policies[0], mine) || policies[1].GetDisplayName() != "web p95 > 2000ms" {
		t.Errorf("policies after the conflict: got %v; want the user's unchanged and the p95 policy", policies)
	}
}

func TestAlertsWithoutManagedAlertsMakesTheChannel(t *testing.T) {
	noAlertsEnv(t)
	srv := monitoringServer(t, false)
	dir := alertsCloud(t, srv, `
      - {policy: "web made by hand", action: rollback}`)
	code, stdout, stderr := runCLI(t, "--dir", dir, "alerts")
	if code != 0 {
		t.Fatalf("coalmine alerts: exit %d, stderr %q", code, stderr)
	}
	policies, channels := monitoringState(t, srv, alertsProject)
	if len(policies) != 0 || len(channels) != 1 {
		t.Fatalf("got %d policies and %d channels, want none and one", len(policies), len(channels))
	}
	want := []string{
		"created channel " + channels[0].GetName() + " (pubsub to " + alertsTopic + ")",
		"not managed web made by hand (no errorRateAbove or latencyP95AboveMs: make this alert policy yourself, notifying the channel)",
		"no managed alerts in the policy (none has errorRateAbove or latencyP95AboveMs): no alert policy to create; the channel is kept for alert policies made by hand",
	}
	if got := outputLines(stdout); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got output\n%s\nwant\n%s", stdout, strings.Join(want, "\n"))
	}
}
