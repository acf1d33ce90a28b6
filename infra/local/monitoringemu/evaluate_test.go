package monitoringemu_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	monitoring "cloud.google.com/go/monitoring/apiv3/v2"
	"cloud.google.com/go/monitoring/apiv3/v2/monitoringpb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/ai-square/coalmine/events"
	"github.com/ai-square/coalmine/infra/local/monitoringemu"
)

// TestErrorRatioPolicyGoogleTiming follows a 5xx-ratio policy grouped by revision, with
// Google's timing, over real RecordRequest traffic: the failing revision's incident opens
// once its errors have been visible (180 s after each minute) for the duration, the
// healthy revision never fires, and the incident closes when the errors stop; both
// notifications decode with events.DecodeIncident and share the incident_id.
func TestErrorRatioPolicyGoogleTiming(t *testing.T) {
	e := newAlertEnv(t, monitoringemu.Options{}, false)
	inactive := monitoringpb.AlertPolicy_Condition_EVALUATION_MISSING_DATA_INACTIVE
	p := e.create(t, e.policyOf("api error rate", ratioCondition(time.Minute, 0.05, 2*time.Minute, inactive)))
	// Duration 0 (no missing-data setting allowed): fires at the first evaluation that sees
	// the errors, and keeps its incident when the errors stop (missing data: no-op).
	p0 := e.create(t, e.policyOf("api error rate now", ratioCondition(time.Minute, 0.05, 0, 0)))

	requests(e.srv, "api-bad", t0, time.Minute, 5, 10, 5, 10*time.Millisecond)                    // 50% for 5 minutes
	requests(e.srv, "api-bad", t0.Add(5*time.Minute), time.Minute, 5, 10, 0, 10*time.Millisecond) // then none
	requests(e.srv, "api-good", t0, time.Minute, 10, 100, 1, 10*time.Millisecond)                 // 1% throughout

	got := map[int][]received{}
	for k := 1; k <= 12; k++ {
		for _, r := range e.evaluate(t, time.Duration(k)*time.Minute) {
			got[k] = append(got[k], r)
			if rev := r.inc.Revision(); rev != "api-bad" {
				t.Errorf("t0+%dm: notification for revision %q, want only api-bad", k, rev)
			}
		}
	}
	// Minute 0's errors end at t0+1m and are all visible at t0+4m (Cloud Run's 180 s).
	for k := 1; k <= 12; k++ {
		var want []string
		switch k {
		case 4:
			want = []string{"api error rate now open"}
		case 6:
			want = []string{"api error rate open"} // 2 minutes of violations: t0+4m, 5m, 6m
		case 9:
			want = []string{"api error rate closed"} // minute 5 (no 5xx) is read at t0+9m
		}
		var names []string
		for _, r := range got[k] {
			names = append(names, r.inc.PolicyName+" "+r.inc.State)
		}
		if fmt.Sprint(names) != fmt.Sprint(want) {
			t.Errorf("t0+%dm: got notifications %v, want %v", k, names, want)
		}
	}
	if len(got[6]) != 1 || len(got[9]) != 1 {
		t.FailNow()
	}
	open, closed := got[6][0], got[9][0]
	cond := p.GetConditions()[0]
	if open.inc.ID != closed.inc.ID || !strings.HasPrefix(open.inc.ID, "0.") {
		t.Errorf("incident ids: open %q, closed %q; want the same 0.… id", open.inc.ID, closed.inc.ID)
	}
	wantInc := events.Incident{
		Version: "1.2", ID: open.inc.ID, State: events.IncidentOpen,
		PolicyName: "api error rate", ConditionName: cond.GetDisplayName(),
		StartedAt: t0.Add(6 * time.Minute), ResourceType: "cloud_run_revision",
		ResourceLabels: map[string]string{"project_id": project, "revision_name": "api-bad"},
		MetricType:     "run.googleapis.com/request_count", MetricLabels: map[string]string{},
		PolicyUserLabels: map[string]string{"service": "api"},
		ThresholdValue:   "0.05", ObservedValue: "0.500",
		Summary:       "Request Count for my-project Cloud Run Revision labels {project_id=my-project, revision_name=api-bad} with metric labels {} is above the threshold of 0.050 with a value of 0.500.",
		URL:           "https://console.cloud.google.com/monitoring/alerting/alerts/" + open.inc.ID + "?channelType=cloud-pubsub&project=my-project",
		Documentation: "Roll back.",
	}
	if g, w := fmt.Sprintf("%+v", open.inc), fmt.Sprintf("%+v", wantInc); g != w {
		t.Errorf("open notification:\n got %s\nwant %s", g, w)
	}
	wantInc.State, wantInc.EndedAt, wantInc.ObservedValue = events.IncidentClosed, t0.Add(9*time.Minute), "No data"
	wantInc.Summary = "Request Count for my-project Cloud Run Revision labels {project_id=my-project, revision_name=api-bad} with metric labels {} returned to normal: no data in the condition's window."
	if g, w := fmt.Sprintf("%+v", closed.inc), fmt.Sprintf("%+v", wantInc); g != w {
		t.Errorf("closed notification:\n got %s\nwant %s", g, w)
	}
	// Fields events.Incident does not keep.
	raw := open.raw
	if v, ok := raw["ended_at"]; !ok || v != nil {
		t.Errorf("open ended_at: got %v (present %v), want null", v, ok)
	}
	if _, ok := raw["scoping_project_number"].(float64); !ok || raw["scoping_project_id"] != project {
		t.Errorf("scoping project: got %v (%T) %v, want a number and %s", raw["scoping_project_number"], raw["scoping_project_number"], raw["scoping_project_id"], project)
	}
	for k, want := range map[string]any{"severity": "Error", "resource_id": "", "resource_type_display_name": "Cloud Run Revision",
		"resource_name": "my-project Cloud Run Revision labels {project_id=my-project, revision_name=api-bad}"} {
		if raw[k] != want {
			t.Errorf("%s: got %v, want %v", k, raw[k], want)
		}
	}
	if m, _ := raw["metric"].(map[string]any); m["displayName"] != "Request Count" {
		t.Errorf("metric.displayName: got %v, want Request Count", m["displayName"])
	}
	c, _ := raw["condition"].(map[string]any)
	th, _ := c["conditionThreshold"].(map[string]any)
	if c["name"] != cond.GetName() || c["displayName"] != cond.GetDisplayName() || th["thresholdValue"] != 0.05 || th["duration"] != "120s" || th["denominatorFilter"] != requestCount {
		t.Errorf("condition: got %v, want the policy's condition in camelCase with its name", c)
	}
	for r, want := range map[*received]string{&open: "[ALERT - Error] api error rate", &closed: "[RESOLVED - Error] api error rate"} {
		if d, _ := r.raw["documentation"].(map[string]any); d["subject"] != want || d["mime_type"] != "text/markdown" {
			t.Errorf("documentation: got %v, want subject %q and mime_type text/markdown", d, want)
		}
	}

	// The server's record: the closed incident and the duration-0 one, still open.
	var states []string
	for _, in := range e.srv.Incidents() {
		states = append(states, fmt.Sprintf("%s %s %s %s-%s", in.PolicyDisplayName, in.State, in.ResourceLabels["revision_name"], in.Started.Sub(t0), in.Ended.Sub(t0)))
		if in.Policy != p.GetName() && in.Policy != p0.GetName() {
			t.Errorf("incident of policy %s, want %s or %s", in.Policy, p.GetName(), p0.GetName())
		}
	}
	want := []string{
		fmt.Sprintf("api error rate now open api-bad 4m0s-%s", time.Time{}.Sub(t0)),
		"api error rate closed api-bad 6m0s-9m0s",
	}
	if fmt.Sprint(states) != fmt.Sprint(want) {
		t.Errorf("Incidents():\n got %v\nwant %v", states, want)
	}
}

