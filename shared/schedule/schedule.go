// Package schedule keeps coalmine's Cloud Scheduler jobs with the official client
// (cloud.google.com/go/scheduler/apiv1): a tick job per running rollout, created at claim
// and deleted when the rollout ends, and the project-wide sweep that re-drives rollouts
// whose tick job was lost. Both publish to the coalmine-ticks topic the payloads events
// defines (events.TickData, events.SweepData), under the job IDs it defines
// (events.TickJobID, events.SweepJob).
//
// Every call is idempotent, so a redelivered command can repeat it: creating a job that
// exists brings it back to what coalmine wants, deleting a missing one succeeds. Errors
// say what failed and which job, and are classified with ErrPermanent and Transient,
// because that decides redelivery.
package schedule

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	scheduler "cloud.google.com/go/scheduler/apiv1"
	"cloud.google.com/go/scheduler/apiv1/schedulerpb"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/ai-square/coalmine/events"

	"github.com/ai-square/coalmine/shared/emulator"
)

// EmulatorHostEnv names the environment variable that points the client at a local Cloud
// Scheduler server (host:port, plaintext gRPC), as `coalmine local up` writes in local.env.
const EmulatorHostEnv = "SCHEDULER_EMULATOR_HOST"

// DefaultTimeZone is the time zone of the jobs' schedules unless Options say otherwise.
const DefaultTimeZone = "UTC"

// ErrPermanent: Cloud Scheduler refused the request (invalid, not permitted, in a state
// that asking again will not change, or a location that does not exist); asking again
// will not help.
var ErrPermanent = errors.New("cloud scheduler refused the request")

// EmulatorOptions returns client options for SCHEDULER_EMULATOR_HOST, or nil when it is not
// set (the real API with Application Default Credentials).
func EmulatorOptions() []option.ClientOption {
	return EmulatorOptionsFor(os.Getenv(EmulatorHostEnv))
}

// EmulatorOptionsFor returns client options for a local Cloud Scheduler server at host, or
// nil when host is empty.
func EmulatorOptionsFor(host string) []option.ClientOption {
	return emulator.ClientOptions(host)
}

// Options configure a Client.
type Options struct {
	// Project and Location hold the jobs (projects/PROJECT/locations/LOCATION); the tick
	// topic is in Project too, as Cloud Scheduler requires.
	Project, Location string
	// ClientOptions are passed to the Cloud Scheduler client; when empty, EmulatorOptions()
	// (SCHEDULER_EMULATOR_HOST), else Google's defaults.
	ClientOptions []option.ClientOption
	// TimeZone is the jobs' time zone (default "UTC").
	TimeZone string
}

// Client keeps coalmine's jobs in one project and location.
type Client struct {
	c      *scheduler.CloudSchedulerClient
	parent string // projects/P/locations/L
	topic  string // projects/P/topics/coalmine-ticks
	tz     string
}

// New connects to Cloud Scheduler.
func New(ctx context.Context, o Options) (*Client, error) {
	if o.Project == "" || o.Location == "" {
		return nil, fmt.Errorf("schedule: project and location are required (got %q, %q)", o.Project, o.Location)
	}
	if o.TimeZone == "" {
		o.TimeZone = DefaultTimeZone
	}
	opts := o.ClientOptions
	if len(opts) == 0 {
		opts = EmulatorOptions()
	}
	c, err := scheduler.NewCloudSchedulerClient(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("schedule: cloud scheduler client: %w", err)
	}
	return &Client{
		c:      c,
		parent: "projects/" + o.Project + "/locations/" + o.Location,
		topic:  "projects/" + o.Project + "/topics/" + events.TopicTicks,
		tz:     o.TimeZone,
	}, nil
}

// Close closes the client.
func (c *Client) Close() error { return c.c.Close() }

// Cron turns gates.interval into a 5-field schedule: whole minutes that divide an hour
// (1m "* * * * *", 5m "*/5 * * * *", 30m "*/30 * * * *") or 1h ("0 * * * *"), the
// intervals the policy accepts. Anything else is an error wrapping ErrPermanent.
func Cron(interval time.Duration) (string, error) {
	switch {
	case interval == time.Hour:
		return "0 * * * *", nil
	case interval == time.Minute:
		return "* * * * *", nil
	case interval > time.Minute && interval <= 30*time.Minute && interval%time.Minute == 0 && time.Hour%interval == 0:
		return fmt.Sprintf("*/%d * * * *", int(interval/time.Minute)), nil
	}
	return "", fmt.Errorf("schedule: interval %v: %w: want whole minutes that divide an hour (1m, 2m, 3m, 4m, 5m, 6m, 10m, 12m, 15m, 20m, 30m) or 1h", interval, ErrPermanent)
}

