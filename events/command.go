package events

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// CommandVersion is the wire version of Command this code writes and reads.
const CommandVersion = 1

// CommandType is the CloudEvent type of a coalmine command. The type names
// the command and its version; a consumer that does not know a type
// acknowledges the message and logs it.
type CommandType string

// The command types. Each has exactly one topic and one consuming function.
const (
	// CommandRelease asks Backup to claim a rollout for an image (operator
	// release or retry; Artifact Registry pushes arrive on gcr instead).
	CommandRelease CommandType = "dev.coalmine.command.release.v1"
	// CommandBackup continues a running backup (Backup publishes it to itself).
	CommandBackup CommandType = "dev.coalmine.command.backup.v1"
	// CommandDeployCanary asks Deploy to create the canary revision at 0%.
	CommandDeployCanary CommandType = "dev.coalmine.command.deploy-canary.v1"
	// CommandShiftTraffic asks Shift to move to a stage (the last one promotes).
	CommandShiftTraffic CommandType = "dev.coalmine.command.shift-traffic.v1"
	// CommandPause asks Shift to hold the current stage.
	CommandPause CommandType = "dev.coalmine.command.pause.v1"
	// CommandResume asks Shift to continue a paused rollout at its stage.
	CommandResume CommandType = "dev.coalmine.command.resume.v1"
	// CommandRollback asks Rollback to return all traffic to the stable revision.
	CommandRollback CommandType = "dev.coalmine.command.rollback.v1"
)

var commandTopics = map[CommandType]string{
	CommandRelease:      TopicRelease,
	CommandBackup:       TopicBackup,
	CommandDeployCanary: TopicDeploy,
	CommandShiftTraffic: TopicShift,
	CommandPause:        TopicShift,
	CommandResume:       TopicShift,
	CommandRollback:     TopicRollback,
}

// CommandTypes lists every command type.
var CommandTypes = []CommandType{
	CommandRelease, CommandBackup, CommandDeployCanary, CommandShiftTraffic,
	CommandPause, CommandResume, CommandRollback,
}

// Topic returns the topic that carries commands of this type, or "" for an
// unknown type.
func (t CommandType) Topic() string { return commandTopics[t] }

// Known reports whether t is a command type this version understands.
func (t CommandType) Known() bool { _, ok := commandTopics[t]; return ok }

// Command is what one function (or the operator CLI) asks the next to do.
// It names the rollout, the state generation the sender saw and the step it
// expects, so that the receiver can tell a fresh command from a duplicate,
// a stale one or one that arrived before the state it depends on.
type Command struct {
	Version int         `json:"version"`
	Type    CommandType `json:"type"`
	// ID identifies this command for logs; duplicates of one publish share it.
	ID      string `json:"id,omitempty"`
	Service string `json:"service"`
	// Rollout is the rollout the command is for; empty only on a release.
	Rollout string `json:"rollout,omitempty"`
	// Generation is the state generation the sender read (0: none yet).
	Generation int64 `json:"generation"`
	// Step is the step the sender expects the receiver to apply:
	// release, backup, deploy, stage-N, pause, resume or rollback.
	Step string `json:"step"`
	// Stage is the 1-based target stage of a shift (and the stage a pause or
	// resume saw); 0 otherwise.
	Stage int `json:"stage,omitempty"`
	// Image is the full image reference with digest, for a release.
	Image string `json:"image,omitempty"`
	// Retry marks an explicit retry of an image that failed before.
	Retry bool `json:"retry,omitempty"`
	// Pushed is, on the release of a push that was queued behind another
	// rollout, when the push itself was published: the claim compares it,
	// not the release's own publish time, with other pushes.
	Pushed time.Time `json:"pushed,omitzero"`
	// Manual marks an operator's decision (a manual promote skips bake time
	// and gates).
	Manual bool `json:"manual,omitempty"`
	// Reason says why (rollback reasons, operator notes).
	Reason string `json:"reason,omitempty"`
	// Actor says who asked: a function name, "operator:NAME", "alert:POLICY".
	Actor string `json:"actor,omitempty"`
	// Attempt counts watchdog re-publications of the same step (0: first).
	Attempt int `json:"attempt,omitempty"`
	// Reply asks the consuming function to publish what became of the
	// command (an EventOutcome naming ID) on the events topic: the CLI
	// waits for it.
	Reply bool `json:"reply,omitempty"`
	// OverrideWindow starts the release now even outside the policy's
	// deploy windows (release, resume of a waiting rollout); Reason says
	// why, and the history records who and why.
	OverrideWindow bool `json:"overrideWindow,omitempty"`
	// Revert, on a rollback: if the rollout was promoted less than deadlines.guard ago,
	// return to the revision it replaced (tag previous) instead of doing nothing. The Alert
	// function sets it: a release is not safe the moment it reaches 100%.
	Revert bool `json:"revert,omitempty"`
	// Incident is the Cloud Monitoring incident a pause or rollback answers; the state
	// remembers it, so a replayed notification changes nothing.
	Incident string `json:"incident,omitempty"`
	// Time is when the command was published.
	Time time.Time `json:"time"`
}

// MaxIncidentID bounds Command.Incident (Cloud Monitoring's incident IDs are short, like
// "0.nrwotmyokd9n").
const MaxIncidentID = 128

// StepStage returns the step name for shifting to a 1-based stage.
func StepStage(stage int) string { return "stage-" + strconv.Itoa(stage) }

