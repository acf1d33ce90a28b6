package judge

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/ai-square/coalmine/shared/policy"
	"gonum.org/v1/gonum/stat/distuv"
)

// The simulation runs releases of a canary at the 10% stage in simulated time and judges them
// as the chain will: Cloud Monitoring's 60 s DELTA points, each visible 2-3 minutes after its
// minute ends, read every minute. docs/verification.md describes the model and its table.

const (
	simReleases   = 10000
	simCanaryPart = 0.10  // the canary's share of traffic at the stage
	simBake       = 1800  // s: the stage's bake; a healthy verdict after it promotes
	simDeadline   = 14400 // s: the stage's deadline (4 h); undecided by then is "not promoted"
	simBack       = 30    // s: from the deciding tick until traffic is back on the stable revision
	simVisibleMin = 120   // s: a point is visible this long after its minute ends ...
	simVisibleMax = 180   // s: ... up to this long (uniform)
	simMedianMs   = 120.0 // the stable revision's median latency
	simP95Ms      = 400.0 // and its p95; a lognormal through both
	simSeed       = 20261130
)

// simRow is one scenario: total traffic and each revision's error rate and p95.
type simRow struct {
	name           string
	rps            float64 // total requests per second to the service
	pStable, pCan  float64 // error rates
	p95Can         float64 // the canary's p95 in ms (the stable's is simP95Ms)
	healthy        bool    // a healthy canary: any Unhealthy verdict is a false alarm
	failedAreSlow  bool    // count requests slower than maxMs as failed, not 5xx
	extra          bool    // not one of the required rows
	releases       int
	canaryBuckets  []float64 // bucket probabilities of the canary's latency
	stableBuckets  []float64
	canaryCDF      []float64 // their running sums
	stableCDF      []float64
	canarySlowFrac float64    // true share of canary requests slower than maxMs
	canaryParts    [3]float64 // probability below, in and above the bucket holding 1000 ms
	stableParts    [3]float64
}

// simSlowBucket is the index in Counts of the bucket that holds 1000 ms (maxMs): a minute's
// failed requests on a latency row are the buckets above it plus its share above 1000 ms.
var simSlowBucket = bucketOf(latencyBounds(), 1000)

// parts returns the probability of the buckets below simSlowBucket, of it and of those above.
func parts(probs []float64) [3]float64 {
	var p [3]float64
	for i, q := range probs {
		switch {
		case i < simSlowBucket:
			p[0] += q
		case i == simSlowBucket:
			p[1] += q
		default:
			p[2] += q
		}
	}
	return p
}

func simRows() []simRow {
	const base = 0.001
	rows := []simRow{
		{name: "healthy, 1 rps", rps: 1, pStable: base, pCan: base, p95Can: simP95Ms, healthy: true},
		{name: "healthy, 10 rps", rps: 10, pStable: base, pCan: base, p95Can: simP95Ms, healthy: true},
		{name: "healthy, 100 rps", rps: 100, pStable: base, pCan: base, p95Can: simP95Ms, healthy: true},
		{name: "errors 0.1%→1%, 10 rps", rps: 10, pStable: base, pCan: 0.01, p95Can: simP95Ms},
		{name: "errors 0.1%→2%, 10 rps", rps: 10, pStable: base, pCan: 0.02, p95Can: simP95Ms},
		{name: "errors 0.1%→5%, 10 rps", rps: 10, pStable: base, pCan: 0.05, p95Can: simP95Ms},
		{name: "p95 +500 ms, 10 rps", rps: 10, pStable: base, pCan: base, p95Can: simP95Ms + 500, failedAreSlow: true},
		{name: "p95 +1500 ms, 10 rps", rps: 10, pStable: base, pCan: base, p95Can: simP95Ms + 1500, failedAreSlow: true},
		{name: "errors 0.1%→5%, 1 rps", rps: 1, pStable: base, pCan: 0.05, p95Can: simP95Ms, extra: true},
	}
	bounds := latencyBounds()
	for i := range rows {
		rows[i].releases = simReleases
		rows[i].stableBuckets = lognormalBuckets(bounds, simMedianMs, simP95Ms)
		rows[i].canaryBuckets = lognormalBuckets(bounds, simMedianMs*rows[i].p95Can/simP95Ms, rows[i].p95Can)
		rows[i].canaryCDF = cumsum(rows[i].canaryBuckets)
		rows[i].stableCDF = cumsum(rows[i].stableBuckets)
		rows[i].canaryParts = parts(rows[i].canaryBuckets)
		rows[i].stableParts = parts(rows[i].stableBuckets)
		ln := lognormal(simMedianMs*rows[i].p95Can/simP95Ms, rows[i].p95Can)
		rows[i].canarySlowFrac = 1 - ln.CDF(1000)
	}
	return rows
}

