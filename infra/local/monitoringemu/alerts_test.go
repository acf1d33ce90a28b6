package monitoringemu_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/monitoring/apiv3/v2/monitoringpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/ai-square/coalmine/infra/local/monitoringemu"
)

func TestAlertPolicyCRUD(t *testing.T) {
	e := newAlertEnv(t, monitoringemu.Options{}, false)
	ctx := context.Background()
	in := e.policyOf("api error rate", ratioCondition(time.Minute, 0.05, 2*time.Minute, monitoringpb.AlertPolicy_Condition_EVALUATION_MISSING_DATA_INACTIVE))
	p := e.create(t, in)
	if !strings.HasPrefix(p.GetName(), "projects/"+project+"/alertPolicies/") {
		t.Errorf("policy name %q: want projects/%s/alertPolicies/ID", p.GetName(), project)
	}
	if c := p.GetConditions()[0].GetName(); !strings.HasPrefix(c, p.GetName()+"/conditions/") {
		t.Errorf("condition name %q: want %s/conditions/ID", c, p.GetName())
	}
	if !p.GetEnabled().GetValue() {
		t.Errorf("enabled: got %v, want true by default", p.GetEnabled())
	}
	if !p.GetCreationRecord().GetMutateTime().AsTime().Equal(t0) || !proto.Equal(p.GetCreationRecord(), p.GetMutationRecord()) {
		t.Errorf("records: got creation %v, mutation %v; want both at t0", p.GetCreationRecord(), p.GetMutationRecord())
	}
	// What was sent comes back, apart from the names, records and defaults.
	back := proto.Clone(p).(*monitoringpb.AlertPolicy)
	back.Name, back.CreationRecord, back.MutationRecord, back.Enabled = "", nil, nil, nil
	back.Conditions[0].Name = ""
	if !proto.Equal(back, in) {
		t.Errorf("stored policy differs from the request:\n got %v\nwant %v", back, in)
	}
	if got, err := e.ap.GetAlertPolicy(ctx, &monitoringpb.GetAlertPolicyRequest{Name: p.GetName()}); err != nil || !proto.Equal(got, p) {
		t.Errorf("GetAlertPolicy: got %v, %v; want the created policy", got, err)
	}

	second := e.policyOf("api p95", &monitoringpb.AlertPolicy_Condition{DisplayName: "p95 > 2000 ms",
		Condition: &monitoringpb.AlertPolicy_Condition_ConditionThreshold{ConditionThreshold: &monitoringpb.AlertPolicy_Condition_MetricThreshold{
			Filter:       latencies,
			Aggregations: agg(time.Minute, monitoringpb.Aggregation_ALIGN_DELTA, monitoringpb.Aggregation_REDUCE_PERCENTILE_95, "resource.label.revision_name"),
			Comparison:   monitoringpb.ComparisonType_COMPARISON_GT, ThresholdValue: 2000,
		}}})
	second.UserLabels = map[string]string{"service": "api", "signal": "latency"}
	p2 := e.create(t, second)
	if all, err := e.policies(t, "", 1); err != nil || len(all) != 2 || all[0].GetName() != p.GetName() || all[1].GetName() != p2.GetName() {
		t.Errorf("list in pages of 1: got %d policies, %v; want both in creation order", len(all), err)
	}
	for filter, want := range map[string]int{
		`display_name = "api p95"`:                           1,
		`user_labels.service = "api"`:                        2,
		`user_labels.service = "api" AND display_name = "x"`: 0,
		`user_labels.signal = "latency"`:                     1,
		`user_labels.missing = ""`:                           0,
	} {
		if got, err := e.policies(t, filter, 0); err != nil || len(got) != want {
			t.Errorf("list %q: got %d policies, %v; want %d", filter, len(got), err, want)
		}
	}

	// A masked update changes only what the mask names.
	e.clock.Set(t0.Add(time.Minute))
	upd, err := e.ap.UpdateAlertPolicy(ctx, &monitoringpb.UpdateAlertPolicyRequest{
		AlertPolicy: &monitoringpb.AlertPolicy{Name: p.GetName(), DisplayName: "renamed", Severity: monitoringpb.AlertPolicy_CRITICAL, UserLabels: map[string]string{"team": "x"}},
		UpdateMask:  &fieldmaskpb.FieldMask{Paths: []string{"display_name", "user_labels.team"}},
	})
	if err != nil {
		t.Fatalf("UpdateAlertPolicy (mask): %v", err)
	}
	if upd.GetDisplayName() != "renamed" || upd.GetSeverity() != monitoringpb.AlertPolicy_ERROR || upd.GetUserLabels()["team"] != "x" || upd.GetUserLabels()["service"] != "api" ||
		!proto.Equal(upd.GetConditions()[0], p.GetConditions()[0]) || !upd.GetMutationRecord().GetMutateTime().AsTime().Equal(t0.Add(time.Minute)) {
		t.Errorf("masked update: got %v", upd)
	}
	// A full replacement keeps the policy's name and a named condition's id, adds an
	// unnamed condition and deletes the conditions not supplied.
	kept := proto.Clone(p.GetConditions()[0]).(*monitoringpb.AlertPolicy_Condition)
	kept.GetConditionThreshold().ThresholdValue = 0.1
	added := ratioCondition(time.Minute, 0.5, 0, 0)
	repl := e.policyOf("replaced", kept, added)
	repl.Name = p.GetName()
	full, err := e.ap.UpdateAlertPolicy(ctx, &monitoringpb.UpdateAlertPolicyRequest{AlertPolicy: repl})
	if err != nil {
		t.Fatalf("UpdateAlertPolicy (full): %v", err)
	}
	if full.GetName() != p.GetName() || len(full.GetConditions()) != 2 || full.GetConditions()[0].GetName() != kept.GetName() ||
		full.GetConditions()[1].GetName() == "" || full.GetConditions()[1].GetName() == kept.GetName() ||
		full.GetConditions()[0].GetConditionThreshold().GetThresholdValue() != 0.1 || !proto.Equal(full.GetCreationRecord(), p.GetCreationRecord()) {
		t.Errorf("full replacement: got %v", full)
	}
	only := e.policyOf("replaced", full.GetConditions()[1])
	only.Name = p.GetName()
	if got, err := e.ap.UpdateAlertPolicy(ctx, &monitoringpb.UpdateAlertPolicyRequest{AlertPolicy: only}); err != nil || len(got.GetConditions()) != 1 || got.GetConditions()[0].GetName() != full.GetConditions()[1].GetName() {
		t.Errorf("replacement without the first condition: got %v, %v; want only the second", got.GetConditions(), err)
	}

	if err := e.ap.DeleteAlertPolicy(ctx, &monitoringpb.DeleteAlertPolicyRequest{Name: p.GetName()}); err != nil {
		t.Fatalf("DeleteAlertPolicy: %v", err)
	}
	if _, err := e.ap.GetAlertPolicy(ctx, &monitoringpb.GetAlertPolicyRequest{Name: p.GetName()}); status.Code(err) != codes.NotFound {
		t.Errorf("get a deleted policy: got %v, want NOT_FOUND", err)
	}
	if err := e.ap.DeleteAlertPolicy(ctx, &monitoringpb.DeleteAlertPolicyRequest{Name: p.GetName()}); status.Code(err) != codes.NotFound {
		t.Errorf("delete a deleted policy: got %v, want NOT_FOUND", err)
	}
	if all, err := e.policies(t, "", 0); err != nil || len(all) != 1 {
		t.Errorf("list after delete: got %d, %v; want 1", len(all), err)
	}
}

