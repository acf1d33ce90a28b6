// Package scheduleremu is a local Cloud Scheduler API: a gRPC server for
// google.cloud.scheduler.v1.CloudScheduler that the official client
// (cloud.google.com/go/scheduler/apiv1) uses unchanged, firing Pub/Sub publishes on cron.
//
// # Jobs
//
// CreateJob, GetJob, ListJobs (sorted by name, page_size up to 500), UpdateJob (update_mask
// paths schedule, time_zone, description, pubsub_target and its data, attributes and
// topic_name, retry_config; an empty mask replaces them all), DeleteJob, PauseJob,
// ResumeJob and RunJob are served; the location RPCs are UNIMPLEMENTED. Jobs are validated
// as Google documents: names projects/P/locations/L/jobs/JOB_ID (letters, digits, '-', '_',
// at most 500), a schedule, a tz database time zone (default UTC), a Pub/Sub target whose
// topic is in the job's project and whose message has data or attributes, a retry count of
// 0 to 5. Only Pub/Sub targets are served: HTTP and App Engine targets are
// INVALID_ARGUMENT. retry_config is validated and stored but a failed publish is not
// retried: the job waits for its next slot, as with Google's default retry_count 0.
//
// # Schedules
//
// Unix-cron only (robfig/cron evaluated in the job's time zone): five fields, minute
// granularity, day-of-week 7 is Sunday, day-of-month and day-of-week OR-ed when both are
// restricted. L, W, #, ?, @descriptors and English ("groc") schedules are INVALID_ARGUMENT
// naming the schedule. Fast mode (Options.Fast, reported by Fast and in the start-up log)
// also takes six fields with leading seconds ("*/2 * * * * *"); without it a six-field
// schedule is INVALID_ARGUMENT saying seconds need --fast.
//
// # Firing
//
// Every second (unless Options.Manual) the server calls Fire with its clock: each ENABLED
// job whose schedule time has come publishes its message once, even when several slots
// were missed, and its next schedule time is computed from now. PAUSED jobs never fire; a
// resumed job's next slot is computed from the resume. RunJob publishes at once whatever
// the schedule or state. Every attempt records last_attempt_time and status (code 0, or
// the publish error's gRPC code and message). Firings are logged at Debug, failed
// publishes at Warn.
package scheduleremu
