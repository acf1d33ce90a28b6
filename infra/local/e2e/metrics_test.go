package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	monitoring "cloud.google.com/go/monitoring/apiv3/v2"
	"cloud.google.com/go/monitoring/apiv3/v2/monitoringpb"
	"google.golang.org/api/iterator"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ai-square/coalmine/infra/local/pubsubemu"
	"github.com/ai-square/coalmine/infra/local/sampleapp"
	"github.com/ai-square/coalmine/shared/judge"
	"github.com/ai-square/coalmine/shared/metrics"
	"github.com/ai-square/coalmine/shared/rollout"
)

// metricsPolicy judges with no ingestion delay (the Monitoring server runs
// in its fast mode) and the default gates.
const metricsPolicy = `
services:
  - name: ai-square
    project: local-project
    region: local
    images: [local.dev/ai-square/web]
    stages:
      - {percent: 10, bake: 1s}
      - {percent: 100}
    gates:
      ingestionDelay: 0s
    windows:
      deny: []
    backup:
      required: false
`

// sent is what a client saw of the requests it sent, by revision.
type sent struct {
	mu        sync.Mutex
	byClass   map[string]map[string]int64 // revision → "2xx"/"5xx" → count
	latencies map[string][]float64        // revision → ms, as the client measured
}

// send makes n GET requests to url from workers goroutines; request i asks the sample app
// for delay(i) milliseconds of latency of its own.
func (s *sent) send(t *testing.T, url string, n, workers int, delay func(i int) int) {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	jobs := make(chan int)
	var wg sync.WaitGroup
	var errs []error
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				start := time.Now()
				resp, err := client.Get(fmt.Sprintf("%s/?delay_ms=%d", url, delay(i)))
				if err != nil {
					s.mu.Lock()
					errs = append(errs, err)
					s.mu.Unlock()
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				ms := float64(time.Since(start)) / float64(time.Millisecond)
				rev := resp.Header.Get(sampleapp.HeaderRevision)
				s.mu.Lock()
				if s.byClass[rev] == nil {
					s.byClass[rev] = map[string]int64{}
				}
				s.byClass[rev][fmt.Sprintf("%dxx", resp.StatusCode/100)]++
				s.latencies[rev] = append(s.latencies[rev], ms)
				s.mu.Unlock()
			}
		}()
	}
	for i := range n {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d of %d requests to %s failed, first: %v", len(errs), n, url, errs[0])
	}
}

