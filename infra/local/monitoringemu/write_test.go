package monitoringemu_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/monitoring/apiv3/v2/monitoringpb"
	"google.golang.org/api/iterator"
	"google.golang.org/genproto/googleapis/api/distribution"
	"google.golang.org/genproto/googleapis/api/metric"
	"google.golang.org/genproto/googleapis/api/monitoredres"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ai-square/coalmine/infra/local/monitoringemu"
)

// gaugeTS is a custom GAUGE series with one point at end.
func gaugeTS(typ string, labels map[string]string, end time.Time, v *monitoringpb.TypedValue) *monitoringpb.TimeSeries {
	return &monitoringpb.TimeSeries{
		Metric:   &metric.Metric{Type: typ, Labels: labels},
		Resource: &monitoredres.MonitoredResource{Type: "global", Labels: map[string]string{"project_id": project}},
		Points:   []*monitoringpb.Point{{Interval: &monitoringpb.TimeInterval{EndTime: timestamppb.New(end)}, Value: v}},
	}
}

func i64(v int64) *monitoringpb.TypedValue {
	return &monitoringpb.TypedValue{Value: &monitoringpb.TypedValue_Int64Value{Int64Value: v}}
}

func f64(v float64) *monitoringpb.TypedValue {
	return &monitoringpb.TypedValue{Value: &monitoringpb.TypedValue_DoubleValue{DoubleValue: v}}
}

