package monitoringemu

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/api/distribution"
)

func TestRunBucketOf(t *testing.T) {
	tests := []struct {
		ms   float64
		want int
	}{
		{0, 0}, {0.99, 0}, {1, 1}, {1.41, 1}, {math.Sqrt2, 2}, {2.01, 3},
		{8.01, 7}, {10, 7}, {11.3, 7}, {11.32, 8}, {1000, 20}, {math.Pow(2, 32) + 1, 65}, {1e12, 65},
	}
	for _, tt := range tests {
		if got := runBucketOf(tt.ms); got != tt.want {
			t.Errorf("runBucketOf(%v): got %d, want %d", tt.ms, got, tt.want)
		}
		lo, hi := bucketBounds(runLatencyOptions, tt.want)
		if tt.ms < lo || tt.ms >= hi {
			t.Errorf("%v ms is not in bucket %d's bounds [%v, %v)", tt.ms, tt.want, lo, hi)
		}
	}
}

func TestDistMergeMatchesDirect(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var all, a, b dist
	all.opts, a.opts, b.opts = runLatencyOptions, runLatencyOptions, runLatencyOptions
	for i := range 1000 {
		v := rng.ExpFloat64() * 100
		all.add(v, runBucketOf(v))
		if i%3 == 0 {
			a.add(v, runBucketOf(v))
		} else {
			b.add(v, runBucketOf(v))
		}
	}
	m := &dist{}
	if err := m.merge(&a); err != nil {
		t.Fatal(err)
	}
	if err := m.merge(&b); err != nil {
		t.Fatal(err)
	}
	if m.count != all.count || math.Abs(m.mean-all.mean) > 1e-9 || math.Abs(m.ssd-all.ssd)/all.ssd > 1e-9 {
		t.Errorf("merged: count %d mean %v ssd %v; direct: %d %v %v", m.count, m.mean, m.ssd, all.count, all.mean, all.ssd)
	}
	for i := range all.counts {
		if m.counts[i] != all.counts[i] {
			t.Fatalf("bucket %d: merged %d, direct %d", i, m.counts[i], all.counts[i])
		}
	}
	other := &dist{count: 1, mean: 1, opts: &distribution.Distribution_BucketOptions{Options: &distribution.Distribution_BucketOptions_LinearBuckets{LinearBuckets: &distribution.Distribution_BucketOptions_Linear{NumFiniteBuckets: 2, Width: 1}}}, counts: []int64{0, 1}}
	if err := m.merge(other); err != errLayouts {
		t.Errorf("merging different layouts: got %v, want errLayouts", err)
	}
}

func TestPercentileInterpolation(t *testing.T) {
	linear := &distribution.Distribution_BucketOptions{Options: &distribution.Distribution_BucketOptions_LinearBuckets{LinearBuckets: &distribution.Distribution_BucketOptions_Linear{NumFiniteBuckets: 4, Width: 10, Offset: 0}}}
	tests := []struct {
		name string
		d    dist
		p    float64
		want float64
	}{
		// Buckets: (-inf,0) [0,10) [10,20) [20,30) [30,40) [40,inf).
		{"middle of a bucket", dist{count: 10, opts: linear, counts: []int64{0, 10}}, 50, 5},
		{"second bucket", dist{count: 10, opts: linear, counts: []int64{0, 5, 5}}, 95, 19},
		{"short bucket_counts", dist{count: 4, opts: linear, counts: []int64{0, 0, 0, 4}}, 50, 25},
		{"overflow yields its lower bound", dist{count: 2, opts: linear, counts: []int64{0, 1, 0, 0, 0, 1}}, 99, 40},
		{"exponential underflow starts at 0", dist{count: 2, opts: runLatencyOptions, counts: []int64{2}}, 50, 0.5},
		{"no buckets: the mean", dist{count: 3, mean: 7}, 95, 7},
	}
	for _, tt := range tests {
		if got := tt.d.percentile(tt.p); math.Abs(got-tt.want) > 1e-9 {
			t.Errorf("%s: p%v got %v, want %v", tt.name, tt.p, got, tt.want)
		}
	}
	if got := percentileOf([]float64{9, 1, 2, 5}, 50); got != 3.5 {
		t.Errorf("percentileOf: got %v, want 3.5", got)
	}
}

func TestRetention(t *testing.T) {
	r := newRunStore(time.Minute)
	t0 := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	k := runKey{project: "p", revision: "r", code: 200}
	for h := range 30 {
		at := t0.Add(time.Duration(h) * time.Hour)
		r.record(k, at, 1, at)
	}
	if n := len(r.series[k].periods); n > 26 {
		t.Errorf("periods kept after 30 hours of traffic: %d, want at most 26 (25 hours)", n)
	}
	st := newStore()
	for h := range 30 {
		at := t0.Add(time.Duration(h) * time.Hour)
		st.mu.Lock()
		rs := st.seriesLocked("p", MetricNumBackends, nil, ResourceCloudSQLDatabase, nil, 0, 0, "")
		rs.putLocked(rawPoint{start: at, end: at, visibleAt: at})
		st.pruneLocked(at)
		st.mu.Unlock()
	}
	for _, m := range st.series {
		for _, rs := range m {
			if len(rs.points) > 26 {
				t.Errorf("gauge points kept after 30 hours: %d, want at most 26", len(rs.points))
			}
		}
	}
}

func TestParseFilterClauses(t *testing.T) {
	mt, cs, err := parseFilter(`metric.type = "a/b" AND resource.label.x = one_of("1","2") AND metric.labels.y != "z"`, true)
	if err != nil {
		t.Fatal(err)
	}
	if mt != "a/b" || len(cs) != 3 {
		t.Fatalf("got %q and %d clauses", mt, len(cs))
	}
	if c := cs[1]; c.kind != fieldResourceLabel || c.key != "x" || len(c.values) != 2 || c.negate {
		t.Errorf("one_of clause: got %+v", c)
	}
	if c := cs[2]; c.kind != fieldMetricLabel || c.key != "y" || !c.negate || !c.matches("w") || c.matches("z") {
		t.Errorf("!= clause: got %+v", c)
	}
	if _, _, err := parseFilter(`metric.type = "a\"b"`, true); err != nil {
		t.Errorf("escaped quote: %v", err)
	}
}
