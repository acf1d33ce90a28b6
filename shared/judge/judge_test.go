package judge

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/ai-square/coalmine/shared/policy"
	"gonum.org/v1/gonum/stat/distuv"
)

// defaultGates are the policy's default gates.
func defaultGates() policy.Gates { return policy.Defaults().Gates }

// hist returns a histogram in the simulation's bucket layout with count values at each of
// the given latencies (ms).
func hist(at map[float64]int64) Histogram {
	bounds := latencyBounds()
	h := Histogram{Bounds: bounds, Counts: make([]int64, len(bounds)+1)}
	for v, c := range at {
		h.Counts[bucketOf(bounds, v)] += c
	}
	return h
}

// bucketOf returns the index in Counts of value v.
func bucketOf(bounds []float64, v float64) int {
	i := 0
	for i < len(bounds) && v >= bounds[i] {
		i++
	}
	return i
}

func rev(total, errors int64, lat Histogram) *Revision {
	return &Revision{Name: "r", Requests: Requests{Total: total, Errors: errors}, Latency: lat}
}

func gate(t *testing.T, v Verdict, name string) GateResult {
	t.Helper()
	for _, g := range v.Gates {
		if g.Gate == name {
			return g
		}
	}
	t.Fatalf("verdict has no gate %q: %+v", name, v.Gates)
	return GateResult{}
}

func TestErrorRateGate(t *testing.T) {
	gs := defaultGates()
	with := func(f func(*policy.Gates)) policy.Gates { g := gs; f(&g); return g }
	cases := []struct {
		name   string
		canary *Revision
		gates  policy.Gates
		want   Status
		detail string
	}{
		{"no data", nil, gs, Inconclusive, "no data for the canary"},
		{"no requests", rev(0, 0, Histogram{}), gs, Inconclusive, "no canary requests"},
		{"1 in 3 is not 33%", rev(3, 1, Histogram{}), gs, Inconclusive, "1 error in 3 requests (33.33%)"},
		{"2 in 50 is not enough yet", rev(50, 2, Histogram{}), gs, Inconclusive, "< 20 needed (95%)"},
		{"none in 100 does not rule out 0.6%", rev(100, 0, Histogram{}), gs, Inconclusive, "0 errors in 100 requests (0%); evidence of more than 0.1% 0.833 < 20 needed (95%); not enough data to rule out 0.6% (at most 3.14% at 95%)"},
		{"2 in 100 is not healthy", rev(100, 2, Histogram{}), gs, Inconclusive, "not enough data to rule out 0.6%"},
		{"none in 1000", rev(1000, 0, Histogram{}), gs, Healthy, "0 errors in 1000 requests (0%); evidence of more than 0.1% 0.333 < 20 needed (95%); below 0.6% (at most 0.44% at 95%)"},
		{"at the limit", rev(5000, 5, Histogram{}), gs, Healthy, "5 errors in 5000 requests (0.1%)"},
		{"zone from maxIncreaseOverStable", rev(1000, 0, Histogram{}), with(func(g *policy.Gates) { g.ErrorRate.MaxIncreaseOverStable = 0.002 }), Inconclusive, "rule out 0.3%"},
		{"zone 0.5% when the increase is off", rev(1000, 0, Histogram{}), with(func(g *policy.Gates) { g.ErrorRate.MaxIncreaseOverStable = 1 }), Healthy, "below 0.6%"},
		{"more errors than requests", rev(300, 500, Histogram{}), with(func(g *policy.Gates) { g.ErrorRate.Max = 0.5 }), Inconclusive, "inconsistent figures for the canary: 500 errors > 300 requests"},
		{"negative counts", rev(-5, 0, Histogram{}), gs, Inconclusive, "inconsistent figures for the canary: negative request counts"},
		{"NaN limit", rev(1000, 0, Histogram{}), with(func(g *policy.Gates) { g.ErrorRate.Max = math.NaN() }), Inconclusive, "not a number"},
		{"3 in 240 is not failing yet", rev(240, 3, Histogram{}), gs, Inconclusive, "3 errors in 240 requests (1.25%); evidence of more than 0.1% 12.8 < 20 needed (95%)"},
		{"4 in 240", rev(240, 4, Histogram{}), gs, Unhealthy, "4 errors in 240 requests (1.67%); above 0.1%: evidence"},
		{"3 in 300 is not failing, nor healthy", rev(300, 3, Histogram{}), gs, Inconclusive, "evidence of more than 0.1% 9.95 < 20 needed (95%); not enough data to rule out 0.6%"},
		{"conclusive below minRequests", rev(60, 5, Histogram{}), gs, Unhealthy, "5 errors in 60 requests"},
		{"max 1 is off", rev(100, 100, Histogram{}), with(func(g *policy.Gates) { g.ErrorRate.Max = 1 }), Healthy, "off"},
		{"max 0: any 5xx fails", rev(1000, 1, Histogram{}), with(func(g *policy.Gates) { g.ErrorRate.Max = 0 }), Unhealthy, "evidence ∞"},
		{"max 0: none is fine", rev(2000, 0, Histogram{}), with(func(g *policy.Gates) { g.ErrorRate.Max = 0 }), Healthy, "0 errors"},
		{"confidence 0.99 asks more", rev(240, 3, Histogram{}), with(func(g *policy.Gates) { g.ErrorRate.Confidence = 0.99 }), Inconclusive, "< 100 needed (99%)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := Judge(Input{Canary: c.canary, Gates: c.gates})
			got := gate(t, v, GateErrorRate)
			if got.Status != c.want || !strings.Contains(got.Detail, c.detail) {
				t.Errorf("got %v %q, want %v containing %q", got.Status, got.Detail, c.want, c.detail)
			}
			if got.Action != policy.ActionRollback {
				t.Errorf("got action %q, want rollback", got.Action)
			}
			if (strings.HasPrefix(got.Detail, "no ") || strings.HasPrefix(got.Detail, "inconsistent")) && (got.Observed != 0 || got.Limit != 0) {
				t.Errorf("no data: got observed %g, limit %g, want 0, 0", got.Observed, got.Limit)
			}
		})
	}
}

