package events

import (
	"encoding/json"
	"fmt"
	"time"
)

const (
	tickSource = "scheduler tick"
	// tickVersion is the newest tick payload version DecodeTick understands.
	tickVersion = 1
)

// Tick is one firing of a coalmine Cloud Scheduler job. The job publishes the data
// {"job":"coalmine-tick","version":1}; Cloud Scheduler adds no schedule time, so the
// time of the tick is the message's publish time.
type Tick struct {
	// Job names the scheduler job that fired, e.g. "coalmine-tick".
	Job string
	// Version is the payload version; always 1 after DecodeTick.
	Version int
	// PublishTime is the Pub/Sub publish time of the tick message.
	PublishTime time.Time
}

// wireTick is the tick payload as JSON.
type wireTick struct {
	Job     string `json:"job"`
	Version int    `json:"version"`
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
	if msg.PublishTime.IsZero() {
		return fail("publishTime", "the message has no publish time")
	}
	return Tick{Job: w.Job, Version: w.Version, PublishTime: msg.PublishTime}, nil
}

// Slot returns the start of the schedule slot the tick belongs to: its publish time
// truncated to period (counted from the zero time, so in UTC a period that divides a day
// gives slots aligned to midnight). Ticks published in the same slot share it, which makes
// it an idempotency key for one schedule slot. A period <= 0 returns the publish time.
func (t Tick) Slot(period time.Duration) time.Time {
	return t.PublishTime.Truncate(period).UTC()
}
