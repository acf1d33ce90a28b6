package release

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/ai-square/coalmine/shared/cloudrun"
	"github.com/ai-square/coalmine/shared/logging"
	"github.com/ai-square/coalmine/shared/publish"
	"github.com/ai-square/coalmine/shared/schedule"
)

// Handler is a CloudEvent function as functions-framework-go registers it.
type Handler = func(ctx context.Context, e event.Event) error

// FromEnvironment builds the Env a deployed function runs with: the policy
// (COALMINE_POLICY or COALMINE_POLICY_YAML), Pub/Sub in COALMINE_PROJECT
// (or GOOGLE_CLOUD_PROJECT; PUBSUB_EMULATOR_HOST is honoured by the
// client), Cloud Run (CLOUDRUN_EMULATOR_HOST is honoured), Cloud Monitoring
// in each service's project (MONITORING_EMULATOR_HOST is honoured), the
// tick jobs in Cloud Scheduler in COALMINE_PROJECT at
// COALMINE_SCHEDULER_LOCATION (default COALMINE_REGION;
// SCHEDULER_EMULATOR_HOST is honoured) and a Cloud Logging JSON logger on
// stdout.
func FromEnvironment(ctx context.Context) (*Env, error) {
	pol, err := LoadPolicy()
	if err != nil {
		return nil, err
	}
	project := os.Getenv(EnvProject)
	if project == "" {
		project = os.Getenv("GOOGLE_CLOUD_PROJECT")
	}
	if project == "" {
		return nil, fmt.Errorf("no project for Pub/Sub: set %s", EnvProject)
	}
	location := os.Getenv(EnvSchedulerLocation)
	if location == "" {
		location = os.Getenv(EnvRegion)
	}
	if location == "" {
		return nil, fmt.Errorf("no Cloud Scheduler location for the tick jobs: set %s (or %s)", EnvSchedulerLocation, EnvRegion)
	}
	bus, err := publish.New(ctx, project)
	if err != nil {
		return nil, err
	}
	sched, err := schedule.New(ctx, schedule.Options{Project: project, Location: location})
	if err != nil {
		return nil, err
	}
	clients := &Clients{Options: cloudrun.Options{PollInterval: time.Second}}
	readers := &Readers{}
	return &Env{Policy: pol, CloudRun: clients.For, Bus: bus, Metrics: readers.For, Scheduler: sched, Log: logging.FromEnv()}, nil
}

// Lazy returns a function that builds its Env from the environment on the
// first event and then serves every event with h(env). A failure to build
// it is logged and returned (the event is delivered again) and the next
// event tries again, so a passing problem (credentials, a network blip at
// start-up) does not poison the instance.
func Lazy(name string, h func(*Env) Handler) Handler {
	var (
		mu sync.Mutex
		fn Handler
	)
	return func(ctx context.Context, e event.Event) error {
		mu.Lock()
		if fn == nil {
			env, err := FromEnvironment(context.Background())
			if err != nil {
				mu.Unlock()
				logging.FromEnv().Error("function not configured: "+err.Error(), "function", name)
				return fmt.Errorf("%s not configured: %w", name, err)
			}
			fn = Guard(env.log(), name, h(env))
		}
		f := fn
		mu.Unlock()
		return f(ctx, e)
	}
}

// Guard turns a panic in h into a logged error (the event is delivered
// again and, if it keeps failing, ends in the dead-letter topic).
func Guard(log *slog.Logger, name string, h Handler) Handler {
	return func(ctx context.Context, e event.Event) (err error) {
		defer func() {
			if p := recover(); p != nil {
				log.Error(fmt.Sprintf("%s panicked: %v", name, p), "function", name, "event", e.ID(), "stack", string(debug.Stack()))
				err = fmt.Errorf("%s panicked: %v", name, p)
			}
		}()
		return h(ctx, e)
	}
}

// Malformed logs an event that cannot be decoded and acknowledges it:
// delivering it again would never help.
func (e *Env) Malformed(fn string, ev event.Event, err error) error {
	e.log().Warn("malformed event acknowledged: "+err.Error(), "function", fn, "event", ev.ID(), "source", ev.Source(), "error", err.Error())
	return nil
}
