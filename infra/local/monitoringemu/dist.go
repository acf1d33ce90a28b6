package monitoringemu

import (
	"errors"
	"fmt"
	"math"
	"sort"

	"google.golang.org/genproto/googleapis/api/distribution"
	"google.golang.org/protobuf/proto"
)

// Cloud Run's request_latencies bucket layout.
//
// Google's metric list does not state the layout of run.googleapis.com/request_latencies
// and no source at hand shows a Cloud Run point. We use the exponential layout that
// google/slo-generator's documentation (PR #56, "latency SLI-SLO from an exponential
// distribution metric") shows for loadbalancing.googleapis.com/https/backend_latencies:
// growthFactor √2, numFiniteBuckets 64, scale 1.0 (ms), which spans 1 ms to 2^32 ms with
// a relative bucket width of 41%. Readers must not depend on the exact layout; they get
// it with every point (bucket_options).
const (
	RunLatencyBuckets      = 64
	RunLatencyGrowthFactor = math.Sqrt2
	RunLatencyScale        = 1.0
)

// runLatencyOptions is the bucket layout of request_latencies points.
var runLatencyOptions = &distribution.Distribution_BucketOptions{
	Options: &distribution.Distribution_BucketOptions_ExponentialBuckets{
		ExponentialBuckets: &distribution.Distribution_BucketOptions_Exponential{
			NumFiniteBuckets: RunLatencyBuckets,
			GrowthFactor:     RunLatencyGrowthFactor,
			Scale:            RunLatencyScale,
		},
	},
}

// runBounds are the lower bounds of request_latencies buckets 1..N+1, computed as
// readers compute them from bucket_options (scale * growth_factor^(i-1)).
var runBounds = func() []float64 {
	b := make([]float64, RunLatencyBuckets+1)
	for i := range b {
		b[i] = RunLatencyScale * math.Pow(RunLatencyGrowthFactor, float64(i))
	}
	return b
}()

// runBucketOf is the index of the request_latencies bucket that holds ms: 0 is the
// underflow bucket (< scale), 1..N the finite buckets, N+1 the overflow bucket.
func runBucketOf(ms float64) int {
	// The number of lower bounds <= ms.
	return sort.Search(len(runBounds), func(i int) bool { return runBounds[i] > ms })
}

// dist is a distribution value: count, mean and sum of squared deviation (Welford), and
// bucket counts over a layout (opts, shared and never modified). counts may be shorter
// than the layout's number of buckets: missing trailing buckets are zero, as in Google's
// answers, which trim trailing zeros.
type dist struct {
	count  int64
	mean   float64
	ssd    float64
	opts   *distribution.Distribution_BucketOptions
	counts []int64
}

// add adds one value that falls in bucket b.
func (d *dist) add(v float64, b int) {
	d.count++
	delta := v - d.mean
	d.mean += delta / float64(d.count)
	d.ssd += delta * (v - d.mean)
	for len(d.counts) <= b {
		d.counts = append(d.counts, 0)
	}
	d.counts[b]++
}

// clone returns a deep copy (opts shared).
func (d *dist) clone() *dist {
	c := *d
	c.counts = append([]int64(nil), d.counts...)
	return &c
}

// errLayouts is returned when distributions with different bucket layouts are merged.
var errLayouts = errors.New("distributions with different bucket layouts cannot be merged by this emulator")

// merge adds o into d (Chan et al.'s parallel variance formula).
func (d *dist) merge(o *dist) error {
	if o.count == 0 && len(o.counts) == 0 {
		return nil
	}
	if d.opts == nil && d.count == 0 {
		d.opts = o.opts
	} else if o.opts != nil && d.opts != o.opts && !proto.Equal(d.opts, o.opts) {
		return errLayouts
	}
	n := d.count + o.count
	if n > 0 {
		delta := o.mean - d.mean
		d.ssd += o.ssd + delta*delta*float64(d.count)*float64(o.count)/float64(n)
		d.mean += delta * float64(o.count) / float64(n)
	}
	d.count = n
	for len(d.counts) < len(o.counts) {
		d.counts = append(d.counts, 0)
	}
	for i, c := range o.counts {
		d.counts[i] += c
	}
	return nil
}

// toProto returns the distribution as Google sends it, trailing zero buckets trimmed.
func (d *dist) toProto() *distribution.Distribution {
	counts := d.counts
	for len(counts) > 0 && counts[len(counts)-1] == 0 {
		counts = counts[:len(counts)-1]
	}
	return &distribution.Distribution{
		Count:                 d.count,
		Mean:                  d.mean,
		SumOfSquaredDeviation: d.ssd,
		BucketOptions:         d.opts,
		BucketCounts:          append([]int64(nil), counts...),
	}
}

