package scheduleremu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"sync"
	"time"

	"cloud.google.com/go/scheduler/apiv1/schedulerpb"
	"github.com/robfig/cron/v3"
	"google.golang.org/api/option"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	// Time zones must resolve on machines without a tz database.
	_ "time/tzdata"

	"github.com/ai-square/coalmine/shared/emulator"
)

// EnvEmulatorHost names the environment variable that points the product's Cloud Scheduler
// client at this server (host:port).
const EnvEmulatorHost = "SCHEDULER_EMULATOR_HOST"

// DefaultListen is the default of Options.Listen.
const DefaultListen = "127.0.0.1:0"

// attemptTimeout bounds one publish. (Google ignores attempt_deadline for Pub/Sub targets;
// a local publish that takes this long has failed.)
const attemptTimeout = 30 * time.Second

// PublishFunc publishes one message to topic (projects/P/topics/T) and returns its message
// ID. Publisher.Publish is one.
type PublishFunc func(ctx context.Context, topic string, data []byte, attrs map[string]string) (messageID string, err error)

// Options configure a Server. Publish is required.
type Options struct {
	// Listen is the gRPC listen address (default "127.0.0.1:0").
	Listen string
	// Now is the server's clock (default time.Now): create, update and resume compute the
	// next schedule time from it, and the background loop fires at it.
	Now func() time.Time
	// Fast accepts schedules with a leading seconds field ("*/2 * * * * *") besides
	// Google's five-field minute-granularity ones. No published figure may come from a
	// fast-mode server.
	Fast bool
	// Manual turns the background loop off: jobs fire only when Fire is called (tests
	// drive it with their own clock).
	Manual bool
	// Publish sends a firing's message.
	Publish PublishFunc
	// Logger receives the server's logs (default slog.Default()).
	Logger *slog.Logger
}

// Server is a running Cloud Scheduler emulator.
type Server struct {
	opts    Options
	log     *slog.Logger
	lis     net.Listener
	grpc    *grpc.Server
	now     func() time.Time
	publish PublishFunc

	mu   sync.Mutex
	jobs map[string]*entry // by full job name

	ctx       context.Context // cancelled by Close
	cancel    context.CancelFunc
	loop      sync.WaitGroup
	closeOnce sync.Once
}

// entry is one job with its parsed schedule.
type entry struct {
	job     *schedulerpb.Job
	sched   *cron.SpecSchedule
	running bool // a scheduled attempt is in flight: the next one waits for it
}

// New starts a server listening on opts.Listen and, unless opts.Manual, its once-a-second
// firing loop.
func New(opts Options) (*Server, error) {
	if opts.Publish == nil {
		return nil, errors.New("cloud scheduler emulator: Options.Publish is required")
	}
	if opts.Listen == "" {
		opts.Listen = DefaultListen
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	lis, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		return nil, fmt.Errorf("cloud scheduler emulator: listen on %s: %w", opts.Listen, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		opts:    opts,
		log:     opts.Logger.With("component", "scheduleremu"),
		lis:     lis,
		now:     opts.Now,
		publish: opts.Publish,
		jobs:    map[string]*entry{},
		ctx:     ctx,
		cancel:  cancel,
	}
	s.grpc = grpc.NewServer()
	schedulerpb.RegisterCloudSchedulerServer(s.grpc, schedulerAPI{Server: s})
	go func() {
		if err := s.grpc.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			s.log.Error("grpc serve", "error", err)
		}
	}()
	if !opts.Manual {
		s.loop.Add(1)
		go s.run()
	}
	msg := "cloud scheduler emulator listening (unix-cron, minute granularity, Pub/Sub targets)"
	if opts.Fast {
		msg = "cloud scheduler emulator listening in fast mode (6-field schedules with seconds accepted: not Google's granularity, no published figure may come from it)"
	}
	s.log.Info(msg, "addr", lis.Addr().String(), "fast", opts.Fast, "manual", opts.Manual)
	return s, nil
}

// run fires due jobs every second until Close.
func (s *Server) run() {
	defer s.loop.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
			// Not waiting for the publishes: one that hangs must not hold back the other
			// jobs' slots (it holds back only its own job, which is still running). Close
			// waits for them through s.loop.
			s.fire(s.ctx, s.now(), &s.loop)
		}
	}
}

