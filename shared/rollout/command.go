package rollout

import (
	"encoding/json"
	"time"
)

// Kind is what a command asks of the state machine.
type Kind string

// The command kinds. Some arrive on the wire (shift, pause, resume,
// rollback, claim); the rest record what a function did (the canary it
// created, the backup it finished) in the same write as the work itself.
const (
	// Claim starts a rollout for an image (push, release, retry).
	Claim Kind = "claim"
	// Begin starts a waiting rollout once its window is open.
	Begin Kind = "begin"
	// BackupProgress takes or renews the backup lease and records progress.
	BackupProgress Kind = "backup-progress"
	// BackupDone records a verified backup and moves on to deploying.
	BackupDone Kind = "backup-done"
	// CanaryCreated records the canary revision written at 0% traffic.
	CanaryCreated Kind = "canary-created"
	// Shift moves to a stage; the last stage promotes.
	Shift Kind = "shift"
	// Pause holds the current stage.
	Pause Kind = "pause"
	// Resume continues a paused rollout at its stage.
	Resume Kind = "resume"
	// Rollback returns traffic and template to the stable revision.
	Rollback Kind = "rollback"
	// RollbackDone ends a rollback once post-rollback hooks ran.
	RollbackDone Kind = "rollback-done"
	// Fail ends a rollout whose canary never took traffic.
	Fail Kind = "fail"
	// Republish records that the watchdog published a step's command again.
	Republish Kind = "republish"
	// HookFailed records a failed post-rollback hook and lets go of its
	// lease, so that the redelivered rollback runs it again at once.
	HookFailed Kind = "hook-failed"
	// Escalate records that the watchdog stopped re-publishing a rollback
	// that never applied; the rollout waits for an operator.
	Escalate Kind = "escalate"
	// Dequeue drops the queued push (State.Pending) that its claim refused.
	Dequeue Kind = "dequeue"
	// Judged records the canary's last verdict (and a history entry when its status
	// changes); it moves nothing.
	Judged Kind = "verdict"
	// Stop ends a rollout whose service was changed outside coalmine: the
	// traffic Cloud Run is configured with is not the split the state
	// describes. The traffic is left as it is; Stable names the revision
	// that now serves 100% ("" when the operator split it).
	Stop Kind = "stop"
)

// Kinds lists every kind Apply takes.
var Kinds = []Kind{Claim, Begin, BackupProgress, BackupDone, CanaryCreated, Shift, Pause, Resume, Rollback, RollbackDone, Fail, Republish, HookFailed, Escalate, Dequeue, Stop, Judged}

// Kinds that only name history entries: no command of theirs goes
// through Apply.
const (
	// Queue: a push was queued behind the rollout in progress (a claim whose
	// outcome is Supersede).
	Queue Kind = "queue"
	// NotServed: Cloud Run stored a write but could not serve it, and the
	// state went back to what it was (see Revert).
	NotServed Kind = "not-served"
)

// Command is one input to the state machine.
type Command struct {
	Kind Kind
	// Rollout names the rollout the command is for (all kinds but Claim).
	Rollout string
	// Generation is the state generation the sender read; a command that
	// saw a newer generation than the state at hand is retried. 0: unknown.
	Generation int64
	// Stage is the 1-based target stage of a Shift.
	Stage int
	// Manual marks an operator's decision: a manual Shift may move a paused
	// rollout forward.
	Manual bool
	// OverrideWindow: an operator starts a rollout now, outside the
	// deploy windows (a Claim, or a Resume of a waiting rollout); Reason
	// says why.
	OverrideWindow bool
	Reason         string
	Actor          string

	// Claim.
	Service     string
	Image       string    // full reference with digest
	Digest      string    // sha256:...
	PublishTime time.Time // when the push (or operator command) was published
	Retry       bool      // explicit retry of a digest that failed before
	Stages      []int     // stage percents, ascending, ending at 100
	Stable      string    // the revision serving 100% now, as Cloud Run says (also Stop)
	WindowOpen  bool      // a release may start now
	// StableDigest is the digest the revision serving 100% runs ("" if
	// unknown): a claim of it is stale, the image is already serving.
	StableDigest string

	// CanaryCreated.
	Revision string
	Template json.RawMessage // the service template before the deploy

	// BackupProgress and BackupDone, and Rollback with a post-rollback
	// hook to run. Lease is how long the holder keeps the work (0: the
	// default; negative: it lets go at once).
	Holder string
	Lease  time.Duration
	Backup *Backup

	// Republish: which step's command was published again.
	Step string

	// Judged: the verdict to record.
	Verdict *Verdict
	// Rollback: Revert returns a rollout promoted less than Deadlines.Guard ago to the
	// revision it replaced (an alert after a promotion).
	Revert bool
	// Pause and Rollback: the Cloud Monitoring incident answered, remembered so that a
	// notification delivered again changes nothing.
	Incident string
}

// Backup is what a finished (or running) backup left behind, referenced
// from the rollout so that a restore can find it, and where a running
// backup is, so that the next chunk (or another worker) resumes it.
type Backup struct {
	// Prefix is where the backup lives (gs://bucket/prefix/).
	Prefix string `json:"prefix,omitempty"`
	// Manifest is the object holding the storage manifest.
	Manifest string `json:"manifest,omitempty"`
	// Database is the database export or dump object.
	Database string `json:"db,omitempty"`
	// Objects is the number of objects copied so far; Bytes the dump size.
	Objects int   `json:"objects,omitempty"`
	Bytes   int64 `json:"bytes,omitempty"`
	// Step is the part in progress: storage, database, verify, done.
	Step string `json:"step,omitempty"`
	// Cursor is where the storage copy resumes (opaque to the state machine).
	Cursor string `json:"cursor,omitempty"`
	// Operation is a running Cloud SQL export to follow.
	Operation string `json:"op,omitempty"`
	// Progress is free text about where a running backup is.
	Progress string `json:"progress,omitempty"`
	// LastError is the last transient failure, kept for the watchdog's reason.
	LastError string `json:"lastError,omitempty"`
	// Skipped says which parts were skipped and why.
	Skipped string `json:"skipped,omitempty"`
}
