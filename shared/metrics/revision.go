package metrics

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"cloud.google.com/go/monitoring/apiv3/v2/monitoringpb"
	"google.golang.org/genproto/googleapis/api/distribution"

	"github.com/ai-square/coalmine/shared/judge"
)

// RevisionID names a Cloud Run revision (resource labels of cloud_run_revision).
type RevisionID struct {
	Service, Revision string
}

// Revision is what Cloud Monitoring holds of one revision over a window.
type Revision struct {
	// Name is the revision's name.
	Name string
	// Window is the aligned window read.
	Window Window
	// Classes counts requests by response class ("2xx", "5xx", ...).
	Classes map[string]int64
	// Latency is the merged distribution of request latencies in milliseconds; empty when
	// Cloud Monitoring holds none.
	Latency judge.Histogram
}

// Total returns the number of requests over every class.
func (r Revision) Total() int64 {
	var n int64
	for _, c := range r.Classes {
		n += c
	}
	return n
}

// Figures returns r as the judge takes it: errors are the 5xx responses.
func (r Revision) Figures() *judge.Revision {
	return &judge.Revision{Name: r.Name, Requests: judge.Requests{Total: r.Total(), Errors: r.Classes["5xx"]}, Latency: r.Latency}
}

// Revision reads a revision's requests by class and its latency distribution over w, cut to
// whole alignment periods. It returns ErrWindow when w holds no whole period and ErrNoData
// when Cloud Monitoring has no request_count series for the revision in it.
func (r *Reader) Revision(ctx context.Context, id RevisionID, w Window) (Revision, error) {
	aw, ok := w.Aligned(r.alignment)
	if !ok {
		return Revision{}, fmt.Errorf("revision %s from %s to %s (alignment %v): %w", id.Revision, w.Start.Format("15:04:05"), w.End.Format("15:04:05"), r.alignment, ErrWindow)
	}
	out := Revision{Name: id.Revision, Window: aw, Classes: map[string]int64{}}
	base := fmt.Sprintf(`resource.type = %q AND resource.labels.service_name = %q AND resource.labels.revision_name = %q`, resourceRevision, id.Service, id.Revision)

	counts, err := r.series(ctx, r.project, "request counts of "+id.Revision, fmt.Sprintf(`metric.type = %q AND `, RequestCount)+base, aw,
		r.aggregation(monitoringpb.Aggregation_ALIGN_DELTA, monitoringpb.Aggregation_REDUCE_SUM, "resource.labels.revision_name", "metric.labels.response_code_class"))
	if err != nil {
		return Revision{}, err
	}
	for _, ts := range counts {
		class := ts.GetMetric().GetLabels()["response_code_class"]
		for _, p := range inWindow(ts, aw) {
			out.Classes[class] += p.GetValue().GetInt64Value()
		}
	}

	lat, err := r.series(ctx, r.project, "request latencies of "+id.Revision, fmt.Sprintf(`metric.type = %q AND `, RequestLatencies)+base, aw,
		r.aggregation(monitoringpb.Aggregation_ALIGN_DELTA, monitoringpb.Aggregation_REDUCE_SUM, "resource.labels.revision_name"))
	switch {
	case err == nil:
	case isNoData(err):
		return out, nil // counts without latencies: the latency gates will say there is no data
	default:
		return Revision{}, err
	}
	for _, ts := range lat {
		for _, p := range inWindow(ts, aw) {
			h, err := histogram(p.GetValue().GetDistributionValue())
			if err != nil {
				return Revision{}, fmt.Errorf("request latencies of %s: %w: %w", id.Revision, ErrPermanent, err)
			}
			if err := out.Latency.Merge(h); err != nil {
				return Revision{}, fmt.Errorf("request latencies of %s: %w: %w", id.Revision, ErrPermanent, err)
			}
		}
	}
	return out, nil
}

// inWindow returns the points of ts whose period ends inside w (after its start, at or before
// its end): a point ending at w.Start belongs to the period before it.
func inWindow(ts *monitoringpb.TimeSeries, w Window) []*monitoringpb.Point {
	var out []*monitoringpb.Point
	for _, p := range ts.GetPoints() {
		end := p.GetInterval().GetEndTime().AsTime()
		if end.After(w.Start) && !end.After(w.End) {
			out = append(out, p)
		}
	}
	return out
}

// histogram converts a Cloud Monitoring distribution into the judge's histogram. Google may
// trim trailing empty buckets from bucket_counts; they are restored.
func histogram(d *distribution.Distribution) (judge.Histogram, error) {
	if d == nil || d.GetCount() == 0 {
		return judge.Histogram{}, nil
	}
	bounds, err := Bounds(d.GetBucketOptions())
	if err != nil {
		return judge.Histogram{}, err
	}
	counts := make([]int64, len(bounds)+1)
	if len(d.GetBucketCounts()) > len(counts) {
		return judge.Histogram{}, fmt.Errorf("distribution has %d bucket counts for %d buckets", len(d.GetBucketCounts()), len(counts))
	}
	copy(counts, d.GetBucketCounts())
	return judge.Histogram{Bounds: bounds, Counts: counts}, nil
}

// Bounds returns the finite bucket boundaries a distribution's bucket options describe (the
// lower bound of every bucket but the underflow one).
func Bounds(o *distribution.Distribution_BucketOptions) ([]float64, error) {
	switch {
	case o.GetExponentialBuckets() != nil:
		e := o.GetExponentialBuckets()
		if e.GetNumFiniteBuckets() < 1 || e.GetGrowthFactor() <= 1 || e.GetScale() <= 0 {
			return nil, fmt.Errorf("exponential buckets %v are invalid", e)
		}
		b := make([]float64, e.GetNumFiniteBuckets()+1)
		v := e.GetScale()
		for i := range b {
			b[i] = v
			v *= e.GetGrowthFactor()
		}
		return b, nil
	case o.GetLinearBuckets() != nil:
		l := o.GetLinearBuckets()
		if l.GetNumFiniteBuckets() < 1 || l.GetWidth() <= 0 {
			return nil, fmt.Errorf("linear buckets %v are invalid", l)
		}
		b := make([]float64, l.GetNumFiniteBuckets()+1)
		for i := range b {
			b[i] = l.GetOffset() + float64(i)*l.GetWidth()
		}
		return b, nil
	case o.GetExplicitBuckets() != nil:
		b := slices.Clone(o.GetExplicitBuckets().GetBounds())
		if len(b) == 0 {
			return nil, fmt.Errorf("explicit buckets have no bounds")
		}
		return b, nil
	}
	return nil, fmt.Errorf("distribution has no bucket options")
}

// String summarizes r: "240 requests (2xx 236, 5xx 4), p95 181ms".
func (r Revision) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d requests", r.Total())
	if len(r.Classes) > 0 {
		b.WriteString(" (")
		for i, c := range slices.Sorted(maps.Keys(r.Classes)) {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%s %d", c, r.Classes[c])
		}
		b.WriteString(")")
	}
	if p95, ok := r.Latency.Quantile(0.95); ok {
		fmt.Fprintf(&b, ", p95 %.0fms", p95)
	}
	return b.String()
}