func TestErrorRateOverStableGate(t *testing.T) {
	gs := defaultGates()
	gs.ErrorRate.Max = 1 // isolate the comparison
	off := gs
	off.ErrorRate.MaxIncreaseOverStable = 1
	cases := []struct {
		name           string
		canary, stable *Revision
		gates          policy.Gates
		want           Status
		detail         string
	}{
		{"stable missing", rev(1000, 50, Histogram{}), nil, gs, Inconclusive, "no data for the stable revision"},
		{"stable without requests", rev(1000, 50, Histogram{}), rev(0, 0, Histogram{}), gs, Inconclusive, "no data for the stable revision"},
		{"no canary", nil, rev(1000, 1, Histogram{}), gs, Inconclusive, "no data for the canary"},
		{"far above", rev(1000, 20, Histogram{}), rev(10000, 10, Histogram{}), gs, Unhealthy, "canary 2% (20/1000), stable 0.1% (10/10000"},
		{"within the increase, not yet bounded", rev(1000, 8, Histogram{}), rev(10000, 60, Histogram{}), gs, Inconclusive, "canary 0.8% (8/1000), stable 0.6% (60/10000, at most 0.96% at 97.5%); evidence of canary above 1.46% 0.304 < 40 needed (97.5%); stable at least 0.37%; not enough data to rule out 1.37% (at most 2.08% at 97.5%)"},
		{"within the increase", rev(4000, 32, Histogram{}), rev(40000, 240, Histogram{}), gs, Healthy, "; below "},
		{"same rate", rev(2000, 2, Histogram{}), rev(20000, 20, Histogram{}), gs, Healthy, "stable 0.1%"},
		{"3 stable requests bound nothing", rev(2000, 2, Histogram{}), rev(3, 0, Histogram{}), gs, Inconclusive, "the stable rate is not yet bounded within 0.5% of its ratio"},
		{"inconsistent stable", rev(2000, 2, Histogram{}), rev(100, 200, Histogram{}), gs, Inconclusive, "inconsistent figures for the stable revision: 200 errors > 100 requests"},
		{"off", rev(1000, 500, Histogram{}), rev(10000, 10, Histogram{}), off, Healthy, "off"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := Judge(Input{Canary: c.canary, Stable: c.stable, Gates: c.gates})
			got := gate(t, v, GateErrorRateOverStable)
			if got.Status != c.want || !strings.Contains(got.Detail, c.detail) {
				t.Errorf("got %v %q, want %v containing %q", got.Status, got.Detail, c.want, c.detail)
			}
		})
	}
}

