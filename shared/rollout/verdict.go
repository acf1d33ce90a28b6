package rollout

import (
	"fmt"
	"slices"
	"time"
)

// Verdict statuses, as the judge names them.
const (
	VerdictHealthy      = "healthy"
	VerdictInconclusive = "inconclusive"
	VerdictUnhealthy    = "unhealthy"
)

// Bounds on what a verdict keeps.
const (
	// MaxGates bounds the gate results a verdict keeps.
	MaxGates = 8
	// MaxGateDetail bounds one gate's explanation.
	MaxGateDetail = 256
	// MaxIncidents is how many answered Cloud Monitoring incidents a rollout remembers.
	MaxIncidents = 16
)

// Verdict is the last judgement of the canary at its stage, with the figures it was made
// from: what `coalmine status` shows. Only a change of status adds a history entry.
type Verdict struct {
	// Stage is the stage the verdict is about.
	Stage int `json:"stage"`
	// Status is healthy, inconclusive or unhealthy.
	Status string `json:"status"`
	// Action is what an unhealthy verdict asks for: rollback or pause.
	Action string `json:"action,omitempty"`
	// Reason says why, in a sentence.
	Reason string `json:"reason,omitempty"`
	// At is when it was judged; Start and End bound the data it read.
	At    time.Time `json:"at"`
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	// Canary and Stable are the figures read (nil: no data).
	Canary *Figures `json:"canary,omitempty"`
	Stable *Figures `json:"stable,omitempty"`
	// Gates are the gates' results, in the judge's order.
	Gates []GateResult `json:"gates,omitempty"`
}

// Figures are a revision's requests, 5xx answers and p95 latency over a verdict's window.
type Figures struct {
	Revision string  `json:"revision"`
	Requests int64   `json:"requests"`
	Errors   int64   `json:"errors"`
	P95Ms    float64 `json:"p95ms,omitempty"`
}

// GateResult is one gate's status and explanation.
type GateResult struct {
	Gate   string `json:"gate"`
	Status string `json:"status"`
	Detail string `json:"detail,omitempty"`
}

// clone returns a deep copy of v.
func (v *Verdict) clone() *Verdict {
	if v == nil {
		return nil
	}
	c := *v
	if v.Canary != nil {
		f := *v.Canary
		c.Canary = &f
	}
	if v.Stable != nil {
		f := *v.Stable
		c.Stable = &f
	}
	c.Gates = slices.Clone(v.Gates)
	return &c
}

// bounded clips the verdict's free text.
func (v *Verdict) bounded() *Verdict {
	if v == nil {
		return nil
	}
	c := v.clone()
	c.Status = Clip(c.Status, 32)
	c.Action = Clip(c.Action, 32)
	c.Reason = Clip(c.Reason, MaxReason)
	if len(c.Gates) > MaxGates {
		c.Gates = c.Gates[:MaxGates]
	}
	for i := range c.Gates {
		g := &c.Gates[i]
		g.Gate, g.Status, g.Detail = Clip(g.Gate, 64), Clip(g.Status, 32), Clip(g.Detail, MaxGateDetail)
	}
	for _, f := range []*Figures{c.Canary, c.Stable} {
		if f != nil {
			f.Revision = Clip(f.Revision, MaxActor)
		}
	}
	return c
}

// Same reports whether v and w say the same thing: the same stage, status and action,
// and every gate the same status. Figures may differ.
func (v *Verdict) Same(w *Verdict) bool {
	if v == nil || w == nil {
		return v == w
	}
	if v.Stage != w.Stage || v.Status != w.Status || v.Action != w.Action || len(v.Gates) != len(w.Gates) {
		return false
	}
	for i := range v.Gates {
		if v.Gates[i].Gate != w.Gates[i].Gate || v.Gates[i].Status != w.Gates[i].Status {
			return false
		}
	}
	return true
}

// judged records a verdict on a rollout whose canary serves a stage. It changes no
// traffic, deadline or step clock; a history entry is added only when the status (or the
// stage) differs from the verdict before it.
func judged(s State, c Command, now time.Time, cfg Config) Result {
	r := s.Rollout
	switch {
	case c.Verdict == nil:
		return reject(s, "verdict missing")
	case r.Phase != Progressing && r.Phase != Paused:
		if r.Phase.Terminal() {
			return finished(s)
		}
		return stale(s, "no canary serving a stage: rollout "+string(r.Phase))
	case c.Verdict.Stage != r.Stage:
		return stale(s, fmt.Sprintf("verdict about stage %d, the canary is at stage %d", c.Verdict.Stage, r.Stage))
	}
	n := s.Clone()
	n.Generation++
	nr := n.Rollout
	prev := nr.Verdict
	nr.Verdict = c.Verdict.bounded()
	if prev == nil || prev.Stage != nr.Verdict.Stage || prev.Status != nr.Verdict.Status {
		reason := "verdict " + nr.Verdict.Status
		if nr.Verdict.Reason != "" {
			reason += ": " + nr.Verdict.Reason
		}
		addEntry(&n, Entry{Rollout: nr.ID, Generation: n.Generation, At: now, Kind: Judged, Phase: nr.Phase, Stage: nr.Stage, Reason: reason, Actor: c.Actor}, cfg)
	}
	return Result{Outcome: Applied, State: n}
}

// HasIncident reports whether the rollout already answered the Cloud Monitoring incident.
func (r *Rollout) HasIncident(id string) bool {
	return r != nil && id != "" && slices.Contains(r.Incidents, id)
}

// rememberIncident records that r answered the incident.
func rememberIncident(r *Rollout, id string) {
	if id == "" || slices.Contains(r.Incidents, id) {
		return
	}
	r.Incidents = append(r.Incidents, id)
	if over := len(r.Incidents) - MaxIncidents; over > 0 {
		r.Incidents = slices.Clone(r.Incidents[over:])
	}
}
