package monitoringemu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"cloud.google.com/go/monitoring/apiv3/v2/monitoringpb"
	"google.golang.org/api/option"
	"google.golang.org/grpc"

	"github.com/ai-square/coalmine/shared/emulator"
)

// EnvEmulatorHost names the environment variable that points the product's monitoring
// client at this server (host:port).
const EnvEmulatorHost = "MONITORING_EMULATOR_HOST"

// Defaults of Options.
const (
	DefaultListen       = "127.0.0.1:0"
	DefaultSamplePeriod = 60 * time.Second
	DefaultMinAlignment = 60 * time.Second
	// FastPeriod is the sample period and minimum alignment period in fast mode.
	FastPeriod = time.Second
)

// Options configure a Server. The zero value serves Google's timing.
type Options struct {
	// Listen is the gRPC listen address (default "127.0.0.1:0").
	Listen string
	// Now is the server's clock (default time.Now). Sample periods, ingestion delays,
	// visibility and retention all use it, so tests inject a clock they advance.
	Now func() time.Time
	// Fast shortens Google's timing for demos and tests: no ingestion delay, sample
	// period and minimum alignment period of one second. No published figure may come
	// from a fast-mode server.
	Fast bool
	// SamplePeriod overrides the Cloud Run sample period (default 60s; 1s when Fast).
	SamplePeriod time.Duration
	// MinAlignment overrides the minimum alignment period ListTimeSeries accepts
	// (default 60s; 1s when Fast).
	MinAlignment time.Duration
	// RunDelay overrides Cloud Run's ingestion delay with a fixed one (nil: a
	// deterministic delay in [RunDelayMin, RunDelayMax] per series and period; 0 when
	// Fast).
	RunDelay *time.Duration
	// SQLDelay overrides Cloud SQL's ingestion delay (nil: SQLIngestDelay; 0 when Fast).
	SQLDelay *time.Duration
	// Logger receives the server's logs (default slog.Default()).
	Logger *slog.Logger
	// Publish delivers an alert notification (schema 1.2 JSON) to the Pub/Sub topic of a
	// notification channel (projects/P/topics/T), e.g. with the official Pub/Sub client.
	// It is called in order, one notification at a time. nil: incidents are still
	// opened and closed (Incidents reports them) but nothing is delivered, with one
	// warning in the log.
	Publish func(ctx context.Context, topic string, data []byte) error
	// AlertsManual turns off the background evaluation of alert policies (every 60 s of
	// the server's clock with Google's timing, every second in fast mode); the caller
	// runs EvaluateAlerts at the times it chooses.
	AlertsManual bool
}

// Server is a running Cloud Monitoring emulator: MetricService, AlertPolicyService and
// NotificationChannelService.
type Server struct {
	opts      Options
	log       *slog.Logger
	lis       net.Listener
	grpc      *grpc.Server
	now       func() time.Time
	period    time.Duration // Cloud Run sample period
	minAlign  time.Duration
	runDelay  func(runKey, time.Time) time.Duration
	sqlDelay  time.Duration
	store     *store
	run       *runStore
	ctx       context.Context // cancelled by Close
	cancel    context.CancelFunc
	wg        sync.WaitGroup // SampleEvery loops
	loops     sync.Mutex     // guards closed against wg.Add racing Close's wg.Wait
	closed    bool
	closeOnce sync.Once
	alerts    *alerting
	evalMu    sync.Mutex // one evaluation (or policy update) at a time, notifications in order
	noPublish sync.Once  // the warning that notifications are not delivered
}

