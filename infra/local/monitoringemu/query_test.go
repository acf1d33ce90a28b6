package monitoringemu_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/monitoring/apiv3/v2/monitoringpb"
	"google.golang.org/api/iterator"
	"google.golang.org/genproto/googleapis/api/metric"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ai-square/coalmine/infra/local/monitoringemu"
)

// loadFixtures reads testdata/monitoring-listtimeseries-requests.json (a copy of
// shared/fixtures/gcp/monitoring-listtimeseries-requests.json): the REST bodies the
// product sends.
func loadFixtures(t *testing.T) map[string]*monitoringpb.ListTimeSeriesRequest {
	t.Helper()
	b, err := os.ReadFile("testdata/monitoring-listtimeseries-requests.json")
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	out := map[string]*monitoringpb.ListTimeSeriesRequest{}
	for k, v := range raw {
		if strings.HasPrefix(k, "_") {
			continue
		}
		req := &monitoringpb.ListTimeSeriesRequest{}
		if err := protojson.Unmarshal(v, req); err != nil {
			t.Fatalf("fixture %s: %v", k, err)
		}
		out[k] = req
	}
	return out
}

func TestFixtureQueries(t *testing.T) {
	reqs := loadFixtures(t)
	if len(reqs) != 4 {
		t.Fatalf("got %d fixture requests, want 4", len(reqs))
	}
	e := newEnv(t, monitoringemu.Options{})
	start := t0 // the fixtures' window is 2026-11-26T10:00:00Z–10:30:00Z
	end := start.Add(30 * time.Minute)
	// Traffic on the canary (api-green) and the stable revision, and on another service
	// with the same revision name in another project (must not count).
	rec := feed(e, 7, 3000, start, 30*time.Minute, []string{"api-green", "api-blue"}, map[string]float64{"api-green": 0.05, "api-blue": 0.01})
	e.srv.RecordRequest(monitoringemu.Request{Project: "other", Location: location, Service: service, Revision: "api-green", Time: start.Add(time.Minute), Status: 503, Latency: time.Second})
	// Requests just outside the window.
	e.srv.RecordRequest(monitoringemu.Request{Project: project, Location: location, Service: service, Revision: "api-green", Time: end.Add(time.Second), Status: 503})
	e.srv.RecordRequest(monitoringemu.Request{Project: project, Location: location, Service: service, Revision: "api-green", Time: start.Add(-time.Second), Status: 503})
	// Connections: two databases sampled every minute, plus the sample at 10:00 exactly
	// (outside (start, end]).
	app := func(m int) int64 { return int64(10 + m%7) }
	other := func(m int) int64 { return int64(m % 3) }
	for m := 0; m <= 30; m++ {
		at := start.Add(time.Duration(m) * time.Minute)
		e.srv.RecordBackends(monitoringemu.Backends{Project: project, DatabaseID: "my-project:main-db", Region: location, Time: at, ByDatabase: map[string]int64{"app": app(m), "postgres": other(m)}})
		// A second sample 20 s later with more connections on app: ALIGN_MAX must see it.
		e.srv.RecordBackends(monitoringemu.Backends{Project: project, DatabaseID: "my-project:main-db", Region: location, Time: at.Add(20 * time.Second), ByDatabase: map[string]int64{"app": app(m) + 5, "postgres": other(m)}})
	}
	// Periods are (10:m, 10:m+1]: they hold the samples at m:20 and (m+1):00 (the one at
	// 10:00 is outside the interval).
	wantConn := map[time.Time]int64{}
	for m := range 30 {
		wantConn[start.Add(time.Duration(m+1)*time.Minute)] = max(app(m)+5, app(m+1)) + max(other(m), other(m+1))
	}
	e.clock.Set(end.Add(monitoringemu.RunDelayMax + time.Second))

	one := func(name string) *monitoringpb.TimeSeries {
		t.Helper()
		got := e.mustList(t, reqs[name])
		if len(got) != 1 {
			t.Fatalf("%s: got %d series, want 1", name, len(got))
		}
		return got[0]
	}
	all := one("errorRate_denominator_allRequests")
	errs := one("errorRate_numerator_5xx")
	if g, w := all.GetPoints()[0].GetValue().GetInt64Value(), rec.count["api-green"]["2xx"]+rec.count["api-green"]["5xx"]; g != w || len(all.GetPoints()) != 1 {
		t.Errorf("all requests: got %d (%d points), want %d in 1 point", g, len(all.GetPoints()), w)
	}
	if g, w := errs.GetPoints()[0].GetValue().GetInt64Value(), rec.count["api-green"]["5xx"]; g != w {
		t.Errorf("5xx requests: got %d, want %d", g, w)
	}
	if g := all.GetResource().GetLabels(); len(g) != 1 || g["revision_name"] != "api-green" {
		t.Errorf("grouped resource labels: got %v, want only revision_name", g)
	}
	p95 := one("p95LatencyMs")
	if g, w := p95.GetPoints()[0].GetValue().GetDoubleValue(), truePercentile(rec.latencies["api-green"], 95); !withinOneBucket(g, w) {
		t.Errorf("p95: got %.2f ms, true %.2f ms", g, w)
	}
	conn := one("cloudSqlConnections")
	if len(conn.GetPoints()) != 30 {
		t.Fatalf("connections: got %d points, want 30 (one per minute)", len(conn.GetPoints()))
	}
	for i, p := range conn.GetPoints() {
		at := p.GetInterval().GetEndTime().AsTime()
		if want := end.Add(-time.Duration(i) * time.Minute); !at.Equal(want) {
			t.Errorf("connections point %d: end %s, want %s (newest first)", i, at, want)
		}
		if p.GetInterval().GetStartTime() != nil && !p.GetInterval().GetStartTime().AsTime().Equal(at) {
			t.Errorf("connections point %d: GAUGE start %s, want none or the end time", i, p.GetInterval().GetStartTime().AsTime())
		}
		if g, w := p.GetValue().GetInt64Value(), wantConn[at]; g != w {
			t.Errorf("connections at %s: got %d, want %d (max per database, summed)", at.Format("15:04"), g, w)
		}
	}
}

