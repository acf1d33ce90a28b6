package scheduleremu_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"testing"
	"time"

	"cloud.google.com/go/scheduler/apiv1/schedulerpb"
	"google.golang.org/api/iterator"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/ai-square/coalmine/infra/local/scheduleremu"
)

// TestCreateGetDelete: a created job comes back ENABLED with its next schedule time, a
// UTC default time zone and the user's fields; Get returns the same; Delete removes it.
func TestCreateGetDelete(t *testing.T) {
	e := newEnv(t, scheduleremu.Options{})
	ctx := context.Background()
	in := job("tick-a", "*/5 * * * *")
	in.Description = "every five minutes"
	in.RetryConfig = &schedulerpb.RetryConfig{RetryCount: 5}
	got := e.create(t, in)
	if got.GetState() != schedulerpb.Job_ENABLED {
		t.Errorf("state = %v, want ENABLED", got.GetState())
	}
	if got, want := got.GetScheduleTime().AsTime(), t0.Add(5*time.Minute); !got.Equal(want) {
		t.Errorf("schedule_time = %v, want %v", got, want)
	}
	if got, want := got.GetUserUpdateTime().AsTime(), t0; !got.Equal(want) {
		t.Errorf("user_update_time = %v, want %v", got, want)
	}
	if got.GetTimeZone() != "UTC" {
		t.Errorf("time_zone = %q, want UTC", got.GetTimeZone())
	}
	if got.GetLastAttemptTime() != nil || got.GetStatus() != nil {
		t.Errorf("a new job has last_attempt_time %v, status %v; want neither", got.GetLastAttemptTime(), got.GetStatus())
	}
	for _, c := range []struct{ field, got, want string }{
		{"name", got.GetName(), in.GetName()},
		{"description", got.GetDescription(), in.GetDescription()},
		{"schedule", got.GetSchedule(), in.GetSchedule()},
		{"topic", got.GetPubsubTarget().GetTopicName(), topic},
		{"data", string(got.GetPubsubTarget().GetData()), string(in.GetPubsubTarget().GetData())},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.field, c.got, c.want)
		}
	}
	if !proto.Equal(got.GetRetryConfig(), in.GetRetryConfig()) {
		t.Errorf("retry_config = %v, want %v", got.GetRetryConfig(), in.GetRetryConfig())
	}
	if again := e.get(t, in.GetName()); !proto.Equal(again, got) {
		t.Errorf("GetJob = %v, want %v", again, got)
	}

	// No name: the server makes one in the parent.
	anon := job("x", "0 * * * *")
	anon.Name = ""
	made := e.create(t, anon)
	if !regexp.MustCompile(`^` + parent + `/jobs/[A-Za-z0-9_-]+$`).MatchString(made.GetName()) {
		t.Errorf("generated name = %q, want %s/jobs/JOB_ID", made.GetName(), parent)
	}
	if got, want := e.srv.Jobs(), 2; got != want {
		t.Errorf("Jobs() = %d, want %d", got, want)
	}

	if err := e.c.DeleteJob(ctx, &schedulerpb.DeleteJobRequest{Name: in.GetName()}); err != nil {
		t.Fatalf("DeleteJob: %v", err)
	}
	if _, err := e.c.GetJob(ctx, &schedulerpb.GetJobRequest{Name: in.GetName()}); status.Code(err) != codes.NotFound {
		t.Errorf("GetJob after DeleteJob: %v, want NotFound", err)
	}
	if got, want := e.srv.Jobs(), 1; got != want {
		t.Errorf("Jobs() after delete = %d, want %d", got, want)
	}
}