// lognormal returns the lognormal distribution with the given median and p95 (ms).
func lognormal(median, p95 float64) distuv.LogNormal {
	z95 := distuv.UnitNormal.Quantile(0.95)
	return distuv.LogNormal{Mu: math.Log(median), Sigma: math.Log(p95/median) / z95}
}

// lognormalBuckets returns the probability of each bucket (underflow, finite, overflow).
func lognormalBuckets(bounds []float64, median, p95 float64) []float64 {
	ln := lognormal(median, p95)
	probs := make([]float64, len(bounds)+1)
	prev := 0.0
	for i, b := range bounds {
		c := ln.CDF(b)
		probs[i] = c - prev
		prev = c
	}
	probs[len(bounds)] = 1 - prev
	// Drop the buckets a draw of 10^12 requests would not reach; they cost binomial draws.
	for i, q := range probs {
		if q < 1e-12 {
			probs[i] = 0
		}
	}
	var sum float64
	for _, q := range probs {
		sum += q
	}
	for i := range probs {
		probs[i] /= sum
	}
	return probs
}

func cumsum(p []float64) []float64 {
	c := make([]float64, len(p))
	var sum float64
	for i, q := range p {
		sum += q
		c[i] = sum
	}
	return c
}

// simMinute is one revision's figures over one minute. Each part is drawn only when a model
// first needs it (most minutes of a long stage are only ever counted, never judged, and only
// coalmine reads the stable revision); each part of each minute of each revision has its own
// random stream, so what is drawn does not depend on the order the models ask in.
type simMinute struct {
	req, errs int64
	grouped   bool    // low, mid and slow are drawn
	low, mid  int64   // requests below simSlowBucket and in it; the rest are above
	slow      float64 // requests slower than maxMs (estimated from the buckets, as Above does)
	drawn     bool    // hist is drawn
	hist      []int64
	key       uint64 // the minute's random streams: key, key+1, key+2
	rev       int    // 0 canary, 1 stable
}

// simTrace is one release's traffic, drawn minute by minute as the models need it. All
// models of a release read the same trace.
type simTrace struct {
	row     *simRow
	release uint64
	pcg     rand.PCG
	rng     *rand.Rand // reads pcg, reseeded per part of a minute
	phase   float64    // s: the Scheduler's ticks fire at phase + 60k
	can     []simMinute
	stab    []simMinute
	visible []float64 // s: when each minute's point becomes visible
	bounds  []float64
}

func (tr *simTrace) reset(row *simRow, seed uint64, bounds []float64) {
	tr.row, tr.bounds, tr.release = row, bounds, seed
	if tr.rng == nil {
		tr.rng = rand.New(&tr.pcg)
	}
	tr.seed(1 << 62)
	tr.phase = 60 * tr.rng.Float64()
	tr.can, tr.stab, tr.visible = tr.can[:0], tr.stab[:0], tr.visible[:0]
}

// seed points the trace's random stream at stream k of the release.
func (tr *simTrace) seed(k uint64) { tr.pcg.Seed(simSeed^tr.release*0x9E3779B97F4A7C15, k) }

