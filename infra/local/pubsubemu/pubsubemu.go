// Package pubsubemu runs the Pub/Sub server of the local cloud: the embedded
// pstest fake, Google's Pub/Sub emulator (started through gcloud), or an
// already running server named by PUBSUB_EMULATOR_HOST. It also creates the
// coalmine topology (topics and subscriptions) on such a server.
package pubsubemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/v2/pstest"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Backend selects which Pub/Sub server Start provides.
type Backend string

const (
	// BackendPstest is the in-process fake from
	// cloud.google.com/go/pubsub/v2/pstest, listening on 127.0.0.1. It has no
	// push delivery, ignores retry policies and mishandles dead-letter
	// policies (see shared/reference/gcp/09); the bridge works around all three.
	BackendPstest Backend = "pstest"
	// BackendGcloud is Google's Pub/Sub emulator, started as a subprocess with
	// `gcloud beta emulators pubsub start` on a free 127.0.0.1 port and a
	// temporary data directory. Startup takes a few seconds (it is a Java
	// server). See GcloudAvailable.
	BackendGcloud Backend = "gcloud"
	// BackendExternal is a server that is already running, at Options.Host or
	// $PUBSUB_EMULATOR_HOST. Close leaves it running.
	BackendExternal Backend = "external"
)

// EnvEmulatorHost is the environment variable the Google client libraries
// read to talk to a Pub/Sub emulator instead of the real service.
const EnvEmulatorHost = "PUBSUB_EMULATOR_HOST"

// Options configures Start.
type Options struct {
	// Backend is the server to provide. Empty means BackendExternal when
	// $PUBSUB_EMULATOR_HOST is set, BackendPstest otherwise.
	Backend Backend
	// Host is the host:port of the server for BackendExternal; empty means
	// $PUBSUB_EMULATOR_HOST. Ignored by the other backends.
	Host string
	// Logger receives lifecycle messages, and the gcloud emulator's output at
	// debug level. Nil means slog.Default().
	Logger *slog.Logger
}

// gcloudStartTimeout bounds how long Start waits for Google's emulator to
// answer ListTopics.
const gcloudStartTimeout = 90 * time.Second

// Server is a running Pub/Sub server. Point clients at it with Host (as
// PUBSUB_EMULATOR_HOST) or ClientOptions.
type Server struct {
	backend Backend
	host    string
	logger  *slog.Logger

	pst *pstest.Server // BackendPstest

	// BackendGcloud
	cmd     *exec.Cmd
	exited  chan struct{} // closed when cmd has been waited for
	dataDir string
	output  *lineLogger

	closeOnce sync.Once
	closeErr  error
}

// Start starts (or, for BackendExternal, connects to) a Pub/Sub server and
// returns once it answers API calls. ctx bounds the startup only; the server
// runs until Close.
func Start(ctx context.Context, o Options) (*Server, error) {
	logger := o.Logger
	if logger == nil {
		logger = slog.Default()
	}
	backend := o.Backend
	if backend == "" {
		backend = BackendPstest
		if os.Getenv(EnvEmulatorHost) != "" {
			backend = BackendExternal
		}
	}
	logger = logger.With("backend", string(backend))
	switch backend {
	case BackendPstest:
		return startPstest(logger)
	case BackendGcloud:
		return startGcloud(ctx, logger)
	case BackendExternal:
		host := o.Host
		if host == "" {
			host = os.Getenv(EnvEmulatorHost)
		}
		if host == "" {
			return nil, fmt.Errorf("pubsubemu: backend %q needs Options.Host or $%s", backend, EnvEmulatorHost)
		}
		if err := waitReady(ctx, host, 10*time.Second, nil); err != nil {
			return nil, fmt.Errorf("pubsubemu: external server %s: %w", host, err)
		}
		logger.Info("using external Pub/Sub server", "host", host)
		return &Server{backend: backend, host: host, logger: logger}, nil
	default:
		return nil, fmt.Errorf("pubsubemu: unknown backend %q (want %q, %q or %q)", backend, BackendPstest, BackendGcloud, BackendExternal)
	}
}

func startPstest(logger *slog.Logger) (s *Server, err error) {
	// pstest panics when it cannot listen.
	defer func() {
		if r := recover(); r != nil {
			s, err = nil, fmt.Errorf("pubsubemu: starting pstest: %v", r)
		}
	}()
	pst := pstest.NewServerWithAddress("127.0.0.1:0")
	logger.Info("pstest Pub/Sub server started", "host", pst.Addr)
	return &Server{backend: BackendPstest, host: pst.Addr, logger: logger, pst: pst}, nil
}

func startGcloud(ctx context.Context, logger *slog.Logger) (*Server, error) {
	if !GcloudAvailable() {
		return nil, errors.New("pubsubemu: gcloud or its pubsub-emulator component is not installed")
	}
	// The free port can be taken between probing and the emulator binding
	// it; try a few ports before giving up.
	var lastErr error
	for range 3 {
		s, err := startGcloudOnce(ctx, logger)
		if err == nil {
			return s, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, lastErr
}

func startGcloudOnce(ctx context.Context, logger *slog.Logger) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("pubsubemu: finding a free port: %w", err)
	}
	host := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	dir, err := os.MkdirTemp("", "pubsubemu-")
	if err != nil {
		return nil, fmt.Errorf("pubsubemu: %w", err)
	}
	out := &lineLogger{logger: logger}
	cmd := exec.Command("gcloud", "beta", "emulators", "pubsub", "start",
		"--host-port="+host, "--data-dir="+dir, "--quiet")
	cmd.Stdout, cmd.Stderr = out, out
	setProcessGroup(cmd)
	if err := cmd.Start(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("pubsubemu: starting gcloud emulator: %w", err)
	}
	s := &Server{
		backend: BackendGcloud, host: host, logger: logger,
		cmd: cmd, exited: make(chan struct{}), dataDir: dir, output: out,
	}
	go func() {
		_ = cmd.Wait()
		out.flush()
		close(s.exited)
	}()
	start := time.Now()
	if err := waitReady(ctx, host, gcloudStartTimeout, s.exited); err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("pubsubemu: gcloud emulator on %s: %w; output:\n%s", host, err, out.tail())
	}
	logger.Info("gcloud Pub/Sub emulator started", "host", host, "pid", cmd.Process.Pid,
		"startup", time.Since(start).Round(time.Millisecond))
	return s, nil
}