// latencyCondition is a p95 latency condition per revision.
func latencyCondition(period time.Duration, ms float64, duration time.Duration) *monitoringpb.AlertPolicy_Condition {
	return &monitoringpb.AlertPolicy_Condition{
		DisplayName: "p95 latency > " + strconv.FormatFloat(ms, 'f', -1, 64) + " ms",
		Condition: &monitoringpb.AlertPolicy_Condition_ConditionThreshold{ConditionThreshold: &monitoringpb.AlertPolicy_Condition_MetricThreshold{
			Filter:                latencies,
			Aggregations:          agg(period, monitoringpb.Aggregation_ALIGN_DELTA, monitoringpb.Aggregation_REDUCE_PERCENTILE_95, "resource.label.revision_name"),
			Comparison:            monitoringpb.ComparisonType_COMPARISON_GT,
			ThresholdValue:        ms,
			Duration:              durationpb.New(duration),
			EvaluationMissingData: monitoringpb.AlertPolicy_Condition_EVALUATION_MISSING_DATA_INACTIVE,
		}},
	}
}

// TestP95PolicyFastMode: ALIGN_DELTA + REDUCE_PERCENTILE_95 per revision over 5 s windows
// fires for the revision answering in 3000 ms, never for the one answering in 100 ms, and
// closes with the value once the slow requests leave the window.
func TestP95PolicyFastMode(t *testing.T) {
	e := newAlertEnv(t, monitoringemu.Options{Fast: true}, false)
	e.create(t, e.policyOf("api p95", latencyCondition(5*time.Second, 2000, 2*time.Second)))
	requests(e.srv, "api-slow", t0, time.Second, 10, 5, 0, 3000*time.Millisecond)
	requests(e.srv, "api-slow", t0.Add(10*time.Second), time.Second, 10, 5, 0, 100*time.Millisecond)
	requests(e.srv, "api-fast", t0, time.Second, 20, 5, 0, 100*time.Millisecond)
	var log []string
	var open, closed *received
	for s := 1; s <= 20; s++ {
		for _, r := range e.evaluate(t, time.Duration(s)*time.Second) {
			log = append(log, fmt.Sprintf("%ds %s %s", s, r.inc.Revision(), r.inc.State))
			if r.inc.State == events.IncidentOpen {
				open = &r
			} else {
				closed = &r
			}
		}
	}
	// Second 0 is read from t0+1s: violating since 1s, failing from 3s. The last slow
	// point (second 9, ending t0+10s) leaves the window (t-5s, t] at 15s.
	if want := []string{"3s api-slow open", "15s api-slow closed"}; fmt.Sprint(log) != fmt.Sprint(want) {
		t.Fatalf("notifications: got %v, want %v", log, want)
	}
	if v, err := strconv.ParseFloat(open.inc.ObservedValue, 64); err != nil || v < 2896 || v >= 4096 {
		t.Errorf("open observed_value %q: want the p95 of 3000 ms requests, in their bucket [2896, 4096)", open.inc.ObservedValue)
	}
	if open.inc.MetricType != "run.googleapis.com/request_latencies" || open.inc.ThresholdValue != "2000" || !strings.Contains(open.inc.Summary, "Request Latencies for ") {
		t.Errorf("open: metric %q threshold %q summary %q", open.inc.MetricType, open.inc.ThresholdValue, open.inc.Summary)
	}
	if v, err := strconv.ParseFloat(closed.inc.ObservedValue, 64); err != nil || v < 90 || v >= 128 || !strings.Contains(closed.inc.Summary, "returned to normal with a value of "+closed.inc.ObservedValue) {
		t.Errorf("closed: observed_value %q summary %q; want the p95 of 100 ms requests and 'returned to normal'", closed.inc.ObservedValue, closed.inc.Summary)
	}
}

