package judge

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/ai-square/coalmine/shared/policy"
)

// slowShare is the share of requests slower than a p95 limit that puts the p95 over it: p95 >
// X exactly when more than 5% of requests are slower than X.
const slowShare = 0.05

// defaultConfidence is used when the policy's confidence is not in (0, 1).
const defaultConfidence = 0.95

// healthyShare is the latency gates' indifference zone: a latency gate is Healthy only when
// fewer than 10% of the canary's requests are, with the policy's confidence, at or above its
// limit (the canary's p90 is within the limit). Between 5% (the limit: p95) and 10% the gate
// can neither fail nor pass for sure, and stays Inconclusive until the data say which side.
const healthyShare = 0.10

// defaultZone is the error-rate gates' indifference zone width when the policy's
// maxIncreaseOverStable is off (1) or 0: the policy's default increase.
const defaultZone = 0.005

// Judge decides on the canary's health from the figures in in. It is pure: no clock, no I/O,
// no randomness. See docs/verification.md for the statistics.
//
// Every statistical gate is Unhealthy when its sequential test is conclusive (the canary is
// above the limit), Healthy when the canary has served at least Gates.MinRequests requests and
// a time-uniform upper confidence bound rules out a clear failure (the canary is below the
// limit plus an indifference zone: errorRate.max + the zone width, stable + increase + the
// zone width, fewer than 10% of requests at or above a latency limit), and Inconclusive
// otherwise: "not yet shown to fail" is not Healthy. The sequential tests are valid at every
// sample size, so a conclusive failure counts below MinRequests too; a Healthy verdict never
// comes before MinRequests. Missing data (no canary figures, no requests, no stable figures
// for a comparison, no connection figures) and inconsistent figures (more errors than
// requests, negative counts, a malformed histogram, a figure or evidence that is not a
// number) are Inconclusive.
func Judge(in Input) Verdict {
	g := in.Gates
	conf := g.ErrorRate.Confidence
	if !(conf > 0 && conf < 1) {
		conf = defaultConfidence
	}
	j := judging{in: in, alpha: 1 - conf, conf: conf}
	j.canaryBad, j.stableBad = inconsistency(in.Canary), inconsistency(in.Stable)
	if in.Canary != nil && j.canaryBad == "" {
		j.n = in.Canary.Requests.Total
	}
	minReq := int64(max(g.MinRequests, 1))
	j.enough = in.Canary != nil && j.canaryBad == "" && j.n >= minReq

	gates := []GateResult{
		j.requests(minReq),
		j.errorRate(),
		j.errorRateOverStable(),
		j.latencyP95(),
		j.latencyToStable(),
	}
	if g.DBConnections != nil {
		gates = append(gates, j.dbConnections())
	}
	for i := range gates {
		r := &gates[i]
		if math.IsNaN(r.Observed) || math.IsNaN(r.Limit) || math.IsInf(r.Observed, 0) {
			// Never decide on a figure that is not a number.
			r.Status = Inconclusive
			r.Detail += fmt.Sprintf("; not judged: a figure is not a number (observed %g, limit %g)", r.Observed, r.Limit)
			continue
		}
		if r.Gate == GateRequests || r.Status == Inconclusive {
			continue
		}
		if r.Status == Healthy && !j.enough && !isOff(*r) {
			r.Status = Inconclusive
			r.Detail += fmt.Sprintf("; not healthy before %d requests (%d so far)", minReq, j.n)
		}
		if r.Status == Unhealthy && !j.enough && r.Gate == GateDBConnections {
			// Only the sequential tests, valid at any sample size, decide below minRequests.
			r.Status = Inconclusive
			r.Detail += fmt.Sprintf("; not judged before %d canary requests (%d so far)", minReq, j.n)
		}
	}
	return verdictOf(gates, in)
}

// offPrefix starts the Detail of a gate the policy turned off; such a gate is Healthy at any
// number of requests and is left out of a healthy verdict's reason.
const offPrefix = "off ("

func isOff(r GateResult) bool { return strings.HasPrefix(r.Detail, offPrefix) }

