// Package runemu is a local Cloud Run Admin API v2: a gRPC server for
// google.cloud.run.v2.Services, google.cloud.run.v2.Revisions and google.longrunning.Operations
// that the official client (cloud.google.com/go/run/apiv2) uses unchanged, op.Wait included.
//
// Each revision is a real local HTTP process started from an image registered in a
// Registry (by default the current executable re-run as the sample app, see
// sampleapp.RunIfChild). Each service has a front proxy on its own 127.0.0.1 port that
// splits requests across revisions by the service's traffic statuses, serves every traffic
// tag on a port of its own, and records every request per revision (Requests, OnRequest).
//
// Updates follow Cloud Run's rules where a release tool depends on them: validation,
// etag conflicts (ABORTED), explicit revision names, a revision that fails to start never
// receives traffic and fails the operation. Faults can be injected per RPC for tests.
//
// # Differences from Cloud Run
//
//   - URLs are http://127.0.0.1:PORT, one port per service and one per tag, instead of
//     https://SERVICE-HASH-REGION.a.run.app and https://TAG---SERVICE-….
//   - One process per revision, started when the revision is created and kept running
//     while the revision exists: no autoscaling, no scale to zero, no concurrency limit, no
//     restart after a crash (the revision turns not Ready and its traffic gets 503s).
//   - Readiness is "accepts TCP connections on $PORT"; startup and liveness probes,
//     resources, volumes, secrets (env value sources are skipped), VPC, IAM, sidecars (only
//     the container with a port, else the first, runs) and Container.Command/Args are
//     ignored. Images resolve by exact reference in the Registry.
//   - No server-side defaults are filled into the template (resources, concurrency,
//     timeout, service account…); an empty Traffic is stored as 100% LATEST.
//   - Every accepted update increments Generation, even when nothing changed. The etag
//     changes only with the spec (accepted updates), not with status changes.
//   - A template without an explicit revision name that equals the latest created
//     revision's template (ignoring the name) creates no revision. A template naming an
//     existing revision with the same template reuses it and makes it the latest created
//     (and latest ready, if ready) revision: that is how a rollback restores the stable
//     template. ForceNewRevision with an existing explicit name is ALREADY_EXISTS.
//   - An update whose template revision, or any traffic target, is not ready leaves
//     TrafficStatuses as they were (even targets that did not involve the failed revision)
//     and fails the operation with FAILED_PRECONDITION.
//   - Validation is stricter where the real rules were not verified: traffic targets must
//     have a type (UNSPECIFIED is rejected), reserved label/annotation namespaces are
//     rejected on every update (not only new resources), tags are DNS labels of at most 63
//     characters. Deleting the latest created revision is FAILED_PRECONDITION.
//   - Traffic statuses of LATEST targets carry no revision name (resolve with
//     LatestReadyRevision); revision names in statuses are short.
//   - UpdateMask supports only top-level Service fields; nested paths are UNIMPLEMENTED.
//   - Only the configured project id and region are served (no project numbers, no "-"
//     location). CancelOperation and the IAM methods are UNIMPLEMENTED; ListOperations
//     ignores its filter. Deleted services and revisions disappear at once (ShowDeleted is
//     ignored); done operations are kept up to Options.MaxDoneOperations.
//   - Condition reasons: the Cloud Run enums closest to the cause are set, and the
//     message starts with one of the Reason* constants of this package.
package runemu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	"cloud.google.com/go/run/apiv2/runpb"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/ai-square/coalmine/shared/emulator"
)

// Defaults of Options.
const (
	DefaultProject      = "local-project"
	DefaultRegion       = "local"
	DefaultListen       = "127.0.0.1:0"
	DefaultStartTimeout = 20 * time.Second
)

// Options configure a Server. The zero value is usable.
type Options struct {
	// Project and Region are the only project and location the server answers for
	// (defaults "local-project" and "local").
	Project, Region string
	// Registry maps image references to local programs; nil uses an empty registry
	// (see Server.Registry).
	Registry *Registry
	// Listen is the gRPC listen address (default "127.0.0.1:0").
	Listen string
	// StartTimeout bounds how long a revision process may take to accept connections
	// (default 20s).
	StartTimeout time.Duration
	// Logger receives the server's logs (default slog.Default()).
	Logger *slog.Logger
	// LogDir, when set, also appends each revision's output to LogDir/REVISION.log.
	LogDir string
	// RequestBuffer is how many proxy requests are kept per service (default 100,000).
	RequestBuffer int
	// MaxDoneOperations is how many finished operations are kept (default 1,000).
	MaxDoneOperations int
	// OperationPollHold, when positive, makes GetOperation on a pending operation wait up
	// to this long for it to finish before answering. Cloud Run answers at once (the
	// default); a hold lets op.Wait, which backs off from one second between polls,
	// return as soon as the operation is done. Meant for tests.
	OperationPollHold time.Duration
}