// TestMetricsFromRealTraffic: requests to a canary's tag URL and to the
// service URL are counted by the Cloud Monitoring server exactly as the
// client saw them, read back through the official client per revision and
// response class; the p95 of ALIGN_PERCENTILE_95 and of the metrics reader
// are within one bucket of the p95 the client measured; and `coalmine
// verdict` judges the failing canary unhealthy without acting on it.
func TestMetricsFromRealTraffic(t *testing.T) {
	// The functions' clock runs two minutes behind, so the stage began two
	// whole minutes before the requests: the verdict's window (cut to whole
	// 60s alignment periods) holds all of them, judged at the end of their
	// minute (the CLI's clock).
	h := start(t, pubsubemu.BackendPstest, options{policy: metricsPolicy, now: func() time.Time { return time.Now().Add(-2 * time.Minute) }})
	ctx := context.Background()
	h.push(repo+":v2", "--error-rate", "0.05")
	v := h.waitPhase(rollout.Progressing, 1)
	canary, stable := v.state.Rollout.Canary, v.state.Rollout.Stable

	begin := time.Now().Truncate(time.Second)
	s := &sent{byClass: map[string]map[string]int64{}, latencies: map[string][]float64{}}
	// Latencies spread over many buckets: 10 to 200 ms, a seeded permutation.
	rng := rand.New(rand.NewPCG(9, 9))
	delays := make([]int, 1000)
	for i := range delays {
		delays[i] = 10 + i*190/len(delays)
	}
	rng.Shuffle(len(delays), func(i, j int) { delays[i], delays[j] = delays[j], delays[i] })
	s.send(t, v.tagURI[rollout.TagCanary], 1000, 16, func(i int) int { return delays[i] })
	s.send(t, v.svc.GetUri(), 600, 16, func(int) int { return 0 })
	end := time.Now().Truncate(time.Second).Add(2 * time.Second) // past the last 1s sample period

	if got := s.byClass[canary]["5xx"]; got == 0 {
		t.Fatalf("the canary failed none of %d requests; want about 5%%", s.byClass[canary]["2xx"])
	}
	mc, err := monitoring.NewMetricClient(ctx, metrics.EmulatorOptionsFor(h.cloud.Env[metrics.EmulatorHostEnv])...)
	if err != nil {
		t.Fatal(err)
	}
	defer mc.Close()

	// Per revision and class, through the official client, once the last
	// sample period has closed.
	window := end.Sub(begin)
	countQuery := &monitoringpb.ListTimeSeriesRequest{
		Name:     "projects/local-project",
		Filter:   `metric.type = "run.googleapis.com/request_count" AND resource.type = "cloud_run_revision" AND resource.labels.service_name = "ai-square"`,
		Interval: &monitoringpb.TimeInterval{StartTime: timestamppb.New(begin), EndTime: timestamppb.New(end)},
		Aggregation: &monitoringpb.Aggregation{
			AlignmentPeriod:    durationpb.New(window),
			PerSeriesAligner:   monitoringpb.Aggregation_ALIGN_DELTA,
			CrossSeriesReducer: monitoringpb.Aggregation_REDUCE_SUM,
			GroupByFields:      []string{"resource.labels.revision_name", "metric.labels.response_code_class"},
		},
		View: monitoringpb.ListTimeSeriesRequest_FULL,
	}
	var got map[string]map[string]int64
	h.waitFor("every request counted", func(view) bool {
		if time.Now().Before(end) {
			return false
		}
		got = counts(t, mc, countQuery)
		return total(got) == total(s.byClass)
	})
	t.Logf("request_count by revision and class: %v; the client saw %v", got, s.byClass)
	for _, rev := range []string{canary, stable} {
		for _, class := range []string{"2xx", "5xx"} {
			if got[rev][class] != s.byClass[rev][class] {
				t.Errorf("request_count %s %s = %d, want %d (what the client saw)", rev, class, got[rev][class], s.byClass[rev][class])
			}
		}
	}

	// p95 of the canary's 200s by ALIGN_PERCENTILE_95, and of all its
	// requests by the reader, against the client's.
	pq := &monitoringpb.ListTimeSeriesRequest{
		Name:     "projects/local-project",
		Filter:   fmt.Sprintf(`metric.type = "run.googleapis.com/request_latencies" AND resource.type = "cloud_run_revision" AND resource.labels.revision_name = %q AND metric.labels.response_code = "200"`, canary),
		Interval: countQuery.Interval,
		Aggregation: &monitoringpb.Aggregation{
			AlignmentPeriod:  durationpb.New(window),
			PerSeriesAligner: monitoringpb.Aggregation_ALIGN_PERCENTILE_95,
		},
		View: monitoringpb.ListTimeSeriesRequest_FULL,
	}
	it := mc.ListTimeSeries(ctx, pq)
	ts, err := it.Next()
	if err != nil {
		t.Fatalf("ALIGN_PERCENTILE_95: %v", err)
	}
	r, err := metrics.New(ctx, metrics.Options{Project: "local-project", Alignment: time.Second, ClientOptions: metrics.EmulatorOptionsFor(h.cloud.Env[metrics.EmulatorHostEnv])})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	read, err := r.Revision(ctx, metrics.RevisionID{Service: service, Revision: canary}, metrics.Window{Start: begin, End: end})
	if err != nil {
		t.Fatalf("reader: %v", err)
	}
	if read.Total() != total(map[string]map[string]int64{canary: s.byClass[canary]}) || read.Classes["5xx"] != s.byClass[canary]["5xx"] {
		t.Errorf("reader: %v, want %v", read.Classes, s.byClass[canary])
	}
	clientP95 := quantile(s.latencies[canary], 0.95)
	readerP95, _ := read.Latency.Quantile(0.95)
	aligned := ts.GetPoints()[0].GetValue().GetDoubleValue()
	for what, p95 := range map[string]float64{"ALIGN_PERCENTILE_95 of the 200s": aligned, "the reader's": readerP95} {
		if d := bucketDistance(read.Latency, p95, clientP95); d > 1 {
			t.Errorf("%s p95 %.1fms is %d buckets from the client's %.1fms, want at most 1", what, p95, d, clientP95)
		}
	}
	t.Logf("canary p95: client %.1fms, ALIGN_PERCENTILE_95 %.1fms, reader %.1fms", clientP95, aligned, readerP95)
	if lo, hi := bucketOf(read.Latency, quantile(s.latencies[canary], 0.05)), bucketOf(read.Latency, clientP95); hi-lo < 4 {
		t.Errorf("the canary's latencies span buckets %d to %d; want a spread that makes \"within one bucket\" mean something", lo, hi)
	}

	// The verdict, judged as at the end of the requests' minute (the
	// policy's 60s alignment): unhealthy, rollback, and nothing acted on.
	closed := end.Truncate(time.Minute).Add(time.Minute)
	out := h.cliAt(func() time.Time { return closed }, "verdict", service)
	t.Logf("coalmine verdict %s:\n%s", service, out)
	for _, want := range []string{"FAST MODE", "UNHEALTHY → the policy says rollback", judge.GateErrorRate, "acted on"} {
		if !strings.Contains(out, want) {
			t.Errorf("verdict does not say %q:\n%s", want, out)
		}
	}
	if v := h.view(); v.phase() != rollout.Progressing || v.stage() != 1 {
		t.Errorf("after verdict: phase %s stage %d, want still progressing at stage 1 (no tick has fired: the harness's Scheduler jobs fire only when run)", v.phase(), v.stage())
	}
}

