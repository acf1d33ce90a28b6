// Package cloud starts the whole local cloud in one process: Pub/Sub
// (embedded pstest, Google's emulator, or the server PUBSUB_EMULATOR_HOST
// names), the topology from events.Triggers, the Cloud Run emulator with
// every policy service serving a stable revision, Cloud Monitoring fed by
// the Cloud Run emulator's requests and the local PostgreSQL's connections,
// the functions over real HTTP (through functions-framework-go's own
// handler), the Eventarc-like bridge between them, Cloud Scheduler (the
// sweep job, and the per-rollout tick jobs the functions keep) and the
// policy's alert policies on the Monitoring server, with a Pub/Sub channel to
// coalmine-alerts. It is what `coalmine local up` runs and what the
// end-to-end tests start.
package cloud

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"cloud.google.com/go/pubsub/v2"
	run "cloud.google.com/go/run/apiv2"
	"cloud.google.com/go/run/apiv2/runpb"
	"cloud.google.com/go/storage"

	"github.com/ai-square/coalmine/events"
	"github.com/ai-square/coalmine/functions/alert"
	backupfn "github.com/ai-square/coalmine/functions/backup"
	"github.com/ai-square/coalmine/functions/deploy"
	"github.com/ai-square/coalmine/functions/rollback"
	"github.com/ai-square/coalmine/functions/shift"
	"github.com/ai-square/coalmine/functions/verify"
	"github.com/ai-square/coalmine/infra/local/bridge"
	"github.com/ai-square/coalmine/infra/local/gcsemu"
	"github.com/ai-square/coalmine/infra/local/monitoringemu"
	"github.com/ai-square/coalmine/infra/local/postgres"
	"github.com/ai-square/coalmine/infra/local/pubsubemu"
	"github.com/ai-square/coalmine/infra/local/runemu"
	"github.com/ai-square/coalmine/infra/local/scheduleremu"
	"github.com/ai-square/coalmine/shared/alerting"
	"github.com/ai-square/coalmine/shared/backup"
	"github.com/ai-square/coalmine/shared/cloudrun"
	"github.com/ai-square/coalmine/shared/logging"
	"github.com/ai-square/coalmine/shared/policy"
	"github.com/ai-square/coalmine/shared/publish"
	"github.com/ai-square/coalmine/shared/release"
	"github.com/ai-square/coalmine/shared/schedule"
)

// Functions maps each function name to its constructor; the production
// binary (functions/) registers the same handlers with functions-framework.
var Functions = map[string]func(*release.Env) release.Handler{
	events.FunctionBackup:   backupfn.Handler,
	events.FunctionDeploy:   deploy.Handler,
	events.FunctionShift:    shift.Handler,
	events.FunctionRollback: rollback.Handler,
	events.FunctionVerify:   verify.Handler,
	events.FunctionAlert:    alert.Handler,
}

// Config says how to start the local cloud.
type Config struct {
	// Dir holds local.env, policy.yaml, the image registry and revision
	// logs (default ".coalmine").
	Dir string
	// Policy is the policy YAML (default policy.Example()).
	Policy []byte
	// Pubsub picks the Pub/Sub server (default: external when
	// PUBSUB_EMULATOR_HOST is set, else embedded pstest).
	Pubsub pubsubemu.Backend
	// PubsubHost is the external server (default $PUBSUB_EMULATOR_HOST).
	PubsubHost string
	// Project holds the topics (default: the policy services' project).
	Project string
	// Listen is the host for every local server (default 127.0.0.1).
	Listen string
	// TickSchedule is the schedule of the per-rollout tick jobs (default:
	// the policy's gates.interval; FastTickSchedule when Fast).
	TickSchedule string
	// SweepSchedule is the sweep job's schedule (default SweepSchedule;
	// FastSweepSchedule when Fast).
	SweepSchedule string
	// SchedulerManual keeps Cloud Scheduler's jobs from firing on their own:
	// they fire only when run (RunJob, or Scheduler.Fire). Tests that drive
	// every step themselves use it.
	SchedulerManual bool
	// SchedulerNow is Cloud Scheduler's clock (default time.Now).
	SchedulerNow func() time.Time
	// PollInterval is how often long-running Cloud Run operations and
	// revisions are polled by the functions (default 100ms).
	PollInterval time.Duration
	// Bridge settings: retry backoff, attempts before dead-lettering, chaos.
	MinBackoff, MaxBackoff time.Duration
	MaxAttempts            int
	Chaos                  bridge.Chaos
	// Hooks are fault-injection points in the functions (tests only).
	Hooks release.Hooks
	// BackupBudget bounds one backup chunk (default 4m; tests use less).
	BackupBudget time.Duration
	// WrapBackups, if set, wraps the backup runner the Backup function uses
	// (tests inject faults between backup steps).
	WrapBackups func(release.Backuper) release.Backuper
	// Log receives every component's logs (default: JSON on stderr;
	// `coalmine local up` writes them to DIR/local.log, LogFile).
	Log *slog.Logger
	// Now is the functions' clock (default time.Now): tests set it to
	// reach a deploy window at any hour.
	Now func() time.Time
	// Fast shortens Google's timing for demos and tests: Cloud Monitoring
	// has no ingestion delay and 1s sample and alignment periods, the judge
	// reads it that way, alert conditions count seconds for minutes, and Cloud
	// Scheduler takes seconds schedules (tick jobs every 2s, the sweep every
	// 30s). No figure may be taken from it.
	Fast bool
}