// Server is a running Cloud Run Admin API v2 emulator.
type Server struct {
	opts      Options
	log       *slog.Logger
	reg       *Registry
	lis       net.Listener
	grpc      *grpc.Server
	ctx       context.Context // cancelled by Close
	cancel    context.CancelFunc
	wg        sync.WaitGroup // background reconciles and deletions
	procs     *procSet
	ops       *opStore
	faults    *faultSet
	reqs      *requestLog
	transport *http.Transport
	rproxy    *httputil.ReverseProxy
	closeOnce sync.Once

	mu       sync.Mutex
	closed   bool
	seq      int64 // creation order of services and revisions
	services map[string]*service
}

// New starts a server listening on opts.Listen.
func New(opts Options) (*Server, error) {
	if opts.Project == "" {
		opts.Project = DefaultProject
	}
	if opts.Region == "" {
		opts.Region = DefaultRegion
	}
	if opts.Listen == "" {
		opts.Listen = DefaultListen
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = DefaultStartTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Registry == nil {
		opts.Registry = NewRegistry()
	}
	if opts.RequestBuffer <= 0 {
		opts.RequestBuffer = DefaultRequestBuffer
	}
	if opts.MaxDoneOperations <= 0 {
		opts.MaxDoneOperations = DefaultMaxDoneOperations
	}
	lis, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		return nil, fmt.Errorf("cloud run emulator: listen on %s: %w", opts.Listen, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		opts:     opts,
		log:      opts.Logger.With("component", "runemu"),
		reg:      opts.Registry,
		lis:      lis,
		ctx:      ctx,
		cancel:   cancel,
		procs:    &procSet{},
		ops:      newOpStore(opts.MaxDoneOperations),
		faults:   newFaultSet(),
		reqs:     newRequestLog(opts.RequestBuffer),
		services: make(map[string]*service),
		transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			MaxIdleConns:        256,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     30 * time.Second,
		},
	}
	s.rproxy = s.newReverseProxy()
	s.grpc = grpc.NewServer(grpc.ChainUnaryInterceptor(s.faults.unary))
	runpb.RegisterServicesServer(s.grpc, servicesAPI{s: s})
	runpb.RegisterRevisionsServer(s.grpc, revisionsAPI{s: s})
	longrunningpb.RegisterOperationsServer(s.grpc, operationsAPI{s: s})
	go func() {
		if err := s.grpc.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			s.log.Error("grpc serve", "error", err)
		}
	}()
	s.log.Info("cloud run emulator listening", "addr", lis.Addr().String(),
		"project", opts.Project, "region", opts.Region)
	return s, nil
}

// Addr is the gRPC address ("127.0.0.1:PORT"), for option.WithEndpoint or
// CLOUDRUN_EMULATOR_HOST.
func (s *Server) Addr() string { return s.lis.Addr().String() }

// ClientOptions are the options that point the official client at this server:
// run.NewServicesClient(ctx, srv.ClientOptions()...).
func (s *Server) ClientOptions() []option.ClientOption {
	return emulator.ClientOptions(s.Addr())
}

// Registry is the image registry revisions are started from.
func (s *Server) Registry() *Registry { return s.reg }

// Close stops the gRPC server, every front proxy and every revision process, and waits
// until all processes are reaped. It is safe to call more than once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		var eps []*endpoint
		for _, svc := range s.services {
			eps = append(eps, svc.proxy.endpoints()...)
		}
		s.mu.Unlock()
		s.cancel()
		s.grpc.Stop()
		closeEndpoints(eps)
		s.wg.Wait()
		s.procs.closeAll()
		s.transport.CloseIdleConnections()
		s.log.Info("cloud run emulator stopped", "addr", s.Addr())
	})
	return nil
}