// TestDurationResetByOneGoodEvaluation: a single evaluation below the threshold restarts
// the duration.
func TestDurationResetByOneGoodEvaluation(t *testing.T) {
	e := newAlertEnv(t, monitoringemu.Options{Fast: true}, false)
	e.create(t, e.policyOf("api error rate", ratioCondition(time.Second, 0.05, 3*time.Second, monitoringpb.AlertPolicy_Condition_EVALUATION_MISSING_DATA_INACTIVE)))
	requests(e.srv, "api-1", t0, time.Second, 2, 10, 5, time.Millisecond)                     // seconds 0, 1: 50%
	requests(e.srv, "api-1", t0.Add(2*time.Second), time.Second, 1, 100, 1, time.Millisecond) // second 2: 1%
	requests(e.srv, "api-1", t0.Add(3*time.Second), time.Second, 7, 10, 5, time.Millisecond)  // seconds 3-9: 50%
	first := 0
	for s := 1; s <= 10 && first == 0; s++ {
		if got := e.evaluate(t, time.Duration(s)*time.Second); len(got) > 0 {
			first = s
		}
	}
	// Without the reset at 3s it would fire at 4s (violating since 1s); with it, at 7s.
	if first != 7 {
		t.Errorf("incident opened at t0+%ds, want t0+7s (violating from 4s, duration 3s)", first)
	}
}

