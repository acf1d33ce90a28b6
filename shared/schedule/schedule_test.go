package schedule_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/v2/pstest"
	scheduler "cloud.google.com/go/scheduler/apiv1"
	"cloud.google.com/go/scheduler/apiv1/schedulerpb"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/ai-square/coalmine/events"
	"github.com/ai-square/coalmine/infra/local/scheduleremu"
	"github.com/ai-square/coalmine/shared/schedule"
)

const (
	project  = "p"
	location = "europe-west1"
	parent   = "projects/p/locations/europe-west1"
	topic    = "projects/p/topics/" + events.TopicTicks
	subName  = "projects/p/subscriptions/ticks"
	service  = "web"
	rollout  = "web-20261126.1"
)

// t0 is a minute boundary every env's clock starts at.
var t0 = time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)

// clock is a settable clock for the emulator.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// env is a local Cloud Scheduler (manual firing, clock at t0) publishing to pstest, the
// Client under test, and a raw official scheduler client to look and meddle.
type env struct {
	srv   *scheduleremu.Server
	c     *schedule.Client
	raw   *scheduler.CloudSchedulerClient
	pc    *pubsub.Client
	clock *clock
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	ps := pstest.NewServer()
	t.Cleanup(func() { ps.Close() })
	conn, err := grpc.NewClient(ps.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("grpc.NewClient: %v", err)
	}
	pc, err := pubsub.NewClient(ctx, project, option.WithGRPCConn(conn))
	if err != nil {
		t.Fatalf("pubsub.NewClient: %v", err)
	}
	t.Cleanup(func() { pc.Close() })
	if _, err := pc.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: topic}); err != nil {
		t.Fatalf("CreateTopic: %v", err)
	}
	if _, err := pc.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{Name: subName, Topic: topic, AckDeadlineSeconds: 10}); err != nil {
		t.Fatalf("CreateSubscription: %v", err)
	}
	pub := scheduleremu.NewPublisher(pc)
	t.Cleanup(pub.Stop)
	clk := &clock{t: t0}
	srv, err := scheduleremu.New(scheduleremu.Options{Manual: true, Now: clk.Now, Publish: pub.Publish, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatalf("scheduleremu.New: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	c, err := schedule.New(ctx, schedule.Options{Project: project, Location: location, ClientOptions: srv.ClientOptions()})
	if err != nil {
		t.Fatalf("schedule.New: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	raw, err := scheduler.NewCloudSchedulerClient(ctx, srv.ClientOptions()...)
	if err != nil {
		t.Fatalf("NewCloudSchedulerClient: %v", err)
	}
	t.Cleanup(func() { raw.Close() })
	return &env{srv: srv, c: c, raw: raw, pc: pc, clock: clk}
}

func tickName(service, rollout string) string {
	return parent + "/jobs/" + events.TickJobID(service, rollout)
}

// get reads a job with the raw client.
func (e *env) get(t *testing.T, name string) *schedulerpb.Job {
	t.Helper()
	j, err := e.raw.GetJob(context.Background(), &schedulerpb.GetJobRequest{Name: name})
	if err != nil {
		t.Fatalf("GetJob(%s): %v", name, err)
	}
	return j
}

// names lists every job's name with the raw client.
func (e *env) names(t *testing.T) []string {
	t.Helper()
	var out []string
	it := e.raw.ListJobs(context.Background(), &schedulerpb.ListJobsRequest{Parent: parent})
	for {
		j, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return out
		}
		if err != nil {
			t.Fatalf("ListJobs: %v", err)
		}
		out = append(out, j.GetName())
	}
}

// ensureTick runs EnsureTick and fails the test on error.
func (e *env) ensureTick(t *testing.T, service, rollout, sched string) {
	t.Helper()
	if err := e.c.EnsureTick(context.Background(), service, rollout, sched); err != nil {
		t.Fatalf("EnsureTick(%s, %s, %q): %v", service, rollout, sched, err)
	}
}

// TestEnsureTickIdempotent: EnsureTick creates one job with coalmine's ID, payload, topic
// and schedule; a second call changes nothing (it writes nothing either).
func TestEnsureTickIdempotent(t *testing.T) {
	e := newEnv(t)
	e.ensureTick(t, service, rollout, "*/5 * * * *")
	first := e.get(t, tickName(service, rollout))
	e.clock.Set(t0.Add(time.Minute))
	e.ensureTick(t, service, rollout, "*/5 * * * *")
	if got, want := strings.Join(e.names(t), " "), tickName(service, rollout); got != want {
		t.Fatalf("jobs = %s, want only %s", got, want)
	}
	j := e.get(t, tickName(service, rollout))
	if got, want := j.GetName(), parent+"/jobs/coalmine-tick-web--web-20261126_1"; got != want {
		t.Errorf("name = %s, want %s", got, want)
	}
	for _, c := range []struct{ field, got, want string }{
		{"schedule", j.GetSchedule(), "*/5 * * * *"},
		{"time_zone", j.GetTimeZone(), "UTC"},
		{"topic", j.GetPubsubTarget().GetTopicName(), topic},
		{"data", string(j.GetPubsubTarget().GetData()), string(events.TickData(service, rollout))},
		{"state", j.GetState().String(), "ENABLED"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.field, c.got, c.want)
		}
	}
	if !j.GetUserUpdateTime().AsTime().Equal(first.GetUserUpdateTime().AsTime()) {
		t.Errorf("the second EnsureTick updated the job (user_update_time %v, was %v)", j.GetUserUpdateTime().AsTime(), first.GetUserUpdateTime().AsTime())
	}
}

// TestEnsureTickRestores: a job changed by hand (schedule, data, attributes) is brought
// back; a paused one is resumed.
func TestEnsureTickRestores(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name   string
		meddle func(e *env, name string) error
	}{
		{"schedule changed", func(e *env, name string) error {
			_, err := e.raw.UpdateJob(ctx, &schedulerpb.UpdateJobRequest{
				Job:        &schedulerpb.Job{Name: name, Schedule: "0 * * * *"},
				UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"schedule"}},
			})
			return err
		}},
		{"data and attributes changed", func(e *env, name string) error {
			_, err := e.raw.UpdateJob(ctx, &schedulerpb.UpdateJobRequest{
				Job: &schedulerpb.Job{Name: name, Target: &schedulerpb.Job_PubsubTarget{PubsubTarget: &schedulerpb.PubsubTarget{
					Data: []byte(`{"job":"x"}`), Attributes: map[string]string{"k": "v"}}}},
				UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"pubsub_target.data", "pubsub_target.attributes"}},
			})
			return err
		}},
		{"time zone changed", func(e *env, name string) error {
			_, err := e.raw.UpdateJob(ctx, &schedulerpb.UpdateJobRequest{
				Job:        &schedulerpb.Job{Name: name, TimeZone: "Asia/Taipei"},
				UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"time_zone"}},
			})
			return err
		}},
		{"paused", func(e *env, name string) error {
			_, err := e.raw.PauseJob(ctx, &schedulerpb.PauseJobRequest{Name: name})
			return err
		}},
		{"paused and schedule changed", func(e *env, name string) error {
			if _, err := e.raw.PauseJob(ctx, &schedulerpb.PauseJobRequest{Name: name}); err != nil {
				return err
			}
			_, err := e.raw.UpdateJob(ctx, &schedulerpb.UpdateJobRequest{
				Job:        &schedulerpb.Job{Name: name, Schedule: "0 * * * *"},
				UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"schedule"}},
			})
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			name := tickName(service, rollout)
			e.ensureTick(t, service, rollout, "* * * * *")
			if err := tt.meddle(e, name); err != nil {
				t.Fatalf("meddle: %v", err)
			}
			e.ensureTick(t, service, rollout, "* * * * *")
			j := e.get(t, name)
			if j.GetSchedule() != "* * * * *" || j.GetTimeZone() != "UTC" || j.GetState() != schedulerpb.Job_ENABLED ||
				string(j.GetPubsubTarget().GetData()) != string(events.TickData(service, rollout)) || len(j.GetPubsubTarget().GetAttributes()) != 0 {
				t.Errorf("after EnsureTick: schedule %q, time zone %q, state %v, data %s, attributes %v; want * * * * *, UTC, ENABLED, the tick, none",
					j.GetSchedule(), j.GetTimeZone(), j.GetState(), j.GetPubsubTarget().GetData(), j.GetPubsubTarget().GetAttributes())
			}
		})
	}
}