// TestListPaging: ListJobs returns the parent's jobs sorted by name, in pages of
// page_size with tokens that continue where the last page ended, and no other parent's.
func TestListPaging(t *testing.T) {
	e := newEnv(t, scheduleremu.Options{})
	ctx := context.Background()
	var want []string
	for _, id := range []string{"g", "c", "e", "a", "f", "b", "d"} {
		e.create(t, job(id, "* * * * *"))
	}
	for _, id := range []string{"a", "b", "c", "d", "e", "f", "g"} {
		want = append(want, parent+"/jobs/"+id)
	}
	other := job("zz", "* * * * *")
	other.Name = "projects/p/locations/us-central1/jobs/zz"
	if _, err := e.c.CreateJob(ctx, &schedulerpb.CreateJobRequest{Parent: "projects/p/locations/us-central1", Job: other}); err != nil {
		t.Fatalf("CreateJob in another location: %v", err)
	}

	var names []string
	for _, j := range e.list(t) {
		names = append(names, j.GetName())
	}
	if fmt.Sprint(names) != fmt.Sprint(want) {
		t.Errorf("ListJobs = %v, want %v", names, want)
	}

	// Raw pages of 3 through the client's pager.
	it := e.c.ListJobs(ctx, &schedulerpb.ListJobsRequest{Parent: parent})
	pager := iterator.NewPager(it, 3, "")
	var sizes []int
	names = nil
	for {
		var page []*schedulerpb.Job
		tok, err := pager.NextPage(&page)
		if err != nil {
			t.Fatalf("NextPage: %v", err)
		}
		sizes = append(sizes, len(page))
		for _, j := range page {
			names = append(names, j.GetName())
		}
		if tok == "" {
			break
		}
	}
	if got, want := fmt.Sprint(sizes), "[3 3 1]"; got != want {
		t.Errorf("page sizes = %s, want %s", got, want)
	}
	if fmt.Sprint(names) != fmt.Sprint(want) {
		t.Errorf("paged names = %v, want %v", names, want)
	}

	// A page exactly as large as what is left ends the list.
	var page []*schedulerpb.Job
	tok, err := iterator.NewPager(e.c.ListJobs(ctx, &schedulerpb.ListJobsRequest{Parent: parent}), 7, "").NextPage(&page)
	if err != nil || len(page) != 7 || tok != "" {
		t.Errorf("a page of 7: %d jobs, token %q, %v; want 7, no token", len(page), tok, err)
	}
}

// TestUpdateJob: a masked update changes only the named fields and recomputes the
// schedule time; pubsub_target.* paths change one part of the target; an empty mask
// replaces every user field.
func TestUpdateJob(t *testing.T) {
	e := newEnv(t, scheduleremu.Options{})
	ctx := context.Background()
	in := job("u", "*/5 * * * *")
	in.Description = "kept"
	e.create(t, in)
	e.clock.Set(t0.Add(90 * time.Second))
	update := func(j *schedulerpb.Job, paths ...string) *schedulerpb.Job {
		t.Helper()
		var mask *fieldmaskpb.FieldMask
		if paths != nil {
			mask = &fieldmaskpb.FieldMask{Paths: paths}
		}
		got, err := e.c.UpdateJob(ctx, &schedulerpb.UpdateJobRequest{Job: j, UpdateMask: mask})
		if err != nil {
			t.Fatalf("UpdateJob(%v): %v", paths, err)
		}
		return got
	}

	got := update(&schedulerpb.Job{Name: in.GetName(), Schedule: "0 * * * *", Description: "ignored"}, "schedule")
	if got.GetSchedule() != "0 * * * *" || got.GetDescription() != "kept" {
		t.Errorf("after a schedule update: schedule %q, description %q; want %q, %q", got.GetSchedule(), got.GetDescription(), "0 * * * *", "kept")
	}
	if got, want := got.GetScheduleTime().AsTime(), t0.Add(time.Hour); !got.Equal(want) {
		t.Errorf("schedule_time = %v, want %v", got, want)
	}
	if got, want := got.GetUserUpdateTime().AsTime(), t0.Add(90*time.Second); !got.Equal(want) {
		t.Errorf("user_update_time = %v, want %v", got, want)
	}
	if string(got.GetPubsubTarget().GetData()) != string(in.GetPubsubTarget().GetData()) {
		t.Errorf("data changed by a schedule update: %q", got.GetPubsubTarget().GetData())
	}

	got = update(&schedulerpb.Job{Name: in.GetName(), Target: &schedulerpb.Job_PubsubTarget{PubsubTarget: &schedulerpb.PubsubTarget{Data: []byte("new")}}}, "pubsub_target.data")
	if t2 := got.GetPubsubTarget(); string(t2.GetData()) != "new" || t2.GetTopicName() != topic || t2.GetAttributes()["job"] != "u" {
		t.Errorf("after a data update: target %v, want data new and the same topic and attributes", t2)
	}

	got = update(&schedulerpb.Job{Name: in.GetName(), Schedule: "*/2 * * * *", TimeZone: "Asia/Taipei",
		Target: &schedulerpb.Job_PubsubTarget{PubsubTarget: &schedulerpb.PubsubTarget{TopicName: topic, Attributes: map[string]string{"only": "attr"}}}})
	if got.GetSchedule() != "*/2 * * * *" || got.GetTimeZone() != "Asia/Taipei" || got.GetDescription() != "" ||
		len(got.GetPubsubTarget().GetData()) != 0 || got.GetPubsubTarget().GetAttributes()["only"] != "attr" {
		t.Errorf("after an update with an empty mask: %v", got)
	}
	if got.GetState() != schedulerpb.Job_ENABLED {
		t.Errorf("state = %v, want ENABLED", got.GetState())
	}
}