func verdictOf(gates []GateResult, in Input) Verdict {
	v := Verdict{Gates: gates, Start: in.Start, End: in.End}
	for _, r := range gates {
		v.Status = max(v.Status, r.Status)
	}
	var deciding []string
	for _, r := range gates {
		if r.Status != v.Status {
			continue
		}
		if v.Status == Unhealthy && r.Action == policy.ActionRollback {
			v.Action = policy.ActionRollback
		}
		deciding = append(deciding, r.Gate+": "+r.Detail)
	}
	if v.Status == Unhealthy && v.Action == "" {
		v.Action = policy.ActionPause
	}
	head := v.Status.String()
	if v.Action != "" {
		head += " (" + string(v.Action) + ")"
	}
	if v.Status == Healthy {
		var on []string
		for _, r := range gates {
			if !isOff(r) {
				on = append(on, r.Gate+": "+r.Detail)
			}
		}
		deciding = on
	}
	v.Reason = head + ": " + strings.Join(deciding, "; ")
	return v
}

type judging struct {
	in                   Input
	alpha, conf          float64
	n                    int64  // canary requests (0 when its figures are inconsistent)
	enough               bool   // canary requests >= minRequests
	canaryBad, stableBad string // why a revision's figures are inconsistent, or ""
}

// inconsistency says why r's figures cannot be true (more errors than requests, negative
// counts, a malformed histogram), or "" when they can; nil is consistent (it is missing data).
func inconsistency(r *Revision) string {
	if r == nil {
		return ""
	}
	q := r.Requests
	switch {
	case q.Total < 0 || q.Errors < 0:
		return fmt.Sprintf("negative request counts (%d requests, %d errors)", q.Total, q.Errors)
	case q.Errors > q.Total:
		return fmt.Sprintf("%s > %s", count(q.Errors, "error"), count(q.Total, "request"))
	}
	if err := r.Latency.check(); err != nil {
		return "latency " + err.Error()
	}
	return ""
}

// inconsistent makes r an Inconclusive result naming the inconsistent figures.
func inconsistent(r GateResult, who, why string) GateResult {
	return noData(r, fmt.Sprintf("inconsistent figures for the %s: %s", who, why))
}

// needed formats the evidence threshold 1/alpha and its confidence.
func needed(alpha, conf float64) string {
	return num(1/alpha) + " needed (" + pct(conf) + ")"
}

func num(x float64) string {
	switch {
	case math.IsInf(x, 1):
		return "∞"
	case x >= 1e6:
		return strconv.FormatFloat(x, 'g', 2, 64)
	case x >= 100:
		return strconv.FormatFloat(x, 'f', 0, 64)
	}
	return strconv.FormatFloat(x, 'g', 3, 64)
}

// pct formats a fraction as a percentage with at most two decimals: 0.0125 is "1.25%".
func pct(f float64) string {
	s := strconv.FormatFloat(100*f, 'f', 2, 64)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	return s + "%"
}

// itoa formats an integer.
func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// f0 formats x without decimals, as %.0f does.
func f0(x float64) string { return strconv.FormatFloat(x, 'f', 0, 64) }

// count formats n things: "1 error", "3 errors".
func count(n int64, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return strconv.FormatInt(n, 10) + " " + thing + "s"
}

func ratio(x, n float64) float64 {
	if n <= 0 {
		return 0
	}
	return x / n
}

func (j judging) requests(minReq int64) GateResult {
	r := GateResult{Gate: GateRequests, Observed: float64(j.n), Limit: float64(minReq)}
	switch {
	case j.in.Canary == nil:
		r.Status, r.Detail = Inconclusive, "no data for the canary"
	case j.canaryBad != "":
		r = inconsistent(r, "canary", j.canaryBad)
	case j.n < minReq:
		r.Status, r.Detail = Inconclusive, itoa(j.n)+" of "+itoa(minReq)+" requests"
	default:
		r.Status, r.Detail = Healthy, itoa(j.n)+" requests (at least "+itoa(minReq)+")"
	}
	return r
}

// noData makes r an Inconclusive result without figures (Observed and Limit 0).
func noData(r GateResult, detail string) GateResult {
	r.Status, r.Detail, r.Observed, r.Limit = Inconclusive, detail, 0, 0
	return r
}

// noCanary reports a gate without canary figures, or nil when there are some.
func (j judging) noCanary(r GateResult) *GateResult {
	switch {
	case j.in.Canary == nil:
		r = noData(r, "no data for the canary")
	case j.canaryBad != "":
		r = inconsistent(r, "canary", j.canaryBad)
	case j.n == 0:
		r = noData(r, "no canary requests")
	default:
		return nil
	}
	return &r
}

