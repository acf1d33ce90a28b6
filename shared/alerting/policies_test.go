package alerting_test

import (
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/monitoring/apiv3/v2/monitoringpb"

	"github.com/ai-square/coalmine/shared/alerting"
	"github.com/ai-square/coalmine/shared/policy"
)

// testPolicy is a policy file with two managed alerts and one of the user's own.
const testPolicy = `
services:
  - name: api
    project: my-project
    region: europe-west1
    images: [local.dev/api]
    backup: {required: false}
    alerts:
      - {policy: "api error rate > 5%", action: rollback, errorRateAbove: 0.05, for: 2m}
      - {policy: "api own uptime check", action: pause}
      - {policy: "api p95 > 2000ms", action: pause, latencyP95AboveMs: 2000, for: 0s}
`

// parse parses a policy file.
func parse(t *testing.T, yaml string) *policy.Policy {
	t.Helper()
	p, err := policy.Parse([]byte(yaml))
	if err != nil {
		t.Fatalf("policy.Parse: %v", err)
	}
	return p
}

func TestPolicies(t *testing.T) {
	svc := &parse(t, testPolicy).Services[0]
	const channel = "projects/my-project/notificationChannels/7"
	tests := []struct {
		name      string
		timing    alerting.Timing
		alignment string
		durations []string // per policy
		autoClose string
	}{
		{"google", alerting.GoogleTiming(), "60s", []string{"120s", "0s"}, "1800s"},
		{"fast", alerting.FastTiming(), "5s", []string{"2s", "0s"}, "30s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ps := alerting.Policies(svc, channel, tt.timing)
			if len(ps) != 2 || ps[0].GetDisplayName() != "api error rate > 5%" || ps[1].GetDisplayName() != "api p95 > 2000ms" {
				t.Fatalf("got %d policies, want the two managed alerts in file order", len(ps))
			}
			for i, p := range ps {
				if got := p.GetUserLabels(); len(got) != 2 || got["coalmine-service"] != "api" || got["managed-by"] != "coalmine" {
					t.Errorf("%s: user labels %v", p.GetDisplayName(), got)
				}
				if got := p.GetNotificationChannels(); len(got) != 1 || got[0] != channel {
					t.Errorf("%s: channels %v, want [%s]", p.GetDisplayName(), got, channel)
				}
				doc := p.GetDocumentation()
				if doc.GetMimeType() != "text/markdown" || !strings.Contains(doc.GetContent(), channel) || !strings.Contains(doc.GetContent(), "action: "+string(svc.Alerts[2*i].Action)) {
					t.Errorf("%s: documentation %q does not name the channel and the action", p.GetDisplayName(), doc.GetContent())
				}
				if len(p.GetConditions()) != 1 || p.GetCombiner() != monitoringpb.AlertPolicy_OR || !p.GetEnabled().GetValue() {
					t.Errorf("%s: want one condition, OR, enabled", p.GetDisplayName())
				}
				if got := p.GetAlertStrategy().GetAutoClose().AsDuration().String(); got != mustDuration(t, tt.autoClose).String() {
					t.Errorf("%s: auto_close %s, want %s", p.GetDisplayName(), got, tt.autoClose)
				}
				th := p.GetConditions()[0].GetConditionThreshold()
				if got := th.GetDuration().AsDuration(); got != mustDuration(t, tt.durations[i]) {
					t.Errorf("%s: duration %s, want %s", p.GetDisplayName(), got, tt.durations[i])
				}
				for _, a := range append(th.GetAggregations(), th.GetDenominatorAggregations()...) {
					if a.GetAlignmentPeriod().AsDuration() != mustDuration(t, tt.alignment) || a.GetPerSeriesAligner() != monitoringpb.Aggregation_ALIGN_DELTA ||
						strings.Join(a.GetGroupByFields(), ",") != "resource.label.service_name,resource.label.revision_name" {
						t.Errorf("%s: aggregation %v", p.GetDisplayName(), a)
					}
				}
				if th.GetComparison() != monitoringpb.ComparisonType_COMPARISON_GT || th.GetTrigger().GetCount() != 1 {
					t.Errorf("%s: comparison %v trigger %v", p.GetDisplayName(), th.GetComparison(), th.GetTrigger())
				}
			}
			rate := ps[0].GetConditions()[0].GetConditionThreshold()
			const all = `metric.type = "run.googleapis.com/request_count" AND resource.type = "cloud_run_revision" AND resource.labels.service_name = "api"`
			if rate.GetFilter() != all+` AND metric.labels.response_code_class = "5xx"` || rate.GetDenominatorFilter() != all ||
				rate.GetAggregations()[0].GetCrossSeriesReducer() != monitoringpb.Aggregation_REDUCE_SUM || rate.GetThresholdValue() != 0.05 ||
				rate.GetEvaluationMissingData() != monitoringpb.AlertPolicy_Condition_EVALUATION_MISSING_DATA_INACTIVE || ps[0].GetSeverity() != monitoringpb.AlertPolicy_ERROR {
				t.Errorf("error rate condition: %v (severity %v)", rate, ps[0].GetSeverity())
			}
			p95 := ps[1].GetConditions()[0].GetConditionThreshold()
			if p95.GetFilter() != `metric.type = "run.googleapis.com/request_latencies" AND resource.type = "cloud_run_revision" AND resource.labels.service_name = "api"` ||
				p95.GetDenominatorFilter() != "" || p95.GetAggregations()[0].GetCrossSeriesReducer() != monitoringpb.Aggregation_REDUCE_PERCENTILE_95 || p95.GetThresholdValue() != 2000 ||
				ps[1].GetSeverity() != monitoringpb.AlertPolicy_WARNING {
				t.Errorf("p95 condition: %v (severity %v)", p95, ps[1].GetSeverity())
			}
			// for: 0s: Google refuses a missing-data setting below a minute.
			if p95.GetEvaluationMissingData() != monitoringpb.AlertPolicy_Condition_EVALUATION_MISSING_DATA_UNSPECIFIED {
				t.Errorf("p95 (for: 0s) missing data: got %v, want unset", p95.GetEvaluationMissingData())
			}
		})
	}
	if ps := alerting.Policies(&policy.Service{Name: "x", Alerts: []policy.Alert{{Policy: "mine", Action: policy.ActionPause}}}, "", alerting.GoogleTiming()); len(ps) != 0 {
		t.Errorf("alerts without a condition: got %d policies, want none", len(ps))
	}
}

func mustDuration(t *testing.T, s string) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