// The fixed step names.
const (
	StepRelease  = "release"
	StepBackup   = "backup"
	StepDeploy   = "deploy"
	StepPause    = "pause"
	StepResume   = "resume"
	StepRollback = "rollback"
)

// Rollback reasons with a meaning of their own.
const (
	// ReasonSuperseded marks a rollback because a newer image arrived.
	ReasonSuperseded = "superseded"
)

var (
	serviceIDPattern = regexp.MustCompile(`^[a-z]([a-z0-9-]{0,47}[a-z0-9])?$`)
	rolloutIDPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{0,127}$`)
)

// ValidServiceID reports whether s is a valid Cloud Run service ID.
func ValidServiceID(s string) bool { return serviceIDPattern.MatchString(s) }

// DecodeCommand decodes and validates a command from a Pub/Sub message body.
// Errors are *FieldError values that name the field (errors.Is ErrMalformed).
func DecodeCommand(data []byte) (Command, error) {
	var c Command
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&c); err != nil {
		return Command{}, &FieldError{Source: "command", Field: "(body)", Problem: "not a JSON command: " + err.Error()}
	}
	if err := c.Validate(); err != nil {
		return Command{}, err
	}
	return c, nil
}

// Encode validates c and returns its JSON encoding.
func (c Command) Encode() ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return json.Marshal(c)
}

// Validate checks the command's fields, returning a *FieldError that names
// the first field that is wrong.
func (c Command) Validate() error {
	bad := func(field, problem string) error {
		return &FieldError{Source: "command", Field: field, Problem: problem}
	}
	switch {
	case c.Version == 0:
		return bad("version", "missing")
	case c.Version > CommandVersion:
		return bad("version", fmt.Sprintf("version %d is newer than this build understands (%d)", c.Version, CommandVersion))
	case c.Version < 0:
		return bad("version", "must be positive")
	case c.Type == "":
		return bad("type", "missing")
	case !c.Type.Known():
		return bad("type", fmt.Sprintf("unknown command type %q", c.Type))
	case c.Service == "":
		return bad("service", "missing")
	case !ValidServiceID(c.Service):
		return bad("service", fmt.Sprintf("%q is not a Cloud Run service ID", c.Service))
	case c.Generation < 0:
		return bad("generation", "must not be negative")
	case c.Attempt < 0:
		return bad("attempt", "must not be negative")
	case c.Time.IsZero():
		return bad("time", "missing")
	case c.OverrideWindow && c.Type != CommandRelease && c.Type != CommandResume:
		return bad("overrideWindow", fmt.Sprintf("only a release or a resume overrides the deploy window, not %s", c.Type))
	case c.OverrideWindow && strings.TrimSpace(c.Reason) == "":
		return bad("reason", "an override of the deploy window must say why")
	case c.Revert && c.Type != CommandRollback:
		return bad("revert", fmt.Sprintf("only a rollback reverts a promotion, not %s", c.Type))
	case c.Incident != "" && c.Type != CommandRollback && c.Type != CommandPause:
		return bad("incident", fmt.Sprintf("only a rollback or a pause answers an incident, not %s", c.Type))
	case len(c.Incident) > MaxIncidentID:
		return bad("incident", fmt.Sprintf("%d characters, at most %d", len(c.Incident), MaxIncidentID))
	}
	if c.Type == CommandRelease {
		if c.Image == "" {
			return bad("image", "a release names the image")
		}
		ref, err := ParseImageRef(c.Image)
		if err != nil {
			return bad("image", err.Error())
		}
		if ref.Digest == "" {
			return bad("image", fmt.Sprintf("%q has no digest (use IMAGE@sha256:...)", c.Image))
		}
		if c.Step != StepRelease {
			return bad("step", fmt.Sprintf("a release expects step %q, got %q", StepRelease, c.Step))
		}
		if c.Rollout != "" && !rolloutIDPattern.MatchString(c.Rollout) {
			return bad("rollout", fmt.Sprintf("%q is not a rollout ID", c.Rollout))
		}
		return nil
	}
	if c.Rollout == "" {
		return bad("rollout", "missing")
	}
	if !rolloutIDPattern.MatchString(c.Rollout) {
		return bad("rollout", fmt.Sprintf("%q is not a rollout ID", c.Rollout))
	}
	want := map[CommandType]string{
		CommandBackup:       StepBackup,
		CommandDeployCanary: StepDeploy,
		CommandPause:        StepPause,
		CommandResume:       StepResume,
		CommandRollback:     StepRollback,
	}
	if c.Type == CommandShiftTraffic {
		if c.Stage < 1 || c.Stage > 100 {
			return bad("stage", fmt.Sprintf("a shift targets stage 1..100, got %d", c.Stage))
		}
		if c.Step != StepStage(c.Stage) {
			return bad("step", fmt.Sprintf("a shift to stage %d expects step %q, got %q", c.Stage, StepStage(c.Stage), c.Step))
		}
		return nil
	}
	if c.Step != want[c.Type] {
		return bad("step", fmt.Sprintf("%s expects step %q, got %q", c.Type, want[c.Type], c.Step))
	}
	if c.Stage < 0 {
		return bad("stage", "must not be negative")
	}
	return nil
}

// String gives a short description for logs.
func (c Command) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", strings.TrimSuffix(strings.TrimPrefix(string(c.Type), "dev.coalmine.command."), ".v1"), c.Service)
	if c.Rollout != "" {
		fmt.Fprintf(&b, " rollout=%s", c.Rollout)
	}
	fmt.Fprintf(&b, " gen=%d step=%s", c.Generation, c.Step)
	return b.String()
}