func TestAlertPolicyInvalidArgument(t *testing.T) {
	e := newAlertEnv(t, monitoringemu.Options{}, false)
	ctx := context.Background()
	min := time.Minute
	inactive := monitoringpb.AlertPolicy_Condition_EVALUATION_MISSING_DATA_INACTIVE
	// threshold returns a valid 5xx ratio condition changed by f.
	threshold := func(f func(*monitoringpb.AlertPolicy_Condition_MetricThreshold)) *monitoringpb.AlertPolicy_Condition {
		c := ratioCondition(min, 0.05, 2*min, inactive)
		f(c.GetConditionThreshold())
		return c
	}
	policy := func(f func(*monitoringpb.AlertPolicy)) *monitoringpb.AlertPolicy {
		p := e.policyOf("p", ratioCondition(min, 0.05, 2*min, inactive))
		f(p)
		return p
	}
	withCondition := func(c *monitoringpb.AlertPolicy_Condition) *monitoringpb.AlertPolicy {
		return policy(func(p *monitoringpb.AlertPolicy) { p.Conditions = []*monitoringpb.AlertPolicy_Condition{c} })
	}
	tests := []struct {
		name   string
		policy *monitoringpb.AlertPolicy
		want   string // in the message
	}{
		{"no display name", policy(func(p *monitoringpb.AlertPolicy) { p.DisplayName = "" }), "display_name"},
		{"no conditions", policy(func(p *monitoringpb.AlertPolicy) { p.Conditions = nil }), "conditions"},
		{"seven conditions", policy(func(p *monitoringpb.AlertPolicy) {
			for len(p.Conditions) < 7 {
				p.Conditions = append(p.Conditions, ratioCondition(min, 0.05, 0, 0))
			}
		}), "at most 6"},
		{"absence condition", withCondition(&monitoringpb.AlertPolicy_Condition{DisplayName: "absent",
			Condition: &monitoringpb.AlertPolicy_Condition_ConditionAbsent{ConditionAbsent: &monitoringpb.AlertPolicy_Condition_MetricAbsence{Filter: requestCount}}}), "condition_absent"},
		{"PromQL condition", withCondition(&monitoringpb.AlertPolicy_Condition{DisplayName: "promql",
			Condition: &monitoringpb.AlertPolicy_Condition_ConditionPrometheusQueryLanguage{ConditionPrometheusQueryLanguage: &monitoringpb.AlertPolicy_Condition_PrometheusQueryLanguageCondition{Query: "up"}}}), "condition_prometheus_query_language"},
		{"no condition type", withCondition(&monitoringpb.AlertPolicy_Condition{DisplayName: "empty"}), "condition type"},
		{"no filter", withCondition(threshold(func(m *monitoringpb.AlertPolicy_Condition_MetricThreshold) { m.Filter = "" })), "filter"},
		{"OR in the filter", withCondition(threshold(func(m *monitoringpb.AlertPolicy_Condition_MetricThreshold) { m.Filter += ` OR resource.type = "x"` })), `"OR"`},
		{"no resource type", withCondition(threshold(func(m *monitoringpb.AlertPolicy_Condition_MetricThreshold) {
			m.Filter = `metric.type = "run.googleapis.com/request_count"`
		})), "resource.type"},
		{"metric not served", withCondition(threshold(func(m *monitoringpb.AlertPolicy_Condition_MetricThreshold) {
			m.Filter = `metric.type = "run.googleapis.com/request_counts" AND resource.type = "cloud_run_revision"`
		})), `"run.googleapis.com/request_counts" is not served`},
		{"alignment below 60s", withCondition(threshold(func(m *monitoringpb.AlertPolicy_Condition_MetricThreshold) {
			m.Aggregations[0].AlignmentPeriod = durationpb.New(30 * time.Second)
		})), "alignment_period"},
		{"no aggregation", withCondition(threshold(func(m *monitoringpb.AlertPolicy_Condition_MetricThreshold) { m.Aggregations = nil })), "aggregations"},
		{"no aligner", withCondition(threshold(func(m *monitoringpb.AlertPolicy_Condition_MetricThreshold) {
			m.Aggregations = agg(min, monitoringpb.Aggregation_ALIGN_NONE, monitoringpb.Aggregation_REDUCE_NONE)
		})), "per_series_aligner"},
		{"denominator alignment differs", withCondition(threshold(func(m *monitoringpb.AlertPolicy_Condition_MetricThreshold) {
			m.DenominatorAggregations = agg(2*min, monitoringpb.Aggregation_ALIGN_DELTA, monitoringpb.Aggregation_REDUCE_SUM, "resource.label.revision_name")
		})), "denominator_aggregations[0].alignment_period"},
		{"denominator grouping differs", withCondition(threshold(func(m *monitoringpb.AlertPolicy_Condition_MetricThreshold) {
			m.DenominatorAggregations = agg(min, monitoringpb.Aggregation_ALIGN_DELTA, monitoringpb.Aggregation_REDUCE_SUM, "resource.label.service_name")
		})), "group_by_fields"},
		{"denominator aggregations alone", withCondition(threshold(func(m *monitoringpb.AlertPolicy_Condition_MetricThreshold) { m.DenominatorFilter = "" })), "denominator_filter"},
		{"distribution values", withCondition(threshold(func(m *monitoringpb.AlertPolicy_Condition_MetricThreshold) {
			m.Filter, m.DenominatorFilter, m.DenominatorAggregations = latencies, "", nil
			m.Aggregations = agg(min, monitoringpb.Aggregation_ALIGN_DELTA, monitoringpb.Aggregation_REDUCE_SUM)
		})), "DISTRIBUTION"},
		{"REDUCE_MAX of distributions", withCondition(threshold(func(m *monitoringpb.AlertPolicy_Condition_MetricThreshold) {
			m.Filter, m.DenominatorFilter, m.DenominatorAggregations = latencies, "", nil
			m.Aggregations = agg(min, monitoringpb.Aggregation_ALIGN_DELTA, monitoringpb.Aggregation_REDUCE_MAX)
		})), "REDUCE_MAX"},
		{"forecast", withCondition(threshold(func(m *monitoringpb.AlertPolicy_Condition_MetricThreshold) {
			m.ForecastOptions = &monitoringpb.AlertPolicy_Condition_MetricThreshold_ForecastOptions{ForecastHorizon: durationpb.New(time.Hour)}
		})), "forecast_options"},
		{"COMPARISON_GE", withCondition(threshold(func(m *monitoringpb.AlertPolicy_Condition_MetricThreshold) {
			m.Comparison = monitoringpb.ComparisonType_COMPARISON_GE
		})), "COMPARISON_GE"},
		{"no comparison", withCondition(threshold(func(m *monitoringpb.AlertPolicy_Condition_MetricThreshold) { m.Comparison = 0 })), "comparison"},
		{"duration 90s", withCondition(threshold(func(m *monitoringpb.AlertPolicy_Condition_MetricThreshold) {
			m.Duration = durationpb.New(90 * time.Second)
		})), "duration"},
		{"negative duration", withCondition(threshold(func(m *monitoringpb.AlertPolicy_Condition_MetricThreshold) { m.Duration = durationpb.New(-min) })), "duration"},
		{"trigger count 0", withCondition(threshold(func(m *monitoringpb.AlertPolicy_Condition_MetricThreshold) {
			m.Trigger = &monitoringpb.AlertPolicy_Condition_Trigger{Type: &monitoringpb.AlertPolicy_Condition_Trigger_Count{Count: 0}}
		})), "trigger.count"},
		{"trigger percent 150", withCondition(threshold(func(m *monitoringpb.AlertPolicy_Condition_MetricThreshold) {
			m.Trigger = &monitoringpb.AlertPolicy_Condition_Trigger{Type: &monitoringpb.AlertPolicy_Condition_Trigger_Percent{Percent: 150}}
		})), "trigger.percent"},
		{"missing data without duration", withCondition(threshold(func(m *monitoringpb.AlertPolicy_Condition_MetricThreshold) { m.Duration = nil })), "evaluation_missing_data"},
		{"unknown channel", policy(func(p *monitoringpb.AlertPolicy) {
			p.NotificationChannels = []string{"projects/" + project + "/notificationChannels/404"}
		}), "notification_channels[0]"},
		{"channel of another project", policy(func(p *monitoringpb.AlertPolicy) {
			p.NotificationChannels = []string{"projects/other/notificationChannels/1"}
		}), "notification_channels[0]"},
		{"two conditions without a combiner", policy(func(p *monitoringpb.AlertPolicy) {
			p.Combiner = monitoringpb.AlertPolicy_COMBINE_UNSPECIFIED
			p.Conditions = append(p.Conditions, ratioCondition(min, 0.5, 0, 0))
		}), "combiner"},
		{"user label key", policy(func(p *monitoringpb.AlertPolicy) { p.UserLabels = map[string]string{"1st": "a"} }), "user_labels"},
		{"user label value", policy(func(p *monitoringpb.AlertPolicy) { p.UserLabels = map[string]string{"service": "API"} }), "user_labels"},
		{"mime type", policy(func(p *monitoringpb.AlertPolicy) { p.Documentation.MimeType = "text/plain" }), "mime_type"},
		{"prompts without OPENED", policy(func(p *monitoringpb.AlertPolicy) {
			p.AlertStrategy = &monitoringpb.AlertPolicy_AlertStrategy{NotificationPrompts: []monitoringpb.AlertPolicy_AlertStrategy_NotificationPrompt{monitoringpb.AlertPolicy_AlertStrategy_CLOSED}}
		}), "notification_prompts"},
		{"rate limit", policy(func(p *monitoringpb.AlertPolicy) {
			p.AlertStrategy = &monitoringpb.AlertPolicy_AlertStrategy{NotificationRateLimit: &monitoringpb.AlertPolicy_AlertStrategy_NotificationRateLimit{Period: durationpb.New(5 * min)}}
		}), "notification_rate_limit"},
		{"no policy", nil, "alert_policy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := e.ap.CreateAlertPolicy(ctx, &monitoringpb.CreateAlertPolicyRequest{Name: "projects/" + project, AlertPolicy: tt.policy})
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("got %v, %v; want INVALID_ARGUMENT", got, err)
			}
			if msg := status.Convert(err).Message(); !strings.Contains(msg, tt.want) {
				t.Errorf("message %q does not name %q", msg, tt.want)
			}
		})
	}

	if _, err := e.ap.CreateAlertPolicy(ctx, &monitoringpb.CreateAlertPolicyRequest{Name: project, AlertPolicy: policy(func(*monitoringpb.AlertPolicy) {})}); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "projects/") {
		t.Errorf("create under %q: got %v, want INVALID_ARGUMENT naming projects/", project, err)
	}
	for _, filter := range []string{`display_name != "p"`, `severity = "ERROR"`, `display_name = "p" OR display_name = "q"`, `display_name = p`} {
		if _, err := e.policies(t, filter, 0); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "filter") {
			t.Errorf("list %q: got %v, want INVALID_ARGUMENT naming the filter", filter, err)
		}
	}
	p := e.create(t, policy(func(*monitoringpb.AlertPolicy) {}))
	for _, tt := range []struct {
		name string
		req  *monitoringpb.UpdateAlertPolicyRequest
		code codes.Code
		want string
	}{
		{"unsupported mask path", &monitoringpb.UpdateAlertPolicyRequest{AlertPolicy: &monitoringpb.AlertPolicy{Name: p.GetName()}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"validity"}}}, codes.InvalidArgument, `"validity"`},
		{"foreign condition name", &monitoringpb.UpdateAlertPolicyRequest{AlertPolicy: func() *monitoringpb.AlertPolicy {
			c := ratioCondition(min, 0.05, 0, 0)
			c.Name = p.GetName() + "/conditions/42"
			q := e.policyOf("p", c)
			q.Name = p.GetName()
			return q
		}()}, codes.InvalidArgument, "not a condition"},
		{"invalid result", &monitoringpb.UpdateAlertPolicyRequest{AlertPolicy: &monitoringpb.AlertPolicy{Name: p.GetName()}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"display_name"}}}, codes.InvalidArgument, "display_name"},
		{"unknown policy", &monitoringpb.UpdateAlertPolicyRequest{AlertPolicy: &monitoringpb.AlertPolicy{Name: "projects/" + project + "/alertPolicies/404", DisplayName: "x"}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"display_name"}}}, codes.NotFound, "404"},
	} {
		if _, err := e.ap.UpdateAlertPolicy(ctx, tt.req); status.Code(err) != tt.code || !strings.Contains(status.Convert(err).Message(), tt.want) {
			t.Errorf("%s: got %v, want %v naming %q", tt.name, err, tt.code, tt.want)
		}
	}
}