// zoneWidth is the error-rate gates' indifference zone width: maxIncreaseOverStable when it is
// in (0, 1), else defaultZone.
func zoneWidth(e policy.ErrorRateGate) float64 {
	if d := e.MaxIncreaseOverStable; d > 0 && d < 1 {
		return d
	}
	return defaultZone
}

func (j judging) errorRate() GateResult {
	e := j.in.Gates.ErrorRate
	r := GateResult{Gate: GateErrorRate, Action: e.OnFail, Limit: e.Max}
	if e.Max >= 1 {
		r.Detail = offPrefix + "max = 1)"
		return r
	}
	if nc := j.noCanary(r); nc != nil {
		return *nc
	}
	x, n := float64(j.in.Canary.Requests.Errors), float64(j.n)
	r.Observed = ratio(x, n)
	ev := math.Exp(logEvidenceAbove(x, n, e.Max, priorAbove(e.Max)))
	seen := count(j.in.Canary.Requests.Errors, "error") + " in " + count(j.n, "request") + " (" + pct(r.Observed) + ")"
	if math.IsNaN(ev) {
		r.Status, r.Detail = Inconclusive, fmt.Sprintf("%s; evidence is not a number", seen)
		return r
	}
	if ev >= 1/j.alpha {
		r.Status = Unhealthy
		r.Detail = fmt.Sprintf("%s; above %s: evidence %s >= %s", seen, pct(e.Max), num(ev), needed(j.alpha, j.conf))
		return r
	}
	seen += "; evidence of more than " + pct(e.Max) + " " + num(ev) + " < " + needed(j.alpha, j.conf)
	// Healthy needs more than "not shown to fail": the always-valid upper bound must rule out
	// the zone's edge, max + the zone width.
	edge := math.Min(1, e.Max+zoneWidth(e))
	r.Status, r.Detail = bounded(seen, upperBound(x, n, j.alpha, priorBelow(edge)), edge, j.conf, "")
	return r
}

// bounded decides a gate that was not shown to fail on its upper confidence bound ub (at
// confidence conf) of the bad share: Healthy when ub <= edge (the indifference zone's edge is
// ruled out), else Inconclusive. what names the bad requests ("" for errors).
func bounded(seen string, ub, edge, conf float64, what string) (Status, string) {
	if math.IsNaN(ub) {
		return Inconclusive, seen + "; upper bound is not a number"
	}
	if ub <= edge {
		return Healthy, seen + "; below " + pct(edge) + what + " (at most " + pct(ub) + " at " + pct(conf) + ")"
	}
	return Inconclusive, seen + "; not enough data to rule out " + pct(edge) + what + " (at most " + pct(ub) + " at " + pct(conf) + ")"
}

func (j judging) errorRateOverStable() GateResult {
	e := j.in.Gates.ErrorRate
	d := e.MaxIncreaseOverStable
	r := GateResult{Gate: GateErrorRateOverStable, Action: e.OnFail, Limit: d}
	if d >= 1 {
		r.Detail = offPrefix + "maxIncreaseOverStable = 1)"
		return r
	}
	if nc := j.noCanary(r); nc != nil {
		return *nc
	}
	s := j.in.Stable
	switch {
	case j.stableBad != "":
		return inconsistent(r, "stable revision", j.stableBad)
	case s == nil || s.Requests.Total == 0:
		return noData(r, "no data for the stable revision")
	}
	xc, nc := float64(j.in.Canary.Requests.Errors), float64(j.n)
	xs, ns := float64(s.Requests.Errors), float64(s.Requests.Total)
	r.Observed = ratio(xc, nc) - ratio(xs, ns)
	// Half the error probability bounds the stable rate from above for good, half tests the
	// canary against that bound plus the allowed increase.
	half := j.alpha / 2
	ub := upperBound(xs, ns, half, stablePrior(d))
	p0 := math.Min(1, ub+d)
	ev := math.Exp(logEvidenceAbove(xc, nc, p0, priorAbove(math.Max(d, 1e-6))))
	seen := "canary " + pct(ratio(xc, nc)) + " (" + itoa(j.in.Canary.Requests.Errors) + "/" + itoa(j.n) + "), stable " +
		pct(ratio(xs, ns)) + " (" + itoa(s.Requests.Errors) + "/" + itoa(s.Requests.Total) + ", at most " + pct(ub) + " at " + pct(1-half) + ")"
	if math.IsNaN(ev) {
		r.Status, r.Detail = Inconclusive, fmt.Sprintf("%s; evidence is not a number", seen)
		return r
	}
	if ev >= 1/half {
		r.Status = Unhealthy
		r.Detail = fmt.Sprintf("%s; canary above %s: evidence %s >= %s", seen, pct(p0), num(ev), needed(half, 1-half))
		return r
	}
	seen += "; evidence of canary above " + pct(p0) + " " + num(ev) + " < " + needed(half, 1-half)
	// The stable bound must mean something before the comparison can pass: a bound wider
	// than the zone (3 stable requests bound the rate at 70%) would pass any canary.
	w := zoneWidth(e)
	if ub+d >= 1 || ub-ratio(xs, ns) > w {
		r.Status = Inconclusive
		r.Detail = fmt.Sprintf("%s; the stable rate is not yet bounded within %s of its ratio", seen, pct(w))
		return r
	}
	// Healthy: the canary bounded within the stable rate's LOWER bound plus the increase and
	// the zone, so that a canary at the stable's true rate + increase + zone passes with
	// probability at most alpha (half for each bound).
	lb := lowerBound(xs, ns, half, priorAbove(math.Max(d, 1e-6)))
	edge := math.Min(1, lb+d+w)
	seen += "; stable at least " + pct(lb)
	r.Status, r.Detail = bounded(seen, upperBound(xc, nc, half, priorBelow(math.Min(1, d+w))), edge, 1-half, "")
	return r
}