// minute returns the canary's minute m (the stage's period [60m, 60m+60) s) with its request
// and error counts, and when its point becomes visible.
func (tr *simTrace) minute(m int) (can *simMinute, visible float64) {
	for len(tr.can) <= m {
		k := uint64(len(tr.can))
		tr.can = grow(tr.can, len(tr.bounds)+1)
		tr.counts(&tr.can[k], k<<4, 0)
		tr.seed(k<<4 | 8)
		tr.visible = append(tr.visible, float64(60*(k+1))+simVisibleMin+(simVisibleMax-simVisibleMin)*tr.rng.Float64())
	}
	return &tr.can[m], tr.visible[m]
}

// stable returns the stable revision's minute m with its request and error counts.
func (tr *simTrace) stable(m int) *simMinute {
	for len(tr.stab) <= m {
		k := uint64(len(tr.stab))
		tr.stab = grow(tr.stab, len(tr.bounds)+1)
		tr.counts(&tr.stab[k], k<<4|4, 1)
	}
	return &tr.stab[m]
}

// grow appends a minute to s, reusing an earlier release's histogram slice when there is one.
func grow(s []simMinute, buckets int) []simMinute {
	if len(s) < cap(s) {
		s = s[:len(s)+1]
		m := &s[len(s)-1]
		if m.hist == nil { // spare capacity append left, never used
			m.hist = make([]int64, buckets)
		}
		*m = simMinute{hist: m.hist}
		return s
	}
	return append(s, simMinute{hist: make([]int64, buckets)})
}

// dist returns a revision's request rate, error rate and latency buckets.
func (tr *simTrace) dist(rev int) (rps, p float64, pr [3]float64, probs, cdf []float64) {
	r := tr.row
	if rev == 0 {
		return r.rps * simCanaryPart, r.pCan, r.canaryParts, r.canaryBuckets, r.canaryCDF
	}
	return r.rps * (1 - simCanaryPart), r.pStable, r.stableParts, r.stableBuckets, r.stableCDF
}

// counts draws one revision's minute: Poisson requests, binomial errors.
func (tr *simTrace) counts(m *simMinute, key uint64, rev int) {
	rps, p, _, _, _ := tr.dist(rev)
	tr.seed(key)
	m.key, m.rev = key, rev
	n := distuv.Poisson{Lambda: rps * 60, Src: tr.rng}.Rand()
	m.req = int64(n)
	m.errs = int64(binomial(tr.rng, n, p))
}

// groups draws how many of m's requests fall below, in and above the bucket holding 1000 ms
// (a multinomial over the three groups) and the requests slower than 1000 ms.
func (tr *simTrace) groups(m *simMinute) *simMinute {
	if m.grouped {
		return m
	}
	m.grouped = true
	_, _, pr, _, _ := tr.dist(m.rev)
	tr.seed(m.key + 1)
	n := float64(m.req)
	m.low = int64(binomial(tr.rng, n, pr[0]))
	if rest := pr[1] + pr[2]; rest > 0 {
		m.mid = int64(binomial(tr.rng, n-float64(m.low), math.Min(1, pr[1]/rest)))
	}
	hi := m.req - m.low - m.mid
	lo, up := tr.bounds[simSlowBucket-1], tr.bounds[simSlowBucket]
	m.slow = float64(hi) + float64(m.mid)*(up-1000)/(up-lo)
	return m
}

// hist draws m's latency buckets given its three group counts: a multinomial inside each
// group (together, the multinomial over all buckets).
func (tr *simTrace) hist(m *simMinute) []int64 {
	if m.drawn {
		return m.hist
	}
	tr.groups(m)
	m.drawn = true
	_, _, _, probs, cdf := tr.dist(m.rev)
	clear(m.hist)
	tr.seed(m.key + 2)
	tr.multinomial(m.hist, m.low, 0, simSlowBucket, probs, cdf)
	m.hist[simSlowBucket] = m.mid
	tr.multinomial(m.hist, m.req-m.low-m.mid, simSlowBucket+1, len(m.hist), probs, cdf)
	return m.hist
}

