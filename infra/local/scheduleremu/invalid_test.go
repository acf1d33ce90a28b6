package scheduleremu_test

import (
	"context"
	"strings"
	"testing"

	"cloud.google.com/go/scheduler/apiv1/schedulerpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/ai-square/coalmine/infra/local/scheduleremu"
)

// TestRefusals: every refusal has Google's code and a message naming the bad part.
func TestRefusals(t *testing.T) {
	e := newEnv(t, scheduleremu.Options{})
	ctx := context.Background()
	existing := e.create(t, job("existing", "* * * * *")).GetName()
	paused := e.create(t, job("paused", "* * * * *")).GetName()
	if _, err := e.c.PauseJob(ctx, &schedulerpb.PauseJobRequest{Name: paused}); err != nil {
		t.Fatalf("PauseJob: %v", err)
	}
	missing := parent + "/jobs/missing"

	create := func(mut func(j *schedulerpb.Job)) func() error {
		return func() error {
			j := job("new", "* * * * *")
			mut(j)
			_, err := e.c.CreateJob(ctx, &schedulerpb.CreateJobRequest{Parent: parent, Job: j})
			return err
		}
	}
	schedule := func(s string) func() error {
		return create(func(j *schedulerpb.Job) { j.Schedule = s })
	}
	target := func(t *schedulerpb.PubsubTarget) func(j *schedulerpb.Job) {
		return func(j *schedulerpb.Job) { j.Target = &schedulerpb.Job_PubsubTarget{PubsubTarget: t} }
	}
	update := func(j *schedulerpb.Job, paths ...string) func() error {
		return func() error {
			_, err := e.c.UpdateJob(ctx, &schedulerpb.UpdateJobRequest{Job: j, UpdateMask: &fieldmaskpb.FieldMask{Paths: paths}})
			return err
		}
	}
	long := strings.Repeat("j", 501)
	tests := []struct {
		name string
		call func() error
		code codes.Code
		want string // in the message
	}{
		// CreateJob
		{"parent without location", func() error {
			_, err := e.c.CreateJob(ctx, &schedulerpb.CreateJobRequest{Parent: "projects/p", Job: job("x", "* * * * *")})
			return err
		}, codes.InvalidArgument, `parent "projects/p"`},
		{"no job", func() error {
			_, err := e.c.CreateJob(ctx, &schedulerpb.CreateJobRequest{Parent: parent})
			return err
		}, codes.InvalidArgument, "job is required"},
		{"job ID with a dot", create(func(j *schedulerpb.Job) { j.Name = parent + "/jobs/a.b" }), codes.InvalidArgument, `"` + parent + `/jobs/a.b"`},
		{"job ID of 501 characters", create(func(j *schedulerpb.Job) { j.Name = parent + "/jobs/" + long }), codes.InvalidArgument, "at most 500"},
		{"job name in another parent", create(func(j *schedulerpb.Job) { j.Name = "projects/p/locations/us-east1/jobs/x" }), codes.InvalidArgument, `not in parent "` + parent + `"`},
		{"duplicate", create(func(j *schedulerpb.Job) { j.Name = existing }), codes.AlreadyExists, existing},
		{"no schedule", schedule(""), codes.InvalidArgument, "job.schedule is required"},
		{"unknown time zone", create(func(j *schedulerpb.Job) { j.TimeZone = "Mars/Olympus_Mons" }), codes.InvalidArgument, `job.time_zone "Mars/Olympus_Mons"`},
		{"Local is not a time zone", create(func(j *schedulerpb.Job) { j.TimeZone = "Local" }), codes.InvalidArgument, `job.time_zone "Local"`},
		{"HTTP target", create(func(j *schedulerpb.Job) {
			j.Target = &schedulerpb.Job_HttpTarget{HttpTarget: &schedulerpb.HttpTarget{Uri: "https://example.com"}}
		}), codes.InvalidArgument, "job.http_target: only Pub/Sub targets are served by the local Scheduler"},
		{"App Engine target", create(func(j *schedulerpb.Job) {
			j.Target = &schedulerpb.Job_AppEngineHttpTarget{AppEngineHttpTarget: &schedulerpb.AppEngineHttpTarget{RelativeUri: "/"}}
		}), codes.InvalidArgument, "job.app_engine_http_target: only Pub/Sub targets are served by the local Scheduler"},
		{"no target", create(func(j *schedulerpb.Job) { j.Target = nil }), codes.InvalidArgument, "job.pubsub_target is required"},
		{"topic ID only", create(target(&schedulerpb.PubsubTarget{TopicName: "ticks", Data: []byte("x")})), codes.InvalidArgument, `job.pubsub_target.topic_name "ticks"`},
		{"topic in another project", create(target(&schedulerpb.PubsubTarget{TopicName: "projects/q/topics/ticks", Data: []byte("x")})), codes.InvalidArgument, "The topic must be in the same project as the Cloud Scheduler job"},
		{"no data and no attributes", create(target(&schedulerpb.PubsubTarget{TopicName: topic})), codes.InvalidArgument, "Pubsub message must contain either non-empty data, or at least one attribute"},
		{"retry count 6", create(func(j *schedulerpb.Job) { j.RetryConfig = &schedulerpb.RetryConfig{RetryCount: 6} }), codes.InvalidArgument, "job.retry_config.retry_count 6"},
		{"retry count -1", create(func(j *schedulerpb.Job) { j.RetryConfig = &schedulerpb.RetryConfig{RetryCount: -1} }), codes.InvalidArgument, "job.retry_config.retry_count -1"},

		// Schedules
		{"English schedule", schedule("every 5 minutes"), codes.InvalidArgument, `job.schedule "every 5 minutes": only unix-cron`},
		{"English schedule of 5 words", schedule("1st monday of month 09:00"), codes.InvalidArgument, `"1st monday of month 09:00": only unix-cron`},
		{"L", schedule("0 0 L * *"), codes.InvalidArgument, `"0 0 L * *": only unix-cron`},
		{"question mark", schedule("0 0 ? * MON"), codes.InvalidArgument, `"0 0 ? * MON": only unix-cron`},
		{"hash", schedule("0 0 * * MON#2"), codes.InvalidArgument, `"0 0 * * MON#2": only unix-cron`},
		{"@every", schedule("@every 1m"), codes.InvalidArgument, `"@every 1m": only unix-cron`},
		{"@daily", schedule("@daily"), codes.InvalidArgument, `"@daily": only unix-cron`},
		{"CRON_TZ prefix", schedule("CRON_TZ=Asia/Taipei 0 9 * * *"), codes.InvalidArgument, "time_zone"},
		{"seconds without --fast", schedule("*/2 * * * * *"), codes.InvalidArgument, `"*/2 * * * * *": 6 fields: a leading seconds field is served only by the local Scheduler's --fast mode`},
		{"four fields", schedule("* * * *"), codes.InvalidArgument, `"* * * *": 4 fields, want 5 fields`},
		{"minute 60", schedule("60 * * * *"), codes.InvalidArgument, `minute field "60"`},
		{"hour 24", schedule("0 24 * * *"), codes.InvalidArgument, `hour field "24"`},
		{"day of month 0", schedule("0 0 0 * *"), codes.InvalidArgument, `day-of-month field "0"`},
		{"month 13", schedule("0 0 1 13 *"), codes.InvalidArgument, `month field "13"`},
		{"day of week 8", schedule("0 0 * * 8"), codes.InvalidArgument, `day-of-week field "8"`},
		{"month name in the hour", schedule("0 jan * * *"), codes.InvalidArgument, `"0 jan * * *": only unix-cron`},
		{"never fires", schedule("0 0 31 2 *"), codes.InvalidArgument, `"0 0 31 2 *": never fires`},

		// GetJob, DeleteJob, PauseJob, ResumeJob, RunJob
		{"get missing", func() error { _, err := e.c.GetJob(ctx, &schedulerpb.GetJobRequest{Name: missing}); return err }, codes.NotFound, missing},
		{"get bad name", func() error { _, err := e.c.GetJob(ctx, &schedulerpb.GetJobRequest{Name: "jobs/x"}); return err }, codes.InvalidArgument, `"jobs/x"`},
		{"delete missing", func() error { return e.c.DeleteJob(ctx, &schedulerpb.DeleteJobRequest{Name: missing}) }, codes.NotFound, missing},
		{"pause missing", func() error { _, err := e.c.PauseJob(ctx, &schedulerpb.PauseJobRequest{Name: missing}); return err }, codes.NotFound, missing},
		{"resume missing", func() error { _, err := e.c.ResumeJob(ctx, &schedulerpb.ResumeJobRequest{Name: missing}); return err }, codes.NotFound, missing},
		{"run missing", func() error { _, err := e.c.RunJob(ctx, &schedulerpb.RunJobRequest{Name: missing}); return err }, codes.NotFound, missing},
		{"pause paused", func() error { _, err := e.c.PauseJob(ctx, &schedulerpb.PauseJobRequest{Name: paused}); return err }, codes.FailedPrecondition, "is PAUSED; only an ENABLED job can be paused"},
		{"resume enabled", func() error { _, err := e.c.ResumeJob(ctx, &schedulerpb.ResumeJobRequest{Name: existing}); return err }, codes.FailedPrecondition, "is ENABLED; only a PAUSED job can be resumed"},

		// UpdateJob
		{"update without name", update(&schedulerpb.Job{Schedule: "* * * * *"}, "schedule"), codes.InvalidArgument, "job.name is required"},
		{"update missing", update(&schedulerpb.Job{Name: missing, Schedule: "* * * * *"}, "schedule"), codes.NotFound, missing},
		{"update unknown path", update(&schedulerpb.Job{Name: existing, State: schedulerpb.Job_PAUSED}, "state"), codes.InvalidArgument, `update_mask: path "state"`},
		{"update bad schedule", update(&schedulerpb.Job{Name: existing, Schedule: "every 5 minutes"}, "schedule"), codes.InvalidArgument, `job.schedule "every 5 minutes"`},
		{"update to an HTTP target", func() error {
			_, err := e.c.UpdateJob(ctx, &schedulerpb.UpdateJobRequest{Job: &schedulerpb.Job{Name: existing, Schedule: "* * * * *",
				Target: &schedulerpb.Job_HttpTarget{HttpTarget: &schedulerpb.HttpTarget{Uri: "https://example.com"}}}})
			return err
		}, codes.InvalidArgument, "only Pub/Sub targets"},
		{"update topic to another project", update(&schedulerpb.Job{Name: existing, Target: &schedulerpb.Job_PubsubTarget{PubsubTarget: &schedulerpb.PubsubTarget{TopicName: "projects/q/topics/t"}}}, "pubsub_target.topic_name"),
			codes.InvalidArgument, `"projects/q/topics/t": The topic must be in the same project`},

		// ListJobs
		{"list bad parent", func() error {
			_, err := e.c.ListJobs(ctx, &schedulerpb.ListJobsRequest{Parent: "projects/p/jobs"}).Next()
			return err
		}, codes.InvalidArgument, `parent "projects/p/jobs"`},
		{"list bad token", func() error {
			_, err := e.c.ListJobs(ctx, &schedulerpb.ListJobsRequest{Parent: parent, PageToken: "nonsense"}).Next()
			return err
		}, codes.InvalidArgument, `page_token "nonsense"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if got := status.Code(err); got != tt.code {
				t.Fatalf("code = %v (%v), want %v", got, err, tt.code)
			}
			if msg := status.Convert(err).Message(); !strings.Contains(msg, tt.want) {
				t.Errorf("message = %q, want it to contain %q", msg, tt.want)
			}
		})
	}
	// None of the refused calls changed anything.
	if got, want := e.srv.Jobs(), 2; got != want {
		t.Errorf("Jobs() = %d, want %d", got, want)
	}
	if got := e.get(t, existing); got.GetSchedule() != "* * * * *" || got.GetPubsubTarget().GetTopicName() != topic {
		t.Errorf("a refused update changed the job: %v", got)
	}
}

// TestFastRefusals: fast mode takes five or six fields, not seven, and still refuses what
// is not unix-cron.
func TestFastRefusals(t *testing.T) {
	e := newEnv(t, scheduleremu.Options{Fast: true})
	for _, tt := range []struct{ schedule, want string }{
		{"* * * * * * *", "7 fields, want 5 fields, or 6 with leading seconds in fast mode"},
		{"60 * * * * *", `second field "60"`},
		{"@every 1s", "only unix-cron"},
	} {
		j := job("f", tt.schedule)
		_, err := e.c.CreateJob(context.Background(), &schedulerpb.CreateJobRequest{Parent: parent, Job: j})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), tt.want) {
			t.Errorf("CreateJob(%q) = %v, want INVALID_ARGUMENT containing %q", tt.schedule, err, tt.want)
		}
	}
}