// stablePrior is the fixed prior of the stable revision's upper confidence bound: mean a third
// of the allowed increase, the scale at which the bound matters.
func stablePrior(d float64) betaPrior {
	return priorBelow(math.Max(d, 3e-6))
}

func (j judging) latencyP95() GateResult {
	l := j.in.Gates.LatencyP95
	r := GateResult{Gate: GateLatencyP95, Action: l.OnFail, Limit: float64(l.MaxMs)}
	if l.MaxMs <= 0 {
		r.Detail = offPrefix + "maxMs = 0)"
		return r
	}
	if nc := j.noCanary(r); nc != nil {
		return *nc
	}
	h := j.in.Canary.Latency
	m := float64(h.Count())
	if m == 0 {
		return noData(r, "no latency data for the canary")
	}
	r.Observed, _ = h.Quantile(0.95)
	k, at := slowerThan(h, float64(l.MaxMs))
	ev := math.Exp(logEvidenceAbove(k, m, slowShare, priorAbove(slowShare)))
	seen := "p95 " + f0(r.Observed) + " ms; " + f0(k) + " of " + f0(m) + " requests (" + pct(k/m) + ") at or above " + f0(at) + " ms"
	if ev >= 1/j.alpha {
		r.Status = Unhealthy
		r.Detail = fmt.Sprintf("%s; more than 5%%: evidence %s >= %s", seen, num(ev), needed(j.alpha, j.conf))
		return r
	}
	seen += "; evidence of more than 5% " + num(ev) + " < " + needed(j.alpha, j.conf)
	// Healthy: fewer than 10% at or above maxMs, counting the bucket that straddles it whole
	// (an upper bound on the slow requests, whatever their spread in the bucket).
	kk, from := maybeSlowerThan(h, float64(l.MaxMs))
	seen += "; " + f0(kk) + " (" + pct(kk/m) + ") at or above " + f0(from) + " ms"
	ub := upperBound(kk, m, j.alpha, priorBelow(healthyShare))
	r.Status, r.Detail = bounded(seen, ub, healthyShare, j.conf, " at or above "+f0(from)+" ms")
	return r
}