// multinomial spreads n requests over buckets [lo, hi) in proportion to probs: one
// inverse-CDF draw per request below perRequestMax requests, sequential binomials above (the
// same distribution; whichever is cheaper).
func (tr *simTrace) multinomial(out []int64, n int64, lo, hi int, probs, cdf []float64) {
	if n <= 0 {
		return
	}
	base := 0.0
	if lo > 0 {
		base = cdf[lo-1]
	}
	mass := cdf[hi-1] - base
	const perRequestMax = 256
	if n < perRequestMax {
		for range n {
			i, _ := slices.BinarySearch(cdf, base+mass*tr.rng.Float64())
			out[min(max(i, lo), hi-1)]++
		}
		return
	}
	left := float64(n)
	for i := lo; i < hi && left > 0; i++ {
		q := probs[i]
		if q <= 0 {
			continue
		}
		var c float64
		if q >= mass*(1-1e-9) || i == hi-1 {
			c = left
		} else {
			c = binomial(tr.rng, left, q/mass)
		}
		out[i] += int64(c)
		left -= c
		mass -= q
	}
}

// failed returns the canary's failed requests (5xx, or slower than maxMs) from the stage's
// start until t seconds, counting a partial minute in proportion.
func (tr *simTrace) failed(t float64) float64 {
	var f float64
	for m := 0; float64(60*m) < t; m++ {
		c, _ := tr.minute(m)
		share := math.Min(1, (t-float64(60*m))/60)
		if tr.row.failedAreSlow {
			f += share * tr.groups(c).slow
		} else {
			f += share * float64(c.errs)
		}
	}
	return f
}

// simOutcome is how one release's stage ended under one model.
type simOutcome int

const (
	outPromoted simOutcome = iota
	outRollback
	outPause
	outUndecided // the deadline passed without a verdict that ends the stage
)

type simResult struct {
	out    simOutcome
	at     float64 // s: the deciding tick (the deadline when undecided)
	data   int64   // canary requests in the data the verdict was made on
	failed float64 // failed canary requests until traffic was back on stable (or the stage ended)
}

// simModel decides one release's stage.
type simModel struct {
	name string
	run  func(tr *simTrace, g policy.Gates) simResult
}

func ticks(tr *simTrace, f func(t float64) (simResult, bool)) simResult {
	for k := 0; ; k++ {
		t := tr.phase + float64(60*k)
		if t > simDeadline {
			return simResult{out: outUndecided, at: simDeadline, failed: tr.failed(simDeadline)}
		}
		if r, done := f(t); done {
			r.at = t
			end := t
			if r.out == outRollback || r.out == outPause {
				end = t + simBack
			}
			r.failed = tr.failed(end)
			return r
		}
	}
}

// coalmineModel judges, at every tick, the complete minutes from the stage's start to
// tick - ingestionDelay with Judge.
func coalmineModel(tr *simTrace, g policy.Gates) simResult {
	nb := len(tr.bounds) + 1
	can := &Revision{Name: "canary", Latency: Histogram{Bounds: tr.bounds, Counts: make([]int64, nb)}}
	stab := &Revision{Name: "stable", Latency: Histogram{Bounds: tr.bounds, Counts: make([]int64, nb)}}
	have, judged := 0, -1 // minutes summed into can and stab; and when last judged
	var v Verdict
	delay := g.IngestionDelay.Seconds()
	return ticks(tr, func(t float64) (simResult, bool) {
		end := 60 * math.Floor((t-delay)/60) // aligned window end
		for float64(60*(have+1)) <= end {
			c, vis := tr.minute(have)
			if vis > t {
				break // not visible yet: the window stops at the gap
			}
			s := tr.stable(have)
			add(can, tr.hist(c), c)
			add(stab, tr.hist(s), s)
			have++
		}
		if have != judged { // no new data: Judge is pure, the verdict is the last one
			in := Input{Gates: g}
			if have > 0 {
				in.Canary, in.Stable = can, stab
			}
			v, judged = Judge(in), have
		}
		switch {
		case v.Status == Unhealthy && v.Action == policy.ActionRollback:
			return simResult{out: outRollback, data: can.Requests.Total}, true
		case v.Status == Unhealthy:
			return simResult{out: outPause, data: can.Requests.Total}, true
		case v.Status == Healthy && t >= simBake:
			return simResult{out: outPromoted, data: can.Requests.Total}, true
		}
		return simResult{}, false
	})
}

