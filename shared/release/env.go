// Package release is what coalmine's functions do: claim a rollout for a
// pushed image, back up, deploy the canary, shift traffic, roll back, and
// watch over deadlines. Each step reads the Cloud Run service, asks the
// state machine (shared/rollout) what the command does, writes traffic and
// state in one update, publishes a lifecycle event and then the next
// command. The function packages are thin adapters around it.
//
// Error convention (functions-framework): a returned error means "deliver
// this again"; permanent failures are logged and return nil.
package release

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/ai-square/coalmine/events"
	"github.com/ai-square/coalmine/shared/backup"
	"github.com/ai-square/coalmine/shared/cloudrun"
	"github.com/ai-square/coalmine/shared/policy"
	"github.com/ai-square/coalmine/shared/rollout"
)

// CloudRun is what the steps need of a Cloud Run region (cloudrun.Client).
type CloudRun interface {
	Read(ctx context.Context, service string) (*cloudrun.Service, error)
	SetTraffic(ctx context.Context, svc *cloudrun.Service, next rollout.State) (*cloudrun.Service, error)
	Deploy(ctx context.Context, svc *cloudrun.Service, next rollout.State, req cloudrun.DeployRequest) (*cloudrun.Service, error)
	Rollback(ctx context.Context, svc *cloudrun.Service, next rollout.State) (*cloudrun.Service, error)
	StableTemplate(ctx context.Context, svc *cloudrun.Service) (json.RawMessage, error)
	WaitRevision(ctx context.Context, service, revision string) (*cloudrun.Revision, error)
	Revision(ctx context.Context, service, revision string) (*cloudrun.Revision, error)
}

// Bus publishes commands and lifecycle events (publish.Bus).
type Bus interface {
	Command(ctx context.Context, c events.Command) error
	Event(ctx context.Context, e events.Lifecycle) error
}

// Backuper takes a rollout's backup, one chunk per call; the data-safety
// work plugs in here. Done reports whether the backup is complete and
// verified. An error wrapping backup.ErrFailed (ErrBackupFailed) fails the
// rollout; any other error is retried.
type Backuper interface {
	Backup(ctx context.Context, svc *policy.Service, r *rollout.Rollout) (b rollout.Backup, done bool, err error)
}

// ErrBackupFailed is backup.ErrFailed: a backup that cannot succeed
// (verification failed, source missing); the rollout fails, no canary is
// deployed. The error belongs to the backup side, which must not import
// this package.
var ErrBackupFailed = backup.ErrFailed

// Images checks that an image is in its registry (registry.Client in
// production, the local cloud's registry locally).
type Images interface {
	// Exists returns nil when the registry holds image (a reference by
	// digest), an error wrapping ErrImageNotFound when it does not, and
	// any other error when it cannot tell (unreachable, no access).
	Exists(ctx context.Context, image string) error
}

// ErrImageNotFound marks an image its registry does not hold: a release of
// it is refused (a permanent failure), never retried.
var ErrImageNotFound = errors.New("not in the registry")

// Point names where a step is, for Hooks.
type Point struct {
	Function string
	Service  string
	Rollout  string
	Kind     rollout.Kind
	Stage    int
}

// Hooks are fault-injection points for tests (all nil in production). A
// hook that returns an error makes the step return it, as if the function
// had died there: nothing after the hook happens and the command is
// delivered again.
type Hooks struct {
	// BeforeRead runs before the step reads the service.
	BeforeRead func(ctx context.Context, p Point) error
	// BeforeWrite runs after the decision, before the write.
	BeforeWrite func(ctx context.Context, p Point) error
	// AfterWrite runs after the write, before the next command is published.
	AfterWrite func(ctx context.Context, p Point) error
}

// Env is everything the steps depend on.
type Env struct {
	Policy *policy.Policy
	// CloudRun returns the client for a project and region.
	CloudRun func(ctx context.Context, project, region string) (CloudRun, error)
	Bus      Bus
	// Backups takes backups; nil records "no backup configured" and moves on.
	Backups Backuper
	Now     func() time.Time
	Log     *slog.Logger
	Hooks   Hooks
	// Holder prefixes the lease holder name of each invocation (default
	// host-pid); the command's ID (a random part when it has none) is
	// always added.
	Holder string
	// DeployWait bounds how long one Deploy invocation waits for the
	// canary to become ready (default 8m, under the 9-minute function limit).
	DeployWait time.Duration
	// BackupLease is how long a backup chunk may run before another worker
	// may take the backup over (default 6m; chunks stop starting work well
	// before).
	BackupLease time.Duration
	// HookClient returns the HTTP client that calls a service's
	// post-rollback hook (default: an ID-token client for the service URL
	// on Google Cloud; a plain client when CLOUDRUN_EMULATOR_HOST is set).
	HookClient func(ctx context.Context, audience string) (*http.Client, error)
	// Images checks that a released image is in its registry before a
	// rollout is claimed; nil checks nothing. Artifact Registry's own
	// notifications are not checked: the registry sent them.
	Images Images
	// Metrics returns where a service's canary figures are read (nil: no
	// verdict is judged; ticks run the watchdog only).
	Metrics func(ctx context.Context, svc *policy.Service) (Metrics, error)
	// FastMetrics judges with the local cloud's fast Monitoring timing
	// (1s alignment, no ingestion delay) whatever the policy says. Never set
	// in production: `coalmine local up --fast` sets it, and says so.
	FastMetrics bool
	// Scheduler keeps the per-rollout Cloud Scheduler tick jobs (nil: none
	// are kept; only the sweep job ticks).
	Scheduler Scheduler
	// TickSchedule overrides the schedule of the per-rollout tick jobs
	// (default: gates.interval as a cron schedule). The local cloud's fast
	// mode ticks every few seconds.
	TickSchedule string

	// hooksRunning holds the lease holders whose post-rollback steps run
	// in this process.
	hooksRunning sync.Map
}