// distFromProto validates p (as Google does on writes) and converts it.
func distFromProto(p *distribution.Distribution) (*dist, error) {
	if p.GetCount() < 0 {
		return nil, errors.New("distribution count is negative")
	}
	if p.GetCount() == 0 && (p.GetMean() != 0 || p.GetSumOfSquaredDeviation() != 0) {
		return nil, errors.New("distribution with count 0 must have mean and sum_of_squared_deviation 0")
	}
	d := &dist{count: p.GetCount(), mean: p.GetMean(), ssd: p.GetSumOfSquaredDeviation()}
	if len(p.GetBucketCounts()) > 0 {
		if p.GetBucketOptions() == nil {
			return nil, errors.New("distribution has bucket_counts but no bucket_options")
		}
		n, err := numBuckets(p.GetBucketOptions())
		if err != nil {
			return nil, err
		}
		if len(p.GetBucketCounts()) > n {
			return nil, fmt.Errorf("distribution has %d bucket_counts, its bucket_options define %d buckets", len(p.GetBucketCounts()), n)
		}
		var sum int64
		for _, c := range p.GetBucketCounts() {
			if c < 0 {
				return nil, errors.New("distribution has a negative bucket count")
			}
			sum += c
		}
		if sum != p.GetCount() {
			return nil, fmt.Errorf("distribution count %d is not the sum of its bucket_counts (%d)", p.GetCount(), sum)
		}
		d.opts = proto.Clone(p.GetBucketOptions()).(*distribution.Distribution_BucketOptions)
		d.counts = append([]int64(nil), p.GetBucketCounts()...)
	} else if p.GetBucketOptions() != nil {
		if _, err := numBuckets(p.GetBucketOptions()); err != nil {
			return nil, err
		}
		d.opts = proto.Clone(p.GetBucketOptions()).(*distribution.Distribution_BucketOptions)
	}
	return d, nil
}

// numBuckets is the number of buckets (underflow and overflow included) of a layout.
func numBuckets(o *distribution.Distribution_BucketOptions) (int, error) {
	switch {
	case o.GetExponentialBuckets() != nil:
		e := o.GetExponentialBuckets()
		if e.GetNumFiniteBuckets() <= 0 || e.GetGrowthFactor() <= 1 || e.GetScale() <= 0 {
			return 0, errors.New("exponential buckets need num_finite_buckets > 0, growth_factor > 1, scale > 0")
		}
		return int(e.GetNumFiniteBuckets()) + 2, nil
	case o.GetLinearBuckets() != nil:
		l := o.GetLinearBuckets()
		if l.GetNumFiniteBuckets() <= 0 || l.GetWidth() <= 0 {
			return 0, errors.New("linear buckets need num_finite_buckets > 0, width > 0")
		}
		return int(l.GetNumFiniteBuckets()) + 2, nil
	case o.GetExplicitBuckets() != nil:
		b := o.GetExplicitBuckets().GetBounds()
		if len(b) == 0 || !sort.Float64sAreSorted(b) {
			return 0, errors.New("explicit buckets need increasing bounds")
		}
		return len(b) + 1, nil
	}
	return 0, errors.New("bucket_options names no layout")
}

// bucketBounds is [lo, hi) of bucket i of a layout; the underflow bucket's lo and the
// overflow bucket's hi are infinite.
func bucketBounds(o *distribution.Distribution_BucketOptions, i int) (lo, hi float64) {
	lo, hi = math.Inf(-1), math.Inf(1)
	switch {
	case o.GetExponentialBuckets() != nil:
		e := o.GetExponentialBuckets()
		n := int(e.GetNumFiniteBuckets())
		if i > 0 {
			lo = e.GetScale() * math.Pow(e.GetGrowthFactor(), float64(i-1))
		}
		if i <= n {
			hi = e.GetScale() * math.Pow(e.GetGrowthFactor(), float64(i))
		}
	case o.GetLinearBuckets() != nil:
		l := o.GetLinearBuckets()
		n := int(l.GetNumFiniteBuckets())
		if i > 0 {
			lo = l.GetOffset() + l.GetWidth()*float64(i-1)
		}
		if i <= n {
			hi = l.GetOffset() + l.GetWidth()*float64(i)
		}
	case o.GetExplicitBuckets() != nil:
		b := o.GetExplicitBuckets().GetBounds()
		if i > 0 {
			lo = b[i-1]
		}
		if i < len(b) {
			hi = b[i]
		}
	}
	return lo, hi
}

// percentile is the p-th percentile (0 < p < 100) of d from its buckets: the bucket that
// holds rank p/100*count, interpolated linearly between its bounds. The underflow bucket
// of an exponential layout starts at 0 (it only holds values below scale > 0); an
// otherwise unbounded bucket yields its finite bound. Without buckets it is the mean.
func (d *dist) percentile(p float64) float64 {
	if d.count == 0 {
		return 0
	}
	if d.opts == nil || len(d.counts) == 0 {
		return d.mean
	}
	rank := p / 100 * float64(d.count)
	var cum int64
	for i, c := range d.counts {
		if c == 0 {
			continue
		}
		if float64(cum+c) >= rank {
			lo, hi := bucketBounds(d.opts, i)
			if math.IsInf(lo, -1) {
				if d.opts.GetExponentialBuckets() != nil {
					lo = 0
				} else {
					return hi
				}
			}
			if math.IsInf(hi, 1) {
				return lo
			}
			f := (rank - float64(cum)) / float64(c)
			return lo + f*(hi-lo)
		}
		cum += c
	}
	// Rounding: the rank is beyond the last bucket with values.
	for i := len(d.counts) - 1; i >= 0; i-- {
		if d.counts[i] > 0 {
			lo, hi := bucketBounds(d.opts, i)
			if math.IsInf(hi, 1) {
				return lo
			}
			return hi
		}
	}
	return d.mean
}

// percentileOf is the p-th percentile of numbers, linearly interpolated between the
// closest ranks (the "linear" method, R type 7). vs is sorted in place.
func percentileOf(vs []float64, p float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	sort.Float64s(vs)
	h := p / 100 * float64(len(vs)-1)
	i := int(math.Floor(h))
	if i >= len(vs)-1 {
		return vs[len(vs)-1]
	}
	return vs[i] + (h-float64(i))*(vs[i+1]-vs[i])
}