func TestLatencyGates(t *testing.T) {
	gs := defaultGates()
	noRatio := gs
	noRatio.LatencyP95.MaxRatioToStable = 0
	noMax := gs
	noMax.LatencyP95.MaxMs = 0
	fast := hist(map[float64]int64{100: 900, 300: 100})             // p95 ~300 ms
	slow := hist(map[float64]int64{100: 700, 2000: 300})            // 30% over 1000 ms
	fewSlow := hist(map[float64]int64{100: 2, 2000: 1})             // 1 in 3 slow
	stable := hist(map[float64]int64{100: 9000, 300: 1000})         // p95 ~300 ms
	slower := hist(map[float64]int64{100: 700, 300: 100, 900: 200}) // 20% at 900 ms: p95 ~900, 3× stable
	similar := hist(map[float64]int64{100: 880, 300: 100, 400: 20}) // p95 ~300 ms
	cases := []struct {
		name           string
		gateName       string
		canary, stable *Revision
		gates          policy.Gates
		want           Status
		detail         string
	}{
		{"fast", GateLatencyP95, rev(1000, 0, fast), nil, gs, Healthy, "0 of 1000 requests (0%) at or above 1024 ms; evidence of more than 5% 0.00941 < 20 needed (95%); 0 (0%) at or above 724 ms; below 10% at or above 724 ms (at most 0.89% at 95%)"},
		{"8% slow in 100 is not healthy", GateLatencyP95, rev(100, 0, hist(map[float64]int64{100: 92, 2000: 8})), nil, gs, Inconclusive, "not enough data to rule out 10% at or above 724 ms"},
		{"the straddling bucket counts whole for healthy", GateLatencyP95, rev(1000, 0, hist(map[float64]int64{100: 850, 800: 150})), nil, gs, Inconclusive, "0 of 1000 requests (0%) at or above 1024 ms; evidence of more than 5% 0.00941 < 20 needed (95%); 150 (15%) at or above 724 ms; not enough data to rule out 10% at or above 724 ms (at most 20.19% at 95%)"},
		{"negative bucket count", GateLatencyP95, rev(1000, 0, hist(map[float64]int64{100: 1000, 2000: -5})), nil, gs, Inconclusive, "inconsistent figures for the canary: latency histogram: negative count"},
		{"slow", GateLatencyP95, rev(1000, 0, slow), nil, gs, Unhealthy, "300 of 1000 requests (30%) at or above 1024 ms; more than 5%"},
		{"1 slow in 3 is not a p95", GateLatencyP95, rev(3, 0, fewSlow), nil, gs, Inconclusive, "1 of 3 requests"},
		{"no latency data", GateLatencyP95, rev(1000, 0, Histogram{}), nil, gs, Inconclusive, "no latency data for the canary"},
		{"maxMs 0 is off", GateLatencyP95, rev(1000, 0, slow), nil, noMax, Healthy, "off"},
		{"ratio: stable missing", GateLatencyP95ToStable, rev(1000, 0, slower), nil, gs, Inconclusive, "no latency data for the stable revision"},
		{"ratio: stable without latency", GateLatencyP95ToStable, rev(1000, 0, slower), rev(10000, 0, Histogram{}), gs, Inconclusive, "no latency data for the stable revision"},
		{"ratio: 3× stable", GateLatencyP95ToStable, rev(1000, 0, slower), rev(10000, 0, stable), gs, Unhealthy, "more than 5%"},
		{"ratio: similar", GateLatencyP95ToStable, rev(1000, 0, similar), rev(10000, 0, stable), gs, Healthy, "below 10% at or above"},
		{"ratio: similar, 30 requests", GateLatencyP95ToStable, rev(30, 0, hist(map[float64]int64{100: 26, 300: 3, 400: 1})), rev(10000, 0, stable), gs, Inconclusive, "not enough data to rule out 10% at or above"},
		{"ratio: inconsistent stable", GateLatencyP95ToStable, rev(1000, 0, similar), rev(10000, 0, Histogram{Bounds: []float64{1, 2}, Counts: []int64{5}}), gs, Inconclusive, "inconsistent figures for the stable revision: latency histogram: 1 counts for 2 bounds"},
		{"ratio: stable not yet bounded", GateLatencyP95ToStable, rev(1000, 0, similar), rev(5, 0, hist(map[float64]int64{100: 5})), gs, Inconclusive, "not yet bounded"},
		// A stable revision faster than the histogram resolves (p95 under 1 ms) is compared
		// as if at 1 ms: a canary as fast passes, one clearly slower still fails.
		{"ratio: sub-millisecond stable, as fast", GateLatencyP95ToStable, rev(2000, 0, hist(map[float64]int64{0.4: 1990, 1.2: 10})), rev(10000, 0, hist(map[float64]int64{0.3: 9990, 1.2: 10})), gs, Healthy, "under the first bucket bound"},
		{"ratio: sub-millisecond stable, canary at 5 ms", GateLatencyP95ToStable, rev(2000, 0, hist(map[float64]int64{5: 2000})), rev(10000, 0, hist(map[float64]int64{0.3: 10000})), gs, Unhealthy, "more than 5%"},
		{"ratio 0 is off", GateLatencyP95ToStable, rev(1000, 0, slower), rev(10000, 0, stable), noRatio, Healthy, "off"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := Judge(Input{Canary: c.canary, Stable: c.stable, Gates: c.gates})
			got := gate(t, v, c.gateName)
			if got.Status != c.want || !strings.Contains(got.Detail, c.detail) {
				t.Errorf("got %v %q, want %v containing %q", got.Status, got.Detail, c.want, c.detail)
			}
			if got.Action != policy.ActionPause {
				t.Errorf("got action %q, want pause", got.Action)
			}
		})
	}
}