// Cloud is a running local cloud.
type Cloud struct {
	Dir     string
	Policy  *policy.Policy
	Project string
	Region  string
	// Env is what local.env holds: the variables that point Google's
	// clients (and the coalmine CLI) at this cloud.
	Env map[string]string

	Pubsub       *pubsubemu.Server
	PubsubClient *pubsub.Client
	// Storage is Cloud Storage (fake-gcs-server behind a precondition shim).
	Storage       *gcsemu.Server
	StorageClient *storage.Client
	// Postgres is the PostgreSQL server (nil when not installed; then
	// DatabaseSkipped says so).
	Postgres        *postgres.Server
	DatabaseSkipped string
	// Backups takes and restores backups.
	Backups *backup.Runner
	Run     *runemu.Server
	// Monitoring is Cloud Monitoring, fed by the Cloud Run emulator's
	// front proxies and the local PostgreSQL.
	Monitoring *monitoringemu.Server
	// Alerts is what was made of the policy's alert policies.
	Alerts alerting.Result
	// Scheduler is Cloud Scheduler; Schedules the client the functions keep
	// their tick jobs with; SweepSchedule the sweep job's schedule.
	Scheduler     *scheduleremu.Server
	Schedules     *schedule.Client
	SweepSchedule string
	Bridge        *bridge.Bridge
	FunctionsURL  string
	Bus           *publish.Bus

	log *slog.Logger
	// runProject is the services' project (the policy's), where their metrics are
	// written; Project, the Pub/Sub project, may differ.
	runProject string
	dbURLs     map[string]string // policy urlEnv -> database URL
	funcs      *http.Server
	clients    *release.Clients
	stopTicks  context.CancelFunc
	closers    []func() error
}

