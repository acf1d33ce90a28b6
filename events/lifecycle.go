package events

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

// LifecycleVersion is the wire version of Lifecycle this code writes and reads.
const LifecycleVersion = 1

// LifecycleType is the CloudEvent type of a lifecycle event.
type LifecycleType string

// The lifecycle event types, published on TopicEvents after the write they
// describe.
const (
	EventClaimed        LifecycleType = "dev.coalmine.rollout.claimed.v1"
	EventWaiting        LifecycleType = "dev.coalmine.rollout.waiting.v1"
	EventBackupStarted  LifecycleType = "dev.coalmine.rollout.backup-started.v1"
	EventBackupProgress LifecycleType = "dev.coalmine.rollout.backup-progress.v1"
	EventBackupDone     LifecycleType = "dev.coalmine.rollout.backup-done.v1"
	EventCanaryCreated  LifecycleType = "dev.coalmine.rollout.canary-created.v1"
	EventTrafficShifted LifecycleType = "dev.coalmine.rollout.traffic-shifted.v1"
	EventPaused         LifecycleType = "dev.coalmine.rollout.paused.v1"
	EventResumed        LifecycleType = "dev.coalmine.rollout.resumed.v1"
	EventPromoted       LifecycleType = "dev.coalmine.rollout.promoted.v1"
	EventRollingBack    LifecycleType = "dev.coalmine.rollout.rolling-back.v1"
	EventRolledBack     LifecycleType = "dev.coalmine.rollout.rolled-back.v1"
	EventSuperseded     LifecycleType = "dev.coalmine.rollout.superseded.v1"
	EventFailed         LifecycleType = "dev.coalmine.rollout.failed.v1"
	EventVerdict        LifecycleType = "dev.coalmine.rollout.verdict.v1"
	// EventQueued: a push arrived while another rollout was in progress; it
	// is queued and the rollout in progress is superseded.
	EventQueued LifecycleType = "dev.coalmine.rollout.queued.v1"
	// EventNeedsAttention: coalmine gave up on something an operator must
	// look at (a rollback that never applied, post-rollback steps that never
	// finished, a queued push that was dropped); Reason says what and why.
	EventNeedsAttention LifecycleType = "dev.coalmine.rollout.needs-attention.v1"
	// EventStopped: the service's traffic was changed outside coalmine; the
	// rollout stopped and left it as it was (Reason says what changed).
	EventStopped LifecycleType = "dev.coalmine.rollout.stopped.v1"
	// EventOutcome answers a command whose sender asked for a reply
	// (Command.Reply): Command names it, Outcome says what became of it
	// and Reason why. Rollout and Phase are empty when no rollout was
	// concerned (a release refused before any claim).
	EventOutcome LifecycleType = "dev.coalmine.command.outcome.v1"
)

// The outcomes of a command, in EventOutcome.
const (
	// OutcomeApplied: the command did what it asked.
	OutcomeApplied = "applied"
	// OutcomeAlready: what it asked was already done (or is being done).
	OutcomeAlready = "already"
	// OutcomeQueued: a release queued behind the rollout in progress,
	// which is superseded.
	OutcomeQueued = "queued"
	// OutcomeRefused: not allowed now; Reason says why.
	OutcomeRefused = "refused"
	// OutcomeTooLate: the rollout moved on (finished, or another step came
	// first); Reason says how.
	OutcomeTooLate = "too-late"
)

// LifecycleTypes lists every lifecycle event type.
var LifecycleTypes = []LifecycleType{
	EventClaimed, EventWaiting, EventBackupStarted, EventBackupProgress, EventBackupDone,
	EventCanaryCreated, EventTrafficShifted, EventPaused, EventResumed, EventPromoted,
	EventRollingBack, EventRolledBack, EventSuperseded, EventFailed, EventVerdict,
	EventQueued, EventNeedsAttention, EventStopped, EventOutcome,
}

// Known reports whether t is a lifecycle type this version understands.
func (t LifecycleType) Known() bool {
	for _, k := range LifecycleTypes {
		if k == t {
			return true
		}
	}
	return false
}

// Lifecycle tells watchers (the CLI's watch, notifications) what a function
// just wrote.
type Lifecycle struct {
	Version    int           `json:"version"`
	Type       LifecycleType `json:"type"`
	Service    string        `json:"service"`
	Rollout    string        `json:"rollout"`
	Generation int64         `json:"generation"`
	Phase      string        `json:"phase"`
	Stage      int           `json:"stage,omitempty"`
	Percent    int           `json:"percent,omitempty"`
	Image      string        `json:"image,omitempty"`
	Canary     string        `json:"canary,omitempty"`
	Stable     string        `json:"stable,omitempty"`
	Reason     string        `json:"reason,omitempty"`
	Actor      string        `json:"actor,omitempty"`
	// Command and Outcome: on EventOutcome, the ID of the command answered
	// and what became of it.
	Command string    `json:"command,omitempty"`
	Outcome string    `json:"outcome,omitempty"`
	Time    time.Time `json:"time"`
}

// Encode validates e and returns its JSON encoding.
func (e Lifecycle) Encode() ([]byte, error) {
	if err := e.Validate(); err != nil {
		return nil, err
	}
	return json.Marshal(e)
}

// DecodeLifecycle decodes and validates a lifecycle event.
func DecodeLifecycle(data []byte) (Lifecycle, error) {
	var e Lifecycle
	if err := json.NewDecoder(bytes.NewReader(data)).Decode(&e); err != nil {
		return Lifecycle{}, &FieldError{Source: "lifecycle event", Field: "(body)", Problem: "not a JSON lifecycle event: " + err.Error()}
	}
	return e, e.Validate()
}

// Validate checks the event's fields.
func (e Lifecycle) Validate() error {
	bad := func(field, problem string) error {
		return &FieldError{Source: "lifecycle event", Field: field, Problem: problem}
	}
	switch {
	case e.Version == 0:
		return bad("version", "missing")
	case e.Version > LifecycleVersion || e.Version < 0:
		return bad("version", fmt.Sprintf("unsupported version %d", e.Version))
	case !e.Type.Known():
		return bad("type", fmt.Sprintf("unknown lifecycle type %q", e.Type))
	case !ValidServiceID(e.Service):
		return bad("service", fmt.Sprintf("%q is not a Cloud Run service ID", e.Service))
	case e.Type == EventOutcome && e.Command == "":
		return bad("command", "missing on an outcome")
	case e.Type == EventOutcome && e.Outcome == "":
		return bad("outcome", "missing")
	case e.Type == EventOutcome:
	case e.Rollout == "":
		return bad("rollout", "missing")
	case e.Phase == "":
		return bad("phase", "missing")
	case e.Percent < 0 || e.Percent > 100:
		return bad("percent", fmt.Sprintf("%d is not a percentage", e.Percent))
	case e.Time.IsZero():
		return bad("time", "missing")
	}
	return nil
}