// Service returns a snapshot of a service by id or full name, as GetService would.
func (s *Server) Service(name string) (*runpb.Service, bool) {
	id := s.serviceIDOf(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	svc, ok := s.services[id]
	if !ok {
		return nil, false
	}
	return s.snapshotLocked(svc), true
}

// Requests returns the requests kept for a service (id or full name), oldest first.
func (s *Server) Requests(service string) []Request {
	return s.reqs.list(s.serviceIDOf(service))
}

// OnRequest calls fn for every request a front proxy serves, from the proxy's goroutine
// after the response; fn must be fast and safe for concurrent use. The returned function
// unsubscribes.
func (s *Server) OnRequest(fn func(Request)) (cancel func()) {
	return s.reqs.subscribe(fn)
}

// PIDs returns the pid of every running revision process, by revision short name.
func (s *Server) PIDs() map[string]int { return s.procs.pids() }

// RevisionLogs returns the last output (stdout and stderr, up to 64 KiB) of a revision's
// process, by short or full revision name.
func (s *Server) RevisionLogs(revision string) string {
	short := revision[strings.LastIndex(revision, "/")+1:]
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, svc := range s.services {
		if rev, ok := svc.revisions[short]; ok && rev.logs != nil {
			return rev.logs.String()
		}
	}
	return ""
}

// parent is "projects/P/locations/L".
func (s *Server) parent() string {
	return "projects/" + s.opts.Project + "/locations/" + s.opts.Region
}

func (s *Server) serviceName(id string) string { return s.parent() + "/services/" + id }

func (s *Server) revisionName(serviceID, rev string) string {
	return s.serviceName(serviceID) + "/revisions/" + rev
}

// serviceIDOf accepts a service id or a full service name.
func (s *Server) serviceIDOf(name string) string {
	return name[strings.LastIndex(name, "/")+1:]
}

// checkLocation checks the project and location segments of a resource name.
func (s *Server) checkLocation(field, project, location string) error {
	if project != s.opts.Project {
		return status.Errorf(codes.NotFound, "%s: project %q is not served by this emulator (it serves %q)", field, project, s.opts.Project)
	}
	if location != s.opts.Region {
		return status.Errorf(codes.NotFound, "%s: location %q is not served by this emulator (it serves %q)", field, location, s.opts.Region)
	}
	return nil
}

// checkParent checks a "projects/P/locations/L" parent.
func (s *Server) checkParent(parent, field string) error {
	p := strings.Split(parent, "/")
	if len(p) != 4 || p[0] != "projects" || p[2] != "locations" || p[1] == "" || p[3] == "" {
		return invalid(field, "want projects/{project}/locations/{location}, got %q", parent)
	}
	return s.checkLocation(field, p[1], p[3])
}

// parseServiceName splits "projects/P/locations/L/services/S" and returns S.
func (s *Server) parseServiceName(name, field string) (string, error) {
	p := strings.Split(name, "/")
	if len(p) != 6 || p[0] != "projects" || p[2] != "locations" || p[4] != "services" || p[5] == "" {
		return "", invalid(field, "want projects/{project}/locations/{location}/services/{service}, got %q", name)
	}
	if err := s.checkLocation(field, p[1], p[3]); err != nil {
		return "", err
	}
	return p[5], nil
}

// parseRevisionName splits ".../services/S/revisions/R" and returns S and R.
func (s *Server) parseRevisionName(name string) (string, string, error) {
	p := strings.Split(name, "/")
	if len(p) != 8 || p[0] != "projects" || p[2] != "locations" || p[4] != "services" || p[6] != "revisions" || p[5] == "" || p[7] == "" {
		return "", "", invalid("name", "want projects/{project}/locations/{location}/services/{service}/revisions/{revision}, got %q", name)
	}
	if err := s.checkLocation("name", p[1], p[3]); err != nil {
		return "", "", err
	}
	return p[5], p[7], nil
}

// paginate returns one page of items; the token is the offset of the page.
func paginate[T any](items []T, pageSize int32, token string) ([]T, string, error) {
	const defaultPageSize, maxPageSize = 100, 1000
	size := int(pageSize)
	if size <= 0 {
		size = defaultPageSize
	}
	size = min(size, maxPageSize)
	start := 0
	if token != "" {
		n, err := strconv.Atoi(token)
		if err != nil || n < 0 || n > len(items) {
			return nil, "", invalid("page_token", "invalid page token %q", token)
		}
		start = n
	}
	end := min(start+size, len(items))
	next := ""
	if end < len(items) {
		next = strconv.Itoa(end)
	}
	return items[start:end], next, nil
}

// cloneAll deep-copies a slice of messages.
func cloneAll[M proto.Message](in []M) []M {
	if in == nil {
		return nil
	}
	out := make([]M, len(in))
	for i, m := range in {
		out[i] = proto.CloneOf(m)
	}
	return out
}