// New starts a server listening on opts.Listen.
func New(opts Options) (*Server, error) {
	if opts.Listen == "" {
		opts.Listen = DefaultListen
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	period, minAlign := DefaultSamplePeriod, DefaultMinAlignment
	if opts.Fast {
		period, minAlign = FastPeriod, FastPeriod
	}
	if opts.SamplePeriod > 0 {
		period = opts.SamplePeriod
	}
	if opts.MinAlignment > 0 {
		minAlign = opts.MinAlignment
	}
	runDelay := runDelaySpread
	sqlDelay := SQLIngestDelay
	if opts.Fast {
		runDelay = func(runKey, time.Time) time.Duration { return 0 }
		sqlDelay = 0
	}
	if d := opts.RunDelay; d != nil {
		if *d < 0 {
			return nil, fmt.Errorf("cloud monitoring emulator: negative RunDelay %s", *d)
		}
		fixed := *d
		runDelay = func(runKey, time.Time) time.Duration { return fixed }
	}
	if d := opts.SQLDelay; d != nil {
		if *d < 0 {
			return nil, fmt.Errorf("cloud monitoring emulator: negative SQLDelay %s", *d)
		}
		sqlDelay = *d
	}
	lis, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		return nil, fmt.Errorf("cloud monitoring emulator: listen on %s: %w", opts.Listen, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		opts:     opts,
		log:      opts.Logger.With("component", "monitoringemu"),
		lis:      lis,
		now:      opts.Now,
		period:   period,
		minAlign: minAlign,
		runDelay: runDelay,
		sqlDelay: sqlDelay,
		store:    newStore(),
		run:      newRunStore(period),
		ctx:      ctx,
		cancel:   cancel,
		alerts:   newAlerting(),
	}
	s.grpc = grpc.NewServer()
	monitoringpb.RegisterMetricServiceServer(s.grpc, metricAPI{Server: s})
	monitoringpb.RegisterAlertPolicyServiceServer(s.grpc, alertAPI{Server: s})
	monitoringpb.RegisterNotificationChannelServiceServer(s.grpc, channelAPI{Server: s})
	go func() {
		if err := s.grpc.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			s.log.Error("grpc serve", "error", err)
		}
	}()
	msg := "cloud monitoring emulator listening with Google's timing"
	if opts.Fast {
		msg = "cloud monitoring emulator listening in fast mode (not Google's timing: no published figure may come from it)"
	}
	s.log.Info(msg, "addr", lis.Addr().String(), "fast", opts.Fast,
		"sample_period", period.String(), "min_alignment", minAlign.String(),
		"sql_delay", sqlDelay.String(), "run_delay", s.runDelayString(), "alerts_manual", opts.AlertsManual)
	if !opts.AlertsManual {
		s.wg.Add(1)
		go s.alertLoop()
	}
	return s, nil
}

func (s *Server) runDelayString() string {
	switch {
	case s.opts.RunDelay != nil:
		return s.opts.RunDelay.String()
	case s.opts.Fast:
		return "0s"
	}
	return RunDelayMin.String() + "-" + RunDelayMax.String()
}

// Addr is the gRPC address ("127.0.0.1:PORT"), for option.WithEndpoint or
// MONITORING_EMULATOR_HOST.
func (s *Server) Addr() string { return s.lis.Addr().String() }

// ClientOptions are the options that point the official client at this server:
// monitoring.NewMetricClient(ctx, srv.ClientOptions()...).
func (s *Server) ClientOptions() []option.ClientOption {
	return emulator.ClientOptions(s.Addr())
}

// Fast reports whether the server runs in fast mode (callers print it).
func (s *Server) Fast() bool { return s.opts.Fast }

// SamplePeriod is the Cloud Run sample period in use.
func (s *Server) SamplePeriod() time.Duration { return s.period }

// MinAlignment is the smallest alignment period ListTimeSeries accepts.
func (s *Server) MinAlignment() time.Duration { return s.minAlign }

// Close stops the gRPC server, the alert evaluation loop and every SampleEvery loop. It
// is safe to call more than once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.loops.Lock()
		s.closed = true
		s.loops.Unlock()
		s.cancel()
		s.grpc.Stop()
		s.wg.Wait()
		s.log.Info("cloud monitoring emulator stopped", "addr", s.Addr())
	})
	return nil
}
