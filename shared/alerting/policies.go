// Package alerting turns the alerts of coalmine's policy file into Cloud Monitoring alert
// policies and keeps them in place: Policies describes the alert policies of a service's
// managed alerts (those with errorRateAbove or latencyP95AboveMs), Ensure creates the
// Pub/Sub notification channel and creates or updates those policies with the official
// clients (cloud.google.com/go/monitoring/apiv3/v2), against Google or the local
// Monitoring server alike.
//
// Each policy watches every revision of the service separately (the series are grouped by
// the cloud_run_revision resource labels service_name and revision_name), so an incident
// names the failing revision, and its notification reaches coalmine's Alert function on
// the channel's topic with resource.labels service_name and revision_name and the policy's
// display name as policy_name.
package alerting

import (
	"fmt"
	"math"
	"strconv"
	"time"

	"cloud.google.com/go/monitoring/apiv3/v2/monitoringpb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/ai-square/coalmine/shared/policy"
)

// User labels of the policies coalmine manages.
const (
	// LabelService holds the name of the Cloud Run service a policy watches.
	LabelService = "coalmine-service"
	// LabelManagedBy is ManagedBy on every policy and channel coalmine made.
	LabelManagedBy = "managed-by"
	// ManagedBy is the value of LabelManagedBy.
	ManagedBy = "coalmine"
)

// Metric and resource types the conditions read.
const (
	metricRequestCount     = "run.googleapis.com/request_count"
	metricRequestLatencies = "run.googleapis.com/request_latencies"
	resourceRevision       = "cloud_run_revision"
)

// autoCloseMinutes is how many (scaled) minutes an incident without data stays open:
// Google's shortest auto_close, so that an incident of a policy whose missing data cannot
// be declared inactive (for: 0) does not stay open forever once the revision is silent.
const autoCloseMinutes = 30

// Timing scales the conditions: Google's (Alignment 60s, Minute = time.Minute) or the local
// fast mode's (e.g. Alignment 5s, Minute = time.Second, so "for: 1m" becomes 1s).
type Timing struct {
	// Alignment is the alignment period of the conditions: the window each evaluation
	// reads.
	Alignment time.Duration
	// Minute is what a minute of the policy file (an alert's for) becomes.
	Minute time.Duration
}

// GoogleTiming is Cloud Monitoring's timing: 60 s alignment periods, minutes as minutes.
func GoogleTiming() Timing { return Timing{Alignment: time.Minute, Minute: time.Minute} }

// FastTiming is the local cloud's fast mode: 5 s alignment periods, a minute of the
// policy file lasting a second. Only the local Monitoring server in fast mode accepts it.
func FastTiming() Timing { return Timing{Alignment: 5 * time.Second, Minute: time.Second} }

// scale converts a duration of the policy file (whole minutes) to t's minutes.
func (t Timing) scale(d time.Duration) time.Duration {
	// The remainder part in floating point: d%time.Minute * t.Minute overflows int64.
	return d/time.Minute*t.Minute + time.Duration(float64(d%time.Minute)*float64(t.Minute)/float64(time.Minute))
}

// Policies returns the alert policies for svc's managed alerts (policy.Alert.Managed), in
// file order, each to be created in svc.Project and notifying channel (a
// projects/P/notificationChannels/ID; none when empty). Each has displayName =
// Alert.Policy, user labels {coalmine-service: svc.Name, managed-by: coalmine}, a
// documentation naming the action and the channel, and one condition over every revision
// of the service, grouped by resource.label.service_name and resource.label.revision_name:
//
//   - errorRateAbove: the request_count of the service's revisions with
//     response_code_class="5xx" over all their request_count (ALIGN_DELTA + REDUCE_SUM)
//     COMPARISON_GT the fraction;
//   - latencyP95AboveMs: request_latencies, ALIGN_DELTA + REDUCE_PERCENTILE_95 (the p95 of
//     the revision's merged latency distribution) COMPARISON_GT the milliseconds;
//
// for the alert's For (scaled by t), with missing data inactive (no requests, or no 5xx
// at all, is no violation and closes the incident). Google only accepts a missing-data
// setting with a duration of at least a minute: for For = 0 it is left unset, and the
// policy's 30-minute auto_close closes an incident whose revision went silent.
func Policies(svc *policy.Service, channel string, t Timing) []*monitoringpb.AlertPolicy {
	var out []*monitoringpb.AlertPolicy
	for _, a := range svc.Alerts {
		if a.Managed() {
			out = append(out, alertPolicy(svc, a, channel, t))
		}
	}
	return out
}

