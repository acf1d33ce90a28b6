package events

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

const (
	tickSource = "scheduler tick"
	// tickVersion is the newest tick payload version DecodeTick understands.
	tickVersion = 1
)

// Tick is one firing of a coalmine Cloud Scheduler job. A rollout's own tick job publishes
// {"job":"coalmine-tick-SERVICE-ROLLOUT","version":1,"service":"SERVICE","rollout":"ROLLOUT"};
// the project-wide sweep job publishes {"job":"coalmine-sweep","version":1} and names no
// service. Cloud Scheduler adds no schedule time, so the time of the tick is the message's
// publish time.
type Tick struct {
	// Job names the scheduler job that fired, e.g. "coalmine-sweep".
	Job string
	// Version is the payload version; always 1 after DecodeTick.
	Version int
	// Service and Rollout name the rollout a per-rollout tick job was created for; both
	// empty for the sweep (every service is looked at).
	Service string
	Rollout string
	// PublishTime is the Pub/Sub publish time of the tick message.
	PublishTime time.Time
}

// Sweep reports whether the tick names no rollout: every service is looked at.
func (t Tick) Sweep() bool { return t.Service == "" }

// wireTick is the tick payload as JSON.
type wireTick struct {
	Job     string `json:"job"`
	Version int    `json:"version"`
	Service string `json:"service,omitempty"`
	Rollout string `json:"rollout,omitempty"`
}

// Scheduler job IDs. Cloud Scheduler job IDs take letters, digits, '-' and '_', at most 500.
const (
	// SweepJob is the project-wide sweep's job ID.
	SweepJob = "coalmine-sweep"
	// TickJobPrefix starts the job ID of every per-rollout tick job.
	TickJobPrefix = "coalmine-tick-"
	// SweepSchedule is the sweep job's unix-cron schedule (in UTC): every 10
	// minutes. infra/terraform creates the job with it; the local cloud
	// uses it unless in fast mode.
	SweepSchedule = "*/10 * * * *"
)

// TickJobID is the job ID of a rollout's own tick job: coalmine-tick-SERVICE--ROLLOUT (a
// double hyphen between them, which neither a service ID nor a rollout ID ends with, so the
// ID splits back without ambiguity). Rollout IDs may hold '.', which job IDs may not: it
// becomes '_'.
func TickJobID(service, rollout string) string {
	return TickJobPrefix + service + "--" + strings.ReplaceAll(rollout, ".", "_")
}

// TickData is the payload of a rollout's tick job.
func TickData(service, rollout string) []byte {
	b, _ := json.Marshal(wireTick{Job: TickJobID(service, rollout), Version: tickVersion, Service: service, Rollout: rollout})
	return b
}

// SweepData is the payload of the sweep job.
func SweepData() []byte {
	b, _ := json.Marshal(wireTick{Job: SweepJob, Version: tickVersion})
	return b
}

// DecodeTick decodes a tick from its Pub/Sub message. The data must be a JSON object with
// a non-empty "job"; a missing or 0 "version" means 1, and a later version is rejected.
// Attributes are ignored. Every error is a *FieldError naming the field.
func DecodeTick(msg PubsubMessage) (Tick, error) {
	fail := func(field, format string, args ...any) (Tick, error) {
		return Tick{}, &FieldError{Source: tickSource, Field: field, Problem: fmt.Sprintf(format, args...)}
	}
	if len(msg.Data) == 0 {
		return fail(bodyField, `empty message data; want a JSON object like {"job":"coalmine-tick","version":1}`)
	}
	var w wireTick
	if err := json.Unmarshal(msg.Data, &w); err != nil {
		return Tick{}, jsonFieldError(tickSource, "", err)
	}
	if w.Job == "" {
		return fail("job", "missing")
	}
	switch {
	case w.Version == 0:
		w.Version = tickVersion
	case w.Version < 0:
		return fail("version", "negative version %d", w.Version)
	case w.Version > tickVersion:
		return fail("version", "unsupported version %d; this build understands up to %d", w.Version, tickVersion)
	}
	switch {
	case w.Service != "" && !ValidServiceID(w.Service):
		return fail("service", "%q is not a Cloud Run service ID", w.Service)
	case w.Service != "" && w.Rollout == "":
		return fail("rollout", "a tick that names a service names its rollout too")
	case w.Service == "" && w.Rollout != "":
		return fail("service", "a tick that names a rollout names its service too")
	case w.Rollout != "" && !rolloutIDPattern.MatchString(w.Rollout):
		return fail("rollout", "%q is not a rollout ID", w.Rollout)
	}
	if msg.PublishTime.IsZero() {
		return fail("publishTime", "the message has no publish time")
	}
	return Tick{Job: w.Job, Version: w.Version, Service: w.Service, Rollout: w.Rollout, PublishTime: msg.PublishTime}, nil
}

// Slot returns the start of the schedule slot the tick belongs to: its publish time
// truncated to period (counted from the zero time, so in UTC a period that divides a day
// gives slots aligned to midnight). Ticks published in the same slot share it, which makes
// it an idempotency key for one schedule slot. A period <= 0 returns the publish time.
func (t Tick) Slot(period time.Duration) time.Time {
	return t.PublishTime.Truncate(period).UTC()
}
