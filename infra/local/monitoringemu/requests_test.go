package monitoringemu_test

import (
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/monitoring/apiv3/v2/monitoringpb"
	"google.golang.org/genproto/googleapis/api/metric"

	"github.com/ai-square/coalmine/infra/local/monitoringemu"
)

const (
	project  = "my-project"
	service  = "api"
	location = "europe-west1"
)

// recorded is what a test fed the server, for computing the truth.
type recorded struct {
	count     map[string]map[string]int64 // revision → class → count
	latencies map[string][]float64        // revision → ms (all codes)
	lat200    map[string][]float64        // revision → ms of 200s
}

// feed records n seeded requests spread uniformly over [from, from+span) on the given
// revisions, with error rate errRate[rev] (503) and log-normal latencies.
func feed(e *env, seed uint64, n int, from time.Time, span time.Duration, revs []string, errRate map[string]float64) recorded {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	rec := recorded{count: map[string]map[string]int64{}, latencies: map[string][]float64{}, lat200: map[string][]float64{}}
	for range n {
		rev := revs[rng.IntN(len(revs))]
		code := 200
		if rng.Float64() < errRate[rev] {
			code = 503
		}
		ms := math.Exp(rng.NormFloat64()*0.6 + math.Log(80)) // median 80 ms
		lat := time.Duration(ms * float64(time.Millisecond))
		at := from.Add(time.Duration(rng.Int64N(int64(span))))
		e.srv.RecordRequest(monitoringemu.Request{
			Project: project, Location: location, Service: service, Revision: rev,
			Time: at, Status: code, Latency: lat,
		})
		class := fmt.Sprintf("%dxx", code/100)
		if rec.count[rev] == nil {
			rec.count[rev] = map[string]int64{}
		}
		rec.count[rev][class]++
		msRec := float64(lat) / float64(time.Millisecond)
		rec.latencies[rev] = append(rec.latencies[rev], msRec)
		if code == 200 {
			rec.lat200[rev] = append(rec.lat200[rev], msRec)
		}
	}
	for _, m := range []map[string][]float64{rec.latencies, rec.lat200} {
		for _, v := range m {
			sort.Float64s(v)
		}
	}
	return rec
}

const (
	countFilter   = `metric.type = "run.googleapis.com/request_count" AND resource.type = "cloud_run_revision" AND resource.labels.service_name = "api"`
	latencyFilter = `metric.type = "run.googleapis.com/request_latencies" AND resource.type = "cloud_run_revision" AND resource.labels.service_name = "api"`
)