// Addr is the gRPC address ("127.0.0.1:PORT"), for option.WithEndpoint or
// SCHEDULER_EMULATOR_HOST.
func (s *Server) Addr() string { return s.lis.Addr().String() }

// ClientOptions are the options that point the official client at this server:
// scheduler.NewCloudSchedulerClient(ctx, srv.ClientOptions()...).
func (s *Server) ClientOptions() []option.ClientOption {
	return emulator.ClientOptions(s.Addr())
}

// Fast reports whether the server runs in fast mode (callers print it).
func (s *Server) Fast() bool { return s.opts.Fast }

// Jobs is the number of jobs, in every state.
func (s *Server) Jobs() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.jobs)
}

// Close stops the firing loop (waiting for it and its publishes) and the gRPC server. It
// is safe to call more than once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.cancel()
		s.loop.Wait()
		s.grpc.Stop()
		s.log.Info("cloud scheduler emulator stopped", "addr", s.Addr())
	})
	return nil
}

// Fire fires every ENABLED job whose schedule time is at or before now, once per job
// however many slots were missed (as Google does after an outage), sets each one's next
// schedule time from now, and returns how many fired. It waits for the publishes and
// records each attempt's time (now) and status on its job. A job whose previous scheduled
// attempt is still in flight waits for the next call: Cloud Scheduler never runs two
// executions of a job at once.
func (s *Server) Fire(ctx context.Context, now time.Time) int {
	var wg sync.WaitGroup
	n := s.fire(ctx, now, &wg)
	wg.Wait()
	return n
}

// fire starts the attempts of every job due at now, each counted in wg, and returns how
// many it started.
func (s *Server) fire(ctx context.Context, now time.Time, wg *sync.WaitGroup) int {
	type due struct {
		e    *entry
		name string
		slot time.Time
		t    *schedulerpb.PubsubTarget
	}
	var fire []due
	s.mu.Lock()
	for name, e := range s.jobs {
		if e.job.GetState() != schedulerpb.Job_ENABLED || e.running {
			continue
		}
		if e.job.GetScheduleTime() == nil { // no slot left within robfig/cron's five years
			continue
		}
		slot := e.job.GetScheduleTime().AsTime()
		if slot.After(now) {
			continue
		}
		e.running = true
		e.job.ScheduleTime = nil
		if next := e.sched.Next(now); !next.IsZero() {
			e.job.ScheduleTime = timestamppb.New(next)
		}
		fire = append(fire, due{e: e, name: name, slot: slot, t: proto.Clone(e.job.GetPubsubTarget()).(*schedulerpb.PubsubTarget)})
	}
	s.mu.Unlock()
	sort.Slice(fire, func(i, j int) bool { return fire[i].name < fire[j].name })
	for _, d := range fire {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.attempt(ctx, d.e, d.name, d.t, now, d.slot)
			s.mu.Lock()
			d.e.running = false
			s.mu.Unlock()
		}()
	}
	return len(fire)
}

// attempt publishes a job's message and records the attempt on e (unless the job has been
// deleted meanwhile). slot is the schedule time it fires for (zero for RunJob).
func (s *Server) attempt(ctx context.Context, e *entry, name string, t *schedulerpb.PubsubTarget, now, slot time.Time) {
	ctx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	id, err := s.publish(ctx, t.GetTopicName(), t.GetData(), t.GetAttributes())
	st := &spb.Status{}
	if err != nil {
		st = status.Convert(err).Proto()
		s.log.Warn("scheduler job publish failed", "job", name, "topic", t.GetTopicName(), "code", status.Code(err).String(), "error", err)
	} else {
		attrs := []any{"job", name, "topic", t.GetTopicName(), "message_id", id}
		if !slot.IsZero() {
			attrs = append(attrs, "schedule_time", slot.UTC().Format(time.RFC3339Nano))
		}
		s.log.Debug("scheduler job fired", attrs...)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.jobs[name] != e {
		return
	}
	e.job.LastAttemptTime = timestamppb.New(now)
	e.job.Status = st
}