func TestDBConnectionsGate(t *testing.T) {
	gs := defaultGates()
	if v := Judge(Input{Canary: rev(1000, 0, Histogram{}), Gates: gs}); len(v.Gates) != 5 {
		t.Errorf("without the gate: got %d gates, want 5", len(v.Gates))
	}
	gs.DBConnections = &policy.DBConnectionsGate{Max: 0.8, MaxConnections: 100, OnFail: policy.ActionRollback}
	cases := []struct {
		name   string
		n      int64
		conn   *Connections
		want   Status
		detail string
	}{
		{"no data", 1000, nil, Inconclusive, "no data for the database's connections"},
		{"within", 1000, &Connections{InUse: 50, Max: 100}, Healthy, "50 of 100 connections in use (50%)"},
		{"max from the policy", 1000, &Connections{InUse: 50}, Healthy, "50 of 100"},
		{"over", 1000, &Connections{InUse: 90, Max: 100}, Unhealthy, "90 of 100 connections in use (90%); above 80%"},
		{"over below minRequests", 10, &Connections{InUse: 90, Max: 100}, Inconclusive, "not judged before 100 canary requests"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := Judge(Input{Canary: rev(c.n, 0, Histogram{}), Connections: c.conn, Gates: gs})
			got := gate(t, v, GateDBConnections)
			if got.Status != c.want || !strings.Contains(got.Detail, c.detail) {
				t.Errorf("got %v %q, want %v containing %q", got.Status, got.Detail, c.want, c.detail)
			}
		})
	}
}