func TestExactCountsAndP95(t *testing.T) {
	e := newEnv(t, monitoringemu.Options{})
	revs := []string{"api-blue", "api-green"}
	span := 5 * time.Minute
	rec := feed(e, 42, 1000, t0, span, revs, map[string]float64{"api-blue": 0.02, "api-green": 0.15})
	e.clock.Set(t0.Add(span + monitoringemu.RunDelayMax))
	end := t0.Add(span)

	got := e.mustList(t, window(project, countFilter, t0, end, span,
		monitoringpb.Aggregation_ALIGN_DELTA, monitoringpb.Aggregation_REDUCE_SUM,
		"resource.labels.revision_name", "metric.labels.response_code_class"))
	gotCounts := map[string]map[string]int64{}
	var total int64
	for _, ts := range got {
		rev, class := ts.GetResource().GetLabels()["revision_name"], ts.GetMetric().GetLabels()["response_code_class"]
		if len(ts.GetPoints()) != 1 {
			t.Fatalf("%s/%s: got %d points, want 1 (one window)", rev, class, len(ts.GetPoints()))
		}
		if ts.GetValueType() != metric.MetricDescriptor_INT64 {
			t.Errorf("%s/%s: value type %v, want INT64", rev, class, ts.GetValueType())
		}
		if _, extra := ts.GetResource().GetLabels()["service_name"]; extra {
			t.Errorf("%s/%s: reduced series kept ungrouped label service_name: %v", rev, class, ts.GetResource().GetLabels())
		}
		p := ts.GetPoints()[0]
		if s, e := p.GetInterval().GetStartTime().AsTime(), p.GetInterval().GetEndTime().AsTime(); !s.Equal(t0) || !e.Equal(end) {
			t.Errorf("%s/%s: interval (%s, %s], want (%s, %s]", rev, class, s, e, t0, end)
		}
		if gotCounts[rev] == nil {
			gotCounts[rev] = map[string]int64{}
		}
		gotCounts[rev][class] = p.GetValue().GetInt64Value()
		total += p.GetValue().GetInt64Value()
	}
	if total != 1000 {
		t.Errorf("total requests: got %d, want 1000", total)
	}
	for _, rev := range revs {
		for _, class := range []string{"2xx", "5xx"} {
			if g, w := gotCounts[rev][class], rec.count[rev][class]; g != w {
				t.Errorf("%s %s: got %d, want %d", rev, class, g, w)
			}
		}
	}

	for _, rev := range revs {
		f := latencyFilter + fmt.Sprintf(` AND resource.labels.revision_name = %q`, rev)
		want := truePercentile(rec.latencies[rev], 95)
		got := e.mustList(t, window(project, f, t0, end, span,
			monitoringpb.Aggregation_ALIGN_DELTA, monitoringpb.Aggregation_REDUCE_PERCENTILE_95, "resource.labels.revision_name"))
		if len(got) != 1 || len(got[0].GetPoints()) != 1 {
			t.Fatalf("%s REDUCE_PERCENTILE_95: got %d series, want 1 with 1 point", rev, len(got))
		}
		if p := got[0].GetPoints()[0].GetValue().GetDoubleValue(); !withinOneBucket(p, want) {
			t.Errorf("%s REDUCE_PERCENTILE_95: got %.2f ms, true p95 %.2f ms: more than one bucket apart", rev, p, want)
		}
		// ALIGN_PERCENTILE_95 is per series (per response code): compare the 200s.
		want200 := truePercentile(rec.lat200[rev], 95)
		got = e.mustList(t, window(project, f+` AND metric.labels.response_code = "200"`, t0, end, span,
			monitoringpb.Aggregation_ALIGN_PERCENTILE_95, monitoringpb.Aggregation_REDUCE_NONE))
		if len(got) != 1 || len(got[0].GetPoints()) != 1 {
			t.Fatalf("%s ALIGN_PERCENTILE_95: got %d series, want 1 with 1 point", rev, len(got))
		}
		if got[0].GetValueType() != metric.MetricDescriptor_DOUBLE {
			t.Errorf("%s ALIGN_PERCENTILE_95: value type %v, want DOUBLE", rev, got[0].GetValueType())
		}
		if p := got[0].GetPoints()[0].GetValue().GetDoubleValue(); !withinOneBucket(p, want200) {
			t.Errorf("%s ALIGN_PERCENTILE_95 (200s): got %.2f ms, true p95 %.2f ms: more than one bucket apart", rev, p, want200)
		}
	}
}