func TestCreateTimeSeriesRoundTrip(t *testing.T) {
	e := newEnv(t, monitoringemu.Options{})
	e.clock.Set(t0.Add(10 * time.Minute))
	ctx := t.Context()
	const typ = "custom.googleapis.com/queue/depth"
	for i := range 3 {
		err := e.c.CreateTimeSeries(ctx, &monitoringpb.CreateTimeSeriesRequest{
			Name: "projects/" + project,
			TimeSeries: []*monitoringpb.TimeSeries{
				gaugeTS(typ, map[string]string{"queue": "a"}, t0.Add(time.Duration(i)*time.Minute), i64(int64(10*i))),
				gaugeTS(typ, map[string]string{"queue": "b"}, t0.Add(time.Duration(i)*time.Minute), i64(int64(i))),
			},
		})
		if err != nil {
			t.Fatalf("CreateTimeSeries %d: %v", i, err)
		}
	}
	// Custom metrics are visible at once.
	got := e.mustList(t, window(project, `metric.type = "`+typ+`" AND metric.labels.queue = "a"`, t0.Add(-time.Second), t0.Add(10*time.Minute), 0, monitoringpb.Aggregation_ALIGN_NONE, monitoringpb.Aggregation_REDUCE_NONE))
	if g, w := render(got), "{m.queue=a,r.project_id=my-project} 20@2m0s 10@1m0s 0@0s; "; g != w {
		t.Errorf("raw: got %s, want %s", g, w)
	}
	got = e.mustList(t, window(project, `metric.type = "`+typ+`"`, t0.Add(-time.Second), t0.Add(179*time.Second), 3*time.Minute, monitoringpb.Aggregation_ALIGN_MAX, monitoringpb.Aggregation_REDUCE_SUM))
	if g, w := render(got), "{} 22@2m59s; "; g != w {
		t.Errorf("ALIGN_MAX + REDUCE_SUM: got %s, want %s", g, w)
	}
	// The descriptor was created from the first write.
	d, err := e.c.GetMetricDescriptor(ctx, &monitoringpb.GetMetricDescriptorRequest{Name: "projects/" + project + "/metricDescriptors/" + typ})
	if err != nil {
		t.Fatalf("GetMetricDescriptor: %v", err)
	}
	if d.GetMetricKind() != metric.MetricDescriptor_GAUGE || d.GetValueType() != metric.MetricDescriptor_INT64 || len(d.GetLabels()) != 1 || d.GetLabels()[0].GetKey() != "queue" {
		t.Errorf("auto-created descriptor: got %v", d)
	}

	// DELTA distribution, and a write to a built-in metric (visible after its delay).
	dv := &monitoringpb.TypedValue{Value: &monitoringpb.TypedValue_DistributionValue{DistributionValue: &distribution.Distribution{
		Count: 4, Mean: 5, SumOfSquaredDeviation: 20,
		BucketOptions: &distribution.Distribution_BucketOptions{Options: &distribution.Distribution_BucketOptions_ExplicitBuckets{ExplicitBuckets: &distribution.Distribution_BucketOptions_Explicit{Bounds: []float64{0, 4, 8}}}},
		BucketCounts:  []int64{0, 2, 2},
	}}}
	err = e.c.CreateTimeSeries(ctx, &monitoringpb.CreateTimeSeriesRequest{
		Name: "projects/" + project,
		TimeSeries: []*monitoringpb.TimeSeries{
			{
				Metric:     &metric.Metric{Type: "workload.googleapis.com/latency"},
				Resource:   &monitoredres.MonitoredResource{Type: "global"},
				MetricKind: metric.MetricDescriptor_DELTA,
				Points:     []*monitoringpb.Point{{Interval: &monitoringpb.TimeInterval{StartTime: timestamppb.New(t0), EndTime: timestamppb.New(t0.Add(time.Minute))}, Value: dv}},
			},
			{
				Metric:   &metric.Metric{Type: monitoringemu.MetricRequestCount, Labels: map[string]string{"response_code": "500", "response_code_class": "5xx"}},
				Resource: &monitoredres.MonitoredResource{Type: "cloud_run_revision", Labels: map[string]string{"service_name": service, "revision_name": "api-x", "location": location, "configuration_name": service}},
				Points:   []*monitoringpb.Point{{Interval: &monitoringpb.TimeInterval{StartTime: timestamppb.New(t0.Add(8 * time.Minute)), EndTime: timestamppb.New(t0.Add(9 * time.Minute))}, Value: i64(7)}},
			},
		},
	})
	if err != nil {
		t.Fatalf("CreateTimeSeries: %v", err)
	}
	got = e.mustList(t, window(project, `metric.type = "workload.googleapis.com/latency"`, t0, t0.Add(time.Minute), time.Minute, monitoringpb.Aggregation_ALIGN_PERCENTILE_50, monitoringpb.Aggregation_REDUCE_NONE))
	// Rank 2 of 4 is the end of bucket [0, 4): 4.
	if g, w := render(got), "{r.project_id=my-project} 4@1m0s; "; g != w {
		t.Errorf("ALIGN_PERCENTILE_50 of a written distribution: got %s, want %s", g, w)
	}
	q := window(project, countFilter+` AND resource.labels.revision_name = "api-x"`, t0, t0.Add(10*time.Minute), 0, monitoringpb.Aggregation_ALIGN_NONE, monitoringpb.Aggregation_REDUCE_NONE)
	if got := e.mustList(t, q); len(got) != 0 {
		t.Errorf("built-in metric point visible before its ingestion delay: %s", render(got))
	}
	e.clock.Set(t0.Add(9*time.Minute + monitoringemu.RunDelayMax))
	if g, w := render(e.mustList(t, q)), "{m.response_code=500,m.response_code_class=5xx,r.configuration_name=api,r.location=europe-west1,r.project_id=my-project,r.revision_name=api-x,r.service_name=api} 7@9m0s; "; g != w {
		t.Errorf("injected request_count: got %s, want %s", g, w)
	}
}

