package monitoringemu_test

import (
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/monitoring/apiv3/v2/monitoringpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ai-square/coalmine/infra/local/monitoringemu"
)

func TestListTimeSeriesInvalidArgument(t *testing.T) {
	e := newEnv(t, monitoringemu.Options{})
	// Data, so that a wrongly accepted query would return something.
	e.srv.RecordRequest(monitoringemu.Request{Project: project, Location: location, Service: service, Revision: "api-1", Time: t0, Status: 200})
	e.srv.RecordBackends(monitoringemu.Backends{Project: project, DatabaseID: "my-project:main", Region: location, Time: t0, ByDatabase: map[string]int64{"app": 1}})
	e.clock.Set(t0.Add(time.Hour))
	const cnt = `metric.type = "run.googleapis.com/request_count"`
	const lat = `metric.type = "run.googleapis.com/request_latencies"`
	const sql = `metric.type = "cloudsql.googleapis.com/database/postgresql/num_backends"`
	start, end := t0, t0.Add(30*time.Minute)
	A := func(filter string, period time.Duration, a monitoringpb.Aggregation_Aligner, r monitoringpb.Aggregation_Reducer, g ...string) *monitoringpb.ListTimeSeriesRequest {
		return window(project, filter, start, end, period, a, r, g...)
	}
	raw := func(filter string) *monitoringpb.ListTimeSeriesRequest {
		return A(filter, 0, monitoringpb.Aggregation_ALIGN_NONE, monitoringpb.Aggregation_REDUCE_NONE)
	}
	min := time.Minute
	tests := []struct {
		name string
		req  *monitoringpb.ListTimeSeriesRequest
		want string // in the message
	}{
		{"OR", raw(cnt + ` OR resource.type = "x"`), `"OR"`},
		{"a Google metric not served", raw(`metric.type = "run.googleapis.com/request_counts"`), `"run.googleapis.com/request_counts" is not served`},
		{"lowercase and", raw(cnt + ` and resource.type = "x"`), `"and"`},
		{"NOT", raw(cnt + ` AND NOT resource.type = "x"`), `"NOT"`},
		{"parentheses", raw(cnt + ` AND (resource.type = "x")`), "parentheses"},
		{"OR without spaces around", raw(cnt + ` AND resource.type = "x" OR`), `"OR"`},
		{"starts_with", raw(cnt + ` AND resource.labels.service_name = starts_with("a")`), "starts_with"},
		{"regex", raw(cnt + ` AND resource.labels.service_name = monitoring.regex.full_match("a.*")`), "monitoring.regex.full_match"},
		{"greater than", raw(cnt + ` AND metric.labels.response_code > "499"`), `">"`},
		{"has operator", raw(cnt + ` AND metric.labels.response_code : "5"`), `":"`},
		{"unknown field", raw(cnt + ` AND resource.name = "x"`), `"resource.name"`},
		{"metadata field", raw(cnt + ` AND metadata.user_labels.team = "a"`), `"metadata.user_labels.team"`},
		{"two metric types", raw(cnt + ` AND ` + lat), "more than one metric.type"},
		{"no metric type", raw(`resource.type = "cloud_run_revision"`), "metric.type"},
		{"empty filter", raw(``), "metric.type"},
		{"metric.type one_of", raw(`metric.type = one_of("a", "b")`), "one_of"},
		{"metric.type !=", raw(`metric.type != "a"`), "metric.type !="},
		{"one_of with !=", raw(cnt + ` AND metric.labels.response_code != one_of("200")`), "one_of"},
		{"unquoted value", raw(cnt + ` AND resource.type = cloud_run_revision`), "quoted"},
		{"unterminated string", raw(cnt + ` AND resource.type = "cloud`), "unterminated"},
		{"dangling AND", raw(cnt + ` AND`), "end of filter"},
		{"field without operator", raw(cnt + ` resource.type`), "expected = or !="},
		{"bad name", &monitoringpb.ListTimeSeriesRequest{Name: "my-project", Filter: cnt, Interval: &monitoringpb.TimeInterval{EndTime: timestamppb.New(end)}}, "projects/"},
		{"no end time", &monitoringpb.ListTimeSeriesRequest{Name: "projects/p", Filter: cnt, Interval: &monitoringpb.TimeInterval{StartTime: timestamppb.New(start)}}, "end_time"},
		{"start after end", window(project, cnt, end, start, 0, monitoringpb.Aggregation_ALIGN_NONE, monitoringpb.Aggregation_REDUCE_NONE), "start_time"},
		{"alignment below 60s", A(cnt, 59*time.Second, monitoringpb.Aggregation_ALIGN_DELTA, monitoringpb.Aggregation_REDUCE_NONE), "alignment_period"},
		{"aligner without period", A(cnt, 0, monitoringpb.Aggregation_ALIGN_DELTA, monitoringpb.Aggregation_REDUCE_NONE), "alignment_period"},
		{"reducer without aligner", A(cnt, min, monitoringpb.Aggregation_ALIGN_NONE, monitoringpb.Aggregation_REDUCE_SUM), "per_series_aligner"},
		{"ALIGN_RATE on GAUGE", A(sql, min, monitoringpb.Aggregation_ALIGN_RATE, monitoringpb.Aggregation_REDUCE_NONE), "ALIGN_RATE"},
		{"ALIGN_DELTA on GAUGE", A(sql, min, monitoringpb.Aggregation_ALIGN_DELTA, monitoringpb.Aggregation_REDUCE_NONE), "ALIGN_DELTA"},
		{"ALIGN_RATE on a distribution", A(lat, min, monitoringpb.Aggregation_ALIGN_RATE, monitoringpb.Aggregation_REDUCE_NONE), "ALIGN_RATE"},
		{"percentile of numbers", A(cnt, min, monitoringpb.Aggregation_ALIGN_PERCENTILE_95, monitoringpb.Aggregation_REDUCE_NONE), "ALIGN_PERCENTILE_95"},
		{"ALIGN_MAX on a distribution", A(lat, min, monitoringpb.Aggregation_ALIGN_MAX, monitoringpb.Aggregation_REDUCE_NONE), "ALIGN_MAX"},
		{"ALIGN_NEXT_OLDER on DELTA", A(cnt, min, monitoringpb.Aggregation_ALIGN_NEXT_OLDER, monitoringpb.Aggregation_REDUCE_NONE), "ALIGN_NEXT_OLDER"},
		{"REDUCE_MAX on distributions", A(lat, min, monitoringpb.Aggregation_ALIGN_DELTA, monitoringpb.Aggregation_REDUCE_MAX), "REDUCE_MAX"},
		{"unsupported aligner", A(sql, min, monitoringpb.Aggregation_ALIGN_INTERPOLATE, monitoringpb.Aggregation_REDUCE_NONE), "ALIGN_INTERPOLATE"},
		{"unsupported aligner stddev", A(sql, min, monitoringpb.Aggregation_ALIGN_STDDEV, monitoringpb.Aggregation_REDUCE_NONE), "ALIGN_STDDEV"},
		{"unsupported reducer", A(sql, min, monitoringpb.Aggregation_ALIGN_MAX, monitoringpb.Aggregation_REDUCE_STDDEV), "REDUCE_STDDEV"},
		{"bad group-by field", A(cnt, min, monitoringpb.Aggregation_ALIGN_DELTA, monitoringpb.Aggregation_REDUCE_SUM, "revision_name"), `"revision_name"`},
		{"group-by metadata", A(cnt, min, monitoringpb.Aggregation_ALIGN_DELTA, monitoringpb.Aggregation_REDUCE_SUM, "metadata.system_labels.zone"), "metadata.system_labels.zone"},
	}
	withSecondary := raw(cnt)
	withSecondary.SecondaryAggregation = &monitoringpb.Aggregation{AlignmentPeriod: durationpb.New(min), PerSeriesAligner: monitoringpb.Aggregation_ALIGN_DELTA}
	withOrder := raw(cnt)
	withOrder.OrderBy = "metric.labels.response_code"
	badToken := raw(cnt)
	badToken.PageToken = "not-a-token"
	otherToken := raw(cnt)
	otherToken.PageToken = pageTokenFor(t, e, cnt)
	tests = append(tests, []struct {
		name string
		req  *monitoringpb.ListTimeSeriesRequest
		want string
	}{
		{"secondary aggregation", withSecondary, "secondary_aggregation"},
		{"order_by", withOrder, "order_by"},
		{"bad page token", badToken, "page_token"},
		{"page token of another query", otherToken, "another query"},
	}...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := e.list(tt.req)
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("got %d series, error %v; want INVALID_ARGUMENT", len(got), err)
			}
			if msg := status.Convert(err).Message(); !strings.Contains(msg, tt.want) {
				t.Errorf("message %q does not name %q", msg, tt.want)
			}
		})
	}
}