func add(r *Revision, hist []int64, m *simMinute) {
	r.Requests.Total += m.req
	r.Requests.Errors += m.errs
	for i, c := range hist {
		r.Latency.Counts[i] += c
	}
}

// flaggerModel is Flagger's defaults: every interval (1 min) the last interval's canary data
// is checked on its raw request success rate (>= 99%) and p95 (<= maxMs); the first failed
// check rolls back (threshold 1); no data halts the check (no failure, no advance); after the
// bake a passing check promotes. lastMinute picks the minute the check reads at tick t, or -1.
func flaggerModel(lastMinute func(t float64) int) func(tr *simTrace, g policy.Gates) simResult {
	return func(tr *simTrace, g policy.Gates) simResult {
		return ticks(tr, func(t float64) (simResult, bool) {
			m := lastMinute(t)
			if m < 0 {
				return simResult{}, false
			}
			c, vis := tr.minute(m)
			if vis > t || c.req == 0 {
				return simResult{}, false // no data: halt
			}
			p95, _ := Histogram{Bounds: tr.bounds, Counts: tr.hist(c)}.Quantile(0.95)
			if float64(c.errs)/float64(c.req) > 0.01 || p95 > float64(g.LatencyP95.MaxMs) {
				return simResult{out: outRollback, data: c.req}, true
			}
			if t >= simBake {
				return simResult{out: outPromoted, data: c.req}, true
			}
			return simResult{}, false
		})
	}
}

// flaggerNow reads the interval (t-60 s, t], as a "last 1m" query does: the minute that ended
// in it, visible only if Monitoring has it by then.
func flaggerNow(t float64) int { return int(math.Floor(t/60)) - 1 }

// flaggerDelayed reads the newest minute ending at or before t - 3 min: Flagger given the
// same ingestion delay as coalmine.
func flaggerDelayed(t float64) int { return int(math.Floor((t-180)/60)) - 1 }

// crrmModel is Cloud Run Release Manager's: at every tick the raw error ratio and p95 of all
// the canary data visible so far in the stage are held against the limits (error rate >
// max, p95 > maxMs roll back); no data counts as healthy, so the stage promotes after the
// bake even without data.
func crrmModel(tr *simTrace, g policy.Gates) simResult {
	nb := len(tr.bounds) + 1
	h := Histogram{Bounds: tr.bounds, Counts: make([]int64, nb)}
	var req, errs int64
	have := 0
	return ticks(tr, func(t float64) (simResult, bool) {
		for {
			c, vis := tr.minute(have)
			if vis > t {
				break
			}
			req += c.req
			errs += c.errs
			for i, n := range tr.hist(c) {
				h.Counts[i] += n
			}
			have++
		}
		if req > 0 {
			p95, _ := h.Quantile(0.95)
			if float64(errs)/float64(req) > g.ErrorRate.Max || p95 > float64(g.LatencyP95.MaxMs) {
				return simResult{out: outRollback, data: req}, true
			}
		}
		if t >= simBake {
			return simResult{out: outPromoted, data: req}, true
		}
		return simResult{}, false
	})
}

// firstDataModel rolls back at the first tick whose window (as coalmine reads it) holds any
// canary request: no judge reading the same data can act sooner, so on a bad canary its
// failed requests are the floor the ingestion delay sets. Printed for the bad rows only.
func firstDataModel(tr *simTrace, g policy.Gates) simResult {
	delay := g.IngestionDelay.Seconds()
	var req int64
	have := 0
	return ticks(tr, func(t float64) (simResult, bool) {
		end := 60 * math.Floor((t-delay)/60)
		for float64(60*(have+1)) <= end {
			c, _ := tr.minute(have)
			req += c.req
			have++
		}
		if req > 0 {
			return simResult{out: outRollback, data: req}, true
		}
		return simResult{}, false
	})
}

var simModels = []simModel{
	{"coalmine", coalmineModel},
	{"Flagger", flaggerModel(flaggerNow)},
	{"Flagger+3m", flaggerModel(flaggerDelayed)},
	{"CRRM", crrmModel},
	{"first data (floor)", firstDataModel},
}