func TestCreateTimeSeriesInvalid(t *testing.T) {
	e := newEnv(t, monitoringemu.Options{})
	now := t0.Add(time.Hour)
	e.clock.Set(now)
	const typ = "custom.googleapis.com/x"
	// An existing INT64 GAUGE descriptor and a point at now-1m.
	if err := e.c.CreateTimeSeries(t.Context(), &monitoringpb.CreateTimeSeriesRequest{Name: "projects/" + project, TimeSeries: []*monitoringpb.TimeSeries{gaugeTS(typ, nil, now.Add(-time.Minute), i64(1))}}); err != nil {
		t.Fatalf("seed: %v", err)
	}
	ok := func() *monitoringpb.TimeSeries { return gaugeTS(typ, map[string]string{"k": "ok"}, now, i64(1)) }
	mod := func(f func(ts *monitoringpb.TimeSeries)) *monitoringpb.TimeSeries { ts := ok(); f(ts); return ts }
	many := make([]*monitoringpb.TimeSeries, 201)
	for i := range many {
		many[i] = gaugeTS(typ, map[string]string{"i": fmt.Sprint(i)}, now, i64(1))
	}
	tests := []struct {
		name   string
		series []*monitoringpb.TimeSeries
		want   string
	}{
		{"no series", nil, "at least one"},
		{"too many series", many, "at most 200"},
		{"two points", []*monitoringpb.TimeSeries{mod(func(ts *monitoringpb.TimeSeries) { ts.Points = append(ts.Points, ts.Points[0]) })}, "time_series[0]: exactly one point"},
		{"same series twice", []*monitoringpb.TimeSeries{ok(), ok()}, "time_series[1]: same time series as time_series[0]"},
		{"not writable", []*monitoringpb.TimeSeries{ok(), mod(func(ts *monitoringpb.TimeSeries) { ts.Metric.Type = "compute.googleapis.com/instance/cpu/utilization" })}, "time_series[1]: metric type"},
		{"no metric type", []*monitoringpb.TimeSeries{mod(func(ts *monitoringpb.TimeSeries) { ts.Metric.Type = "" })}, "metric.type is required"},
		{"unknown resource", []*monitoringpb.TimeSeries{mod(func(ts *monitoringpb.TimeSeries) { ts.Resource.Type = "gce_instance" })}, `"gce_instance"`},
		{"unknown resource label", []*monitoringpb.TimeSeries{mod(func(ts *monitoringpb.TimeSeries) { ts.Resource.Labels["zone"] = "a" })}, `"zone"`},
		{"other project", []*monitoringpb.TimeSeries{mod(func(ts *monitoringpb.TimeSeries) { ts.Resource.Labels["project_id"] = "other" })}, "project_id"},
		{"value type mismatch", []*monitoringpb.TimeSeries{mod(func(ts *monitoringpb.TimeSeries) { ts.Points[0].Value = f64(1.5) })}, "value type DOUBLE"},
		{"declared value type mismatch", []*monitoringpb.TimeSeries{mod(func(ts *monitoringpb.TimeSeries) { ts.ValueType = metric.MetricDescriptor_BOOL })}, "value_type BOOL"},
		{"kind mismatch", []*monitoringpb.TimeSeries{mod(func(ts *monitoringpb.TimeSeries) {
			ts.MetricKind = metric.MetricDescriptor_DELTA
			ts.Points[0].Interval.StartTime = timestamppb.New(now.Add(-time.Second))
		})}, "metric_kind DELTA"},
		{"gauge with a start", []*monitoringpb.TimeSeries{mod(func(ts *monitoringpb.TimeSeries) {
			ts.Points[0].Interval.StartTime = timestamppb.New(now.Add(-time.Second))
		})}, "GAUGE point"},
		{"no value", []*monitoringpb.TimeSeries{mod(func(ts *monitoringpb.TimeSeries) { ts.Points[0].Value = nil })}, "value is required"},
		{"no end time", []*monitoringpb.TimeSeries{mod(func(ts *monitoringpb.TimeSeries) { ts.Points[0].Interval.EndTime = nil })}, "end_time is required"},
		{"too old", []*monitoringpb.TimeSeries{mod(func(ts *monitoringpb.TimeSeries) {
			ts.Points[0].Interval.EndTime = timestamppb.New(now.Add(-26 * time.Hour))
		})}, "25 hours"},
		{"future", []*monitoringpb.TimeSeries{mod(func(ts *monitoringpb.TimeSeries) {
			ts.Points[0].Interval.EndTime = timestamppb.New(now.Add(6 * time.Minute))
		})}, "5 minutes"},
		{"out of order", []*monitoringpb.TimeSeries{gaugeTS(typ, nil, now.Add(-2*time.Minute), i64(1))}, "in order"},
		{"delta without start", []*monitoringpb.TimeSeries{{
			Metric: &metric.Metric{Type: "custom.googleapis.com/d"}, Resource: &monitoredres.MonitoredResource{Type: "global"}, MetricKind: metric.MetricDescriptor_DELTA,
			Points: []*monitoringpb.Point{{Interval: &monitoringpb.TimeInterval{EndTime: timestamppb.New(now)}, Value: i64(1)}},
		}}, "start_time must be earlier"},
		{"built-in label", []*monitoringpb.TimeSeries{{
			Metric:   &metric.Metric{Type: monitoringemu.MetricNumBackends, Labels: map[string]string{"db": "x"}},
			Resource: &monitoredres.MonitoredResource{Type: "cloudsql_database"},
			Points:   []*monitoringpb.Point{{Interval: &monitoringpb.TimeInterval{EndTime: timestamppb.New(now)}, Value: i64(1)}},
		}}, `"db"`},
		{"built-in on the wrong resource", []*monitoringpb.TimeSeries{{
			Metric:   &metric.Metric{Type: monitoringemu.MetricNumBackends},
			Resource: &monitoredres.MonitoredResource{Type: "global"},
			Points:   []*monitoringpb.Point{{Interval: &monitoringpb.TimeInterval{EndTime: timestamppb.New(now)}, Value: i64(1)}},
		}}, "not defined for monitored resource global"},
		{"bad distribution", []*monitoringpb.TimeSeries{{
			Metric:   &metric.Metric{Type: "custom.googleapis.com/dist"},
			Resource: &monitoredres.MonitoredResource{Type: "global"},
			Points: []*monitoringpb.Point{{Interval: &monitoringpb.TimeInterval{EndTime: timestamppb.New(now)}, Value: &monitoringpb.TypedValue{Value: &monitoringpb.TypedValue_DistributionValue{DistributionValue: &distribution.Distribution{
				Count: 3, BucketOptions: &distribution.Distribution_BucketOptions{Options: &distribution.Distribution_BucketOptions_ExplicitBuckets{ExplicitBuckets: &distribution.Distribution_BucketOptions_Explicit{Bounds: []float64{1}}}},
				BucketCounts: []int64{1, 1},
			}}}}},
		}}, "not the sum"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := e.c.CreateTimeSeries(t.Context(), &monitoringpb.CreateTimeSeriesRequest{Name: "projects/" + project, TimeSeries: tt.series})
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("got %v, want INVALID_ARGUMENT", err)
			}
			if msg := status.Convert(err).Message(); !strings.Contains(msg, tt.want) {
				t.Errorf("message %q does not contain %q", msg, tt.want)
			}
		})
	}
	// Nothing of the rejected requests was written (requests are atomic).
	got := e.mustList(t, window(project, `metric.type = "`+typ+`"`, t0, now.Add(time.Minute), 0, monitoringpb.Aggregation_ALIGN_NONE, monitoringpb.Aggregation_REDUCE_NONE))
	if g, w := render(got), "{r.project_id=my-project} 1@59m0s; "; g != w {
		t.Errorf("after rejected writes: got %s, want only the seed %s", g, w)
	}
}