// alertPolicy is the policy of one managed alert.
func alertPolicy(svc *policy.Service, a policy.Alert, channel string, t Timing) *monitoringpb.AlertPolicy {
	revisions := func(metricType string) string {
		return fmt.Sprintf("metric.type = %s AND resource.type = %s AND resource.labels.service_name = %s",
			strconv.Quote(metricType), strconv.Quote(resourceRevision), strconv.Quote(svc.Name))
	}
	groupBy := []string{"resource.label.service_name", "resource.label.revision_name"}
	aggregation := func(r monitoringpb.Aggregation_Reducer) []*monitoringpb.Aggregation {
		return []*monitoringpb.Aggregation{{
			AlignmentPeriod:    durationpb.New(t.Alignment),
			PerSeriesAligner:   monitoringpb.Aggregation_ALIGN_DELTA,
			CrossSeriesReducer: r,
			GroupByFields:      groupBy,
		}}
	}
	duration := t.scale(a.For.Duration)
	th := &monitoringpb.AlertPolicy_Condition_MetricThreshold{
		Comparison: monitoringpb.ComparisonType_COMPARISON_GT,
		Duration:   durationpb.New(duration),
		Trigger:    &monitoringpb.AlertPolicy_Condition_Trigger{Type: &monitoringpb.AlertPolicy_Condition_Trigger_Count{Count: 1}},
	}
	if duration >= t.Minute {
		th.EvaluationMissingData = monitoringpb.AlertPolicy_Condition_EVALUATION_MISSING_DATA_INACTIVE
	}
	var condition, watch string
	if a.ErrorRateAbove > 0 {
		requests := revisions(metricRequestCount)
		th.Filter = requests + ` AND metric.labels.response_code_class = "5xx"`
		th.Aggregations = aggregation(monitoringpb.Aggregation_REDUCE_SUM)
		th.DenominatorFilter = requests
		th.DenominatorAggregations = aggregation(monitoringpb.Aggregation_REDUCE_SUM)
		th.ThresholdValue = a.ErrorRateAbove
		pct := strconv.FormatFloat(math.Round(a.ErrorRateAbove*100*1e6)/1e6, 'f', -1, 64)
		condition = fmt.Sprintf("5xx ratio of a revision of %s > %s%% for %s", svc.Name, pct, forText(a.For.Duration))
		watch = fmt.Sprintf("more than %s%% of a revision's requests answered with 5xx", pct)
	} else {
		th.Filter = revisions(metricRequestLatencies)
		th.Aggregations = aggregation(monitoringpb.Aggregation_REDUCE_PERCENTILE_95)
		th.ThresholdValue = float64(a.LatencyP95AboveMs)
		condition = fmt.Sprintf("p95 latency of a revision of %s > %d ms for %s", svc.Name, a.LatencyP95AboveMs, forText(a.For.Duration))
		watch = fmt.Sprintf("a revision's 95th-percentile request latency above %d ms", a.LatencyP95AboveMs)
	}
	p := &monitoringpb.AlertPolicy{
		DisplayName: a.Policy,
		Documentation: &monitoringpb.AlertPolicy_Documentation{
			Content:  documentation(svc, a, channel, watch),
			MimeType: "text/markdown",
		},
		UserLabels: map[string]string{LabelService: svc.Name, LabelManagedBy: ManagedBy},
		Conditions: []*monitoringpb.AlertPolicy_Condition{{
			DisplayName: condition,
			Condition:   &monitoringpb.AlertPolicy_Condition_ConditionThreshold{ConditionThreshold: th},
		}},
		Combiner: monitoringpb.AlertPolicy_OR,
		Enabled:  wrapperspb.Bool(true),
		AlertStrategy: &monitoringpb.AlertPolicy_AlertStrategy{
			NotificationPrompts: []monitoringpb.AlertPolicy_AlertStrategy_NotificationPrompt{
				monitoringpb.AlertPolicy_AlertStrategy_OPENED, monitoringpb.AlertPolicy_AlertStrategy_CLOSED,
			},
			AutoClose: durationpb.New(autoCloseMinutes * t.Minute),
		},
		Severity: monitoringpb.AlertPolicy_WARNING,
	}
	if a.Action == policy.ActionRollback {
		p.Severity = monitoringpb.AlertPolicy_ERROR
	}
	if channel != "" {
		p.NotificationChannels = []string{channel}
	}
	return p
}

// documentation is the policy's documentation: what it watches, what coalmine does about
// an incident, where the notifications go, and that the policy file is its source.
func documentation(svc *policy.Service, a policy.Alert, channel, watch string) string {
	action := "pauses the rollout at its current stage for an operator to investigate"
	if a.Action == policy.ActionRollback {
		action = "rolls the release back to the stable revision"
	}
	to := "no notification channel"
	if channel != "" {
		to = "the Pub/Sub notification channel `" + channel + "`"
	}
	return fmt.Sprintf("Fires on %s, for %s, in the Cloud Run service `%s` (%s).\n\n"+
		"While a rollout of `%s` runs, an open incident of this policy makes coalmine act: it %s (action: %s). "+
		"Notifications go to %s.\n\n"+
		"Managed by coalmine from its policy file: change the alert there, not here; coalmine puts this policy back as the file describes it.",
		watch, forText(a.For.Duration), svc.Name, svc.Region, svc.Name, action, a.Action, to)
}

// forText writes an alert's For: "2m", "0s".
func forText(d time.Duration) string {
	if d%time.Minute == 0 && d > 0 {
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	}
	return d.String()
}