func TestVerdict(t *testing.T) {
	gs := defaultGates()
	stable := rev(10000, 10, hist(map[float64]int64{100: 9000, 300: 1000}))
	good := hist(map[float64]int64{100: 900, 300: 100})
	slow := hist(map[float64]int64{100: 700, 2000: 300})
	cases := []struct {
		name       string
		in         Input
		want       Status
		wantAction policy.Action
		reason     string
	}{
		{"no data is never healthy", Input{Gates: gs, Stable: stable}, Inconclusive, "", "inconclusive: requests: no data for the canary"},
		{"no requests", Input{Gates: gs, Canary: rev(0, 0, Histogram{}), Stable: stable}, Inconclusive, "", "requests: 0 of 100 requests"},
		{"healthy", Input{Gates: gs, Canary: rev(2000, 1, good), Stable: stable}, Healthy, "", "healthy: requests: 2000 requests"},
		{"2% in 100 is not healthy", Input{Gates: gs, Canary: rev(100, 2, good), Stable: stable}, Inconclusive, "", "errorRate: 2 errors in 100 requests (2%); evidence of more than 0.1% 5.14 < 20 needed (95%); not enough data to rule out 0.6% (at most 10.52% at 95%)"},
		{"more errors than requests", Input{Gates: gs, Canary: rev(300, 500, good), Stable: stable}, Inconclusive, "", "requests: inconsistent figures for the canary: 500 errors > 300 requests"},
		{"below minRequests", Input{Gates: gs, Canary: rev(99, 0, good), Stable: stable}, Inconclusive, "", "requests: 99 of 100 requests"},
		{"stable missing holds", Input{Gates: gs, Canary: rev(1000, 1, good)}, Inconclusive, "", "errorRate.overStable: no data for the stable revision"},
		{"latency pauses", Input{Gates: gs, Canary: rev(1000, 1, slow), Stable: stable}, Unhealthy, policy.ActionPause, "unhealthy (pause): latencyP95:"},
		{"errors roll back", Input{Gates: gs, Canary: rev(1000, 50, good), Stable: stable}, Unhealthy, policy.ActionRollback, "unhealthy (rollback): errorRate:"},
		{"rollback beats pause", Input{Gates: gs, Canary: rev(1000, 50, slow), Stable: stable}, Unhealthy, policy.ActionRollback, "latencyP95:"},
		{"unhealthy beats inconclusive", Input{Gates: gs, Canary: rev(50, 10, good)}, Unhealthy, policy.ActionRollback, "errorRate: 10 errors in 50"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := Judge(c.in)
			if v.Status != c.want || v.Action != c.wantAction || !strings.Contains(v.Reason, c.reason) {
				t.Errorf("got %v %q %q, want %v %q containing %q", v.Status, v.Action, v.Reason, c.want, c.wantAction, c.reason)
			}
			for _, g := range v.Gates {
				if g.Status > v.Status {
					t.Errorf("gate %s is %v above the verdict's %v", g.Gate, g.Status, v.Status)
				}
			}
		})
	}
}

func TestStatusOrder(t *testing.T) {
	if !(Healthy < Inconclusive && Inconclusive < Unhealthy) {
		t.Fatal("statuses out of order")
	}
	for s, want := range map[Status]string{Healthy: "healthy", Inconclusive: "inconclusive", Unhealthy: "unhealthy", 7: "unknown"} {
		if got := s.String(); got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
}

// TestEvidenceMonotone checks what the comparisons with the stable revision rely on: the
// evidence of a rate above p0 falls as p0 grows, and the evidence of a rate below p0 rises.
func TestEvidenceMonotone(t *testing.T) {
	pr := priorAbove(0.005)
	prev := math.Inf(1)
	for p0 := 0.001; p0 < 0.5; p0 *= 1.1 {
		got := logEvidenceAbove(30, 1000, p0, pr)
		if got > prev+1e-9 {
			t.Fatalf("above: evidence rose from %g to %g at p0 %g", prev, got, p0)
		}
		prev = got
	}
	prev = math.Inf(-1)
	for p0 := 0.001; p0 < 0.5; p0 *= 1.1 {
		got := logEvidenceBelow(3, 1000, p0, pr)
		if got < prev-1e-9 {
			t.Fatalf("below: evidence fell from %g to %g at p0 %g", prev, got, p0)
		}
		prev = got
	}
}

// TestFalseAlarmsUnderRepeatedLooks draws streams at the gate's limit (the worst case of H0)
// and judges the cumulative counts after every look; the share of streams ever declared
// unhealthy must stay below alpha = 1 - confidence however many looks there are.
func TestFalseAlarmsUnderRepeatedLooks(t *testing.T) {
	const streams = 2000
	cases := []struct {
		name        string
		p, max      float64
		perLook     float64 // mean requests per look
		looks       int
		stableRatio float64 // 0: the absolute gate; else the comparison with a stable of this many times the traffic
	}{
		{"absolute at 1% max, 200 looks of 50", 0.01, 0.01, 50, 200, 0},
		{"absolute at 0.1% max, 300 looks of 600", 0.001, 0.001, 600, 300, 0},
		{"absolute at 5% max, 500 looks of 1", 0.05, 0.05, 1, 500, 0},
		{"over stable at the increase, 200 looks of 60", 0.006, 0, 60, 200, 9},
	}
	for ci, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(42, uint64(ci)))
			gs := defaultGates()
			gs.ErrorRate.Max = 1
			gs.ErrorRate.MaxIncreaseOverStable = 1
			if c.stableRatio == 0 {
				gs.ErrorRate.Max = c.max
			} else {
				gs.ErrorRate.MaxIncreaseOverStable = 0.005
			}
			alarms := 0
			for s := 0; s < streams; s++ {
				var can, stab Requests
				for l := 0; l < c.looks; l++ {
					n := distuv.Poisson{Lambda: c.perLook, Src: rng}.Rand()
					can.Total += int64(n)
					can.Errors += int64(binomial(rng, n, c.p))
					in := Input{Canary: &Revision{Requests: can}, Gates: gs}
					if c.stableRatio > 0 {
						ns := distuv.Poisson{Lambda: c.perLook * c.stableRatio, Src: rng}.Rand()
						stab.Total += int64(ns)
						stab.Errors += int64(binomial(rng, ns, 0.001))
						in.Stable = &Revision{Requests: stab}
					}
					if Judge(in).Status == Unhealthy {
						alarms++
						break
					}
				}
			}
			rate := float64(alarms) / streams
			t.Logf("%s: %d of %d streams ever unhealthy (%.2f%%)", c.name, alarms, streams, 100*rate)
			if rate > 0.05 {
				t.Errorf("false alarm rate %.3f above alpha 0.05", rate)
			}
		})
	}
}