func TestDescriptors(t *testing.T) {
	e := newEnv(t, monitoringemu.Options{})
	ctx := t.Context()
	e.clock.Set(t0.Add(time.Hour))
	if err := e.c.CreateTimeSeries(ctx, &monitoringpb.CreateTimeSeriesRequest{Name: "projects/" + project, TimeSeries: []*monitoringpb.TimeSeries{gaugeTS("custom.googleapis.com/a", nil, t0.Add(time.Hour), f64(1))}}); err != nil {
		t.Fatal(err)
	}
	listMD := func(filter string) ([]string, error) {
		it := e.c.ListMetricDescriptors(ctx, &monitoringpb.ListMetricDescriptorsRequest{Name: "projects/" + project, Filter: filter})
		var out []string
		for {
			d, err := it.Next()
			if err != nil {
				if errors.Is(err, iterator.Done) {
					return out, nil
				}
				return out, err
			}
			if want := "projects/" + project + "/metricDescriptors/" + d.GetType(); d.GetName() != want {
				return nil, fmt.Errorf("name %q, want %q", d.GetName(), want)
			}
			out = append(out, d.GetType())
		}
	}
	tests := []struct {
		filter string
		want   string
	}{
		{"", "[cloudsql.googleapis.com/database/postgresql/num_backends custom.googleapis.com/a run.googleapis.com/request_count run.googleapis.com/request_latencies]"},
		{`metric.type = "run.googleapis.com/request_count"`, "[run.googleapis.com/request_count]"},
		{`metric.type = starts_with("run.googleapis.com/")`, "[run.googleapis.com/request_count run.googleapis.com/request_latencies]"},
		{`metric.type = starts_with("custom.googleapis.com/")`, "[custom.googleapis.com/a]"},
	}
	for _, tt := range tests {
		got, err := listMD(tt.filter)
		if err != nil {
			t.Errorf("ListMetricDescriptors(%q): %v", tt.filter, err)
			continue
		}
		if fmt.Sprint(got) != tt.want {
			t.Errorf("ListMetricDescriptors(%q): got %v, want %s", tt.filter, got, tt.want)
		}
	}
	for _, f := range []string{`resource.type = "global"`, `metric.type = "a" OR metric.type = "b"`, `metric.labels.x = "a"`} {
		if _, err := listMD(f); status.Code(err) != codes.InvalidArgument {
			t.Errorf("ListMetricDescriptors(%q): got %v, want INVALID_ARGUMENT", f, err)
		}
	}
	d, err := e.c.GetMetricDescriptor(ctx, &monitoringpb.GetMetricDescriptorRequest{Name: "projects/" + project + "/metricDescriptors/" + monitoringemu.MetricRequestLatencies})
	if err != nil {
		t.Fatal(err)
	}
	if d.GetMetricKind() != metric.MetricDescriptor_DELTA || d.GetValueType() != metric.MetricDescriptor_DISTRIBUTION || d.GetUnit() != "ms" {
		t.Errorf("request_latencies descriptor: got %v %v %q", d.GetMetricKind(), d.GetValueType(), d.GetUnit())
	}
	if _, err := e.c.GetMetricDescriptor(ctx, &monitoringpb.GetMetricDescriptorRequest{Name: "projects/" + project + "/metricDescriptors/custom.googleapis.com/none"}); status.Code(err) != codes.NotFound {
		t.Errorf("unknown descriptor: got %v, want NOT_FOUND", err)
	}

	it := e.c.ListMonitoredResourceDescriptors(ctx, &monitoringpb.ListMonitoredResourceDescriptorsRequest{Name: "projects/" + project})
	labels := map[string]string{}
	for {
		rd, err := it.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			t.Fatalf("ListMonitoredResourceDescriptors: %v", err)
		}
		var ks []string
		for _, l := range rd.GetLabels() {
			ks = append(ks, l.GetKey())
		}
		labels[rd.GetType()] = strings.Join(ks, ",")
	}
	want := map[string]string{
		"cloud_run_revision": "project_id,service_name,revision_name,location,configuration_name",
		"cloudsql_database":  "project_id,database_id,region",
		"global":             "project_id",
	}
	if fmt.Sprint(labels) != fmt.Sprint(want) {
		t.Errorf("monitored resource descriptors: got %v, want %v", labels, want)
	}
	rd, err := e.c.GetMonitoredResourceDescriptor(ctx, &monitoringpb.GetMonitoredResourceDescriptorRequest{Name: "projects/" + project + "/monitoredResourceDescriptors/cloudsql_database"})
	if err != nil || rd.GetType() != "cloudsql_database" {
		t.Errorf("GetMonitoredResourceDescriptor: got %v, %v", rd, err)
	}
	if _, err := e.c.GetMonitoredResourceDescriptor(ctx, &monitoringpb.GetMonitoredResourceDescriptorRequest{Name: "projects/" + project + "/monitoredResourceDescriptors/gce_instance"}); status.Code(err) != codes.NotFound {
		t.Errorf("unknown resource descriptor: got %v, want NOT_FOUND", err)
	}
	if _, err := e.c.CreateMetricDescriptor(ctx, &monitoringpb.CreateMetricDescriptorRequest{Name: "projects/" + project, MetricDescriptor: &metric.MetricDescriptor{Type: "custom.googleapis.com/b"}}); status.Code(err) != codes.Unimplemented {
		t.Errorf("CreateMetricDescriptor: got %v, want UNIMPLEMENTED", err)
	}
}