// TestConditionDurationGranularity checks durations: multiples of 60 s with Google's
// timing, whole seconds in fast mode.
func TestConditionDurationGranularity(t *testing.T) {
	tests := []struct {
		fast     bool
		duration time.Duration
		ok       bool
	}{
		{false, 0, true}, {false, 2 * time.Minute, true}, {false, 30 * time.Second, false}, {false, 61 * time.Second, false},
		{true, time.Second, true}, {true, 7 * time.Second, true}, {true, 1500 * time.Millisecond, false},
	}
	envs := map[bool]*alertEnv{false: newAlertEnv(t, monitoringemu.Options{}, false), true: newAlertEnv(t, monitoringemu.Options{Fast: true}, false)}
	for _, tt := range tests {
		e := envs[tt.fast]
		_, err := e.ap.CreateAlertPolicy(context.Background(), &monitoringpb.CreateAlertPolicyRequest{Name: "projects/" + project,
			AlertPolicy: e.policyOf("d", ratioCondition(time.Minute, 0.05, tt.duration, 0))})
		if tt.ok && err != nil {
			t.Errorf("fast=%v duration %s: %v, want accepted", tt.fast, tt.duration, err)
		}
		if !tt.ok && (status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "duration")) {
			t.Errorf("fast=%v duration %s: got %v, want INVALID_ARGUMENT naming duration", tt.fast, tt.duration, err)
		}
	}
	// A disabled policy is stored as such.
	e := envs[false]
	p := e.policyOf("off", ratioCondition(time.Minute, 0.05, 0, 0))
	p.Enabled = wrapperspb.Bool(false)
	if got := e.create(t, p); got.GetEnabled().GetValue() {
		t.Errorf("enabled: got true, want the false that was sent")
	}
}