// simStats are one row's results under one model.
type simStats struct {
	row, model                       string
	healthy                          bool
	n                                int
	promoted, rollback, pause, undec int
	dataSum                          float64 // over releases with a verdict that ended the stage
	decided                          int
	failedSum                        float64 // over all releases
	detectedFailedSum                float64
	timeSum                          float64 // over releases with a verdict that ended the stage
}

func (s simStats) rate(k int) float64 { return float64(k) / float64(s.n) }
func (s simStats) detected() int      { return s.rollback + s.pause }
func (s simStats) meanData() float64  { return s.dataSum / math.Max(1, float64(s.decided)) }
func (s simStats) meanFailed() float64 {
	return s.failedSum / float64(s.n)
}
func (s simStats) meanTime() float64 { return s.timeSum / math.Max(1, float64(s.decided)) / 60 }

// runSim runs every row under every model, releases spread over the CPUs; results are
// gathered by release index, so they do not depend on scheduling.
func runSim(rows []simRow, g policy.Gates) [][]simStats {
	bounds := latencyBounds()
	out := make([][]simStats, len(rows))
	for ri := range rows {
		row := &rows[ri]
		res := make([][]simResult, len(simModels))
		for mi := range res {
			res[mi] = make([]simResult, row.releases)
		}
		workers := runtime.GOMAXPROCS(0)
		var wg sync.WaitGroup
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				var tr simTrace
				for i := w; i < row.releases; i += workers {
					tr.reset(row, uint64(ri)<<32|uint64(i), bounds)
					for mi, m := range simModels {
						res[mi][i] = m.run(&tr, g)
					}
				}
			}(w)
		}
		wg.Wait()
		for mi, m := range simModels {
			s := simStats{row: row.name, model: m.name, healthy: row.healthy, n: row.releases}
			for _, r := range res[mi] {
				switch r.out {
				case outPromoted:
					s.promoted++
				case outRollback:
					s.rollback++
				case outPause:
					s.pause++
				case outUndecided:
					s.undec++
				}
				if r.out != outUndecided {
					s.decided++
					s.dataSum += float64(r.data)
					s.timeSum += r.at
				}
				s.failedSum += r.failed
			}
			out[ri] = append(out[ri], s)
		}
	}
	return out
}

func simTable(rows []simRow, stats [][]simStats) string {
	var b strings.Builder
	fmt.Fprintf(&b, "| scenario | model | rollback | pause | promoted | not promoted | canary requests of data at the verdict | failed canary requests | minutes to decide |\n")
	fmt.Fprintf(&b, "|---|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for ri, ss := range stats {
		for _, s := range ss {
			if s.healthy && s.model == "first data (floor)" {
				continue
			}
			data, mins := "—", "—"
			if s.decided > 0 {
				data, mins = fmt.Sprintf("%.0f", s.meanData()), fmt.Sprintf("%.1f", s.meanTime())
			}
			fmt.Fprintf(&b, "| %s | %s | %.2f%% | %.2f%% | %.2f%% | %.2f%% | %s | %.1f | %s |\n",
				rows[ri].name, s.model, 100*s.rate(s.rollback), 100*s.rate(s.pause), 100*s.rate(s.promoted),
				100*s.rate(s.undec), data, s.meanFailed(), mins)
		}
	}
	return b.String()
}