// seedSQL writes num_backends samples: minute m of [0, n) has app=m+1, other=2m at
// m:00 and app=m+10 at m:30 (app only).
func seedSQL(e *env, n int) {
	for m := range n {
		at := t0.Add(time.Duration(m) * time.Minute)
		e.srv.RecordBackends(monitoringemu.Backends{Project: project, DatabaseID: "my-project:main-db", Region: location, Time: at, ByDatabase: map[string]int64{"app": int64(m + 1), "other": int64(2 * m)}})
		e.srv.RecordBackends(monitoringemu.Backends{Project: project, DatabaseID: "my-project:main-db", Region: location, Time: at.Add(30 * time.Second), ByDatabase: map[string]int64{"app": int64(m + 10)}})
	}
}

const sqlFilter = `metric.type = "cloudsql.googleapis.com/database/postgresql/num_backends" AND resource.type = "cloudsql_database" AND resource.labels.database_id = "my-project:main-db"`

// points renders a result as "labels: value@end …" for comparison.
func render(series []*monitoringpb.TimeSeries) string {
	var b strings.Builder
	for _, ts := range series {
		var keys []string
		for k, v := range ts.GetResource().GetLabels() {
			keys = append(keys, "r."+k+"="+v)
		}
		for k, v := range ts.GetMetric().GetLabels() {
			keys = append(keys, "m."+k+"="+v)
		}
		sort.Strings(keys)
		fmt.Fprintf(&b, "{%s}", strings.Join(keys, ","))
		for _, p := range ts.GetPoints() {
			var v string
			switch x := p.GetValue().GetValue().(type) {
			case *monitoringpb.TypedValue_Int64Value:
				v = fmt.Sprint(x.Int64Value)
			case *monitoringpb.TypedValue_DoubleValue:
				v = fmt.Sprintf("%.4g", x.DoubleValue)
			case *monitoringpb.TypedValue_DistributionValue:
				v = fmt.Sprintf("dist(n=%d,mean=%.4g)", x.DistributionValue.GetCount(), x.DistributionValue.GetMean())
			default:
				v = fmt.Sprint(p.GetValue())
			}
			fmt.Fprintf(&b, " %s@%s", v, p.GetInterval().GetEndTime().AsTime().Sub(t0))
		}
		b.WriteString("; ")
	}
	return b.String()
}