// counts sums request_count points by revision and class.
func counts(t *testing.T, c *monitoring.MetricClient, q *monitoringpb.ListTimeSeriesRequest) map[string]map[string]int64 {
	t.Helper()
	out := map[string]map[string]int64{}
	it := c.ListTimeSeries(context.Background(), q)
	for {
		ts, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return out
		}
		if err != nil {
			t.Fatalf("ListTimeSeries: %v", err)
		}
		rev, class := ts.GetResource().GetLabels()["revision_name"], ts.GetMetric().GetLabels()["response_code_class"]
		if out[rev] == nil {
			out[rev] = map[string]int64{}
		}
		for _, p := range ts.GetPoints() {
			out[rev][class] += p.GetValue().GetInt64Value()
		}
	}
}

func total(m map[string]map[string]int64) int64 {
	var n int64
	for _, byClass := range m {
		for _, c := range byClass {
			n += c
		}
	}
	return n
}

// quantile is the nearest-rank q-quantile of xs.
func quantile(xs []float64, q float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.999999) - 1
	return s[max(0, min(i, len(s)-1))]
}

// bucketOf is the index of the bucket of h's layout that holds x.
func bucketOf(h judge.Histogram, x float64) int {
	i, found := slices.BinarySearch(h.Bounds, x)
	if found {
		i++ // a bound is the lower end of its bucket
	}
	return i
}

// bucketDistance is how many buckets of h's layout lie between a and b.
func bucketDistance(h judge.Histogram, a, b float64) int {
	d := bucketOf(h, a) - bucketOf(h, b)
	if d < 0 {
		d = -d
	}
	return d
}