// TestMissingNumerator: with no 5xx at all the ratio's numerator does not exist, which is
// missing data, not 0: a "ratio below 1%" condition does not fire on it unless missing
// data counts as violating (EVALUATION_MISSING_DATA_ACTIVE), and fires on 0.1%.
func TestMissingNumerator(t *testing.T) {
	tests := []struct {
		name    string
		failed  int // of 1000 requests per second
		missing monitoringpb.AlertPolicy_Condition_EvaluationMissingData
		want    string // observed_value of the open notification, "" for none
	}{
		{"no 5xx, inactive", 0, monitoringpb.AlertPolicy_Condition_EVALUATION_MISSING_DATA_INACTIVE, ""},
		{"no 5xx, no-op", 0, monitoringpb.AlertPolicy_Condition_EVALUATION_MISSING_DATA_NO_OP, ""},
		{"no 5xx, unspecified", 0, monitoringpb.AlertPolicy_Condition_EVALUATION_MISSING_DATA_UNSPECIFIED, ""},
		{"no 5xx, active", 0, monitoringpb.AlertPolicy_Condition_EVALUATION_MISSING_DATA_ACTIVE, "No data"},
		{"0.1% 5xx, inactive", 1, monitoringpb.AlertPolicy_Condition_EVALUATION_MISSING_DATA_INACTIVE, "0.001"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newAlertEnv(t, monitoringemu.Options{Fast: true}, false)
			c := ratioCondition(time.Second, 0.01, time.Second, tt.missing)
			c.GetConditionThreshold().Comparison = monitoringpb.ComparisonType_COMPARISON_LT
			e.create(t, e.policyOf("api 5xx below 1%", c))
			requests(e.srv, "api-1", t0, time.Second, 5, 1000, tt.failed, time.Millisecond)
			var got []string
			for s := 1; s <= 5; s++ {
				for _, r := range e.evaluate(t, time.Duration(s)*time.Second) {
					got = append(got, r.inc.ObservedValue)
				}
			}
			var want []string
			if tt.want != "" {
				want = []string{tt.want}
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("observed values notified: got %v, want %v", got, want)
			}
		})
	}
}

