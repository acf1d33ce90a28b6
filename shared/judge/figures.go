// Package judge decides whether a canary revision is healthy. It is pure: it takes the figures
// a metrics source read (the canary's and the stable revision's requests and latencies since
// the stage began, and the database's connection use) and the policy's gates, and returns a
// verdict. It reads no clock and does no I/O, so any source can feed it: Cloud Monitoring
// today (shared/metrics), request logs streamed to Pub/Sub later.
package judge

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/ai-square/coalmine/shared/policy"
)

// Input is what the judge decides on.
type Input struct {
	// Canary is the canary revision's figures since the stage began; nil means the source had
	// no data for it (no series at all), which is never healthy.
	Canary *Revision
	// Stable is the stable revision's figures over the same window; nil means no data, and
	// the comparisons to the stable revision are then inconclusive.
	Stable *Revision
	// Connections is the database's connection use over the window; nil means no data. It
	// is looked at only when Gates.DBConnections is set.
	Connections *Connections
	// Gates are the service's gates from the policy.
	Gates policy.Gates
	// Start and End bound the window the figures cover: Start is when the stage began, End
	// is the newest time the source's data is complete for (now minus the ingestion delay).
	Start, End time.Time
}

// Revision is one revision's figures over the window.
type Revision struct {
	// Name is the revision's name.
	Name string
	// Requests are the requests that reached the revision.
	Requests Requests
	// Latency is the distribution of the revision's request latencies in milliseconds; it
	// is empty (Count 0) when the source has none.
	Latency Histogram
}

// Requests are request counts over the window.
type Requests struct {
	// Total counts every request that reached the revision.
	Total int64
	// Errors counts the 5xx responses among them.
	Errors int64
}

// Connections is a Cloud SQL instance's connection use over the window.
type Connections struct {
	// InUse is the highest number of connections (num_backends summed over the instance's
	// databases) seen in the window.
	InUse float64
	// Max is the instance's max_connections.
	Max int
}

// Histogram is a distribution of values with Cloud Monitoring's bucket layout: with n =
// len(Bounds), Counts has n+1 entries; Counts[0] counts values below Bounds[0] (underflow),
// Counts[i] values in [Bounds[i-1], Bounds[i]), and Counts[n] values at or above Bounds[n-1]
// (overflow). Bounds are strictly increasing. The zero value is an empty histogram.
type Histogram struct {
	Bounds []float64
	Counts []int64
}

// Count returns the number of values in h.
func (h Histogram) Count() int64 {
	var n int64
	for _, c := range h.Counts {
		n += c
	}
	return n
}

// Merge adds o's counts to h. An empty h takes o's layout; bucket layouts that differ are an
// error (a distribution is only mergeable with its own layout).
func (h *Histogram) Merge(o Histogram) error {
	if err := o.check(); err != nil {
		return err
	}
	if len(o.Counts) == 0 {
		return nil
	}
	if len(h.Counts) == 0 {
		h.Bounds = slices.Clone(o.Bounds)
		h.Counts = slices.Clone(o.Counts)
		return nil
	}
	if !slices.Equal(h.Bounds, o.Bounds) {
		return fmt.Errorf("merge histograms: bucket layouts differ (%d and %d bounds)", len(h.Bounds), len(o.Bounds))
	}
	for i, c := range o.Counts {
		h.Counts[i] += c
	}
	return nil
}

func (h Histogram) check() error {
	if len(h.Counts) == 0 && len(h.Bounds) == 0 {
		return nil
	}
	if len(h.Counts) != len(h.Bounds)+1 {
		return fmt.Errorf("histogram: %d counts for %d bounds, want %d", len(h.Counts), len(h.Bounds), len(h.Bounds)+1)
	}
	for i, b := range h.Bounds {
		if math.IsNaN(b) || math.IsInf(b, 0) {
			return fmt.Errorf("histogram: bound %d is %g", i, b)
		}
		if i > 0 && !(b > h.Bounds[i-1]) {
			return fmt.Errorf("histogram: bounds not increasing at %d (%g after %g)", i, b, h.Bounds[i-1])
		}
	}
	for i, c := range h.Counts {
		if c < 0 {
			return fmt.Errorf("histogram: negative count %d in bucket %d", c, i)
		}
	}
	return nil
}

// Quantile returns the q-quantile (0 < q < 1) of h, interpolating linearly inside the bucket
// that holds it, as Cloud Monitoring's percentile aligners and reducers do. A quantile in the
// underflow bucket is taken as its upper bound and one in the overflow bucket as its lower
// bound. ok is false when h is empty.
func (h Histogram) Quantile(q float64) (v float64, ok bool) {
	n := h.Count()
	if n == 0 || len(h.Counts) != len(h.Bounds)+1 {
		return 0, false
	}
	rank := q * float64(n)
	var below float64
	for i, c := range h.Counts {
		if c == 0 {
			continue
		}
		if below+float64(c) < rank && i < len(h.Counts)-1 {
			below += float64(c)
			continue
		}
		switch {
		case len(h.Bounds) == 0:
			return 0, true
		case i == 0:
			return h.Bounds[0], true
		case i == len(h.Bounds):
			return h.Bounds[i-1], true
		}
		lo, hi := h.Bounds[i-1], h.Bounds[i]
		frac := math.Min(1, math.Max(0, (rank-below)/float64(c)))
		return lo + frac*(hi-lo), true
	}
	return h.Bounds[len(h.Bounds)-1], true
}

// Above returns how many values of h are estimated to be greater than x, counting a bucket
// that straddles x in proportion (values spread evenly across the bucket).
func (h Histogram) Above(x float64) float64 {
	if len(h.Counts) != len(h.Bounds)+1 {
		return 0
	}
	var above float64
	for i, c := range h.Counts {
		if c == 0 {
			continue
		}
		lo, hi := math.Inf(-1), math.Inf(1)
		if i > 0 {
			lo = h.Bounds[i-1]
		}
		if i < len(h.Bounds) {
			hi = h.Bounds[i]
		}
		switch {
		case lo >= x:
			above += float64(c)
		case hi <= x:
		case math.IsInf(lo, -1) || math.IsInf(hi, 1):
			// An open bucket straddling x: its values could lie on either side; count none
			// above for underflow and all above for overflow.
			if math.IsInf(hi, 1) {
				above += float64(c)
			}
		default:
			above += float64(c) * (hi - x) / (hi - lo)
		}
	}
	return above
}
