package monitoringemu_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"sync"
	"testing"
	"time"

	monitoring "cloud.google.com/go/monitoring/apiv3/v2"
	"cloud.google.com/go/monitoring/apiv3/v2/monitoringpb"
	"google.golang.org/api/iterator"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ai-square/coalmine/infra/local/monitoringemu"
)

// t0 is a minute boundary all tests start from.
var t0 = time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)

// clock is a settable clock for Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// env is one server with an official client connected to it.
type env struct {
	srv   *monitoringemu.Server
	c     *monitoring.MetricClient
	clock *clock
}

// newEnv starts a server with opts (its clock at t0; Now is set by newEnv) and a client,
// both closed at cleanup.
func newEnv(t *testing.T, opts monitoringemu.Options) *env {
	t.Helper()
	clk := &clock{t: t0}
	opts.Now = clk.Now
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	srv, err := monitoringemu.New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	c, err := monitoring.NewMetricClient(context.Background(), srv.ClientOptions()...)
	if err != nil {
		t.Fatalf("NewMetricClient: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return &env{srv: srv, c: c, clock: clk}
}

// list runs ListTimeSeries through the client's iterator and returns every series.
func (e *env) list(req *monitoringpb.ListTimeSeriesRequest) ([]*monitoringpb.TimeSeries, error) {
	it := e.c.ListTimeSeries(context.Background(), req)
	var out []*monitoringpb.TimeSeries
	for {
		ts, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, ts)
	}
}

// mustList is list that fails t on error.
func (e *env) mustList(t *testing.T, req *monitoringpb.ListTimeSeriesRequest) []*monitoringpb.TimeSeries {
	t.Helper()
	out, err := e.list(req)
	if err != nil {
		t.Fatalf("ListTimeSeries(%q): %v", req.GetFilter(), err)
	}
	return out
}

// window builds a request over (start, end] with one alignment period per window
// unless period is given.
func window(project, filter string, start, end time.Time, period time.Duration, a monitoringpb.Aggregation_Aligner, r monitoringpb.Aggregation_Reducer, groupBy ...string) *monitoringpb.ListTimeSeriesRequest {
	req := &monitoringpb.ListTimeSeriesRequest{
		Name:     "projects/" + project,
		Filter:   filter,
		Interval: &monitoringpb.TimeInterval{StartTime: timestamppb.New(start), EndTime: timestamppb.New(end)},
		View:     monitoringpb.ListTimeSeriesRequest_FULL,
	}
	if a != monitoringpb.Aggregation_ALIGN_NONE || r != monitoringpb.Aggregation_REDUCE_NONE {
		req.Aggregation = &monitoringpb.Aggregation{
			PerSeriesAligner:   a,
			CrossSeriesReducer: r,
			GroupByFields:      groupBy,
		}
		if period > 0 {
			req.Aggregation.AlignmentPeriod = durationpb.New(period)
		}
	}
	return req
}

// latencyBucket is the request_latencies bucket index of ms (exponential, √2, scale 1).
func latencyBucket(ms float64) int {
	if ms < monitoringemu.RunLatencyScale {
		return 0
	}
	return int(math.Floor(math.Log(ms/monitoringemu.RunLatencyScale)/math.Log(monitoringemu.RunLatencyGrowthFactor))) + 1
}

// trueP95 is the nearest-rank 95th percentile of vs (sorted).
func truePercentile(sorted []float64, p float64) float64 {
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	if i < 0 {
		i = 0
	}
	return sorted[i]
}

// withinOneBucket reports whether got lies in the bucket of want or a neighbour.
func withinOneBucket(got, want float64) bool {
	d := latencyBucket(got) - latencyBucket(want)
	return d >= -1 && d <= 1
}

func dur(d time.Duration) *time.Duration { return &d }