// waitReady polls host with ListTopics until it answers, timeout passes, ctx
// is done or exited is closed.
func waitReady(ctx context.Context, host string, timeout time.Duration, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := grpc.NewClient(host, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	pub := pubsubpb.NewPublisherClient(conn)
	var lastErr error
	for {
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := pub.ListTopics(pctx, &pubsubpb.ListTopicsRequest{Project: "projects/pubsubemu-probe"})
		pcancel()
		if err == nil {
			return nil
		}
		lastErr = err
		select {
		case <-exited:
			return errors.New("process exited before the server answered")
		case <-ctx.Done():
			return fmt.Errorf("not ready: %w (last error: %v)", ctx.Err(), lastErr)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Backend returns the backend the server runs.
func (s *Server) Backend() Backend { return s.backend }

// Host returns the server's host:port, the value for PUBSUB_EMULATOR_HOST.
func (s *Server) Host() string { return s.host }

// ClientOptions returns the options that point a Google API client at the
// server: its endpoint, no authentication and plaintext gRPC.
func (s *Server) ClientOptions() []option.ClientOption {
	return []option.ClientOption{
		option.WithEndpoint(s.host),
		option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
		option.WithTelemetryDisabled(),
	}
}

// NewClient returns a Pub/Sub client for project connected to the server.
func (s *Server) NewClient(ctx context.Context, project string) (*pubsub.Client, error) {
	return pubsub.NewClient(ctx, project, s.ClientOptions()...)
}

// Close stops the server: pstest is shut down, the gcloud emulator's whole
// process group is terminated (killed if it does not exit within a few
// seconds) and its data directory removed. An external server is left
// running. Close is idempotent.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		switch s.backend {
		case BackendPstest:
			s.closeErr = s.pst.Close()
		case BackendGcloud:
			s.closeErr = s.stopGcloud()
		}
		s.logger.Info("Pub/Sub server closed", "host", s.host)
	})
	return s.closeErr
}

func (s *Server) stopGcloud() error {
	p := s.cmd.Process
	killProcessGroup(p, false)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		s.logger.Warn("gcloud emulator ignored SIGTERM; killing it", "pid", p.Pid)
	}
	// gcloud may exit before its Java child; make sure nothing of the group
	// survives.
	deadline := time.Now().Add(5 * time.Second)
	for groupAlive(p) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	var err error
	if groupAlive(p) {
		killProcessGroup(p, true)
	}
	select {
	case <-s.exited:
	case <-time.After(5 * time.Second):
		err = fmt.Errorf("pubsubemu: gcloud emulator (pid %d) did not exit", p.Pid)
	}
	if rerr := os.RemoveAll(s.dataDir); rerr != nil && err == nil {
		err = rerr
	}
	return err
}

// GcloudAvailable reports whether gcloud is on PATH with the beta and
// pubsub-emulator components installed, so BackendGcloud can start. The
// answer is computed once and cached.
func GcloudAvailable() bool { return gcloudAvailable() }

var gcloudAvailable = sync.OnceValue(func() bool {
	path, err := exec.LookPath("gcloud")
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "components", "list",
		"--only-local-state", "--format=value(id)", "--quiet").Output()
	if err == nil {
		ids := strings.Fields(string(out))
		return containsAll(ids, "pubsub-emulator", "beta")
	}
	// Package-manager installs disable the component manager; look for the
	// emulator in the SDK directly.
	out, err = exec.CommandContext(ctx, path, "info", "--format=value(installation.sdk_root)", "--quiet").Output()
	if err != nil {
		return false
	}
	root := strings.TrimSpace(string(out))
	_, err = os.Stat(filepath.Join(root, "platform", "pubsub-emulator", "bin", "cloud-pubsub-emulator"))
	return root != "" && err == nil
})

func containsAll(have []string, want ...string) bool {
	for _, w := range want {
		found := false
		for _, h := range have {
			if h == w {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// lineLogger is an io.Writer that logs each line at debug level and keeps the
// last lines for error messages.
type lineLogger struct {
	logger *slog.Logger

	mu      sync.Mutex
	partial []byte
	last    []string
}

const keepLines = 30

func (l *lineLogger) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		l.line(string(l.partial[:i]))
		l.partial = l.partial[i+1:]
	}
	return len(p), nil
}

func (l *lineLogger) line(s string) {
	s = strings.TrimRight(s, "\r")
	l.logger.Debug("gcloud emulator", "line", s)
	l.last = append(l.last, s)
	if len(l.last) > keepLines {
		l.last = l.last[len(l.last)-keepLines:]
	}
}

func (l *lineLogger) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.partial) > 0 {
		l.line(string(l.partial))
		l.partial = nil
	}
}

func (l *lineLogger) tail() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.last, "\n")
}