// EnsureTick creates the rollout's tick job: ID events.TickJobID(service, rollout), data
// events.TickData(service, rollout), topic projects/PROJECT/topics/coalmine-ticks, the
// given schedule. A job that already exists is success; if its schedule, time zone, topic
// or data differ it is updated, and if it is PAUSED it is resumed.
func (c *Client) EnsureTick(ctx context.Context, service, rollout, schedule string) error {
	id := events.TickJobID(service, rollout)
	data := events.TickData(service, rollout)
	// The tick must decode where it is consumed; refuse what would not.
	if _, err := events.DecodeTick(events.PubsubMessage{Data: data, PublishTime: time.Unix(0, 0)}); err != nil {
		return fmt.Errorf("schedule: tick job %s: %w: %w", id, ErrPermanent, err)
	}
	return c.ensure(ctx, c.job(id, schedule, data,
		fmt.Sprintf("coalmine: verification and watchdog ticks of rollout %s of service %s", rollout, service)), true)
}

// EnsureSweep creates the project-wide sweep job (ID events.SweepJob, data
// events.SweepData()) or brings an existing one's schedule, time zone, topic and data to
// these. A paused sweep stays paused: pausing it is an operator's choice.
func (c *Client) EnsureSweep(ctx context.Context, schedule string) error {
	return c.ensure(ctx, c.job(events.SweepJob, schedule, events.SweepData(),
		"coalmine: sweep that re-drives rollouts whose tick job was lost"), false)
}

// DeleteTick deletes the rollout's tick job; a job that does not exist is success.
func (c *Client) DeleteTick(ctx context.Context, service, rollout string) error {
	return c.delete(ctx, c.name(events.TickJobID(service, rollout)))
}

// DeleteTickJob deletes a tick job by its full name, as Ticks returns it (for a job whose
// data does not name its rollout); a job that does not exist is success. A name that is
// not a tick job of this client's location is refused with ErrPermanent: no other job is
// ever deleted.
func (c *Client) DeleteTickJob(ctx context.Context, name string) error {
	if id, ok := strings.CutPrefix(name, c.parent+"/jobs/"); !ok || !strings.HasPrefix(id, events.TickJobPrefix) || strings.Contains(id, "/") {
		return fmt.Errorf("schedule: delete job %s: %w: not a tick job in %s", name, ErrPermanent, c.parent)
	}
	return c.delete(ctx, name)
}

// TickJob is one per-rollout tick job as listed by Ticks.
type TickJob struct {
	// Name is the job's full name, projects/P/locations/L/jobs/JOB_ID.
	Name string
	// Service and Rollout are read from the job's data; both empty when the data does not
	// decode as a tick of the rollout the job ID names (the job is garbage: delete it with
	// DeleteTickJob).
	Service, Rollout string
	// Schedule is the job's cron schedule.
	Schedule string
	// Paused is true when the job is PAUSED.
	Paused bool
}

// Ticks lists the per-rollout tick jobs (job ID prefix events.TickJobPrefix), sorted by
// name; the sweep and any job coalmine does not own are left out.
func (c *Client) Ticks(ctx context.Context) ([]TickJob, error) {
	var out []TickJob
	prefix := c.parent + "/jobs/" + events.TickJobPrefix
	it := c.c.ListJobs(ctx, &schedulerpb.ListJobsRequest{Parent: c.parent})
	for {
		j, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("schedule: list jobs in %s: %w", c.parent, classify(err, true))
		}
		if !strings.HasPrefix(j.GetName(), prefix) {
			continue
		}
		tj := TickJob{Name: j.GetName(), Schedule: j.GetSchedule(), Paused: j.GetState() == schedulerpb.Job_PAUSED}
		tick, err := events.DecodeTick(events.PubsubMessage{Data: j.GetPubsubTarget().GetData(), PublishTime: time.Unix(0, 0)})
		if err == nil && !tick.Sweep() && c.name(events.TickJobID(tick.Service, tick.Rollout)) == j.GetName() {
			tj.Service, tj.Rollout = tick.Service, tick.Rollout
		}
		out = append(out, tj)
	}
}

// name is the full name of a job ID.
func (c *Client) name(id string) string { return c.parent + "/jobs/" + id }

// job is the job coalmine wants under id.
func (c *Client) job(id, schedule string, data []byte, description string) *schedulerpb.Job {
	return &schedulerpb.Job{
		Name:        c.name(id),
		Description: description,
		Schedule:    schedule,
		TimeZone:    c.tz,
		Target: &schedulerpb.Job_PubsubTarget{PubsubTarget: &schedulerpb.PubsubTarget{
			TopicName: c.topic,
			Data:      data,
		}},
	}
}