func TestCumulativeCustomMetric(t *testing.T) {
	e := newEnv(t, monitoringemu.Options{})
	e.clock.Set(t0.Add(time.Hour))
	const typ = "custom.googleapis.com/jobs_done"
	// A counter started at t0: 10 at 1m, 40 at 2m, 100 at 3m; reset at 3m30s: 5 at 4m.
	for _, p := range []struct {
		start, end time.Duration
		v          int64
	}{{0, time.Minute, 10}, {0, 2 * time.Minute, 40}, {0, 3 * time.Minute, 100}, {210 * time.Second, 4 * time.Minute, 5}} {
		err := e.c.CreateTimeSeries(t.Context(), &monitoringpb.CreateTimeSeriesRequest{Name: "projects/" + project, TimeSeries: []*monitoringpb.TimeSeries{{
			Metric: &metric.Metric{Type: typ}, Resource: &monitoredres.MonitoredResource{Type: "global"}, MetricKind: metric.MetricDescriptor_CUMULATIVE,
			Points: []*monitoringpb.Point{{Interval: &monitoringpb.TimeInterval{StartTime: timestamppb.New(t0.Add(p.start)), EndTime: timestamppb.New(t0.Add(p.end))}, Value: i64(p.v)}},
		}}})
		if err != nil {
			t.Fatalf("write %v: %v", p, err)
		}
	}
	f := `metric.type = "` + typ + `"`
	got := e.mustList(t, window(project, f, t0, t0.Add(4*time.Minute), time.Minute, monitoringpb.Aggregation_ALIGN_DELTA, monitoringpb.Aggregation_REDUCE_NONE))
	if g, w := render(got), "{r.project_id=my-project} 5@4m0s 60@3m0s 30@2m0s 10@1m0s; "; g != w {
		t.Errorf("ALIGN_DELTA of a counter: got %s, want %s", g, w)
	}
	// (2m, 4m]: 100-40 before the reset, 5 after it: 65 in 120 s.
	got = e.mustList(t, window(project, f, t0, t0.Add(4*time.Minute), 2*time.Minute, monitoringpb.Aggregation_ALIGN_RATE, monitoringpb.Aggregation_REDUCE_NONE))
	if g, w := render(got), "{r.project_id=my-project} 0.5417@4m0s 0.3333@2m0s; "; g != w {
		t.Errorf("ALIGN_RATE of a counter: got %s, want %s", g, w)
	}
}