func TestRequestLatenciesDistribution(t *testing.T) {
	e := newEnv(t, monitoringemu.Options{Fast: true})
	lat := []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 30 * time.Millisecond}
	for _, l := range lat {
		e.srv.RecordRequest(monitoringemu.Request{Project: project, Location: location, Service: service, Revision: "api-1",
			Time: t0.Add(100 * time.Millisecond), Status: 200, Latency: l})
	}
	e.clock.Set(t0.Add(time.Second))
	got := e.mustList(t, window(project, latencyFilter, t0, t0.Add(time.Second), 0, monitoringpb.Aggregation_ALIGN_NONE, monitoringpb.Aggregation_REDUCE_NONE))
	if len(got) != 1 || len(got[0].GetPoints()) != 1 {
		t.Fatalf("got %d series, want 1 with 1 point", len(got))
	}
	ts := got[0]
	wantRes := map[string]string{"project_id": project, "service_name": service, "revision_name": "api-1", "location": location, "configuration_name": service}
	for k, v := range wantRes {
		if ts.GetResource().GetLabels()[k] != v {
			t.Errorf("resource label %s: got %q, want %q", k, ts.GetResource().GetLabels()[k], v)
		}
	}
	if ts.GetResource().GetType() != "cloud_run_revision" || ts.GetMetricKind() != metric.MetricDescriptor_DELTA || ts.GetValueType() != metric.MetricDescriptor_DISTRIBUTION || ts.GetUnit() != "ms" {
		t.Errorf("series header: got %v %v %v %q", ts.GetResource().GetType(), ts.GetMetricKind(), ts.GetValueType(), ts.GetUnit())
	}
	if g, w := ts.GetMetric().GetLabels(), map[string]string{"response_code": "200", "response_code_class": "2xx"}; len(g) != 2 || g["response_code"] != w["response_code"] || g["response_code_class"] != w["response_code_class"] {
		t.Errorf("metric labels: got %v, want %v", g, w)
	}
	d := ts.GetPoints()[0].GetValue().GetDistributionValue()
	if d.GetCount() != 3 || math.Abs(d.GetMean()-20) > 1e-9 || math.Abs(d.GetSumOfSquaredDeviation()-200) > 1e-6 {
		t.Errorf("distribution: got count %d mean %v ssd %v, want 3, 20, 200", d.GetCount(), d.GetMean(), d.GetSumOfSquaredDeviation())
	}
	exp := d.GetBucketOptions().GetExponentialBuckets()
	if exp.GetNumFiniteBuckets() != 64 || exp.GetGrowthFactor() != math.Sqrt2 || exp.GetScale() != 1 {
		t.Errorf("bucket options: got %v", exp)
	}
	// 10 ms → bucket 7 ([8, 11.3)), 20 → 9 ([16, 22.6)), 30 → 10 ([22.6, 32)); trailing zeros trimmed.
	want := []int64{0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 1}
	if fmt.Sprint(d.GetBucketCounts()) != fmt.Sprint(want) {
		t.Errorf("bucket counts: got %v, want %v", d.GetBucketCounts(), want)
	}
	iv := ts.GetPoints()[0].GetInterval()
	if !iv.GetStartTime().AsTime().Equal(t0) || !iv.GetEndTime().AsTime().Equal(t0.Add(time.Second)) {
		t.Errorf("interval: got (%s, %s], want the sample period (%s, %s]", iv.GetStartTime().AsTime(), iv.GetEndTime().AsTime(), t0, t0.Add(time.Second))
	}
}

func TestIngestionDelay(t *testing.T) {
	sample := func(e *env, at time.Time) {
		e.srv.RecordRequest(monitoringemu.Request{Project: project, Location: location, Service: service, Revision: "api-1", Time: at, Status: 200, Latency: time.Millisecond})
		e.srv.RecordBackends(monitoringemu.Backends{Project: project, DatabaseID: project + ":main", Region: location, Time: at, ByDatabase: map[string]int64{"app": 3}})
	}
	const sqlFilter = `metric.type = "cloudsql.googleapis.com/database/postgresql/num_backends"`
	tests := []struct {
		name       string
		opts       monitoringemu.Options
		at         time.Time // request and sample time
		periodEnd  time.Time // end of the request's sample period
		runHidden  time.Duration
		runVisible time.Duration // after periodEnd
		sqlHidden  time.Duration
		sqlVisible time.Duration // after at
	}{
		{
			name: "google timing", opts: monitoringemu.Options{},
			at: t0.Add(30 * time.Second), periodEnd: t0.Add(time.Minute),
			runHidden: monitoringemu.RunDelayMin - time.Nanosecond, runVisible: monitoringemu.RunDelayMax,
			sqlHidden: monitoringemu.SQLIngestDelay - time.Nanosecond, sqlVisible: monitoringemu.SQLIngestDelay,
		},
		{
			name: "fast mode", opts: monitoringemu.Options{Fast: true},
			at: t0.Add(300 * time.Millisecond), periodEnd: t0.Add(time.Second),
			runHidden: -time.Nanosecond, runVisible: 0,
			sqlHidden: -time.Nanosecond, sqlVisible: 0,
		},
		{
			name: "fixed delays", opts: monitoringemu.Options{RunDelay: dur(10 * time.Second), SQLDelay: dur(5 * time.Second)},
			at: t0.Add(30 * time.Second), periodEnd: t0.Add(time.Minute),
			runHidden: 10*time.Second - time.Nanosecond, runVisible: 10 * time.Second,
			sqlHidden: 5*time.Second - time.Nanosecond, sqlVisible: 5 * time.Second,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.opts)
			if e.srv.Fast() != tt.opts.Fast {
				t.Errorf("Fast(): got %v, want %v", e.srv.Fast(), tt.opts.Fast)
			}
			sample(e, tt.at)
			end := t0.Add(10 * time.Minute)
			count := func(now time.Time) (run, sql int) {
				t.Helper()
				e.clock.Set(now)
				run = len(e.mustList(t, window(project, countFilter, t0, end, 0, monitoringpb.Aggregation_ALIGN_NONE, monitoringpb.Aggregation_REDUCE_NONE)))
				sql = len(e.mustList(t, window(project, sqlFilter, t0, end, 0, monitoringpb.Aggregation_ALIGN_NONE, monitoringpb.Aggregation_REDUCE_NONE)))
				return run, sql
			}
			if run, _ := count(tt.periodEnd.Add(tt.runHidden)); run != 0 {
				t.Errorf("request_count visible %s after the period's end, want hidden", tt.runHidden)
			}
			if run, _ := count(tt.periodEnd.Add(tt.runVisible)); run != 1 {
				t.Errorf("request_count: got %d series %s after the period's end, want 1", run, tt.runVisible)
			}
			if _, sql := count(tt.at.Add(tt.sqlHidden)); sql != 0 {
				t.Errorf("num_backends visible %s after the sample, want hidden", tt.sqlHidden)
			}
			if _, sql := count(tt.at.Add(tt.sqlVisible)); sql != 1 {
				t.Errorf("num_backends: got %d series %s after the sample, want 1", sql, tt.sqlVisible)
			}
		})
	}
}

