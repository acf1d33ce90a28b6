package judge

import (
	"time"

	"github.com/ai-square/coalmine/shared/policy"
)

// Status is a verdict's or a gate's outcome. Statuses are ordered: Unhealthy beats
// Inconclusive beats Healthy, so a verdict's status is the highest of its gates'.
type Status int

const (
	// Healthy: the canary has served at least minRequests requests, its figures are
	// consistent, and a time-uniform upper confidence bound (at the policy's confidence)
	// rules out a clear failure: the error rate is below errorRate.max plus the indifference
	// zone (maxIncreaseOverStable, or 0.5% when that is off or 0), below the stable
	// revision's lower bound plus maxIncreaseOverStable plus the zone, and fewer than 10% of
	// requests are at or above each latency limit (the p90 is within it; for the ratio, the
	// ratio times the stable p95's lower bound). A gate that is only "not yet shown to fail"
	// is not Healthy. The guarantee is per gate: a canary at or beyond a zone's edge is
	// declared Healthy by that gate with probability at most 1 - confidence, however often it
	// is judged.
	Healthy Status = iota
	// Inconclusive: not enough data to decide either way (no data, fewer than minRequests
	// requests, a rate neither shown above its limit nor bounded below the zone's edge, a
	// stable revision not yet bounded) or inconsistent figures; the stage holds.
	Inconclusive
	// Unhealthy: a sequential test is conclusive that the canary is above a limit, at the
	// confidence the policy asks for (valid at every look), or a gauge is over its limit.
	Unhealthy
)

// String returns "healthy", "inconclusive" or "unhealthy".
func (s Status) String() string {
	switch s {
	case Healthy:
		return "healthy"
	case Inconclusive:
		return "inconclusive"
	case Unhealthy:
		return "unhealthy"
	}
	return "unknown"
}

// Gate names, as they appear in a verdict.
const (
	GateRequests            = "requests"
	GateErrorRate           = "errorRate"
	GateErrorRateOverStable = "errorRate.overStable"
	GateLatencyP95          = "latencyP95"
	GateLatencyP95ToStable  = "latencyP95.ratioToStable"
	GateDBConnections       = "dbConnections"
)

// GateResult is one gate's outcome with the figures it was decided on.
type GateResult struct {
	// Gate is the gate's name (GateErrorRate, ...).
	Gate string
	// Status is the gate's outcome.
	Status Status
	// Action is what the policy says a failure of this gate does; set for every gate that
	// can fail.
	Action policy.Action
	// Observed is the gate's figure (an error rate, a p95 in ms, a ratio, a connection use),
	// and Limit the policy's limit it is held against; both are 0 when there was no data.
	Observed, Limit float64
	// Detail says in words what was seen and why the gate decided as it did.
	Detail string
}

// Verdict is the judge's decision over one window.
type Verdict struct {
	// Status is the highest status of the gates.
	Status Status
	// Action is what an Unhealthy verdict does: rollback when any failing gate says
	// rollback, else pause. Empty unless Status is Unhealthy.
	Action policy.Action
	// Gates are every gate's outcome, in a fixed order.
	Gates []GateResult
	// Reason is a one-line summary naming the deciding gates and their figures.
	Reason string
	// Start and End are the window the figures covered.
	Start, End time.Time
}