// binomial draws a Binomial(n, p) count.
func binomial(rng *rand.Rand, n, p float64) float64 {
	if n <= 0 || p <= 0 {
		return 0
	}
	return distuv.Binomial{N: n, P: p, Src: rng}.Rand()
}

// TestLatencyFalseAlarmsUnderRepeatedLooks is the latency gates' version: canaries exactly at
// the limit (p95 = maxMs; p95 = maxRatioToStable × the stable's), judged after every minute
// on the cumulative histograms, must be declared unhealthy in fewer than alpha of streams.
// The histogram's interpolation is part of what is checked.
func TestLatencyFalseAlarmsUnderRepeatedLooks(t *testing.T) {
	const looks = 60
	bounds := latencyBounds()
	cases := []struct {
		name                     string
		canaryP95, stableP95     float64
		maxMs                    int
		ratio                    float64
		canaryPerLook, stablePer float64
		streams                  int
	}{
		{"p95 at maxMs", 1000, 400, 1000, 0, 60, 540, 1000},
		{"p95 at 1.5 × stable", 600, 400, 0, 1.5, 60, 540, 1000},
		{"p95 at 1.5 × stable, 100 rps", 600, 400, 0, 1.5, 600, 5400, 200},
	}
	for ci, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(7, uint64(ci)))
			gs := defaultGates()
			gs.ErrorRate.Max, gs.ErrorRate.MaxIncreaseOverStable = 1, 1
			gs.LatencyP95.MaxMs, gs.LatencyP95.MaxRatioToStable = c.maxMs, c.ratio
			ccdf := cumsum(lognormalBuckets(bounds, simMedianMs*c.canaryP95/simP95Ms, c.canaryP95))
			scdf := cumsum(lognormalBuckets(bounds, simMedianMs*c.stableP95/simP95Ms, c.stableP95))
			draw := func(h *Histogram, cdf []float64, mean float64) int64 {
				n := int(distuv.Poisson{Lambda: mean, Src: rng}.Rand())
				for range n {
					i, _ := slices.BinarySearch(cdf, rng.Float64())
					h.Counts[min(i, len(h.Counts)-1)]++
				}
				return int64(n)
			}
			alarms := 0
			streams := c.streams
			for s := 0; s < streams; s++ {
				can := &Revision{Latency: Histogram{Bounds: bounds, Counts: make([]int64, len(bounds)+1)}}
				stab := &Revision{Latency: Histogram{Bounds: bounds, Counts: make([]int64, len(bounds)+1)}}
				for l := 0; l < looks; l++ {
					can.Requests.Total += draw(&can.Latency, ccdf, c.canaryPerLook)
					stab.Requests.Total += draw(&stab.Latency, scdf, c.stablePer)
					if Judge(Input{Canary: can, Stable: stab, Gates: gs}).Status == Unhealthy {
						alarms++
						break
					}
				}
			}
			rate := float64(alarms) / float64(streams)
			t.Logf("%s: %d of %d streams ever unhealthy (%.2f%%)", c.name, alarms, streams, 100*rate)
			if rate > 0.05 {
				t.Errorf("false alarm rate %.3f above alpha 0.05", rate)
			}
		})
	}
}

