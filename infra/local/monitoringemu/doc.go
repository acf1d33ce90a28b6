// Package monitoringemu is a local Cloud Monitoring API: a gRPC server for
// google.monitoring.v3.MetricService, AlertPolicyService and NotificationChannelService
// that the official clients (cloud.google.com/go/monitoring/apiv3/v2) use unchanged, fed by
// real traffic, evaluating alert policies and publishing their incidents as Google does.
//
// The local Cloud Run emulator's front proxy calls RecordRequest for every request; the
// server aggregates them into Cloud Run's own metrics on the cloud_run_revision resource
// (run.googleapis.com/request_count, DELTA INT64, and run.googleapis.com/request_latencies,
// DELTA DISTRIBUTION in ms, labelled response_code and response_code_class), one point per
// series per sample period (60 s), interval (period start, period end]. RecordBackends
// (fed by SamplePostgres, e.g. through SampleEvery) writes Cloud SQL's
// cloudsql.googleapis.com/database/postgresql/num_backends (GAUGE INT64, cloudsql_database,
// label database). CreateTimeSeries accepts custom metrics and, so that tests can inject
// data, the built-in metrics above.
//
// # Timing
//
// By default the server keeps Google's timing, by its own clock (Options.Now): a point is
// invisible until its ingestion delay has passed after its end time — Cloud Run 120–180 s
// (a deterministic delay per series and period in that range, so the newest minute can
// be partial, as at Google), Cloud SQL 165 s ("not visible for up to 165 seconds") — and
// alignment periods below 60 s are INVALID_ARGUMENT. Fast mode (Options.Fast, reported
// by Fast and in the start-up log) drops the delays and uses 1 s sample and minimum
// alignment periods; no published figure may come from it.
//
// # ListTimeSeries
//
// Supported: name projects/P; a filter of clauses joined by AND (or juxtaposed, which
// Google also reads as AND) with exactly one metric.type = "…", and resource.type,
// project, resource.labels.KEY (or resource.label.KEY), metric.labels.KEY (or
// metric.label.KEY) compared with =, != or = one_of("a", "b") on quoted strings;
// interval with end_time (start_time optional: a point query); aligners ALIGN_NONE,
// ALIGN_DELTA, ALIGN_RATE, ALIGN_SUM, ALIGN_MEAN, ALIGN_MAX, ALIGN_MIN, ALIGN_COUNT,
// ALIGN_PERCENTILE_50/95/99, ALIGN_NEXT_OLDER, validated against the metric kind and
// value type as Google documents them; reducers REDUCE_NONE, REDUCE_SUM, REDUCE_MEAN,
// REDUCE_MAX, REDUCE_MIN, REDUCE_COUNT, REDUCE_PERCENTILE_50/95/99 with group_by_fields
// (resource.type, resource.labels.KEY, metric.labels.KEY; singular "label" too); views
// FULL and HEADERS; page_size and page_token. Anything else — OR, NOT, parentheses,
// other functions (starts_with, monitoring.regex.full_match…) or operators (>, :…),
// unquoted values, unknown fields, a second or missing
// metric.type, secondary_aggregation, order_by, other aligners and reducers — is
// INVALID_ARGUMENT naming the unsupported part, never a silently different answer. So is a
// Google metric type (SERVICE.googleapis.com/…) the server does not produce, so that a typo
// is not read as "no data"; a custom or workload metric never written has no series, as at
// Google.
//
// Alignment periods are anchored at the interval's end time and step back by the
// alignment period until they cover the start time; each aligned point covers one
// period (start = period start, end = period end for DELTA results; end only for GAUGE
// results). Points come newest first; series are sorted by resource type and labels,
// then metric labels. Reduced series keep only the grouped labels and the resource type.
//
// # Deliberate differences from Google
//
//   - The request_latencies bucket layout is not published for Cloud Run; the emulator
//     uses the exponential layout google/slo-generator's documentation shows for
//     Google's load-balancer latency distributions (64 finite buckets, growth factor √2,
//     scale 1 ms). bucket_counts are trimmed of trailing zeros, as
//     Google does; readers must treat missing buckets as zero (this package does).
//   - Cloud Run's route label ("Always empty.") is not emitted: a missing label reads as
//     "" in filters and group-by, so `metric.labels.route = ""` still matches.
//   - A raw point belongs to the alignment period that contains its end time (Google may
//     prorate a DELTA point straddling a boundary), only points whose end time is in
//     the query interval (start, end] are used, and periods without data have no point
//     (Google interpolates some aligners across gaps). ALIGN_NEXT_OLDER looks back
//     within the period only. A point query (no start_time) with an aligner covers one
//     alignment period ending at end_time; without an aligner it returns the points
//     ending exactly at end_time. ALIGN_DELTA/ALIGN_RATE on CUMULATIVE metrics add each
//     point's growth since the previous point of the same start time (a new start time
//     is a reset); CUMULATIVE distributions are not supported.
//   - Percentiles of distributions are read from the merged buckets: the bucket holding
//     the rank, interpolated linearly between its bounds (the underflow bucket of an
//     exponential layout starts at 0; the overflow bucket yields its lower bound).
//     Percentiles of numbers interpolate between the closest ranks. Distributions with
//     different bucket layouts are not re-bucketed: merging them is INVALID_ARGUMENT.
//   - CreateTimeSeries is atomic: one invalid series rejects the request (Google writes
//     the valid ones and reports the rest). Points written to the built-in metrics get
//     the metric's maximum ingestion delay; custom and workload points are visible at
//     once. Descriptors are shared by all projects; an auto-created custom descriptor
//     gains the labels of later writes.
//   - Data is kept 25 hours (Retention). Only the configured metric and resource
//     descriptors exist; CreateMetricDescriptor, DeleteMetricDescriptor and
//     CreateServiceTimeSeries are UNIMPLEMENTED. ListMetricDescriptors supports the
//     filters metric.type = "…" and metric.type = starts_with("…") and returns one page.
//   - Points are sorted per series; a late RecordRequest for a period already visible
//     changes that point (Cloud Run's points are final).
//   - Pages are slices of the series list, recomputed at each call by the server's
//     clock: a page token is only valid for the same request (else INVALID_ARGUMENT),
//     and newly visible series may shift later pages.
//
// # Alerting
//
// NotificationChannelService serves one channel type, "pubsub" (label topic =
// projects/P/topics/T; any other type, label or topic shape is INVALID_ARGUMENT): the
// descriptor list and get, and create (server-assigned name, enabled by default), get,
// list (filters type, display_name, labels.KEY, user_labels.KEY with = joined by AND;
// paging), update (update_mask or every mutable field) and delete (FAILED_PRECONDITION
// while a policy uses the channel, unless force, which removes it from those policies).
// The verification-code RPCs are UNIMPLEMENTED.
//
// AlertPolicyService serves create, get, list (filters display_name = "…" and
// user_labels.KEY = "…" joined by AND; paging) update and delete. Only condition_threshold
// is served; its filter and aggregation are read by the ListTimeSeries parser (same
// errors; the filter must also name resource.type), with exactly one aggregation holding a
// per_series_aligner (at least the server's minimum alignment, at most 25 h) that yields
// numbers; a denominator needs the same alignment period and group-by fields. Comparisons
// COMPARISON_GT and COMPARISON_LT; a duration in multiples of 60 s (whole seconds in fast
// mode); trigger count (default 1) or percent; evaluation_missing_data, which needs a
// duration of at least 60 s (1 s in fast mode); combiners OR, AND and
// AND_WITH_MATCHING_RESOURCE (unspecified only with one condition); notification channels
// of the policy's project that exist; user labels and documentation by Google's limits;
// notification_prompts [OPENED] or [OPENED, CLOSED]; auto_close. Anything else
// (forecasts, absence, log, MQL, PromQL and SQL conditions, rate limits, renotification)
// is INVALID_ARGUMENT naming it. An update with a mask changes only the named fields
// (display_name, documentation[.content|.mime_type|.subject|.links], user_labels[.KEY],
// conditions, combiner, enabled, notification_channels, alert_strategy, severity);
// without one it replaces the policy, keeping its name. Supplied conditions keep their
// names (and so their state), unnamed ones are added, the others deleted; the open
// incidents of a condition that changed or went away are closed as cancelled, with
// Google's observed_value "Incident cancelled because the alert policy condition was
// deleted or modified while incident was active.", and their closed notification is sent.
// Deleting a policy drops its open incidents without any notification.
//
// EvaluateAlerts evaluates every enabled policy as of a time; unless Options.AlertsManual
// a background loop runs it every 60 s of the server's clock (every second in fast mode).
// Per condition, the alignment period ending at the evaluation time minus the largest
// ingestion delay of its metrics (Cloud Run's 180 s with Google's timing, none in fast
// mode) is read with the data visible at the evaluation time, aligned per series, reduced
// by the group-by fields, and divided numerator by denominator for equal label sets (a
// series without numerator or denominator, or with a zero denominator, is missing data:
// a ratio with no 5xx at all is not 0). A value is compared with the threshold; missing
// data follows evaluation_missing_data (INACTIVE: not violating, ACTIVE: violating,
// NO_OP and unspecified: the series keeps its state); a series without data for the
// policy's auto_close stops failing. A series fails once it has violated at every
// evaluation for the duration (one evaluation that does not violate starts the duration
// again); the trigger (how many or what share of the series fail) and the combiner decide
// which failing series hold an incident. One incident is opened per such series, closed
// when it no longer fails, and each change is published as Google's notification JSON
// (schema 1.2: version "1.2", incident_id "0.…" the same when open and closed,
// started_at/ended_at in Unix seconds, ended_at null while open, state "open"/"closed",
// resource {type, labels: the grouped labels and project_id}, metric, policy_name (the
// display name), policy_user_labels, condition_name, condition (camelCase JSON with its
// name), threshold_value, observed_value with three decimals, summary and documentation
// in Google's wording, subject "[ALERT - Severity] …"/"[RESOLVED - Severity] …") to the
// topic of each enabled channel of the policy through Options.Publish — the closed one
// only if notification_prompts allow CLOSED. Incidents reports them.
//
// Deliberate differences in alerting: the evaluation lag (the ingestion delay) is this
// emulator's reading of how Google waits for complete data (its documentation only says
// alert decisions lag by the ingestion delay); Google's exact evaluation cadence is not
// documented. A closed notification for missing data says observed_value "No data" (its
// wording at Google is not known). scoping_project_number is derived from the project id.
// Documentation variables (${…}) are not expanded. Disabling a policy freezes its
// incidents and its conditions' state until it is enabled again. A notification that
// Publish fails to deliver is logged and reported by EvaluateAlerts, not retried.
//
// # Sources
//
// Metric kinds, labels and delays: docs.cloud.google.com/monitoring/api/metrics_gcp_p_z
// (run), …/sql/docs/postgres/admin-api/metrics, …/monitoring/api/resources (copied in
// the project's shared/reference/gcp/06-monitoring-metrics-cloudrun-cloudsql.md).
// Aligner and reducer validity, TimeInterval read/write rules, the 60 s minimum
// alignment: the comments of cloud.google.com/go/monitoring/apiv3/v2/monitoringpb
// (common.pb.go, metric_service.pb.go). Filter syntax, including one_of and the singular
// resource.label/metric.label forms: cloud.google.com/monitoring/api/v3/filters and
// public filters that use them. Alignment: the API reference only says "an aligned time
// series has a single data value at the end of each alignment_period"; anchoring the
// periods at the interval's end time is this emulator's reading (it makes a window
// with alignment_period = window one point covering exactly the window, which is how
// the product's queries use it), not a documented rule.
package monitoringemu
