package judge

import (
	"time"

	"github.com/ai-square/coalmine/shared/policy"
)

// Status is a verdict's or a gate's outcome. Statuses are ordered: Unhealthy beats
// Inconclusive beats Healthy, so a verdict's status is the highest of its gates'.
type Status int

const (
	// Healthy: the gate passed with the confidence the policy asks for.
	Healthy Status = iota
	// Inconclusive: not enough data to decide either way; the stage holds.
	Inconclusive
	// Unhealthy: the gate failed with the confidence the policy asks for.
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