// TestHealthyAtTheEdgeUnderRepeatedLooks is the promote side's guarantee: canaries at the
// indifference zone's edge (an error rate of max + the zone width; 10% of requests at or above
// maxMs), judged after every look, must be declared Healthy in at most alpha of streams
// however many looks there are. Healthy must mean the data rule out a clear failure, not only
// that the failure is not yet shown.
func TestHealthyAtTheEdgeUnderRepeatedLooks(t *testing.T) {
	const streams, looks = 1000, 150
	bounds := latencyBounds()
	cases := []struct {
		name    string
		errRate float64 // the canary's error rate (the errorRate gate alone)
		slow    float64 // else the share of requests at 2000 ms (the latencyP95 gate alone)
		perLook float64
	}{
		{"errors at max + 0.5%", 0.006, 0, 60},
		{"errors at max + 0.5%, 600 a look", 0.006, 0, 600},
		{"10% at or above maxMs", 0, 0.10, 60},
	}
	for ci, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(11, uint64(ci)))
			gs := defaultGates()
			gs.ErrorRate.MaxIncreaseOverStable = 1
			gs.LatencyP95.MaxRatioToStable = 0
			if c.errRate > 0 {
				gs.LatencyP95.MaxMs = 0
			} else {
				gs.ErrorRate.Max = 1
			}
			healthy := 0
			for s := 0; s < streams; s++ {
				can := &Revision{Latency: Histogram{Bounds: bounds, Counts: make([]int64, len(bounds)+1)}}
				fast, slow := bucketOf(bounds, 100), bucketOf(bounds, 2000)
				for l := 0; l < looks; l++ {
					n := distuv.Poisson{Lambda: c.perLook, Src: rng}.Rand()
					can.Requests.Total += int64(n)
					can.Requests.Errors += int64(binomial(rng, n, c.errRate))
					k := binomial(rng, n, c.slow)
					can.Latency.Counts[slow] += int64(k)
					can.Latency.Counts[fast] += int64(n - k)
					if Judge(Input{Canary: can, Gates: gs}).Status == Healthy {
						healthy++
						break
					}
				}
			}
			rate := float64(healthy) / streams
			t.Logf("%s: %d of %d streams ever healthy (%.2f%%)", c.name, healthy, streams, 100*rate)
			if rate > 0.05 {
				t.Errorf("healthy at the zone's edge in %.3f of streams, above alpha 0.05", rate)
			}
		})
	}
}

// TestNotANumberIsNeverHealthy: figures that are not numbers, or inconsistent, never make a
// gate Healthy.
func TestNotANumberIsNeverHealthy(t *testing.T) {
	gs := defaultGates()
	gs.DBConnections = &policy.DBConnectionsGate{Max: 0.8, MaxConnections: 100, OnFail: policy.ActionRollback}
	good := hist(map[float64]int64{100: 1800, 300: 200})
	stable := rev(20000, 20, hist(map[float64]int64{100: 18000, 300: 2000}))
	nanMax := gs
	nanMax.ErrorRate.Max = math.NaN()
	cases := []struct {
		name string
		in   Input
		gate string
	}{
		{"NaN connections", Input{Gates: gs, Canary: rev(2000, 1, good), Stable: stable, Connections: &Connections{InUse: math.NaN(), Max: 100}}, GateDBConnections},
		{"negative connections", Input{Gates: gs, Canary: rev(2000, 1, good), Stable: stable, Connections: &Connections{InUse: -3, Max: 100}}, GateDBConnections},
		{"NaN limit", Input{Gates: nanMax, Canary: rev(2000, 1, good), Stable: stable, Connections: &Connections{InUse: 1, Max: 100}}, GateErrorRate},
		{"NaN bound", Input{Gates: gs, Canary: rev(2000, 1, Histogram{Bounds: []float64{math.NaN()}, Counts: []int64{1, 2}}), Stable: stable, Connections: &Connections{InUse: 1, Max: 100}}, GateLatencyP95},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := Judge(c.in)
			if v.Status == Healthy {
				t.Errorf("verdict healthy: %s", v.Reason)
			}
			if g := gate(t, v, c.gate); g.Status != Inconclusive {
				t.Errorf("gate %s: got %v %q, want inconclusive", c.gate, g.Status, g.Detail)
			}
		})
	}
}