// TestPauseResume: a paused job never fires; a resumed one fires at its next slot from the
// resume, not for the slots missed while paused.
func TestPauseResume(t *testing.T) {
	e := newEnv(t, scheduleremu.Options{})
	ctx := context.Background()
	j := e.create(t, job("p", "* * * * *"))
	paused, err := e.c.PauseJob(ctx, &schedulerpb.PauseJobRequest{Name: j.GetName()})
	if err != nil {
		t.Fatalf("PauseJob: %v", err)
	}
	if paused.GetState() != schedulerpb.Job_PAUSED {
		t.Errorf("state after pause = %v, want PAUSED", paused.GetState())
	}
	if n := e.srv.Fire(ctx, t0.Add(10*time.Minute)); n != 0 {
		t.Errorf("Fire with the job paused fired %d, want 0", n)
	}
	e.clock.Set(t0.Add(10*time.Minute + 30*time.Second))
	resumed, err := e.c.ResumeJob(ctx, &schedulerpb.ResumeJobRequest{Name: j.GetName()})
	if err != nil {
		t.Fatalf("ResumeJob: %v", err)
	}
	if resumed.GetState() != schedulerpb.Job_ENABLED {
		t.Errorf("state after resume = %v, want ENABLED", resumed.GetState())
	}
	if got, want := resumed.GetScheduleTime().AsTime(), t0.Add(11*time.Minute); !got.Equal(want) {
		t.Errorf("schedule_time after resume = %v, want %v", got, want)
	}
	if n := e.srv.Fire(ctx, t0.Add(10*time.Minute+59*time.Second)); n != 0 {
		t.Errorf("Fire before the next slot fired %d, want 0", n)
	}
	if n := e.srv.Fire(ctx, t0.Add(11*time.Minute)); n != 1 {
		t.Errorf("Fire at the next slot fired %d, want 1", n)
	}
	if got := e.receive(t, 1); string(got[0].Data) != `{"job":"p"}` {
		t.Errorf("data = %q", got[0].Data)
	}
	if got, want := e.published(), 1; got != want {
		t.Errorf("published %d messages, want %d", got, want)
	}
}

// TestRunJob: RunJob publishes at once, even for a paused job, records the attempt, and
// leaves the schedule alone.
func TestRunJob(t *testing.T) {
	e := newEnv(t, scheduleremu.Options{})
	ctx := context.Background()
	j := e.create(t, job("r", "0 9 * * *"))
	if _, err := e.c.PauseJob(ctx, &schedulerpb.PauseJobRequest{Name: j.GetName()}); err != nil {
		t.Fatalf("PauseJob: %v", err)
	}
	e.clock.Set(t0.Add(time.Minute))
	got, err := e.c.RunJob(ctx, &schedulerpb.RunJobRequest{Name: j.GetName()})
	if err != nil {
		t.Fatalf("RunJob: %v", err)
	}
	if got.GetLastAttemptTime() == nil || !got.GetLastAttemptTime().AsTime().Equal(t0.Add(time.Minute)) {
		t.Errorf("last_attempt_time = %v, want %v", got.GetLastAttemptTime(), t0.Add(time.Minute))
	}
	if got.GetStatus() == nil || got.GetStatus().GetCode() != 0 {
		t.Errorf("status = %v, want code 0", got.GetStatus())
	}
	if !got.GetScheduleTime().AsTime().Equal(j.GetScheduleTime().AsTime()) {
		t.Errorf("schedule_time = %v, want unchanged %v", got.GetScheduleTime().AsTime(), j.GetScheduleTime().AsTime())
	}
	if got.GetState() != schedulerpb.Job_PAUSED {
		t.Errorf("state = %v, want PAUSED", got.GetState())
	}
	m := e.receive(t, 1)[0]
	if string(m.Data) != `{"job":"r"}` || len(m.Attributes) != 1 || m.Attributes["job"] != "r" {
		t.Errorf("message data %q attributes %v, want {\"job\":\"r\"} and job=r", m.Data, m.Attributes)
	}
}

// TestNew: Publish is required; Close is safe twice.
func TestNew(t *testing.T) {
	if _, err := scheduleremu.New(scheduleremu.Options{}); err == nil {
		t.Errorf("New without Publish succeeded")
	}
	srv, err := scheduleremu.New(scheduleremu.Options{Manual: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Publish: func(context.Context, string, []byte, map[string]string) (string, error) {
		return "", errors.New("unused")
	}})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if srv.Fast() {
		t.Errorf("Fast() = true, want false")
	}
	if err := srv.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := srv.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