// TestSimulation prints the table of docs/verification.md and holds the judge to its targets.
func TestSimulation(t *testing.T) {
	g := policy.Defaults().Gates
	rows := simRows()
	stats := runSim(rows, g)
	t.Logf("%d releases per row; stage at %.0f%%, bake %ds, deadline %ds, back on stable %ds after the verdict\n%s",
		simReleases, 100*simCanaryPart, simBake, simDeadline, simBack, simTable(rows, stats))

	find := func(row, model string) simStats {
		for _, ss := range stats {
			for _, s := range ss {
				if s.row == row && s.model == model {
					return s
				}
			}
		}
		t.Fatalf("no results for %s under %s", row, model)
		return simStats{}
	}
	// Target 1, healthy canary at 1 rps: false rollback < 0.5%. Met at the edge (0.49% on this
	// seed, ±0.14% for 10,000 releases; see docs/verification.md): the canary sits exactly at
	// the 0.1% limit for the 2-3 hours it takes to bound its rate below 0.6%. Held here with
	// room for the seed's noise, and the healthy canaries must still be promoted.
	for _, c := range []struct {
		row                  string
		maxRollback, promote float64
	}{{"healthy, 1 rps", 0.0075, 0.80}, {"healthy, 10 rps", 0.015, 0.95}, {"healthy, 100 rps", 0.015, 0.95}} {
		s := find(c.row, "coalmine")
		if s.rate(s.rollback) >= c.maxRollback || s.rate(s.promoted) < c.promote {
			t.Errorf("%s: false rollback %.2f%%, promoted %.2f%%; want < %.1f%% and >= %.0f%%",
				c.row, 100*s.rate(s.rollback), 100*s.rate(s.promoted), 100*c.maxRollback, 100*c.promote)
		}
	}
	// Target 2: 0.1%→5% at 10 rps detected in >= 99% with a mean of <= 100 canary requests.
	if s := find("errors 0.1%→5%, 10 rps", "coalmine"); s.rate(s.detected()) < 0.99 || s.meanData() > 100 {
		t.Errorf("0.1%%→5%% at 10 rps: detected %.2f%% with %.0f canary requests of data, want >= 99%% with <= 100",
			100*s.rate(s.detected()), s.meanData())
	}
	// Target 3, failed canary requests per bad release <= ½ of Flagger's: MISSED against
	// Flagger given the same ingestion delay (Flagger+3m), whose half lies below the floor no
	// judge reading Monitoring can beat; the literal Flagger never decides, so comparing with
	// it guards nothing. What is held instead: coalmine's failed requests against the floor
	// ("first data"), within 15% of it on the clear regressions (5% errors, +1500 ms) and within
	// 2.5× on the subtler ones.
	for _, c := range []struct {
		row   string
		ratio float64
	}{
		{"errors 0.1%→1%, 10 rps", 2.5}, {"errors 0.1%→2%, 10 rps", 2.5}, {"errors 0.1%→5%, 10 rps", 1.15},
		{"p95 +500 ms, 10 rps", 2.5}, {"p95 +1500 ms, 10 rps", 1.15},
	} {
		ours, floor, fl3 := find(c.row, "coalmine"), find(c.row, "first data (floor)"), find(c.row, "Flagger+3m")
		t.Logf("%s: failed canary requests %.1f; floor %.1f (%.2f×); Flagger+3m %.1f (%.2f×, target ≤ 0.5×)",
			c.row, ours.meanFailed(), floor.meanFailed(), ours.meanFailed()/floor.meanFailed(),
			fl3.meanFailed(), ours.meanFailed()/fl3.meanFailed())
		if ours.meanFailed() > c.ratio*floor.meanFailed() {
			t.Errorf("%s: %.1f failed canary requests per release, want at most %.2f× the floor's %.1f",
				c.row, ours.meanFailed(), c.ratio, floor.meanFailed())
		}
	}
}

// BenchmarkJudge measures one verdict on a 10 rps stage after 20 minutes of data.
func BenchmarkJudge(b *testing.B) {
	rows := simRows()
	var tr simTrace
	tr.reset(&rows[1], 1, latencyBounds())
	nb := len(tr.bounds) + 1
	can := &Revision{Latency: Histogram{Bounds: tr.bounds, Counts: make([]int64, nb)}}
	stab := &Revision{Latency: Histogram{Bounds: tr.bounds, Counts: make([]int64, nb)}}
	for m := range 20 {
		c, _ := tr.minute(m)
		s := tr.stable(m)
		add(can, tr.hist(c), c)
		add(stab, tr.hist(s), s)
	}
	in := Input{Canary: can, Stable: stab, Gates: policy.Defaults().Gates}
	for b.Loop() {
		Judge(in)
	}
}