func TestAggregations(t *testing.T) {
	e := newEnv(t, monitoringemu.Options{})
	seedSQL(e, 3)
	// Requests: minute 0: api-1 3×200 (10 ms), 1×503 (100 ms); minute 1: api-1 6×200
	// (20 ms); api-2 2×500 in minute 0.
	rq := func(rev string, at time.Duration, code int, lat time.Duration, n int) {
		for range n {
			e.srv.RecordRequest(monitoringemu.Request{Project: project, Location: location, Service: service, Revision: rev, Time: t0.Add(at), Status: code, Latency: lat})
		}
	}
	rq("api-1", 10*time.Second, 200, 10*time.Millisecond, 3)
	rq("api-1", 50*time.Second, 503, 100*time.Millisecond, 1)
	rq("api-1", 70*time.Second, 200, 20*time.Millisecond, 6)
	rq("api-2", 5*time.Second, 500, 30*time.Millisecond, 2)
	e.clock.Set(t0.Add(time.Hour))
	end := t0.Add(3 * time.Minute)
	min := time.Minute
	R := monitoringpb.Aggregation_REDUCE_NONE
	rev1 := countFilter + ` AND resource.labels.revision_name = "api-1"`
	tests := []struct {
		name  string
		req   *monitoringpb.ListTimeSeriesRequest
		want  string
		kind  metric.MetricDescriptor_MetricKind
		vtype metric.MetricDescriptor_ValueType
	}{
		{
			name: "raw points newest first",
			req:  window(project, rev1, t0, end, 0, monitoringpb.Aggregation_ALIGN_NONE, R),
			want: "{m.response_code=200,m.response_code_class=2xx,r.configuration_name=api,r.location=europe-west1,r.project_id=my-project,r.revision_name=api-1,r.service_name=api} 6@2m0s 3@1m0s; " +
				"{m.response_code=503,m.response_code_class=5xx,r.configuration_name=api,r.location=europe-west1,r.project_id=my-project,r.revision_name=api-1,r.service_name=api} 1@1m0s; ",
			kind: metric.MetricDescriptor_DELTA, vtype: metric.MetricDescriptor_INT64,
		},
		{
			name: "ALIGN_DELTA per minute, REDUCE_SUM by revision",
			req:  window(project, countFilter, t0, end, min, monitoringpb.Aggregation_ALIGN_DELTA, monitoringpb.Aggregation_REDUCE_SUM, "resource.label.revision_name"),
			want: "{r.revision_name=api-1} 6@2m0s 4@1m0s; {r.revision_name=api-2} 2@1m0s; ",
			kind: metric.MetricDescriptor_DELTA, vtype: metric.MetricDescriptor_INT64,
		},
		{
			name: "ALIGN_RATE per second",
			req:  window(project, rev1+` AND metric.labels.response_code = "200"`, t0, end, min, monitoringpb.Aggregation_ALIGN_RATE, R),
			want: "{m.response_code=200,m.response_code_class=2xx,r.configuration_name=api,r.location=europe-west1,r.project_id=my-project,r.revision_name=api-1,r.service_name=api} 0.1@2m0s 0.05@1m0s; ",
			kind: metric.MetricDescriptor_GAUGE, vtype: metric.MetricDescriptor_DOUBLE,
		},
		{
			name: "ALIGN_RATE + REDUCE_SUM over everything",
			req:  window(project, countFilter, t0, end, 3*min, monitoringpb.Aggregation_ALIGN_RATE, monitoringpb.Aggregation_REDUCE_SUM),
			want: "{} 0.06667@3m0s; ",
			kind: metric.MetricDescriptor_GAUGE, vtype: metric.MetricDescriptor_DOUBLE,
		},
		{
			name: "ALIGN_SUM keeps INT64",
			req:  window(project, countFilter, t0, end, 3*min, monitoringpb.Aggregation_ALIGN_SUM, monitoringpb.Aggregation_REDUCE_SUM, "metric.labels.response_code_class"),
			want: "{m.response_code_class=2xx} 9@3m0s; {m.response_code_class=5xx} 3@3m0s; ",
			kind: metric.MetricDescriptor_DELTA, vtype: metric.MetricDescriptor_INT64,
		},
		{
			name: "ALIGN_DELTA on a distribution stays a distribution, REDUCE_SUM merges",
			req:  window(project, latencyFilter, t0, end, 3*min, monitoringpb.Aggregation_ALIGN_DELTA, monitoringpb.Aggregation_REDUCE_SUM, "resource.labels.revision_name"),
			want: "{r.revision_name=api-1} dist(n=10,mean=25)@3m0s; {r.revision_name=api-2} dist(n=2,mean=30)@3m0s; ",
			kind: metric.MetricDescriptor_DELTA, vtype: metric.MetricDescriptor_DISTRIBUTION,
		},
		{
			name: "ALIGN_MEAN on a distribution is its mean",
			req:  window(project, latencyFilter+` AND resource.labels.revision_name = "api-1"`, t0, end, 3*min, monitoringpb.Aggregation_ALIGN_MEAN, monitoringpb.Aggregation_REDUCE_MEAN),
			want: "{} 58.33@3m0s; ", // mean of the per-series means: 200s (3×10+6×20)/9, 503s 100
			kind: metric.MetricDescriptor_GAUGE, vtype: metric.MetricDescriptor_DOUBLE,
		},
		{
			name: "ALIGN_COUNT counts points",
			req:  window(project, rev1, t0, end, 3*min, monitoringpb.Aggregation_ALIGN_COUNT, monitoringpb.Aggregation_REDUCE_SUM),
			want: "{} 3@3m0s; ",
			kind: metric.MetricDescriptor_DELTA, vtype: metric.MetricDescriptor_INT64,
		},
		{
			name: "REDUCE_COUNT counts series",
			req:  window(project, countFilter, t0, end, 3*min, monitoringpb.Aggregation_ALIGN_DELTA, monitoringpb.Aggregation_REDUCE_COUNT),
			want: "{} 3@3m0s; ",
			kind: metric.MetricDescriptor_DELTA, vtype: metric.MetricDescriptor_INT64,
		},
		{
			name: "REDUCE_MAX and REDUCE_MIN",
			req:  window(project, countFilter, t0, end, 3*min, monitoringpb.Aggregation_ALIGN_DELTA, monitoringpb.Aggregation_REDUCE_MAX),
			want: "{} 9@3m0s; ",
			kind: metric.MetricDescriptor_DELTA, vtype: metric.MetricDescriptor_INT64,
		},
		{
			name: "REDUCE_MIN",
			req:  window(project, countFilter, t0, end, 3*min, monitoringpb.Aggregation_ALIGN_DELTA, monitoringpb.Aggregation_REDUCE_MIN),
			want: "{} 1@3m0s; ",
			kind: metric.MetricDescriptor_DELTA, vtype: metric.MetricDescriptor_INT64,
		},
		{
			name: "REDUCE_PERCENTILE_50 over numbers",
			req:  window(project, countFilter, t0, end, 3*min, monitoringpb.Aggregation_ALIGN_DELTA, monitoringpb.Aggregation_REDUCE_PERCENTILE_50),
			want: "{} 2@3m0s; ", // values 9, 1, 2
			kind: metric.MetricDescriptor_GAUGE, vtype: metric.MetricDescriptor_DOUBLE,
		},
		{
			name: "num_backends raw, one series per database, newest first",
			req:  window(project, sqlFilter+` AND metric.labels.database = "other"`, t0.Add(-time.Second), end, 0, monitoringpb.Aggregation_ALIGN_NONE, R),
			want: "{m.database=other,r.database_id=my-project:main-db,r.project_id=my-project,r.region=europe-west1} 4@2m0s 2@1m0s 0@0s; ",
			kind: metric.MetricDescriptor_GAUGE, vtype: metric.MetricDescriptor_INT64,
		},
		{
			name: "num_backends ALIGN_MAX per minute",
			req:  window(project, sqlFilter+` AND metric.labels.database = "app"`, t0, end, min, monitoringpb.Aggregation_ALIGN_MAX, R),
			// (0:00, 1:00] holds 0:30 (10) and 1:00 (2): max 10; (1:00, 2:00]: 11, 3; (2:00, 3:00]: 12.
			want: "{m.database=app,r.database_id=my-project:main-db,r.project_id=my-project,r.region=europe-west1} 12@3m0s 11@2m0s 10@1m0s; ",
			kind: metric.MetricDescriptor_GAUGE, vtype: metric.MetricDescriptor_INT64,
		},
		{
			name: "num_backends ALIGN_NEXT_OLDER per minute",
			req:  window(project, sqlFilter+` AND metric.labels.database = "app"`, t0, end, min, monitoringpb.Aggregation_ALIGN_NEXT_OLDER, R),
			// The newest sample at or before each period's end: 2:30 (12), 2:00 (3), 1:00 (2).
			want: "{m.database=app,r.database_id=my-project:main-db,r.project_id=my-project,r.region=europe-west1} 12@3m0s 3@2m0s 2@1m0s; ",
			kind: metric.MetricDescriptor_GAUGE, vtype: metric.MetricDescriptor_INT64,
		},
		{
			name: "num_backends ALIGN_MIN",
			req:  window(project, sqlFilter+` AND metric.labels.database = "app"`, t0, end, min, monitoringpb.Aggregation_ALIGN_MIN, R),
			want: "{m.database=app,r.database_id=my-project:main-db,r.project_id=my-project,r.region=europe-west1} 12@3m0s 3@2m0s 2@1m0s; ",
			kind: metric.MetricDescriptor_GAUGE, vtype: metric.MetricDescriptor_INT64,
		},
		{
			name: "num_backends ALIGN_MAX + REDUCE_SUM across databases",
			req:  window(project, sqlFilter, t0, end, min, monitoringpb.Aggregation_ALIGN_MAX, monitoringpb.Aggregation_REDUCE_SUM, "resource.labels.database_id"),
			// app 12/11/10 + other 4 (2:00 in (1:00,2:00]… ) — other: (0,1]: 2, (1,2]: 4, (2,3]: none.
			want: "{r.database_id=my-project:main-db} 12@3m0s 15@2m0s 12@1m0s; ",
			kind: metric.MetricDescriptor_GAUGE, vtype: metric.MetricDescriptor_INT64,
		},
		{
			name: "num_backends ALIGN_MEAN + REDUCE_MEAN",
			req:  window(project, sqlFilter+` AND metric.labels.database = "app"`, t0, end, min, monitoringpb.Aggregation_ALIGN_MEAN, monitoringpb.Aggregation_REDUCE_MEAN),
			want: "{} 12@3m0s 7@2m0s 6@1m0s; ",
			kind: metric.MetricDescriptor_GAUGE, vtype: metric.MetricDescriptor_DOUBLE,
		},
		{
			name: "num_backends point query with ALIGN_NEXT_OLDER",
			req: &monitoringpb.ListTimeSeriesRequest{
				Name: "projects/" + project, Filter: sqlFilter + ` AND metric.labels.database = "app"`,
				Interval:    &monitoringpb.TimeInterval{EndTime: timestamppb.New(t0.Add(165 * time.Second))},
				Aggregation: &monitoringpb.Aggregation{AlignmentPeriod: durationpb.New(min), PerSeriesAligner: monitoringpb.Aggregation_ALIGN_NEXT_OLDER},
			},
			// One period ending at the end time: (1:45, 2:45] → the 2:30 sample.
			want: "{m.database=app,r.database_id=my-project:main-db,r.project_id=my-project,r.region=europe-west1} 12@2m45s; ",
			kind: metric.MetricDescriptor_GAUGE, vtype: metric.MetricDescriptor_INT64,
		},
		{
			name: "periods are anchored at the end time",
			req:  window(project, rev1+` AND metric.labels.response_code = "200"`, t0, t0.Add(150*time.Second), min, monitoringpb.Aggregation_ALIGN_DELTA, R),
			// (1:30, 2:30] holds the 2:00 point (6), (0:30, 1:30] the 1:00 point (3).
			want: "{m.response_code=200,m.response_code_class=2xx,r.configuration_name=api,r.location=europe-west1,r.project_id=my-project,r.revision_name=api-1,r.service_name=api} 6@2m30s 3@1m30s; ",
			kind: metric.MetricDescriptor_DELTA, vtype: metric.MetricDescriptor_INT64,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := e.mustList(t, tt.req)
			if g := render(got); g != tt.want {
				t.Errorf("got  %s\nwant %s", g, tt.want)
			}
			for _, ts := range got {
				if ts.GetMetricKind() != tt.kind || ts.GetValueType() != tt.vtype {
					t.Errorf("series kind/type: got %v %v, want %v %v", ts.GetMetricKind(), ts.GetValueType(), tt.kind, tt.vtype)
				}
				for _, p := range ts.GetPoints() {
					iv := p.GetInterval()
					if tt.kind == metric.MetricDescriptor_GAUGE && iv.GetStartTime() != nil && !iv.GetStartTime().AsTime().Equal(iv.GetEndTime().AsTime()) {
						t.Errorf("GAUGE point has start %s != end %s", iv.GetStartTime().AsTime(), iv.GetEndTime().AsTime())
					}
					if tt.kind == metric.MetricDescriptor_DELTA && !iv.GetStartTime().AsTime().Before(iv.GetEndTime().AsTime()) {
						t.Errorf("DELTA point interval (%s, %s] is empty", iv.GetStartTime().AsTime(), iv.GetEndTime().AsTime())
					}
				}
			}
		})
	}
}