// TestUpdateCancelsOpenIncident: changing a condition closes its open incident as
// cancelled; renaming the policy does not.
func TestUpdateCancelsOpenIncident(t *testing.T) {
	e := newAlertEnv(t, monitoringemu.Options{Fast: true}, false)
	ctx := context.Background()
	p := e.create(t, e.policyOf("api error rate", ratioCondition(time.Second, 0.05, time.Second, monitoringpb.AlertPolicy_Condition_EVALUATION_MISSING_DATA_INACTIVE)))
	requests(e.srv, "api-1", t0, time.Second, 10, 10, 5, time.Millisecond)
	e.evaluate(t, time.Second)
	opened := e.evaluate(t, 2*time.Second)
	if len(opened) != 1 || opened[0].inc.State != events.IncidentOpen {
		t.Fatalf("at 2s: got %d notifications, want one open", len(opened))
	}
	if _, err := e.ap.UpdateAlertPolicy(ctx, &monitoringpb.UpdateAlertPolicyRequest{
		AlertPolicy: &monitoringpb.AlertPolicy{Name: p.GetName(), DisplayName: "api 5xx"},
		UpdateMask:  &fieldmaskpb.FieldMask{Paths: []string{"display_name"}},
	}); err != nil {
		t.Fatal(err)
	}
	if got := e.pull(t); len(got) != 0 || len(openIncidents(e.srv)) != 1 {
		t.Errorf("after a rename: got %d notifications and %d open incidents, want none and 1", len(got), len(openIncidents(e.srv)))
	}
	changed := p.GetConditions()[0]
	changed.GetConditionThreshold().ThresholdValue = 0.1
	if _, err := e.ap.UpdateAlertPolicy(ctx, &monitoringpb.UpdateAlertPolicyRequest{
		AlertPolicy: &monitoringpb.AlertPolicy{Name: p.GetName(), Conditions: []*monitoringpb.AlertPolicy_Condition{changed}},
		UpdateMask:  &fieldmaskpb.FieldMask{Paths: []string{"conditions"}},
	}); err != nil {
		t.Fatal(err)
	}
	got := e.pull(t)
	if len(got) != 1 {
		t.Fatalf("after a condition change: got %d notifications, want 1", len(got))
	}
	c := got[0].inc
	if c.State != events.IncidentClosed || c.ID != opened[0].inc.ID || c.ObservedValue != monitoringemu.CancelledObservedValue || c.PolicyName != "api 5xx" {
		t.Errorf("cancellation: got state %s id %s observed %q policy %q; want closed, %s, the cancellation prose, api 5xx", c.State, c.ID, c.ObservedValue, c.PolicyName, opened[0].inc.ID)
	}
	if n := len(openIncidents(e.srv)); n != 0 {
		t.Errorf("open incidents after the change: got %d, want 0", n)
	}
	// The changed condition starts over: violating from 3s, a new incident at 4s.
	if got := e.evaluate(t, 3*time.Second); len(got) != 0 {
		t.Errorf("at 3s: got %d notifications, want none (the duration starts again)", len(got))
	}
	if got := e.evaluate(t, 4*time.Second); len(got) != 1 || got[0].inc.ID == c.ID {
		t.Errorf("at 4s: got %v, want a new incident", got)
	}
	// Deleting the policy drops its open incident without a notification.
	if err := e.ap.DeleteAlertPolicy(ctx, &monitoringpb.DeleteAlertPolicyRequest{Name: p.GetName()}); err != nil {
		t.Fatal(err)
	}
	if got := e.pull(t); len(got) != 0 || len(openIncidents(e.srv)) != 0 {
		t.Errorf("after delete: got %d notifications and %d open incidents, want none", len(got), len(openIncidents(e.srv)))
	}
}

// TestNotificationPromptsOpenedOnly: a policy that notifies OPENED only sends no closed
// notification, though its incident closes.
func TestNotificationPromptsOpenedOnly(t *testing.T) {
	e := newAlertEnv(t, monitoringemu.Options{Fast: true}, false)
	p := e.policyOf("api error rate", ratioCondition(time.Second, 0.05, time.Second, monitoringpb.AlertPolicy_Condition_EVALUATION_MISSING_DATA_INACTIVE))
	p.AlertStrategy = &monitoringpb.AlertPolicy_AlertStrategy{NotificationPrompts: []monitoringpb.AlertPolicy_AlertStrategy_NotificationPrompt{monitoringpb.AlertPolicy_AlertStrategy_OPENED}}
	e.create(t, p)
	requests(e.srv, "api-1", t0, time.Second, 3, 10, 5, time.Millisecond)
	requests(e.srv, "api-1", t0.Add(3*time.Second), time.Second, 3, 10, 0, time.Millisecond)
	var states []string
	for s := 1; s <= 6; s++ {
		for _, r := range e.evaluate(t, time.Duration(s)*time.Second) {
			states = append(states, fmt.Sprintf("%ds %s", s, r.inc.State))
		}
	}
	if want := []string{"2s open"}; fmt.Sprint(states) != fmt.Sprint(want) {
		t.Errorf("notifications: got %v, want %v", states, want)
	}
	in := e.srv.Incidents()
	if len(in) != 1 || in[0].State != monitoringemu.IncidentClosed || !in[0].Ended.Equal(t0.Add(4*time.Second)) {
		t.Errorf("Incidents(): got %+v, want one closed at t0+4s", in)
	}
}