// ensure creates want, or brings an existing job with its name to it (and resumes it
// when resume is set and it is PAUSED).
func (c *Client) ensure(ctx context.Context, want *schedulerpb.Job, resume bool) error {
	id := want.GetName()[strings.LastIndex(want.GetName(), "/")+1:]
	if want.GetSchedule() == "" {
		return fmt.Errorf("schedule: job %s: %w: no schedule", id, ErrPermanent)
	}
	_, err := c.c.CreateJob(ctx, &schedulerpb.CreateJobRequest{Parent: c.parent, Job: want})
	if err == nil {
		return nil
	}
	if status.Code(err) != codes.AlreadyExists {
		return fmt.Errorf("schedule: create job %s: %w", id, classify(err, true))
	}
	got, err := c.c.GetJob(ctx, &schedulerpb.GetJobRequest{Name: want.GetName()})
	if err != nil {
		// NOT_FOUND here is a race with a delete: asking again creates it.
		return fmt.Errorf("schedule: read existing job %s: %w", id, classify(err, false))
	}
	if !same(got, want) || got.GetState() == schedulerpb.Job_UPDATE_FAILED {
		got, err = c.c.UpdateJob(ctx, &schedulerpb.UpdateJobRequest{
			Job:        want,
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"schedule", "time_zone", "pubsub_target"}},
		})
		if err != nil {
			return fmt.Errorf("schedule: update job %s to %q: %w", id, want.GetSchedule(), classify(err, false))
		}
	}
	switch got.GetState() {
	case schedulerpb.Job_PAUSED:
		if !resume {
			return nil
		}
		_, err := c.c.ResumeJob(ctx, &schedulerpb.ResumeJobRequest{Name: want.GetName()})
		if status.Code(err) == codes.FailedPrecondition {
			// Someone else resumed (or paused) it meanwhile: look again.
			got, err = c.c.GetJob(ctx, &schedulerpb.GetJobRequest{Name: want.GetName()})
			if err == nil && got.GetState() != schedulerpb.Job_ENABLED {
				return fmt.Errorf("schedule: resume job %s: state changed to %s meanwhile", id, got.GetState())
			}
		}
		if err != nil {
			return fmt.Errorf("schedule: resume job %s: %w", id, classify(err, false))
		}
	case schedulerpb.Job_DISABLED:
		return fmt.Errorf("schedule: job %s: %w: Cloud Scheduler disabled it (status %v)", id, ErrPermanent, got.GetStatus())
	}
	return nil
}

// same reports whether an existing job already does what want does.
func same(got, want *schedulerpb.Job) bool {
	gt, wt := got.GetPubsubTarget(), want.GetPubsubTarget()
	return got.GetSchedule() == want.GetSchedule() &&
		sameZone(got.GetTimeZone(), want.GetTimeZone()) &&
		gt.GetTopicName() == wt.GetTopicName() &&
		bytes.Equal(gt.GetData(), wt.GetData()) &&
		len(gt.GetAttributes()) == 0
}

// sameZone compares time zones, reading the spellings of UTC as one.
func sameZone(a, b string) bool {
	utc := func(z string) bool { return z == "" || strings.EqualFold(z, "utc") || z == "Etc/UTC" }
	return a == b || utc(a) && utc(b)
}

// delete deletes a job by name; NOT_FOUND is success.
func (c *Client) delete(ctx context.Context, name string) error {
	err := c.c.DeleteJob(ctx, &schedulerpb.DeleteJobRequest{Name: name})
	if err == nil || status.Code(err) == codes.NotFound {
		return nil
	}
	return fmt.Errorf("schedule: delete job %s: %w", name[strings.LastIndex(name, "/")+1:], classify(err, false))
}

// classify wraps a refusal with ErrPermanent: INVALID_ARGUMENT, PERMISSION_DENIED,
// FAILED_PRECONDITION, UNIMPLEMENTED, and NOT_FOUND when notFoundPermanent (a call on
// the location, where it means the location does not exist). Everything else — network,
// deadline, quota, a NOT_FOUND that is a race with a delete — stays transient.
func classify(err error, notFoundPermanent bool) error {
	switch status.Code(err) {
	case codes.InvalidArgument, codes.PermissionDenied, codes.FailedPrecondition, codes.Unimplemented:
		return fmt.Errorf("%w: %w", ErrPermanent, err)
	case codes.NotFound:
		if notFoundPermanent {
			return fmt.Errorf("%w: %w", ErrPermanent, err)
		}
	}
	return err
}

// Transient reports whether asking again may succeed: false for nil, ErrPermanent and a
// cancelled call; true otherwise.
func Transient(err error) bool {
	return err != nil && !errors.Is(err, ErrPermanent) && !errors.Is(err, context.Canceled) && status.Code(err) != codes.Canceled
}