func TestFilters(t *testing.T) {
	e := newEnv(t, monitoringemu.Options{Fast: true})
	for _, r := range []struct {
		rev  string
		code int
	}{{"api-1", 200}, {"api-1", 404}, {"api-1", 503}, {"api-2", 200}, {"api-2", 500}} {
		e.srv.RecordRequest(monitoringemu.Request{Project: project, Location: location, Service: service, Revision: r.rev, Time: t0, Status: r.code, Latency: time.Millisecond})
	}
	e.srv.RecordRequest(monitoringemu.Request{Project: project, Location: location, Service: "web", Revision: "web-1", Time: t0, Status: 200})
	e.clock.Set(t0.Add(time.Minute))
	const base = `metric.type = "run.googleapis.com/request_count"`
	tests := []struct {
		name    string
		project string
		filter  string
		want    []string // revision/code of the series
	}{
		{"metric type only", project, base, []string{"api-1/200", "api-1/404", "api-1/503", "api-2/200", "api-2/500", "web-1/200"}},
		{"resource label", project, base + ` AND resource.labels.service_name = "api" AND resource.labels.revision_name = "api-1"`, []string{"api-1/200", "api-1/404", "api-1/503"}},
		{"singular label forms", project, base + ` AND resource.label.revision_name = "api-2" AND metric.label.response_code_class = "5xx"`, []string{"api-2/500"}},
		{"one_of", project, base + ` AND metric.labels.response_code_class = one_of("4xx", "5xx")`, []string{"api-1/404", "api-1/503", "api-2/500"}},
		{"not equal", project, base + ` AND metric.labels.response_code_class != "2xx" AND resource.labels.revision_name != "api-2"`, []string{"api-1/404", "api-1/503"}},
		{"no spaces, single quotes", project, `metric.type="run.googleapis.com/request_count" AND resource.type='cloud_run_revision' AND metric.labels.response_code="404"`, []string{"api-1/404"}},
		{"implicit AND and project", project, `metric.type="run.googleapis.com/request_count" resource.type="cloud_run_revision" project="my-project" metric.label.response_code = "503"`, []string{"api-1/503"}},
		{"other project clause", project, base + ` AND project = "other"`, nil},
		{"route is empty", project, base + ` AND metric.labels.route = "" AND resource.labels.service_name = "web"`, []string{"web-1/200"}},
		{"other resource type", project, base + ` AND resource.type = "cloudsql_database"`, nil},
		{"unknown project", "nobody", base, nil},
		{"no such label value", project, base + ` AND resource.labels.revision_name = "api-9"`, nil},
		{"unknown metric type", project, `metric.type = "custom.googleapis.com/nothing"`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := e.mustList(t, window(tt.project, tt.filter, t0, t0.Add(time.Minute), 0, monitoringpb.Aggregation_ALIGN_NONE, monitoringpb.Aggregation_REDUCE_NONE))
			var ids []string
			for _, ts := range got {
				ids = append(ids, ts.GetResource().GetLabels()["revision_name"]+"/"+ts.GetMetric().GetLabels()["response_code"])
			}
			if fmt.Sprint(ids) != fmt.Sprint(tt.want) {
				t.Errorf("got %v, want %v", ids, tt.want)
			}
		})
	}
}

