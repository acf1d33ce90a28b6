package scheduleremu_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
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

	"github.com/ai-square/coalmine/infra/local/scheduleremu"
)

// t0 is a Thursday, on a minute boundary; every env's clock starts there.
var t0 = time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)

const (
	project = "p"
	parent  = "projects/p/locations/europe-west1"
	topic   = "projects/p/topics/ticks"
	subName = "projects/p/subscriptions/ticks"
)

// clock is a settable clock for Options.Now.
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

// env is a scheduler emulator publishing to a pstest server, with the official clients of
// both.
type env struct {
	srv   *scheduleremu.Server
	c     *scheduler.CloudSchedulerClient
	ps    *pstest.Server
	pc    *pubsub.Client
	pub   *scheduleremu.Publisher // over pc, whatever opts.Publish was
	clock *clock
}

// newEnv starts pstest with topic and its subscription subName, and a scheduler emulator
// publishing to it. Unless opts.Now is set, the emulator's clock is a *clock at t0 and
// Manual is forced on; opts.Publish defaults to a Publisher over the pstest client.
func newEnv(t *testing.T, opts scheduleremu.Options) *env {
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
	if opts.Publish == nil {
		opts.Publish = pub.Publish
	}
	clk := &clock{t: t0}
	if opts.Now == nil {
		opts.Now = clk.Now
		opts.Manual = true
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	srv, err := scheduleremu.New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	c, err := scheduler.NewCloudSchedulerClient(ctx, srv.ClientOptions()...)
	if err != nil {
		t.Fatalf("NewCloudSchedulerClient: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return &env{srv: srv, c: c, ps: ps, pc: pc, pub: pub, clock: clk}
}

// job is a valid Pub/Sub job named id (full name) with the given schedule.
func job(id, schedule string) *schedulerpb.Job {
	return &schedulerpb.Job{
		Name:     parent + "/jobs/" + id,
		Schedule: schedule,
		Target: &schedulerpb.Job_PubsubTarget{PubsubTarget: &schedulerpb.PubsubTarget{
			TopicName:  topic,
			Data:       []byte(`{"job":"` + id + `"}`),
			Attributes: map[string]string{"job": id},
		}},
	}
}

// create creates j and fails the test on error.
func (e *env) create(t *testing.T, j *schedulerpb.Job) *schedulerpb.Job {
	t.Helper()
	got, err := e.c.CreateJob(context.Background(), &schedulerpb.CreateJobRequest{Parent: parent, Job: j})
	if err != nil {
		t.Fatalf("CreateJob(%s): %v", j.GetName(), err)
	}
	return got
}

// get reads a job and fails the test on error.
func (e *env) get(t *testing.T, name string) *schedulerpb.Job {
	t.Helper()
	got, err := e.c.GetJob(context.Background(), &schedulerpb.GetJobRequest{Name: name})
	if err != nil {
		t.Fatalf("GetJob(%s): %v", name, err)
	}
	return got
}

// list reads every job of parent through the client's iterator.
func (e *env) list(t *testing.T) []*schedulerpb.Job {
	t.Helper()
	it := e.c.ListJobs(context.Background(), &schedulerpb.ListJobsRequest{Parent: parent})
	var out []*schedulerpb.Job
	for {
		j, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return out
		}
		if err != nil {
			t.Fatalf("ListJobs: %v", err)
		}
		out = append(out, j)
	}
}

// receive pulls n messages from subName, acking them, and fails the test if they do not
// arrive within ten seconds.
func (e *env) receive(t *testing.T, n int) []*pubsub.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var (
		mu  sync.Mutex
		got []*pubsub.Message
	)
	err := e.pc.Subscriber(subName).Receive(ctx, func(_ context.Context, m *pubsub.Message) {
		m.Ack()
		mu.Lock()
		defer mu.Unlock()
		got = append(got, m)
		if len(got) >= n {
			cancel()
		}
	})
	mu.Lock()
	defer mu.Unlock()
	if len(got) < n {
		t.Fatalf("received %d messages on %s, want %d (Receive: %v)", len(got), subName, n, err)
	}
	return got
}

// published is how many messages pstest has accepted (on every topic).
func (e *env) published() int { return len(e.ps.Messages()) }

// scheduleTime is a job's next schedule time.
func (e *env) scheduleTime(t *testing.T, name string) time.Time {
	t.Helper()
	return e.get(t, name).GetScheduleTime().AsTime()
}