func (j judging) latencyToStable() GateResult {
	l := j.in.Gates.LatencyP95
	r := GateResult{Gate: GateLatencyP95ToStable, Action: l.OnFail, Limit: l.MaxRatioToStable}
	if l.MaxRatioToStable <= 0 {
		r.Detail = offPrefix + "maxRatioToStable = 0)"
		return r
	}
	if nc := j.noCanary(r); nc != nil {
		return *nc
	}
	h := j.in.Canary.Latency
	m := float64(h.Count())
	if m == 0 {
		return noData(r, "no latency data for the canary")
	}
	if j.stableBad != "" {
		return inconsistent(r, "stable revision", j.stableBad)
	}
	if j.in.Stable == nil || j.in.Stable.Latency.Count() == 0 {
		return noData(r, "no latency data for the stable revision")
	}
	sh := j.in.Stable.Latency
	cp95, _ := h.Quantile(0.95)
	sp95, _ := sh.Quantile(0.95)
	if sp95 > 0 {
		r.Observed = cp95 / sp95
	}
	half := j.alpha / 2
	ub, ok := p95UpperBound(sh, half)
	if !ok {
		r.Status = Inconclusive
		r.Detail = fmt.Sprintf("canary p95 %.0f ms, stable p95 %.0f ms; the stable p95 is not yet bounded at %s (%d requests)",
			cp95, sp95, pct(1-half), sh.Count())
		return r
	}
	// Here the straddling bucket is spread evenly (Above): rounding the limit up to a bucket
	// bound, as the absolute gate does, would cost most of the gate's power with 40%-wide
	// buckets, and the stable bound's own margin more than covers the interpolation (see
	// TestLatencyFalseAlarmsUnderRepeatedLooks).
	limit := l.MaxRatioToStable * ub
	k := h.Above(limit)
	ev := math.Exp(logEvidenceAbove(k, m, slowShare, priorAbove(slowShare)))
	seen := "canary p95 " + f0(cp95) + " ms, stable p95 " + f0(sp95) + " ms (at most " + f0(ub) + " at " + pct(1-half) + "); " +
		f0(k) + " of " + f0(m) + " canary requests (" + pct(k/m) + ") slower than " + strconv.FormatFloat(l.MaxRatioToStable, 'g', 3, 64) +
		" × " + f0(ub) + " = " + f0(limit) + " ms"
	if ev >= 1/half {
		r.Status = Unhealthy
		r.Detail = fmt.Sprintf("%s; more than 5%%: evidence %s >= %s", seen, num(ev), needed(half, 1-half))
		return r
	}
	seen += "; evidence of more than 5% " + num(ev) + " < " + needed(half, 1-half)
	// Healthy: fewer than 10% of canary requests at or above the ratio times the stable p95's
	// LOWER bound, counting the bucket that straddles it whole: a canary whose p90 is beyond
	// the ratio times the stable's true p95 then passes with probability at most alpha.
	lb, ok := p95LowerBound(sh, half)
	if !ok && len(sh.Bounds) > 0 && ub <= sh.Bounds[0] {
		// The stable p95 is, with confidence, under the first bucket bound: below what the
		// metric resolves, so no lower bound can ever qualify. The ratio is then measured
		// against that bound (1 ms for Cloud Run): a canary is compared with the stable
		// revision only as finely as the histogram can tell them apart.
		lb, ok = sh.Bounds[0], true
		seen += "; the stable p95 is under the first bucket bound, " + f0(lb) + " ms, which stands for it"
	}
	if !ok {
		r.Status = Inconclusive
		r.Detail = fmt.Sprintf("%s; the stable p95 is not yet bounded from below at %s", seen, pct(1-half))
		return r
	}
	kk, from := maybeSlowerThan(h, l.MaxRatioToStable*lb)
	seen += "; stable p95 at least " + f0(lb) + " ms; " + f0(kk) + " (" + pct(kk/m) + ") at or above " + f0(from) + " ms"
	cub := upperBound(kk, m, half, priorBelow(healthyShare))
	r.Status, r.Detail = bounded(seen, cub, healthyShare, 1-half, " at or above "+f0(from)+" ms")
	return r
}

// maybeSlowerThan returns how many of h's values may be at or above x: those in the buckets
// that end above x, so at or above from, the last bucket bound <= x (every value when x is
// below the first bound: from is then -Inf). It counts the bucket that straddles x whole, so
// the count is at least the true number whatever the spread inside the bucket.
func maybeSlowerThan(h Histogram, x float64) (n, from float64) {
	i, found := slices.BinarySearch(h.Bounds, x)
	if found {
		return h.Above(x), x
	}
	if i == 0 {
		return float64(h.Count()), math.Inf(-1)
	}
	return h.Above(h.Bounds[i-1]), h.Bounds[i-1]
}