func (e *Env) now() time.Time {
	if e.Now != nil {
		return e.Now().UTC()
	}
	return time.Now().UTC()
}

func (e *Env) log() *slog.Logger {
	if e.Log != nil {
		return e.Log
	}
	return slog.Default()
}

func (e *Env) deployWait() time.Duration {
	if e.DeployWait > 0 {
		return e.DeployWait
	}
	return 8 * time.Minute
}

// holder names the holder of a backup lease: the host and process (for
// the logs) and the command being worked on. Redeliveries of one command
// (after a crash) take their own lease back at once; a different command
// for the same backup (a watchdog re-publication, a stray duplicate
// publish) finds the lease held while a chunk runs. Concurrent requests on
// one instance, or instances sharing a host name, never share a holder
// unless they work on the same command, whose chunks are idempotent.
func (e *Env) holder(commandID string) string {
	prefix := e.Holder
	if prefix == "" {
		h, _ := os.Hostname()
		prefix = fmt.Sprintf("%s-%d", h, os.Getpid())
	}
	if commandID == "" {
		var b [4]byte
		rand.Read(b[:])
		commandID = hex.EncodeToString(b[:])
	}
	return prefix + "-" + commandID
}

func (e *Env) hook(ctx context.Context, h func(context.Context, Point) error, p Point) error {
	if h == nil {
		return nil
	}
	if err := h(ctx, p); err != nil {
		return fmt.Errorf("hook at %s %s: %w", p.Function, p.Kind, err)
	}
	return nil
}

// Config maps a service's policy onto the state machine's configuration.
func Config(s *policy.Service) rollout.Config {
	d := s.Deadlines
	return rollout.Config{
		History:       s.History,
		FailedDigests: s.FailedDigests,
		Deadlines: rollout.Deadlines{
			Waiting: d.Waiting.Duration, Backup: d.Backup.Duration, Deploy: d.Deploy.Duration,
			Stage: d.Stage.Duration, Paused: d.Paused.Duration, RollingBack: d.Rollback.Duration,
			Guard: d.Guard.Duration, Retries: d.Retries,
		},
	}
}

// Clients caches one cloudrun.Client per project and region.
type Clients struct {
	Options cloudrun.Options // Project and Region are filled per call

	mu      sync.Mutex
	clients map[string]*cloudrun.Client
}

// For returns the client for a project and region, connecting on first use.
func (c *Clients) For(ctx context.Context, project, region string) (CloudRun, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	key := project + "/" + region
	if cl, ok := c.clients[key]; ok {
		return cl, nil
	}
	o := c.Options
	o.Project, o.Region = project, region
	cl, err := cloudrun.New(ctx, o)
	if err != nil {
		return nil, err
	}
	if c.clients == nil {
		c.clients = map[string]*cloudrun.Client{}
	}
	c.clients[key] = cl
	return cl, nil
}

// Close closes every client.
func (c *Clients) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for _, cl := range c.clients {
		errs = append(errs, cl.Close())
	}
	c.clients = nil
	return errors.Join(errs...)
}

// Environment variables read by LoadPolicy and the functions' set-up.
const (
	// EnvPolicy is the path of the policy file.
	EnvPolicy = "COALMINE_POLICY"
	// EnvPolicyYAML holds the policy itself (takes precedence over EnvPolicy).
	EnvPolicyYAML = "COALMINE_POLICY_YAML"
	// EnvProject is the project that holds coalmine's topics.
	EnvProject = "COALMINE_PROJECT"
	// EnvRegion is the default region (the CLI's, for services it cannot find in a policy).
	EnvRegion = "COALMINE_REGION"
	// EnvSchedulerLocation is the Cloud Scheduler location of the tick jobs (default
	// COALMINE_REGION).
	EnvSchedulerLocation = "COALMINE_SCHEDULER_LOCATION"
)

// LoadPolicy reads the policy named by the environment.
func LoadPolicy() (*policy.Policy, error) {
	if y := os.Getenv(EnvPolicyYAML); strings.TrimSpace(y) != "" {
		return policy.Parse([]byte(y))
	}
	path := os.Getenv(EnvPolicy)
	if path == "" {
		return nil, fmt.Errorf("no policy: set %s (a file) or %s (the YAML)", EnvPolicy, EnvPolicyYAML)
	}
	return policy.Load(path)
}