// TestTriggerAndCombiner checks trigger counts and percents, and the AND and
// AND_WITH_MATCHING_RESOURCE combiners, by the incidents open after three evaluations.
func TestTriggerAndCombiner(t *testing.T) {
	inactive := monitoringpb.AlertPolicy_Condition_EVALUATION_MISSING_DATA_INACTIVE
	ratio := func(threshold float64, cmp monitoringpb.ComparisonType, tr *monitoringpb.AlertPolicy_Condition_Trigger) *monitoringpb.AlertPolicy_Condition {
		c := ratioCondition(time.Second, threshold, time.Second, inactive)
		c.GetConditionThreshold().Comparison, c.GetConditionThreshold().Trigger = cmp, tr
		return c
	}
	gt, lt := monitoringpb.ComparisonType_COMPARISON_GT, monitoringpb.ComparisonType_COMPARISON_LT
	count := func(n int32) *monitoringpb.AlertPolicy_Condition_Trigger {
		return &monitoringpb.AlertPolicy_Condition_Trigger{Type: &monitoringpb.AlertPolicy_Condition_Trigger_Count{Count: n}}
	}
	percent := func(p float64) *monitoringpb.AlertPolicy_Condition_Trigger {
		return &monitoringpb.AlertPolicy_Condition_Trigger{Type: &monitoringpb.AlertPolicy_Condition_Trigger_Percent{Percent: p}}
	}
	tests := []struct {
		name     string
		combiner monitoringpb.AlertPolicy_ConditionCombinerType
		conds    []*monitoringpb.AlertPolicy_Condition
		failing  []string // revisions at 50% 5xx; api-a and api-b run, the others at 1%
		want     []string // open incidents: revision
	}{
		{"count 2, one failing", monitoringpb.AlertPolicy_OR, []*monitoringpb.AlertPolicy_Condition{ratio(0.05, gt, count(2))}, []string{"api-a"}, nil},
		{"count 2, two failing", monitoringpb.AlertPolicy_OR, []*monitoringpb.AlertPolicy_Condition{ratio(0.05, gt, count(2))}, []string{"api-a", "api-b"}, []string{"api-a", "api-b"}},
		{"50%, one of two failing", monitoringpb.AlertPolicy_OR, []*monitoringpb.AlertPolicy_Condition{ratio(0.05, gt, percent(50))}, []string{"api-a"}, []string{"api-a"}},
		{"60%, one of two failing", monitoringpb.AlertPolicy_OR, []*monitoringpb.AlertPolicy_Condition{ratio(0.05, gt, percent(60))}, []string{"api-a"}, nil},
		{"AND, one condition never met", monitoringpb.AlertPolicy_AND, []*monitoringpb.AlertPolicy_Condition{ratio(0.05, gt, nil), ratio(0.9, gt, nil)}, []string{"api-a"}, nil},
		{"AND, both met on different revisions", monitoringpb.AlertPolicy_AND, []*monitoringpb.AlertPolicy_Condition{ratio(0.4, gt, nil), ratio(0.02, lt, nil)}, []string{"api-a"}, []string{"api-a", "api-b"}},
		{"AND_WITH_MATCHING_RESOURCE, different revisions", monitoringpb.AlertPolicy_AND_WITH_MATCHING_RESOURCE, []*monitoringpb.AlertPolicy_Condition{ratio(0.4, gt, nil), ratio(0.02, lt, nil)}, []string{"api-a"}, nil},
		{"AND_WITH_MATCHING_RESOURCE, same revision", monitoringpb.AlertPolicy_AND_WITH_MATCHING_RESOURCE, []*monitoringpb.AlertPolicy_Condition{ratio(0.4, gt, nil), ratio(0.05, gt, nil)}, []string{"api-a"}, []string{"api-a", "api-a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newAlertEnv(t, monitoringemu.Options{Fast: true}, false)
			p := e.policyOf("p", tt.conds...)
			p.Combiner = tt.combiner
			e.create(t, p)
			for _, rev := range []string{"api-a", "api-b"} {
				if slices.Contains(tt.failing, rev) {
					requests(e.srv, rev, t0, time.Second, 3, 10, 5, time.Millisecond)
				} else {
					requests(e.srv, rev, t0, time.Second, 3, 100, 1, time.Millisecond)
				}
			}
			for s := 1; s <= 3; s++ {
				e.evaluate(t, time.Duration(s)*time.Second)
			}
			var got []string
			for _, in := range openIncidents(e.srv) {
				got = append(got, in.ResourceLabels["revision_name"])
			}
			slices.Sort(got)
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("open incidents: got %v, want %v", got, tt.want)
			}
		})
	}
}

