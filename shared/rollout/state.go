package rollout

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// AnnotationKey is the Cloud Run service annotation that holds the state.
const AnnotationKey = "coalmine.dev/rollout"

// StateVersion is the encoding version this code writes.
const StateVersion = 1

// MaxEncodedSize bounds the encoded state. Cloud Run (like Kubernetes) gives
// all annotations of a resource 256 KiB together; coalmine keeps to an eighth.
const MaxEncodedSize = 32 << 10

// State is everything coalmine remembers about one service: the current (or
// last) rollout, the stable revision, a capped history and the digests that
// failed. It lives in one annotation, written in the same UpdateService as
// the traffic it describes.
type State struct {
	V int `json:"v"`
	// Generation goes up by one with every write and never down.
	Generation int64  `json:"gen"`
	Service    string `json:"service,omitempty"`
	// Stable is the revision coalmine considers stable (tag "stable").
	Stable      string `json:"stable,omitempty"`
	StableImage string `json:"stableImage,omitempty"`
	// Previous is the stable revision before the last promotion (tag
	// "previous"), kept at 0% as a quick way back.
	Previous string `json:"previous,omitempty"`
	// PreviousImage is the image Previous runs, so that a revert within the guard period
	// restores it as the stable image.
	PreviousImage string   `json:"previousImage,omitempty"`
	Rollout       *Rollout `json:"rollout,omitempty"`
	// History holds the last applied steps, oldest first.
	History []Entry `json:"history,omitempty"`
	// FailedDigests holds the digests that failed or were rolled back on
	// this service, oldest first; a push of one is ignored unless retried.
	FailedDigests []string `json:"failed,omitempty"`
	// Pending is the newest push that arrived while the rollout was in
	// progress: the rollout is superseded (rolled back) and this image is
	// released as soon as it has ended. Nil when nothing waits.
	Pending *Pending `json:"pending,omitempty"`
}

// Pending is a push queued behind the rollout in progress. It is kept in
// the state, not in a redelivered message, so it survives a rollback of any
// length: the function that ends the rollout publishes its release, and the
// Scheduler tick publishes it again until a claim takes it (or refuses it,
// which drops it with the reason in the history).
type Pending struct {
	Image  string `json:"image"`
	Digest string `json:"digest"`
	// PublishTime of the push; an older push arriving later is stale.
	PublishTime time.Time `json:"published"`
	Retry       bool      `json:"retry,omitempty"`
	Actor       string    `json:"actor,omitempty"`
	// OverrideWindow and Reason: an operator's release that overrides the
	// deploy windows, and why; its release, when it comes, does too.
	OverrideWindow bool   `json:"overrideWindow,omitempty"`
	Reason         string `json:"reason,omitempty"`
	// Queued is when it was queued.
	Queued time.Time `json:"queued"`
}

// Rollout is one attempt to release one image.
type Rollout struct {
	ID     string `json:"id"`
	Image  string `json:"image"`
	Digest string `json:"digest"`
	// PublishTime of the push that claimed it; an older push is stale.
	PublishTime time.Time `json:"published"`
	// Attempt is 1 for the first claim of a digest, 2+ for retries.
	Attempt int `json:"attempt"`
	// Claimed is the generation of the claim; a command from before it is
	// stale even if it names this rollout's ID.
	Claimed int64 `json:"claimedGen"`
	Phase   Phase `json:"phase"`
	// Stage is the 1-based stage whose traffic the canary serves; 0 before
	// the first shift.
	Stage  int   `json:"stage,omitempty"`
	Stages []int `json:"stages"`
	// Stable is the revision to return to on rollback.
	Stable string `json:"stable,omitempty"`
	// Canary is the revision created for this image.
	Canary string `json:"canary,omitempty"`
	// StableTemplate is the service template as it was before the deploy
	// (google.cloud.run.v2.RevisionTemplate in protojson); a rollback
	// restores it so a later deploy cannot resurrect the canary's image.
	StableTemplate json.RawMessage `json:"template,omitempty"`
	Backup         *Backup         `json:"backup,omitempty"`
	Lease          *Lease          `json:"lease,omitempty"`
	Reason         string          `json:"reason,omitempty"`
	Started        time.Time       `json:"started"`
	// StepStarted is when the current phase (or stage) began.
	StepStarted time.Time `json:"stepStarted"`
	// StageStarted is when the canary's current stage (its traffic share) began, or when it
	// was last resumed; a pause leaves it as it is. The judge reads the canary's figures
	// since then, and the stage's bake counts from it.
	StageStarted time.Time `json:"stageStarted,omitempty"`
	// Deadline is when the watchdog looks at the step next.
	Deadline time.Time `json:"deadline,omitempty"`
	// Attempts counts watchdog re-publications in the current step.
	Attempts int `json:"attempts,omitempty"`
	// LastError is the last failure of the post-rollback hook, kept for
	// the watchdog's reason.
	LastError string `json:"lastError,omitempty"`
	// Escalated says why the watchdog stopped acting on this rollout (a
	// rollback published again and again never applied); an operator must
	// look. Any later step clears it.
	Escalated string    `json:"escalated,omitempty"`
	Ended     time.Time `json:"ended,omitempty"`
	// Verdict is the last judgement of the canary (nil before the first).
	Verdict *Verdict `json:"verdict,omitempty"`
	// Incidents are the Cloud Monitoring incidents this rollout answered (a pause or a
	// rollback), newest last: a notification delivered again changes nothing.
	Incidents []string `json:"incidents,omitempty"`
}

