package monitoringemu

import (
	"fmt"
	"math"
	"slices"
	"time"

	"cloud.google.com/go/monitoring/apiv3/v2/monitoringpb"
	"google.golang.org/genproto/googleapis/api/metric"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Limits of alert policy conditions.
const (
	// MaxConditions is the most conditions a policy may have (Google's limit).
	MaxConditions = 6
	// MaxAlertAlignment is the longest alignment period of an alert condition.
	MaxAlertAlignment = 25 * time.Hour
	// maxFilterLength is the longest filter or denominator filter, in characters.
	maxFilterLength = 2048
)

// condition is a validated conditionThreshold, ready to be evaluated.
type condition struct {
	pb       *monitoringpb.AlertPolicy_Condition // as stored, with its name
	num, den *timeSeriesQuery                    // den is nil without a denominator filter
	// numDisplay is the display name of the numerator's metric ("Request Count"), or its
	// type when the server has no descriptor for it.
	numDisplay string
	period     time.Duration // alignment period
	// delay is the largest ingestion delay of the metrics read: an evaluation at t reads
	// the alignment period ending at t-delay, whose data is then all visible.
	delay     time.Duration
	cmp       monitoringpb.ComparisonType
	threshold float64
	duration  time.Duration
	count     int     // trigger count (0 when percent is used)
	percent   float64 // trigger percent
	missing   monitoringpb.AlertPolicy_Condition_EvaluationMissingData
}

// conditionTypeName names the condition type set in c, as its proto field.
func conditionTypeName(c *monitoringpb.AlertPolicy_Condition) string {
	switch c.GetCondition().(type) {
	case *monitoringpb.AlertPolicy_Condition_ConditionThreshold:
		return "condition_threshold"
	case *monitoringpb.AlertPolicy_Condition_ConditionAbsent:
		return "condition_absent"
	case *monitoringpb.AlertPolicy_Condition_ConditionMatchedLog:
		return "condition_matched_log"
	case *monitoringpb.AlertPolicy_Condition_ConditionMonitoringQueryLanguage:
		return "condition_monitoring_query_language"
	case *monitoringpb.AlertPolicy_Condition_ConditionPrometheusQueryLanguage:
		return "condition_prometheus_query_language"
	case *monitoringpb.AlertPolicy_Condition_ConditionSql:
		return "condition_sql"
	}
	return ""
}

// durationUnit is the granularity of condition durations: Google's minute, or a second in
// fast mode.
func (s *Server) durationUnit() time.Duration {
	if s.opts.Fast {
		return time.Second
	}
	return time.Minute
}

// ingestDelay is the ingestion delay of a metric type's points: the built-in metrics'
// (their maximum), none for custom and workload metrics.
func (s *Server) ingestDelay(metricType string) time.Duration {
	if isBuiltin(metricType) {
		return s.builtinDelay(metricType)
	}
	return 0
}

// compileCondition validates condition i of a policy in project and compiles it. Errors
// are INVALID_ARGUMENT naming conditions[i] and the bad part.
func (s *Server) compileCondition(project string, i int, c *monitoringpb.AlertPolicy_Condition) (*condition, error) {
	path := fmt.Sprintf("conditions[%d]", i)
	if c == nil {
		return nil, invalid("%s: a condition is required", path)
	}
	if n := len([]rune(c.GetDisplayName())); n > 512 {
		return nil, invalid("%s.display_name: %d characters, at most 512", path, n)
	}
	mt := c.GetConditionThreshold()
	if mt == nil {
		if name := conditionTypeName(c); name != "" {
			return nil, invalid("%s.%s is not supported by this emulator (only condition_threshold)", path, name)
		}
		return nil, invalid("%s: a condition type is required (this emulator serves condition_threshold)", path)
	}
	path += ".condition_threshold"
	if mt.GetForecastOptions() != nil {
		return nil, invalid("%s.forecast_options is not supported by this emulator", path)
	}
	out := &condition{pb: c, cmp: mt.GetComparison(), threshold: mt.GetThresholdValue(), missing: mt.GetEvaluationMissingData()}

	// Numerator: the same parser and rules as ListTimeSeries.
	if mt.GetFilter() == "" {
		return nil, invalid("%s.filter is required", path)
	}
	num, numType, err := s.compileSeries(project, path, "filter", "aggregations", mt.GetFilter(), mt.GetAggregations())
	if err != nil {
		return nil, err
	}
	if !slices.ContainsFunc(num.clauses, func(c clause) bool { return c.kind == fieldResourceType && !c.negate }) {
		return nil, invalid("%s.filter %q must name the resource type (resource.type = \"…\") as well as metric.type", path, mt.GetFilter())
	}
	out.num, out.period = num, num.period
	out.numDisplay = num.metricType
	if numType.desc != nil && numType.desc.GetDisplayName() != "" {
		out.numDisplay = numType.desc.GetDisplayName()
	}
	out.delay = s.ingestDelay(num.metricType)

	// Denominator.
	switch {
	case mt.GetDenominatorFilter() != "":
		den, _, err := s.compileSeries(project, path, "denominator_filter", "denominator_aggregations", mt.GetDenominatorFilter(), mt.GetDenominatorAggregations())
		if err != nil {
			return nil, err
		}
		if den.period != num.period {
			return nil, invalid("%s.denominator_aggregations[0].alignment_period %s differs from aggregations[0].alignment_period %s (a ratio needs the same alignment period)", path, den.period, num.period)
		}
		if (num.reducer != monitoringpb.Aggregation_REDUCE_NONE || den.reducer != monitoringpb.Aggregation_REDUCE_NONE) && !sameGroupBy(num.groupBy, den.groupBy) {
			return nil, invalid("%s.denominator_aggregations[0].group_by_fields %v differ from aggregations[0].group_by_fields %v (a ratio divides series with the same labels)", path,
				mt.GetDenominatorAggregations()[0].GetGroupByFields(), mt.GetAggregations()[0].GetGroupByFields())
		}
		out.den = den
		out.delay = max(out.delay, s.ingestDelay(den.metricType))
	case len(mt.GetDenominatorAggregations()) > 0:
		return nil, invalid("%s.denominator_aggregations are set without a denominator_filter", path)
	}

	switch out.cmp {
	case monitoringpb.ComparisonType_COMPARISON_GT, monitoringpb.ComparisonType_COMPARISON_LT:
	default:
		return nil, invalid("%s.comparison %v is not supported (only COMPARISON_GT and COMPARISON_LT are)", path, out.cmp)
	}
	if math.IsNaN(out.threshold) || math.IsInf(out.threshold, 0) {
		return nil, invalid("%s.threshold_value %v is not a finite number", path, out.threshold)
	}

	unit := s.durationUnit()
	if d := mt.GetDuration(); d != nil {
		if err := d.CheckValid(); err != nil {
			return nil, invalid("%s.duration: %v", path, err)
		}
		out.duration = d.AsDuration()
	}
	switch {
	case out.duration < 0:
		return nil, invalid("%s.duration %s is negative", path, out.duration)
	case out.duration%unit != 0:
		return nil, invalid("%s.duration %s is not a multiple of %s", path, out.duration, unit)
	}

	switch tr := mt.GetTrigger().GetType().(type) {
	case nil:
		out.count = 1
	case *monitoringpb.AlertPolicy_Condition_Trigger_Count:
		if tr.Count <= 0 {
			return nil, invalid("%s.trigger.count %d must be positive", path, tr.Count)
		}
		out.count = int(tr.Count)
	case *monitoringpb.AlertPolicy_Condition_Trigger_Percent:
		if !(tr.Percent > 0 && tr.Percent <= 100) {
			return nil, invalid("%s.trigger.percent %v must be in (0, 100]", path, tr.Percent)
		}
		out.percent = tr.Percent
	}

	switch out.missing {
	case monitoringpb.AlertPolicy_Condition_EVALUATION_MISSING_DATA_UNSPECIFIED:
	case monitoringpb.AlertPolicy_Condition_EVALUATION_MISSING_DATA_INACTIVE,
		monitoringpb.AlertPolicy_Condition_EVALUATION_MISSING_DATA_ACTIVE,
		monitoringpb.AlertPolicy_Condition_EVALUATION_MISSING_DATA_NO_OP:
		if out.duration < unit {
			return nil, invalid("%s.evaluation_missing_data %v needs a duration of at least %s", path, out.missing, unit)
		}
	default:
		return nil, invalid("%s.evaluation_missing_data %v is not a known value", path, out.missing)
	}
	return out, nil
}

// seriesType is what a numerator or denominator yields.
type seriesType struct {
	desc *metric.MetricDescriptor // nil for a custom metric never written
}

// compileSeries validates one side of a condition (filter and aggregations) like a
// ListTimeSeries request, and checks that it yields numbers.
func (s *Server) compileSeries(project, path, filterField, aggField, filter string, aggs []*monitoringpb.Aggregation) (*timeSeriesQuery, seriesType, error) {
	if n := len([]rune(filter)); n > maxFilterLength {
		return nil, seriesType{}, invalid("%s.%s: %d characters, at most %d", path, filterField, n, maxFilterLength)
	}
	switch len(aggs) {
	case 0:
		return nil, seriesType{}, invalid("%s.%s: one aggregation with a per_series_aligner and an alignment_period is required by this emulator", path, aggField)
	case 1:
	default:
		return nil, seriesType{}, invalid("%s.%s: %d aggregations, this emulator supports one (aligner and reducer together)", path, aggField, len(aggs))
	}
	agg := aggs[0]
	if agg.GetPerSeriesAligner() == monitoringpb.Aggregation_ALIGN_NONE {
		return nil, seriesType{}, invalid("%s.%s[0].per_series_aligner is required (an alert condition compares aligned values)", path, aggField)
	}
	epoch := timestamppb.New(time.Unix(0, 0))
	q, err := parseQuery(&monitoringpb.ListTimeSeriesRequest{
		Name:        "projects/" + project,
		Filter:      filter,
		Interval:    &monitoringpb.TimeInterval{EndTime: epoch},
		Aggregation: agg,
	}, s.minAlign)
	// The messages of ListTimeSeries name "filter" and "aggregation": say which side.
	side := path
	if filterField != "filter" {
		side += "." + filterField
	}
	if err != nil {
		return nil, seriesType{}, invalid("%s: %s", side, status.Convert(err).Message())
	}
	if q.period > MaxAlertAlignment {
		return nil, seriesType{}, invalid("%s.%s[0].alignment_period %s is above the maximum of %s for alerting", path, aggField, q.period, MaxAlertAlignment)
	}
	desc, err := s.descriptorOf(q.metricType)
	if err != nil {
		return nil, seriesType{}, invalid("%s: %s", side, status.Convert(err).Message())
	}
	if desc != nil {
		akind, atype, err := alignedType(q.aligner, desc.GetMetricKind(), desc.GetValueType())
		if err != nil {
			return nil, seriesType{}, invalid("%s.%s[0]: %s", path, aggField, status.Convert(err).Message())
		}
		_, rtype, err := reducedType(q.reducer, akind, atype)
		if err != nil {
			return nil, seriesType{}, invalid("%s.%s[0]: %s", path, aggField, status.Convert(err).Message())
		}
		if !isNumeric(rtype) {
			return nil, seriesType{}, invalid("%s.%s[0]: %v with %v yields %v values, which cannot be compared with a threshold", path, aggField, q.aligner, q.reducer, rtype)
		}
	}
	return q, seriesType{desc: desc}, nil
}

// sameGroupBy reports whether a and b group by the same fields, in any order.
func sameGroupBy(a, b []groupField) bool {
	if len(a) != len(b) {
		return false
	}
	for _, g := range a {
		if !slices.Contains(b, g) {
			return false
		}
	}
	return true
}

// window returns q with the interval (end-period, end].
func (q *timeSeriesQuery) window(end time.Time) *timeSeriesQuery {
	c := *q
	c.start, c.end = end.Add(-q.period), end
	return &c
}