// TestAlertLoopFastMode: without AlertsManual the server evaluates on its own every
// second of its clock; moving the clock ahead brings the notification.
func TestAlertLoopFastMode(t *testing.T) {
	e := newAlertEnv(t, monitoringemu.Options{Fast: true}, true)
	e.create(t, e.policyOf("api error rate", ratioCondition(time.Second, 0.05, time.Second, monitoringpb.AlertPolicy_Condition_EVALUATION_MISSING_DATA_INACTIVE)))
	requests(e.srv, "api-1", t0, time.Second, 5, 10, 5, time.Millisecond)
	e.clock.Set(t0.Add(5 * time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := e.waitPull(ctx, t)
	// The loop evaluates every second it passed: violating from 1s, open at 2s.
	if len(got) != 1 || got[0].inc.State != events.IncidentOpen || !got[0].inc.StartedAt.Equal(t0.Add(2*time.Second)) || got[0].inc.Revision() != "api-1" {
		t.Errorf("got %+v, want one open incident of api-1 started at t0+2s", got)
	}
}

// TestIncidentsKeptWithoutPublish: a server without Publish still opens incidents, and
// warns once that it does not deliver them.
func TestIncidentsKeptWithoutPublish(t *testing.T) {
	var logs syncBuffer
	clk := &clock{t: t0}
	srv, err := monitoringemu.New(monitoringemu.Options{Fast: true, Now: clk.Now, AlertsManual: true, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ctx := context.Background()
	nc, err := monitoring.NewNotificationChannelClient(ctx, srv.ClientOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ap, err := monitoring.NewAlertPolicyClient(ctx, srv.ClientOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	defer ap.Close()
	ch, err := nc.CreateNotificationChannel(ctx, &monitoringpb.CreateNotificationChannelRequest{Name: "projects/" + project,
		NotificationChannel: &monitoringpb.NotificationChannel{Type: "pubsub", Labels: map[string]string{"topic": alertTopic}}})
	if err != nil {
		t.Fatal(err)
	}
	p := (&alertEnv{channel: ch.GetName()}).policyOf("api error rate", ratioCondition(time.Second, 0.05, 0, 0))
	if _, err := ap.CreateAlertPolicy(ctx, &monitoringpb.CreateAlertPolicyRequest{Name: "projects/" + project, AlertPolicy: p}); err != nil {
		t.Fatal(err)
	}
	requests(srv, "api-1", t0, time.Second, 1, 10, 5, time.Millisecond)
	requests(srv, "api-2", t0.Add(time.Second), time.Second, 1, 10, 5, time.Millisecond)
	for s := 1; s <= 2; s++ {
		if err := srv.EvaluateAlerts(ctx, t0.Add(time.Duration(s)*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(openIncidents(srv)); n != 2 {
		t.Errorf("open incidents: got %d, want 2", n)
	}
	if n := strings.Count(logs.String(), "not delivered"); n != 1 {
		t.Errorf("warnings that notifications are not delivered: got %d, want 1\n%s", n, logs.String())
	}
}

// syncBuffer is a strings.Builder safe for the server's concurrent logging.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