// TestRunDelaySpread checks that Google's default Cloud Run delay varies per series in
// [RunDelayMin, RunDelayMax]: at RunDelayMin nothing is visible, at RunDelayMax all.
func TestRunDelaySpread(t *testing.T) {
	e := newEnv(t, monitoringemu.Options{})
	for i := range 40 {
		e.srv.RecordRequest(monitoringemu.Request{Project: project, Location: location, Service: service,
			Revision: fmt.Sprintf("api-%02d", i), Time: t0, Status: 200, Latency: time.Millisecond})
	}
	periodEnd := t0.Add(time.Minute)
	n := func(after time.Duration) int {
		e.clock.Set(periodEnd.Add(after))
		return len(e.mustList(t, window(project, countFilter, t0, periodEnd, 0, monitoringpb.Aggregation_ALIGN_NONE, monitoringpb.Aggregation_REDUCE_NONE)))
	}
	if got := n(monitoringemu.RunDelayMin - time.Second); got != 0 {
		t.Errorf("before RunDelayMin: got %d series, want 0", got)
	}
	mid := n(150 * time.Second)
	if mid == 0 || mid == 40 {
		t.Errorf("at 150 s: got %d of 40 series, want some but not all (a spread delay)", mid)
	}
	if got := n(monitoringemu.RunDelayMax); got != 40 {
		t.Errorf("at RunDelayMax: got %d series, want 40", got)
	}
}

func TestStartupLogSaysFastMode(t *testing.T) {
	for _, fast := range []bool{false, true} {
		var buf strings.Builder
		srv, err := monitoringemu.New(monitoringemu.Options{Fast: fast, Logger: slog.New(slog.NewTextHandler(&buf, nil))})
		if err != nil {
			t.Fatal(err)
		}
		srv.Close()
		first, _, _ := strings.Cut(buf.String(), "\n")
		if got := strings.Contains(first, "fast mode"); got != fast {
			t.Errorf("Fast=%v: start-up line %q mentions fast mode: %v", fast, first, got)
		}
		if srv.Fast() != fast {
			t.Errorf("Fast(): got %v, want %v", srv.Fast(), fast)
		}
		wantMin := time.Minute
		if fast {
			wantMin = time.Second
		}
		if srv.MinAlignment() != wantMin || srv.SamplePeriod() != wantMin {
			t.Errorf("Fast=%v: min alignment %s, sample period %s; want %s", fast, srv.MinAlignment(), srv.SamplePeriod(), wantMin)
		}
	}
}