// TestEnsureTickNewSchedule: a rollout whose interval changed gets the new schedule.
func TestEnsureTickNewSchedule(t *testing.T) {
	e := newEnv(t)
	e.ensureTick(t, service, rollout, "* * * * *")
	e.ensureTick(t, service, rollout, "*/10 * * * *")
	if got, want := e.get(t, tickName(service, rollout)).GetSchedule(), "*/10 * * * *"; got != want {
		t.Errorf("schedule = %q, want %q", got, want)
	}
}

// TestDeleteTick: deleting twice succeeds both times and the job is gone; other jobs stay.
func TestDeleteTick(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.ensureTick(t, service, rollout, "* * * * *")
	e.ensureTick(t, service, "web-other", "* * * * *")
	for i := range 2 {
		if err := e.c.DeleteTick(ctx, service, rollout); err != nil {
			t.Fatalf("DeleteTick #%d: %v", i+1, err)
		}
	}
	if got, want := strings.Join(e.names(t), " "), tickName(service, "web-other"); got != want {
		t.Errorf("jobs = %s, want %s", got, want)
	}
}

// TestTicks: Ticks lists the tick jobs only (not the sweep, not someone else's job), with
// the rollout read from each job's data; a tick job whose data does not name its rollout
// comes back without one, and DeleteTickJob removes it (and refuses any other job).
func TestTicks(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.ensureTick(t, service, rollout, "* * * * *")
	e.ensureTick(t, "api", "api-7", "*/5 * * * *")
	if err := e.c.EnsureSweep(ctx, "*/15 * * * *"); err != nil {
		t.Fatalf("EnsureSweep: %v", err)
	}
	if _, err := e.raw.PauseJob(ctx, &schedulerpb.PauseJobRequest{Name: tickName("api", "api-7")}); err != nil {
		t.Fatalf("PauseJob: %v", err)
	}
	raw := func(id string, data []byte) {
		t.Helper()
		_, err := e.raw.CreateJob(ctx, &schedulerpb.CreateJobRequest{Parent: parent, Job: &schedulerpb.Job{
			Name: parent + "/jobs/" + id, Schedule: "0 0 * * *",
			Target: &schedulerpb.Job_PubsubTarget{PubsubTarget: &schedulerpb.PubsubTarget{TopicName: topic, Data: data}},
		}})
		if err != nil {
			t.Fatalf("CreateJob(%s): %v", id, err)
		}
	}
	raw("nightly-report", []byte("not ours"))
	raw(events.TickJobPrefix+"junk", []byte("not json"))
	raw(events.TickJobPrefix+"web--stolen", events.TickData("web", "another-rollout")) // data names another rollout

	got, err := e.c.Ticks(ctx)
	if err != nil {
		t.Fatalf("Ticks: %v", err)
	}
	want := []schedule.TickJob{
		{Name: tickName("api", "api-7"), Service: "api", Rollout: "api-7", Schedule: "*/5 * * * *", Paused: true},
		{Name: parent + "/jobs/" + events.TickJobPrefix + "junk", Schedule: "0 0 * * *"},
		{Name: parent + "/jobs/" + events.TickJobPrefix + "web--stolen", Schedule: "0 0 * * *"},
		{Name: tickName(service, rollout), Service: service, Rollout: rollout, Schedule: "* * * * *"},
	}
	if len(got) != len(want) {
		t.Fatalf("Ticks = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("Ticks[%d] = %+v, want %+v", i, got[i], want[i])
		}
	}

	if err := e.c.DeleteTickJob(ctx, want[1].Name); err != nil {
		t.Errorf("DeleteTickJob(junk): %v", err)
	}
	if err := e.c.DeleteTickJob(ctx, want[1].Name); err != nil {
		t.Errorf("DeleteTickJob(junk) again: %v", err)
	}
	for _, name := range []string{parent + "/jobs/" + events.SweepJob, parent + "/jobs/nightly-report", "projects/q/locations/europe-west1/jobs/" + events.TickJobPrefix + "x"} {
		if err := e.c.DeleteTickJob(ctx, name); !errors.Is(err, schedule.ErrPermanent) {
			t.Errorf("DeleteTickJob(%s) = %v, want ErrPermanent", name, err)
		}
	}
	if got, want := len(e.names(t)), 5; got != want {
		t.Errorf("%d jobs left, want %d: %v", got, want, e.names(t))
	}
}