// slowerThan returns how many of h's values are surely slower than x: those in the buckets
// that begin at or above x, so at or above at, the first bucket bound >= x. It leaves out the
// bucket that straddles x: spreading it evenly (Above) overstates the slow share where the
// latency density falls across the bucket, as it does around a p95, and the test would then
// fail a canary exactly at the limit more often than alpha. x above the last bound counts
// nothing (at is +Inf).
func slowerThan(h Histogram, x float64) (n, at float64) {
	i, _ := slices.BinarySearch(h.Bounds, x)
	if i == len(h.Bounds) {
		return 0, math.Inf(1)
	}
	return h.Above(h.Bounds[i]), h.Bounds[i]
}

// p95LowerBound returns the largest bucket bound b of h such that more than 5% of the
// revision's requests are at or above b with confidence 1-alpha (the upper test of the share
// of whole buckets from b against 5% rejects), a time-uniform lower confidence bound on its
// p95. ok is false when no bound qualifies yet. The share falls as b grows, so the
// qualifying bounds are the bottom of the list and a binary search finds the highest.
func p95LowerBound(h Histogram, alpha float64) (float64, bool) {
	n := float64(h.Count())
	if n == 0 || len(h.Bounds) == 0 {
		return 0, false
	}
	thr := math.Log(1 / alpha)
	pr := priorAbove(slowShare)
	ok := func(i int) bool { return logEvidenceAbove(h.Above(h.Bounds[i]), n, slowShare, pr) >= thr }
	lo, hi := 0, len(h.Bounds) // find the first i in [lo, hi) with !ok(i)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if ok(mid) {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo == 0 {
		return 0, false
	}
	return h.Bounds[lo-1], true
}

// p95UpperBound returns the smallest bucket bound b of h such that fewer than 5% of the
// revision's requests are slower than b with confidence 1-alpha (the lower test of the share
// above b against 5% rejects), a time-uniform upper confidence bound on its p95. ok is false
// when no bound qualifies yet. The share above b falls as b grows, so the qualifying bounds
// are the top of the list and a binary search finds the lowest; inside its bucket the bound
// is then narrowed with the bucket's values spread evenly (Monitoring's own interpolation).
func p95UpperBound(h Histogram, alpha float64) (float64, bool) {
	n := float64(h.Count())
	if n == 0 || len(h.Bounds) == 0 {
		return 0, false
	}
	thr := math.Log(1 / alpha)
	pr := priorBelow(slowShare)
	ok := func(i int) bool { return logEvidenceBelow(h.Above(h.Bounds[i]), n, slowShare, pr) >= thr }
	lo, hi := 0, len(h.Bounds) // find the first i in [lo, hi) with ok(i)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if ok(mid) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	if lo == len(h.Bounds) {
		return 0, false
	}
	if lo == 0 {
		return h.Bounds[0], true
	}
	// Within the bucket, Above spreads its values evenly, as Quantile does: narrow the bound
	// down from the bucket's upper bound to 1/256 of its width.
	below, above := h.Bounds[lo-1], h.Bounds[lo]
	for range 8 {
		mid := (below + above) / 2
		if logEvidenceBelow(h.Above(mid), n, slowShare, pr) >= thr {
			above = mid
		} else {
			below = mid
		}
	}
	return above, true
}

func (j judging) dbConnections() GateResult {
	d := j.in.Gates.DBConnections
	r := GateResult{Gate: GateDBConnections, Action: d.OnFail, Limit: d.Max}
	c := j.in.Connections
	if c == nil {
		return noData(r, "no data for the database's connections")
	}
	if math.IsNaN(c.InUse) || math.IsInf(c.InUse, 0) || c.InUse < 0 || c.Max < 0 {
		return noData(r, fmt.Sprintf("inconsistent figures for the database's connections: %g in use of %d", c.InUse, c.Max))
	}
	maxConn := c.Max
	if maxConn <= 0 {
		maxConn = d.MaxConnections
	}
	if maxConn <= 0 {
		r.Status, r.Detail = Inconclusive, "max_connections unknown"
		return r
	}
	r.Observed = c.InUse / float64(maxConn)
	seen := fmt.Sprintf("%.0f of %d connections in use (%s)", c.InUse, maxConn, pct(r.Observed))
	if r.Observed > d.Max {
		r.Status, r.Detail = Unhealthy, fmt.Sprintf("%s; above %s", seen, pct(d.Max))
	} else {
		r.Detail = fmt.Sprintf("%s; at most %s", seen, pct(d.Max))
	}
	return r
}
