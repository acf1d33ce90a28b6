package judge

import (
	"math"

	"gonum.org/v1/gonum/mathext"
)

// The gates' statistics are one-sided mixture sequential probability ratio tests (mSPRT) on
// binomial counts: x "bad" requests (5xx, or slower than a limit) among n. For H0: p <= p0
// against p > p0 the statistic is
//
//	Λ(x, n) = ∫ p^x (1-p)^(n-x) π(dp)  /  sup_{q <= p0} q^x (1-q)^(n-x)
//
// with π a Beta(a, b) prior fixed by the policy (never by the data). For every p <= p0 the
// denominator is at least the likelihood at p, so Λ is bounded by the mixture martingale
// ∫ (L(q)/L(p)) π(dq), a nonnegative martingale with mean 1 under p. By Ville's inequality
// P_p(Λ ever reaches 1/α) <= α at every p <= p0, however often and whenever it is looked at:
// the judge may read the cumulative counts every minute without inflating false alarms. The
// sup in the denominator (rather than the likelihood at p0 with a prior truncated to p > p0)
// makes Λ decrease as p0 grows, which the comparisons with the stable revision rely on, and
// makes Λ <= 1 whenever the observed ratio x/n is at most p0: a sample that is not above the
// limit is never evidence that it is.
//
// The lower test, H0: p >= p0 against p < p0, is the mirror image (sup over q >= p0); it bounds
// the stable revision from above.

// betaPrior is a Beta(a, b) mixing distribution.
type betaPrior struct{ a, b float64 }

// The Beta priors. A prior with first shape parameter a and a mean m well below 1 is close to
// a Gamma(a) with mean m: its mass sits within a few multiples of m. The test for "above the
// limit" (the one that fails a gate) puts its mean at twice the limit's odds with shape 1: a
// flat-tailed prior whose mass near the limit is small, so a canary sitting exactly at the
// limit for hours rarely accumulates evidence (false rollbacks of a healthy canary at 1 rps:
// 0.5% in the simulation), while a canary at 50× the limit still fails on its first minute
// of data. The test for "below" (the upper bounds that make a gate Healthy) puts its mean at a
// third of the limit's odds with shape 2, which bounds a clean canary sooner. Seeded
// comparisons of other shapes and factors are in docs/verification.md.
const (
	aboveShape, aboveOdds = 1, 2
	belowShape, belowOdds = 2, 3
)

// priorAbove is the prior for testing p > p0: mean at odds aboveOdds × p0's odds.
func priorAbove(p0 float64) betaPrior {
	m := aboveOdds * p0 / (1 + (aboveOdds-1)*p0)
	return betaPrior{a: aboveShape, b: aboveShape * (1 - m) / m}
}

// priorBelow is the prior for testing p < p0: mean at odds p0's odds / belowOdds.
func priorBelow(p0 float64) betaPrior {
	m := p0 / (belowOdds - (belowOdds-1)*p0)
	return betaPrior{a: belowShape, b: belowShape * (1 - m) / m}
}

// logLik is the binomial log likelihood (without the binomial coefficient) of x in n at p.
func logLik(x, n, p float64) float64 {
	var l float64
	if x > 0 {
		if p <= 0 {
			return math.Inf(-1)
		}
		l += x * math.Log(p)
	}
	if n-x > 0 {
		if p >= 1 {
			return math.Inf(-1)
		}
		l += (n - x) * math.Log1p(-p)
	}
	return l
}

// logMixture is log ∫ p^x (1-p)^(n-x) π(dp) for π = Beta(a, b).
func (pr betaPrior) logMixture(x, n float64) float64 {
	return mathext.Lbeta(pr.a+x, pr.b+n-x) - mathext.Lbeta(pr.a, pr.b)
}

// logEvidenceAbove returns log Λ for H0: p <= p0 against p > p0 after x bad requests in n.
// p0 <= 0 means any bad request is conclusive (+Inf); p0 >= 1 is never rejected (-Inf).
func logEvidenceAbove(x, n, p0 float64, pr betaPrior) float64 {
	switch {
	case n <= 0:
		return 0
	case p0 >= 1:
		return math.Inf(-1)
	case p0 <= 0:
		if x > 0 {
			return math.Inf(1)
		}
		return 0
	}
	q := math.Min(p0, x/n)
	return pr.logMixture(x, n) - logLik(x, n, q)
}

// logEvidenceBelow returns log Λ for H0: p >= p0 against p < p0 after x bad requests in n.
func logEvidenceBelow(x, n, p0 float64, pr betaPrior) float64 {
	switch {
	case n <= 0:
		return 0
	case p0 <= 0:
		return math.Inf(-1)
	case p0 >= 1:
		if x < n {
			return math.Inf(1)
		}
		return 0
	}
	q := math.Max(p0, x/n)
	return pr.logMixture(x, n) - logLik(x, n, q)
}

// upperBound returns the smallest p such that H0: rate >= p is rejected at level alpha by the
// lower test, i.e. a time-uniform (1-alpha) upper confidence bound on the rate after x bad
// requests in n; 1 when not even p = 1 is rejected yet. With the prior fixed,
// logEvidenceBelow grows with p0, so the rejected set is an interval [bound, 1] and bisection
// finds its end.
func upperBound(x, n, alpha float64, pr betaPrior) float64 {
	thr := math.Log(1 / alpha)
	mix := pr.logMixture(x, n) // logEvidenceBelow without recomputing the mixture each time
	reject := func(p float64) bool {
		if p >= 1 {
			return x < n
		}
		return mix-logLik(x, n, math.Max(p, x/n)) >= thr
	}
	if n <= 0 || !reject(1-1e-12) {
		return 1
	}
	lo := x / n
	if reject(lo) {
		return lo
	}
	// Bracket by doubling from the observed rate, then bisect to 0.2% of the bound, keeping
	// the rejected (conservative) end.
	hi := math.Max(2*lo, 1e-6)
	for hi < 1 && !reject(hi) {
		lo, hi = hi, math.Min(1, 2*hi)
	}
	for hi-lo > 2e-3*hi {
		mid := (lo + hi) / 2
		if reject(mid) {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi
}

// lowerBound returns the largest p such that H0: rate <= p is rejected at level alpha by the
// upper test, i.e. a time-uniform (1-alpha) lower confidence bound on the rate after x bad
// requests in n; 0 when not even a tiny p is rejected. With the prior fixed,
// logEvidenceAbove falls as p0 grows, so the rejected set is an interval [0, bound] and
// bisection finds its end.
func lowerBound(x, n, alpha float64, pr betaPrior) float64 {
	if n <= 0 || x <= 0 {
		return 0
	}
	thr := math.Log(1 / alpha)
	mix := pr.logMixture(x, n)
	reject := func(p float64) bool { return mix-logLik(x, n, math.Min(p, x/n)) >= thr }
	hi := x / n
	if !reject(1e-9) {
		return 0
	}
	lo := 1e-9
	// Bisect to 0.2% of the bound, keeping the rejected (conservative) end.
	for hi-lo > 2e-3*lo {
		mid := (lo + hi) / 2
		if reject(mid) {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo
}