// TestFiredTickDecodes: when the tick job fires, the message on coalmine-ticks decodes
// with events.DecodeTick to the rollout it was made for.
func TestFiredTickDecodes(t *testing.T) {
	e := newEnv(t)
	e.ensureTick(t, service, rollout, "* * * * *")
	if n := e.srv.Fire(context.Background(), t0.Add(time.Minute)); n != 1 {
		t.Fatalf("Fire = %d, want 1", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var (
		mu  sync.Mutex
		got *pubsub.Message
	)
	err := e.pc.Subscriber(subName).Receive(ctx, func(_ context.Context, m *pubsub.Message) {
		m.Ack()
		mu.Lock()
		got = m
		mu.Unlock()
		cancel()
	})
	mu.Lock()
	defer mu.Unlock()
	if got == nil {
		t.Fatalf("no tick received: %v", err)
	}
	tick, err := events.DecodeTick(events.PubsubMessage{Data: got.Data, Attributes: got.Attributes, MessageID: got.ID, PublishTime: got.PublishTime})
	if err != nil {
		t.Fatalf("DecodeTick(%s): %v", got.Data, err)
	}
	if tick.Service != service || tick.Rollout != rollout || tick.Job != events.TickJobID(service, rollout) || tick.Sweep() {
		t.Errorf("tick = %+v, want service %s rollout %s job %s", tick, service, rollout, events.TickJobID(service, rollout))
	}
}

// TestEnsureSweep: the sweep job is created with the sweep payload, updated to a new
// schedule, and left paused when an operator paused it.
func TestEnsureSweep(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	name := parent + "/jobs/" + events.SweepJob
	if err := e.c.EnsureSweep(ctx, "*/15 * * * *"); err != nil {
		t.Fatalf("EnsureSweep: %v", err)
	}
	j := e.get(t, name)
	if string(j.GetPubsubTarget().GetData()) != string(events.SweepData()) || j.GetSchedule() != "*/15 * * * *" || j.GetPubsubTarget().GetTopicName() != topic {
		t.Errorf("sweep = %v", j)
	}
	if _, err := e.raw.PauseJob(ctx, &schedulerpb.PauseJobRequest{Name: name}); err != nil {
		t.Fatalf("PauseJob: %v", err)
	}
	if err := e.c.EnsureSweep(ctx, "*/30 * * * *"); err != nil {
		t.Fatalf("EnsureSweep again: %v", err)
	}
	j = e.get(t, name)
	if j.GetSchedule() != "*/30 * * * *" || j.GetState() != schedulerpb.Job_PAUSED {
		t.Errorf("after EnsureSweep on a paused sweep: schedule %q state %v, want */30 * * * * and PAUSED", j.GetSchedule(), j.GetState())
	}
}

// TestTimeZoneOption: Options.TimeZone sets the jobs' time zone, and a job already in it
// is not rewritten.
func TestTimeZoneOption(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	c, err := schedule.New(ctx, schedule.Options{Project: project, Location: location, TimeZone: "Asia/Taipei", ClientOptions: e.srv.ClientOptions()})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer c.Close()
	if err := c.EnsureSweep(ctx, "0 9 * * *"); err != nil {
		t.Fatalf("EnsureSweep: %v", err)
	}
	j := e.get(t, parent+"/jobs/"+events.SweepJob)
	if got, want := j.GetTimeZone(), "Asia/Taipei"; got != want {
		t.Errorf("time_zone = %q, want %q", got, want)
	}
	if got, want := j.GetScheduleTime().AsTime(), time.Date(2026, 11, 27, 1, 0, 0, 0, time.UTC); !got.Equal(want) {
		t.Errorf("schedule_time = %v, want %v", got, want)
	}
}

// TestEmulatorOptions: with no client options, New follows SCHEDULER_EMULATOR_HOST.
func TestEmulatorOptions(t *testing.T) {
	e := newEnv(t)
	if got := schedule.EmulatorOptionsFor(""); got != nil {
		t.Errorf("EmulatorOptionsFor(\"\") = %v, want nil", got)
	}
	t.Setenv(schedule.EmulatorHostEnv, e.srv.Addr())
	if len(schedule.EmulatorOptions()) == 0 {
		t.Fatalf("EmulatorOptions() is empty with %s set", schedule.EmulatorHostEnv)
	}
	ctx := context.Background()
	c, err := schedule.New(ctx, schedule.Options{Project: project, Location: location})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer c.Close()
	if err := c.EnsureTick(ctx, service, rollout, "* * * * *"); err != nil {
		t.Fatalf("EnsureTick through %s: %v", schedule.EmulatorHostEnv, err)
	}
	if got := e.srv.Jobs(); got != 1 {
		t.Errorf("the emulator has %d jobs, want 1", got)
	}
	if _, err := schedule.New(ctx, schedule.Options{Project: project}); err == nil {
		t.Errorf("New without a location succeeded")
	}
}

func TestCron(t *testing.T) {
	tests := []struct {
		interval time.Duration
		want     string // "" for an error
	}{
		{time.Minute, "* * * * *"},
		{2 * time.Minute, "*/2 * * * *"},
		{5 * time.Minute, "*/5 * * * *"},
		{15 * time.Minute, "*/15 * * * *"},
		{30 * time.Minute, "*/30 * * * *"},
		{time.Hour, "0 * * * *"},
		{0, ""},
		{-time.Minute, ""},
		{30 * time.Second, ""},
		{90 * time.Second, ""},
		{7 * time.Minute, ""},
		{45 * time.Minute, ""},
		{2 * time.Hour, ""},
		{24 * time.Hour, ""},
	}
	for _, tt := range tests {
		got, err := schedule.Cron(tt.interval)
		switch {
		case tt.want == "" && !errors.Is(err, schedule.ErrPermanent):
			t.Errorf("Cron(%v) = %q, %v; want an ErrPermanent error", tt.interval, got, err)
		case tt.want != "" && (err != nil || got != tt.want):
			t.Errorf("Cron(%v) = %q, %v; want %q", tt.interval, got, err, tt.want)
		}
	}
}

// TestErrors: refusals are ErrPermanent and name the job; an unreachable server is
// transient.
func TestErrors(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	tests := []struct {
		name      string
		call      func() error
		permanent bool
		want      string // in the message
	}{
		{"schedule refused by Cloud Scheduler", func() error { return e.c.EnsureTick(ctx, service, rollout, "every 5 minutes") }, true, "create job coalmine-tick-web--web-20261126_1"},
		{"no schedule", func() error { return e.c.EnsureTick(ctx, service, rollout, "") }, true, "coalmine-tick-web--web-20261126_1"},
		{"bad service ID", func() error { return e.c.EnsureTick(ctx, "Web!", rollout, "* * * * *") }, true, `"Web!"`},
		{"bad rollout ID", func() error { return e.c.EnsureTick(ctx, service, "", "* * * * *") }, true, "rollout"},
		{"sweep schedule refused", func() error { return e.c.EnsureSweep(ctx, "@hourly") }, true, "create job coalmine-sweep"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if err == nil {
				t.Fatal("no error")
			}
			if got := errors.Is(err, schedule.ErrPermanent); got != tt.permanent {
				t.Errorf("errors.Is(%v, ErrPermanent) = %v, want %v", err, got, tt.permanent)
			}
			if got := schedule.Transient(err); got != !tt.permanent {
				t.Errorf("Transient(%v) = %v, want %v", err, got, !tt.permanent)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}

	// The server goes away: every call is transient.
	e.srv.Close()
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	for name, call := range map[string]func() error{
		"EnsureTick": func() error { return e.c.EnsureTick(short, service, "web-3", "* * * * *") },
		"Ticks":      func() error { _, err := e.c.Ticks(short); return err },
	} {
		err := call()
		if err == nil || !schedule.Transient(err) || errors.Is(err, schedule.ErrPermanent) {
			t.Errorf("%s with the server gone = %v, want a transient error", name, err)
		}
	}
	if schedule.Transient(nil) {
		t.Errorf("Transient(nil) = true")
	}
	if schedule.Transient(context.Canceled) {
		t.Errorf("Transient(context.Canceled) = true")
	}
}