func TestHeadersAndPaging(t *testing.T) {
	e := newEnv(t, monitoringemu.Options{Fast: true})
	const n = 25
	for i := range n {
		e.srv.RecordRequest(monitoringemu.Request{Project: project, Location: location, Service: service, Revision: fmt.Sprintf("api-%02d", i), Time: t0, Status: 200})
		e.srv.RecordRequest(monitoringemu.Request{Project: project, Location: location, Service: service, Revision: fmt.Sprintf("api-%02d", i), Time: t0.Add(time.Second), Status: 200})
	}
	e.clock.Set(t0.Add(time.Minute))
	req := window(project, countFilter, t0, t0.Add(time.Minute), 0, monitoringpb.Aggregation_ALIGN_NONE, monitoringpb.Aggregation_REDUCE_NONE)
	req.PageSize = 7

	// Page by page through the raw RPC (the client hides pages).
	var revs []string
	var pages int
	for tok := ""; ; {
		req.PageToken = tok
		it := e.c.ListTimeSeries(t.Context(), req)
		ts, err := it.Next()
		if err != nil {
			t.Fatalf("page %d: %v", pages, err)
		}
		page := it.Response.(*monitoringpb.ListTimeSeriesResponse)
		if len(page.GetTimeSeries()) > 7 {
			t.Fatalf("page %d: %d series, want at most 7", pages, len(page.GetTimeSeries()))
		}
		_ = ts
		for _, s := range page.GetTimeSeries() {
			revs = append(revs, s.GetResource().GetLabels()["revision_name"])
			if len(s.GetPoints()) != 2 || !s.GetPoints()[0].GetInterval().GetEndTime().AsTime().After(s.GetPoints()[1].GetInterval().GetEndTime().AsTime()) {
				t.Errorf("%s: want 2 points newest first, got %v", revs[len(revs)-1], s.GetPoints())
			}
		}
		pages++
		if tok = page.GetNextPageToken(); tok == "" {
			break
		}
	}
	if pages != 4 || len(revs) != n || !sort.StringsAreSorted(revs) {
		t.Errorf("paging: %d pages, %d series (sorted: %v), want 4 pages of 25 sorted series", pages, len(revs), sort.StringsAreSorted(revs))
	}
	// The iterator follows the pages too.
	req.PageToken = ""
	if all := e.mustList(t, req); len(all) != n {
		t.Errorf("iterator over pages: got %d series, want %d", len(all), n)
	}

	req.PageSize = 0
	req.View = monitoringpb.ListTimeSeriesRequest_HEADERS
	hs := e.mustList(t, req)
	if len(hs) != n {
		t.Fatalf("HEADERS: got %d series, want %d", len(hs), n)
	}
	for _, h := range hs {
		if len(h.GetPoints()) != 0 || h.GetMetric().GetType() != monitoringemu.MetricRequestCount || h.GetResource().GetLabels()["revision_name"] == "" {
			t.Errorf("HEADERS series: got %v, want labels without points", h)
		}
	}
}