// Lease marks the backup worker that owns a running backup.
type Lease struct {
	Holder  string    `json:"holder"`
	Expires time.Time `json:"expires"`
}

// Entry is one applied step in the history.
type Entry struct {
	Rollout    string    `json:"rollout"`
	Generation int64     `json:"gen"`
	At         time.Time `json:"at"`
	Kind       Kind      `json:"kind"`
	Phase      Phase     `json:"phase"`
	Stage      int       `json:"stage,omitempty"`
	Reason     string    `json:"reason,omitempty"`
	Actor      string    `json:"actor,omitempty"`
}

// Percent is the share of traffic the canary has at the rollout's stage.
func (r *Rollout) Percent() int {
	if r == nil || r.Stage < 1 || r.Stage > len(r.Stages) {
		return 0
	}
	return r.Stages[r.Stage-1]
}

// Active reports whether the rollout is in a non-terminal phase.
func (r *Rollout) Active() bool { return r != nil && !r.Phase.Terminal() }

// Clone returns a deep copy of s.
func (s State) Clone() State {
	c := s
	if s.Rollout != nil {
		r := *s.Rollout
		r.Stages = append([]int(nil), s.Rollout.Stages...)
		r.StableTemplate = append(json.RawMessage(nil), s.Rollout.StableTemplate...)
		if s.Rollout.Backup != nil {
			b := *s.Rollout.Backup
			r.Backup = &b
		}
		if s.Rollout.Lease != nil {
			l := *s.Rollout.Lease
			r.Lease = &l
		}
		r.Verdict = s.Rollout.Verdict.clone()
		r.Incidents = append([]string(nil), s.Rollout.Incidents...)
		c.Rollout = &r
	}
	c.History = append([]Entry(nil), s.History...)
	c.FailedDigests = append([]string(nil), s.FailedDigests...)
	if s.Pending != nil {
		p := *s.Pending
		c.Pending = &p
	}
	return c
}

// Failed reports whether digest failed (or was rolled back) on this service.
func (s State) Failed(digest string) bool {
	for _, d := range s.FailedDigests {
		if d == digest {
			return true
		}
	}
	return false
}

// ErrCorrupt means the annotation could not be decoded.
var ErrCorrupt = errors.New("rollout state annotation is corrupt")

// ErrTooLarge means the encoded state exceeds MaxEncodedSize.
var ErrTooLarge = errors.New("rollout state too large")

// Encode returns the annotation value for s. The JSON is written without
// HTML escaping (a '<' costs one byte, not six). A state over MaxEncodedSize
// loses its oldest history entries until it fits: the history is a record
// for people, the rollout is what every step needs, and a rollback must
// never be refused for the size of what came before it. ErrTooLarge is left
// for a state too large even with no history at all.
func Encode(s State) (string, error) {
	s.V = StateVersion
	b, err := marshal(s)
	if err != nil {
		return "", err
	}
	if len(b) > MaxEncodedSize && len(s.History) > 0 {
		s.History = append([]Entry(nil), s.History...)
		for len(b) > MaxEncodedSize && len(s.History) > 0 {
			s.History = s.History[1:]
			if b, err = marshal(s); err != nil {
				return "", err
			}
		}
	}
	if len(b) > MaxEncodedSize {
		return "", fmt.Errorf("encode rollout state: %d bytes, limit %d: %w", len(b), MaxEncodedSize, ErrTooLarge)
	}
	return string(b), nil
}

func marshal(s State) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		return nil, fmt.Errorf("encode rollout state: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// Decode parses an annotation value. An empty value is the zero State: the
// service was never touched by coalmine.
func Decode(v string) (State, error) {
	if v == "" {
		return State{}, nil
	}
	var s State
	if err := json.Unmarshal([]byte(v), &s); err != nil {
		return State{}, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	switch {
	case s.V == 0:
		return State{}, fmt.Errorf("%w: field v (version) missing", ErrCorrupt)
	case s.V > StateVersion:
		return State{}, fmt.Errorf("%w: version %d is newer than this build (%d)", ErrCorrupt, s.V, StateVersion)
	case s.Generation < 0:
		return State{}, fmt.Errorf("%w: negative generation", ErrCorrupt)
	}
	if r := s.Rollout; r != nil {
		switch {
		case r.ID == "":
			return State{}, fmt.Errorf("%w: rollout.id missing", ErrCorrupt)
		case !r.Phase.Valid():
			return State{}, fmt.Errorf("%w: rollout.phase %q unknown", ErrCorrupt, r.Phase)
		case r.Stage < 0 || r.Stage > len(r.Stages):
			return State{}, fmt.Errorf("%w: rollout.stage %d outside 0..%d", ErrCorrupt, r.Stage, len(r.Stages))
		}
	}
	return s, nil
}