// Start brings everything up and writes DIR/local.env. Close stops it all.
func Start(ctx context.Context, cfg Config) (c *Cloud, err error) {
	if cfg.Dir == "" {
		cfg.Dir = ".coalmine"
	}
	if cfg.Policy == nil {
		cfg.Policy = policy.Example()
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1"
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 100 * time.Millisecond
	}
	log := cfg.Log
	if log == nil {
		log = logging.New(os.Stderr, slog.LevelInfo)
	}
	pol, err := policy.Parse(cfg.Policy)
	if err != nil {
		return nil, fmt.Errorf("local cloud: %w", err)
	}
	project, region, err := location(pol)
	if err != nil {
		return nil, err
	}
	if cfg.Project == "" {
		cfg.Project = project
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("local cloud: %w", err)
	}
	c = &Cloud{Dir: dir, Policy: pol, Project: cfg.Project, Region: region, log: log, runProject: project}
	defer func() {
		if err != nil {
			c.Close()
			c = nil
		}
	}()
	policyPath := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policyPath, cfg.Policy, 0o644); err != nil {
		return nil, fmt.Errorf("local cloud: %w", err)
	}

	// Pub/Sub and the topology.
	backend := cfg.Pubsub
	if backend == "" {
		backend = pubsubemu.BackendPstest
		if os.Getenv("PUBSUB_EMULATOR_HOST") != "" {
			backend = pubsubemu.BackendExternal
		}
	}
	log.Info("starting Pub/Sub", "backend", string(backend))
	c.Pubsub, err = pubsubemu.Start(ctx, pubsubemu.Options{Backend: backend, Host: cfg.PubsubHost, Logger: log.With("component", "pubsub")})
	if err != nil {
		return nil, fmt.Errorf("local cloud: pubsub: %w", err)
	}
	c.closers = append(c.closers, c.Pubsub.Close)
	c.PubsubClient, err = pubsub.NewClient(ctx, c.Project, c.Pubsub.ClientOptions()...)
	if err != nil {
		return nil, fmt.Errorf("local cloud: pubsub client: %w", err)
	}
	c.closers = append(c.closers, c.PubsubClient.Close)
	if err := pubsubemu.EnsureTopology(ctx, c.PubsubClient, c.Project, events.Triggers); err != nil {
		return nil, fmt.Errorf("local cloud: topology: %w", err)
	}
	c.Bus = publish.NewWithClient(c.PubsubClient)
	c.closers = append(c.closers, c.Bus.Close)

	// Cloud Storage and PostgreSQL, seeded.
	if err := c.startData(ctx, cfg); err != nil {
		return nil, err
	}

	// Cloud Monitoring, then Cloud Run feeding it.
	if err := c.startMonitoring(cfg); err != nil {
		return nil, err
	}
	reg := runemu.NewRegistry()
	reg.SetDir(ImagesDir(dir))
	c.Run, err = runemu.New(runemu.Options{
		Project: project, Region: region, Registry: reg, Listen: cfg.Listen + ":0",
		LogDir: filepath.Join(dir, "revisions"), Logger: log,
	})
	if err != nil {
		return nil, fmt.Errorf("local cloud: cloud run: %w", err)
	}
	c.closers = append(c.closers, c.Run.Close)
	c.recordRequests()
	if err := c.createServices(ctx, reg); err != nil {
		return nil, err
	}

	// Cloud Scheduler and its sweep job.
	if err := c.startScheduler(ctx, cfg); err != nil {
		return nil, err
	}

	// The functions, served over HTTP.
	c.clients = &release.Clients{Options: cloudrun.Options{PollInterval: cfg.PollInterval, ClientOptions: c.Run.ClientOptions()}}
	c.closers = append(c.closers, c.clients.Close)
	readers := &release.Readers{ClientOptions: c.Monitoring.ClientOptions()}
	c.closers = append(c.closers, readers.Close)
	tickSchedule := cfg.TickSchedule
	if tickSchedule == "" && cfg.Fast {
		tickSchedule = FastTickSchedule
	}
	c.Backups = &backup.Runner{
		Storage: c.StorageClient, Getenv: c.getenv, SkipDatabase: c.DatabaseSkipped,
		Budget: cfg.BackupBudget, Log: log.With("component", "backup"),
	}
	var backups release.Backuper = c.Backups
	if cfg.WrapBackups != nil {
		backups = cfg.WrapBackups(backups)
	}
	env := &release.Env{
		Policy: pol, CloudRun: c.clients.For, Bus: c.Bus, Log: log.With("component", "functions"),
		Hooks: cfg.Hooks, DeployWait: 2 * time.Minute, Backups: backups, Now: cfg.Now,
		HookClient: func(context.Context, string) (*http.Client, error) { return http.DefaultClient, nil },
		Images:     Images{Registry: reg, Dir: ImagesDir(dir)},
		Metrics:    readers.For, FastMetrics: cfg.Fast,
		Scheduler: c.Schedules, TickSchedule: tickSchedule,
	}
	mux, err := functionsMux(ctx, env)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Listen+":0")
	if err != nil {
		return nil, fmt.Errorf("local cloud: functions: %w", err)
	}
	c.FunctionsURL = "http://" + ln.Addr().String()
	c.funcs = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go c.funcs.Serve(ln)

	// The bridge.
	c.Bridge, err = bridge.Start(ctx, bridge.Options{
		Client: c.PubsubClient, Project: c.Project, Routes: bridge.RoutesFor(c.FunctionsURL, events.Triggers),
		MaxAttempts: cfg.MaxAttempts, MinBackoff: cfg.MinBackoff, MaxBackoff: cfg.MaxBackoff,
		Chaos: cfg.Chaos, Logger: log.With("component", "bridge"),
	})
	if err != nil {
		return nil, fmt.Errorf("local cloud: bridge: %w", err)
	}

	// The policy's alert policies, with a channel to coalmine-alerts.
	if err := c.ensureAlerts(ctx, cfg); err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(context.Background())
	c.stopTicks = cancel
	c.sampleConnections(sctx, c.Monitoring.SamplePeriod())

	c.Env = map[string]string{
		"PUBSUB_EMULATOR_HOST":    c.Pubsub.Host(),
		cloudrun.EmulatorHostEnv:  c.Run.Addr(),
		release.EnvProject:        c.Project,
		release.EnvRegion:         region,
		release.EnvPolicy:         policyPath,
		"COALMINE_DIR":            dir,
		"COALMINE_FUNCTIONS_URL":  c.FunctionsURL,
		"COALMINE_LOCAL_REGISTRY": ImagesDir(dir),
		gcsemu.EnvEmulatorHost:    c.Storage.Host(),
		schedule.EmulatorHostEnv:  c.Scheduler.Addr(),
	}
	for k, v := range c.dbURLs {
		c.Env[k] = v
	}
	maps.Copy(c.Env, c.monitoringEnv())
	if err := WriteEnv(filepath.Join(dir, EnvFile), c.Env); err != nil {
		return nil, err
	}
	return c, nil
}