func TestNoDataEndsAtOnce(t *testing.T) {
	e := newEnv(t, monitoringemu.Options{})
	it := e.c.ListTimeSeries(t.Context(), window(project, countFilter, t0, t0.Add(30*time.Minute), 30*time.Minute, monitoringpb.Aggregation_ALIGN_DELTA, monitoringpb.Aggregation_REDUCE_SUM, "resource.labels.revision_name"))
	if ts, err := it.Next(); !errors.Is(err, iterator.Done) {
		t.Errorf("got %v, %v; want iterator.Done", ts, err)
	}
}

// TestLongIntervalFineAlignment checks that cost follows the data, not the number of
// alignment periods: 25 hours at 1 s in fast mode is 90,000 periods.
func TestLongIntervalFineAlignment(t *testing.T) {
	e := newEnv(t, monitoringemu.Options{Fast: true})
	end := t0.Add(25 * time.Hour)
	for _, at := range []time.Time{t0.Add(time.Second), end.Add(-time.Second)} {
		e.srv.RecordRequest(monitoringemu.Request{Project: project, Location: location, Service: service, Revision: "api-1", Time: at, Status: 200})
	}
	e.clock.Set(end)
	begin := time.Now()
	got := e.mustList(t, window(project, countFilter, t0, end, time.Second, monitoringpb.Aggregation_ALIGN_DELTA, monitoringpb.Aggregation_REDUCE_SUM))
	if g, w := render(got), "{} 1@25h0m0s 1@2s; "; g != w {
		t.Errorf("got %s, want %s", g, w)
	}
	if d := time.Since(begin); d > 2*time.Second {
		t.Errorf("query took %s", d)
	}
}