// TestComparisonsHealthyAtTheEdge: the two comparisons with the stable revision, judged on
// cumulative counts at every look, are rarely Healthy for a canary exactly at their zone's
// edge — the stable's true rate + maxIncreaseOverStable + the zone width for the error rate,
// a p90 at maxRatioToStable × the stable's true p95 for latency — at a 50/50 split (where
// the stable's bound is widest relative to the canary's data) and at the 10% stage.
func TestComparisonsHealthyAtTheEdge(t *testing.T) {
	bounds := latencyBounds()
	const sigma = 0.73 // the simulation's lognormal: stable median 120 ms, p95 ≈ 400 ms
	stableP95 := 120 * math.Exp(1.6449*sigma)
	cases := []struct {
		name             string
		latency          bool
		canaryN, stableN float64 // requests a look
		streams, looks   int
	}{
		{"error rate, 50/50", false, 300, 300, 1000, 150},
		{"error rate, 10% stage", false, 60, 540, 1000, 150},
		{"latency ratio, 50/50", true, 300, 300, 300, 60},
		{"latency ratio, 10% stage", true, 60, 540, 300, 60},
	}
	for ci, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(21, uint64(ci)))
			gs := defaultGates()
			gs.ErrorRate.Max = 1
			gs.LatencyP95.MaxMs = 0
			if c.latency {
				gs.ErrorRate.MaxIncreaseOverStable = 1
			} else {
				gs.LatencyP95.MaxRatioToStable = 0
			}
			d, w := gs.ErrorRate.MaxIncreaseOverStable, zoneWidth(gs.ErrorRate)
			const stableRate = 0.001
			canaryRate := stableRate + d + w
			// Canary p90 at ratio × the stable p95, same shape.
			canaryMedian := gs.LatencyP95.MaxRatioToStable * stableP95 / math.Exp(1.2816*sigma)
			healthy := 0
			for s := 0; s < c.streams; s++ {
				can := &Revision{Latency: Histogram{Bounds: bounds, Counts: make([]int64, len(bounds)+1)}}
				st := &Revision{Latency: Histogram{Bounds: bounds, Counts: make([]int64, len(bounds)+1)}}
				for l := 0; l < c.looks; l++ {
					for _, x := range []struct {
						r         *Revision
						n         float64
						rate, med float64
					}{{can, c.canaryN, canaryRate, canaryMedian}, {st, c.stableN, stableRate, 120}} {
						n := distuv.Poisson{Lambda: x.n, Src: rng}.Rand()
						x.r.Requests.Total += int64(n)
						x.r.Requests.Errors += int64(binomial(rng, n, x.rate))
						if c.latency {
							for range int(n) {
								v := x.med * math.Exp(sigma*rng.NormFloat64())
								x.r.Latency.Counts[bucketOf(bounds, v)]++
							}
						}
					}
					if Judge(Input{Canary: can, Stable: st, Gates: gs}).Status == Healthy {
						healthy++
						break
					}
				}
			}
			rate := float64(healthy) / float64(c.streams)
			t.Logf("%s: %d of %d streams ever healthy (%.2f%%)", c.name, healthy, c.streams, 100*rate)
			if rate > 0.05 {
				t.Errorf("healthy at the zone's edge in %.3f of streams, above alpha 0.05", rate)
			}
		})
	}
}