// getenv finds the database URLs of the local cloud, then the process's.
func (c *Cloud) getenv(k string) string {
	if v, ok := c.dbURLs[k]; ok {
		return v
	}
	return os.Getenv(k)
}

// EnvFile is the name of the file Start writes in its directory.
const EnvFile = "local.env"

// LogFile is the name of the file in its directory that `coalmine local up`
// sends the local cloud's logs to.
const LogFile = "local.log"

// ImagesDir is where local images are registered (runemu.WriteImage).
func ImagesDir(dir string) string { return filepath.Join(dir, "images") }

// location returns the one project and region every policy service must
// share: the Cloud Run emulator serves one of each.
func location(p *policy.Policy) (project, region string, err error) {
	for _, s := range p.Services {
		if project == "" {
			project, region = s.Project, s.Region
			continue
		}
		if s.Project != project || s.Region != region {
			return "", "", fmt.Errorf("local cloud: every service must be in one project and region; %s is in %s/%s, %s in %s/%s",
				p.Services[0].Name, project, region, s.Name, s.Project, s.Region)
		}
	}
	if project == "" {
		return "", "", errors.New("local cloud: the policy has no services")
	}
	return project, region, nil
}

// StableImage is the image each service starts with: its first allowed
// repository, at a digest derived from the service name.
func StableImage(s *policy.Service) string {
	sum := sha256.Sum256([]byte("coalmine-local-stable:" + s.Name))
	return s.Images[0] + "@sha256:" + hex.EncodeToString(sum[:])
}

func (c *Cloud) createServices(ctx context.Context, reg *runemu.Registry) error {
	svcs, err := run.NewServicesClient(ctx, c.Run.ClientOptions()...)
	if err != nil {
		return err
	}
	defer svcs.Close()
	for i := range c.Policy.Services {
		s := &c.Policy.Services[i]
		parent := fmt.Sprintf("projects/%s/locations/%s", s.Project, s.Region)
		image := StableImage(s)
		reg.Register(image, runemu.Image{})
		name := s.Container
		if name == "" {
			name = "app"
		}
		ctr := &runpb.Container{Name: name, Image: image}
		env := c.serviceEnv(s)
		for _, k := range slices.Sorted(maps.Keys(env)) {
			ctr.Env = append(ctr.Env, &runpb.EnvVar{Name: k, Values: &runpb.EnvVar_Value{Value: env[k]}})
		}
		op, err := svcs.CreateService(ctx, &runpb.CreateServiceRequest{Parent: parent, ServiceId: s.Name, Service: &runpb.Service{
			Labels:   map[string]string{"managed-by": "coalmine-local"},
			Template: &runpb.RevisionTemplate{Containers: []*runpb.Container{ctr}},
		}})
		if err != nil {
			return fmt.Errorf("local cloud: create service %s: %w", s.Name, err)
		}
		if _, err := op.Wait(ctx); err != nil {
			return fmt.Errorf("local cloud: service %s did not start: %w", s.Name, err)
		}
		c.log.Info("service ready", "service", s.Name, "image", image)
	}
	return nil
}

// functionsMux serves every function of env at /NAME, as functions-framework
// does when FUNCTION_TARGET is unset.
func functionsMux(ctx context.Context, env *release.Env) (*http.ServeMux, error) {
	mux := http.NewServeMux()
	for _, name := range slices.Sorted(maps.Keys(Functions)) {
		h, err := handler(ctx, release.Guard(env.Log, name, Functions[name](env)))
		if err != nil {
			return nil, fmt.Errorf("local cloud: function %s: %w", name, err)
		}
		mux.Handle("/"+name, h)
	}
	return mux, nil
}

// Close stops everything, in reverse order of start.
func (c *Cloud) Close() error {
	if c == nil {
		return nil
	}
	if c.stopTicks != nil {
		c.stopTicks()
	}
	var errs []error
	if c.Bridge != nil {
		errs = append(errs, c.Bridge.Close())
	}
	if c.funcs != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		errs = append(errs, c.funcs.Shutdown(sctx))
		cancel()
	}
	for i := len(c.closers) - 1; i >= 0; i-- {
		errs = append(errs, c.closers[i]())
	}
	c.closers = nil
	return errors.Join(errs...)
}

// WriteEnv writes KEY=value lines, sorted, atomically.
func WriteEnv(path string, env map[string]string) error {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(env)) {
		fmt.Fprintf(&b, "%s=%s\n", k, env[k])
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return os.Rename(tmp, path)
}

// ReadEnv reads a file of KEY=value lines (blank lines and # comments skipped).
func ReadEnv(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%s:%d: not KEY=value: %q", path, n, line)
		}
		env[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return env, sc.Err()
}