// pageTokenFor returns a valid page token of a different query than filter alone
// (filter with page size 1 over two series).
func pageTokenFor(t *testing.T, e *env, filter string) string {
	t.Helper()
	e.srv.RecordRequest(monitoringemu.Request{Project: project, Location: location, Service: service, Revision: "api-1", Time: t0, Status: 503})
	req := window(project, filter+` AND resource.type = "cloud_run_revision"`, t0, t0.Add(30*time.Minute), 0, monitoringpb.Aggregation_ALIGN_NONE, monitoringpb.Aggregation_REDUCE_NONE)
	req.PageSize = 1
	it := e.c.ListTimeSeries(t.Context(), req)
	if _, err := it.Next(); err != nil {
		t.Fatalf("ListTimeSeries: %v", err)
	}
	tok := it.Response.(*monitoringpb.ListTimeSeriesResponse).GetNextPageToken()
	if tok == "" {
		t.Fatal("want a next page token")
	}
	return tok
}

func TestFastModeMinimumAlignment(t *testing.T) {
	tests := []struct {
		name   string
		opts   monitoringemu.Options
		period time.Duration
		ok     bool
	}{
		{"google 60s", monitoringemu.Options{}, time.Minute, true},
		{"google 30s", monitoringemu.Options{}, 30 * time.Second, false},
		{"fast 1s", monitoringemu.Options{Fast: true}, time.Second, true},
		{"fast 500ms", monitoringemu.Options{Fast: true}, 500 * time.Millisecond, false},
		{"override 10s", monitoringemu.Options{MinAlignment: 10 * time.Second}, 10 * time.Second, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.opts)
			_, err := e.list(window(project, countFilter, t0, t0.Add(time.Hour), tt.period, monitoringpb.Aggregation_ALIGN_DELTA, monitoringpb.Aggregation_REDUCE_NONE))
			if tt.ok && err != nil {
				t.Errorf("alignment %s: %v, want accepted", tt.period, err)
			}
			if !tt.ok && status.Code(err) != codes.InvalidArgument {
				t.Errorf("alignment %s: got %v, want INVALID_ARGUMENT", tt.period, err)
			}
		})
	}
}
