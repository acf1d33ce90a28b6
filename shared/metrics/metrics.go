// Package metrics reads what the judge needs from Cloud Monitoring through the official client
// (cloud.google.com/go/monitoring/apiv3/v2): a Cloud Run revision's request counts by response
// class and its latency distribution over a window, and a Cloud SQL instance's connections in
// use. It is one source of figures for shared/judge; the judge never sees a client.
//
// Windows are cut at the alignment period: a window's start is rounded up and its end down to
// a multiple of the alignment, so every aligned point lies wholly inside it and no request from
// before a stage began is counted. Latency distributions are read per alignment period and
// their buckets merged, so a percentile is computed over the whole window, never averaged
// across points. No series at all is ErrNoData, never zero.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	monitoring "cloud.google.com/go/monitoring/apiv3/v2"
	"cloud.google.com/go/monitoring/apiv3/v2/monitoringpb"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ai-square/coalmine/shared/emulator"
)

// EmulatorHostEnv names the environment variable that points the reader at a local Cloud
// Monitoring server (host:port, plaintext gRPC), as `coalmine local up` writes in local.env.
const EmulatorHostEnv = "MONITORING_EMULATOR_HOST"

// Metric and resource types read.
const (
	RequestCount     = "run.googleapis.com/request_count"
	RequestLatencies = "run.googleapis.com/request_latencies"
	NumBackends      = "cloudsql.googleapis.com/database/postgresql/num_backends"

	resourceRevision = "cloud_run_revision"
	resourceDatabase = "cloudsql_database"
)

// Errors, classified so that callers decide with errors.Is and Transient.
var (
	// ErrNoData: Cloud Monitoring holds no series for the query over the window (no request
	// reached the revision, or the data has not arrived yet). Never read as zero.
	ErrNoData = errors.New("metrics: no data")
	// ErrWindow: the window holds no whole alignment period, so nothing can be read yet.
	ErrWindow = errors.New("metrics: window shorter than one alignment period")
	// ErrPermanent: Cloud Monitoring refused the query (invalid, not permitted, not found);
	// asking again will not help.
	ErrPermanent = errors.New("metrics: query refused")
)

// DefaultAlignment is Cloud Monitoring's smallest alignment period.
const DefaultAlignment = 60 * time.Second

// Reader reads metrics of one project.
type Reader struct {
	client    *monitoring.MetricClient
	project   string
	alignment time.Duration
}

// Options configure a Reader.
type Options struct {
	// Project is the Cloud Run service's project, where its metrics are written. (A Cloud
	// SQL instance's metrics are read in the project its database_id names.)
	Project string
	// Alignment is the alignment period of the queries (default 60s, Google's minimum).
	Alignment time.Duration
	// ClientOptions are passed to the Monitoring client; when empty and
	// MONITORING_EMULATOR_HOST is set, the emulator is used.
	ClientOptions []option.ClientOption
}

// EmulatorOptions returns client options for MONITORING_EMULATOR_HOST, or nil when it is not
// set (the real API with Application Default Credentials).
func EmulatorOptions() []option.ClientOption {
	return EmulatorOptionsFor(os.Getenv(EmulatorHostEnv))
}

// EmulatorOptionsFor returns client options for a local Monitoring server at host, or nil
// when host is empty.
func EmulatorOptionsFor(host string) []option.ClientOption {
	return emulator.ClientOptions(host)
}

// New connects to Cloud Monitoring.
func New(ctx context.Context, o Options) (*Reader, error) {
	if o.Project == "" {
		return nil, errors.New("metrics: project is required")
	}
	if o.Alignment == 0 {
		o.Alignment = DefaultAlignment
	}
	if o.Alignment < time.Second || o.Alignment%time.Second != 0 {
		return nil, fmt.Errorf("metrics: alignment %v must be a whole number of seconds", o.Alignment)
	}
	opts := o.ClientOptions
	if len(opts) == 0 {
		opts = EmulatorOptions()
	}
	c, err := monitoring.NewMetricClient(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("metrics: monitoring client: %w", err)
	}
	return &Reader{client: c, project: o.Project, alignment: o.Alignment}, nil
}

// Close closes the client.
func (r *Reader) Close() error { return r.client.Close() }

// Window is a span of time [Start, End].
type Window struct {
	Start, End time.Time
}

// Aligned returns w cut to whole alignment periods on the Unix time grid (multiples of the
// period since 1970-01-01 UTC, where Cloud Monitoring's sample periods fall): Start rounded
// up, End rounded down. ok is false when no whole period remains.
func (w Window) Aligned(period time.Duration) (Window, bool) {
	down := func(t time.Time) time.Time {
		p := period.Nanoseconds()
		n := t.UnixNano()
		r := n % p
		if r < 0 {
			r += p
		}
		return time.Unix(0, n-r).In(t.Location())
	}
	start := down(w.Start)
	if start.Before(w.Start) {
		start = start.Add(period)
	}
	end := down(w.End)
	if !end.After(start) {
		return Window{}, false
	}
	return Window{Start: start, End: end}, true
}

// series runs one ListTimeSeries and returns every series, or ErrNoData when there is none.
func (r *Reader) series(ctx context.Context, project, what, filter string, w Window, agg *monitoringpb.Aggregation) ([]*monitoringpb.TimeSeries, error) {
	req := &monitoringpb.ListTimeSeriesRequest{
		Name:        "projects/" + project,
		Filter:      filter,
		Interval:    &monitoringpb.TimeInterval{StartTime: timestamppb.New(w.Start), EndTime: timestamppb.New(w.End)},
		Aggregation: agg,
		View:        monitoringpb.ListTimeSeriesRequest_FULL,
	}
	var out []*monitoringpb.TimeSeries
	it := r.client.ListTimeSeries(ctx, req)
	for {
		ts, err := it.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			return nil, classify(what, err)
		}
		out = append(out, ts)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s from %s to %s: %w", what, w.Start.UTC().Format(time.RFC3339), w.End.UTC().Format(time.RFC3339), ErrNoData)
	}
	return out, nil
}

func (r *Reader) aggregation(aligner monitoringpb.Aggregation_Aligner, reducer monitoringpb.Aggregation_Reducer, groupBy ...string) *monitoringpb.Aggregation {
	return &monitoringpb.Aggregation{
		AlignmentPeriod:    durationpb.New(r.alignment),
		PerSeriesAligner:   aligner,
		CrossSeriesReducer: reducer,
		GroupByFields:      groupBy,
	}
}

// transientCodes are the gRPC codes worth asking again.
var transientCodes = map[codes.Code]bool{
	codes.Unavailable:       true,
	codes.DeadlineExceeded:  true,
	codes.ResourceExhausted: true,
	codes.Aborted:           true,
	codes.Internal:          true,
	codes.Unknown:           true,
}

// classify wraps a failed query: refusals become ErrPermanent; everything else (unavailable,
// deadline, quota, network) stays transient.
func classify(what string, err error) error {
	if s, ok := status.FromError(err); ok && s.Code() != codes.OK && !transientCodes[s.Code()] && s.Code() != codes.Canceled {
		return fmt.Errorf("%s: %w: %w", what, ErrPermanent, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// Transient reports whether asking again may succeed: false for ErrPermanent, ErrWindow and a
// cancelled context, and for ErrNoData (which is an answer, not a failure); true otherwise.
func Transient(err error) bool {
	if err == nil {
		return false
	}
	for _, perm := range []error{ErrPermanent, ErrNoData, ErrWindow, context.Canceled} {
		if errors.Is(err, perm) {
			return false
		}
	}
	return true
}
