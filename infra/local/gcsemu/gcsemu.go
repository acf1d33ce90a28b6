// Package gcsemu runs the Cloud Storage server of the local cloud: the
// embedded fake-gcs-server (github.com/fsouza/fake-gcs-server/fakestorage)
// behind a small shim on its own port.
//
// The shim exists because fake-gcs-server v1.56.1 ignores preconditions on
// objects.rewrite and objects.copy (its rewrite handler stores the
// destination with no conditions at all), while the backup's idempotence
// rests on them: a copy made with DoesNotExist must answer 412 the second
// time. The shim checks ifGenerationMatch and ifGenerationNotMatch on the
// destination of
//
//	POST /storage/v1/b/{b}/o/{o}/rewriteTo/b/{b2}/o/{o2}
//	POST /storage/v1/b/{b}/o/{o}/copyTo/b/{b2}/o/{o2}
//
// and answers 412 with a Google-shaped JSON error body when they do not hold;
// it serialises rewrites per destination so the check and the write are
// atomic. Every other request passes through unchanged (uploads already
// honour ifGenerationMatch in fake-gcs-server).
//
// The shim also counts requests (Counters), adds an optional latency to every
// request (for benchmarks), and injects faults for tests: SetDown makes every
// request answer 503, CorruptObject changes an object's bytes in place.
//
// Point the official client at the server with Client, or with
// STORAGE_EMULATOR_HOST=Host() for code that builds its own client.
package gcsemu

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"cloud.google.com/go/storage"
	"github.com/fsouza/fake-gcs-server/fakestorage"
	"google.golang.org/api/option"
)

// EnvEmulatorHost is the environment variable the Cloud Storage client
// library reads to talk to an emulator instead of the real service.
const EnvEmulatorHost = "STORAGE_EMULATOR_HOST"

// Options configures Start.
type Options struct {
	// Listen is the address the shim listens on; empty means 127.0.0.1:0
	// (a free port).
	Listen string
	// Latency is added to every request before it is handled, to make
	// benchmarks behave like a remote service. Zero means none. SetLatency
	// changes it later.
	Latency time.Duration
	// Logger receives lifecycle messages and the shim's decisions (412s,
	// faults) at debug level. Nil means slog.Default().
	Logger *slog.Logger
}

// Server is a running local Cloud Storage: fake-gcs-server behind the shim.
type Server struct {
	fake     *fakestorage.Server
	fakeHTTP http.Handler
	ln       net.Listener
	srv      *http.Server
	host     string
	logger   *slog.Logger

	latency  atomic.Int64 // time.Duration
	down     atomic.Bool
	counters Counters

	// locks serialise rewrites per destination object (striped), so the
	// precondition check and the write cannot interleave with another
	// rewrite of the same destination.
	locks [64]sync.Mutex
}

// Start starts fake-gcs-server (in process, no listener of its own) and the
// shim in front of it, listening on o.Listen.
func Start(o Options) (*Server, error) {
	logger := o.Logger
	if logger == nil {
		logger = slog.Default()
	}
	listen := o.Listen
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("gcsemu: listen on %s: %w", listen, err)
	}
	host := ln.Addr().String()
	fake, err := fakestorage.NewServerWithOptions(fakestorage.Options{
		Scheme:     "http",
		NoListener: true,
		// The client's default XML reads go to http://HOST/bucket/object;
		// fake-gcs-server routes those only when the Host header is its
		// public host. Location headers of resumable uploads use the
		// request's Host, which is the shim's.
		PublicHost:  host,
		ExternalURL: "http://" + host,
	})
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("gcsemu: start fake-gcs-server: %w", err)
	}
	s := &Server{
		fake:     fake,
		fakeHTTP: fake.HTTPHandler(),
		ln:       ln,
		host:     host,
		logger:   logger,
	}
	s.counters.rewrites = map[string]int{}
	s.latency.Store(int64(o.Latency))
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("gcsemu: serve", "err", err)
		}
	}()
	logger.Info("gcsemu: local Cloud Storage started", "host", host, "latency", o.Latency.String())
	return s, nil
}

// Host is the shim's host:port, the value for STORAGE_EMULATOR_HOST.
func (s *Server) Host() string { return s.host }

// URL is the shim's base URL, http://Host().
func (s *Server) URL() string { return "http://" + s.host }

// Client returns an official Cloud Storage client pointed at the shim,
// without credentials. It does not depend on STORAGE_EMULATOR_HOST. The
// caller closes it.
func (s *Server) Client(ctx context.Context) (*storage.Client, error) {
	c, err := storage.NewClient(ctx,
		option.WithEndpoint(s.URL()+"/storage/v1/"),
		option.WithoutAuthentication(),
	)
	if err != nil {
		return nil, fmt.Errorf("gcsemu: storage client: %w", err)
	}
	return c, nil
}

// Fake returns the embedded fake-gcs-server. Calls on it bypass the shim:
// no latency, no counters, no preconditions on rewrite.
func (s *Server) Fake() *fakestorage.Server { return s.fake }

// Counters returns the shim's request counters.
func (s *Server) Counters() *Counters { return &s.counters }

// SetLatency changes the latency added to every request.
func (s *Server) SetLatency(d time.Duration) { s.latency.Store(int64(d)) }

// SetDown makes every request answer 503 (down = true), as if storage were
// unreachable, until SetDown(false).
func (s *Server) SetDown(down bool) {
	s.down.Store(down)
	s.logger.Debug("gcsemu: down", "down", down)
}

// CorruptObject changes the bytes of an object in place: same name, same
// generation, same size, every byte inverted (an empty object gains one
// byte). Like bit rot on disk, it keeps the object's stored attributes
// (CRC32C, MD5, size) stale, so only reading the bytes reveals it; the
// client's own CRC check on reads fails for it too. fake-gcs-server itself
// would recompute the checksums on any write through its API, so this goes
// to its storage backend directly.
func (s *Server) CorruptObject(bucket, name string) error {
	be := s.fake.Backend()
	obj, err := be.GetObject(bucket, name)
	if err != nil {
		return fmt.Errorf("gcsemu: corrupt gs://%s/%s: %w", bucket, name, err)
	}
	data, err := io.ReadAll(obj.Content)
	obj.Close()
	if err != nil {
		return fmt.Errorf("gcsemu: corrupt gs://%s/%s: read: %w", bucket, name, err)
	}
	if len(data) == 0 {
		data = []byte{0xff}
	} else {
		for i := range data {
			data[i] = ^data[i]
		}
	}
	// Crc32c, Md5Hash, Etag and Size stay set, so the backend keeps them;
	// the same Generation makes it replace that generation in place.
	obj.Content = nopCloser{bytes.NewReader(data)}
	created, err := be.CreateObject(obj, anyGeneration{})
	if err != nil {
		return fmt.Errorf("gcsemu: corrupt gs://%s/%s: write: %w", bucket, name, err)
	}
	created.Close()
	s.logger.Debug("gcsemu: corrupted object", "bucket", bucket, "object", name)
	return nil
}

// Close stops the shim and fake-gcs-server.
func (s *Server) Close() error {
	err := s.srv.Close()
	s.fake.Stop()
	if err != nil {
		return fmt.Errorf("gcsemu: close: %w", err)
	}
	return nil
}

// Counters counts what the shim saw. The zero value is not usable; get it
// from Server.Counters. Safe for concurrent use.
type Counters struct {
	mu       sync.Mutex
	requests int
	failed   int
	rewrites map[string]int
}

// Rewrites is the number of rewrite or copy requests that named dstObject
// (an object name, in any bucket) as their destination and reached storage
// (not refused by SetDown), including those refused with 412.
func (c *Counters) Rewrites(dstObject string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rewrites[dstObject]
}

// RewrittenObjects is the number of distinct destination objects counted by
// Rewrites.
func (c *Counters) RewrittenObjects() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.rewrites)
}

// PreconditionFailures is the number of 412 answers, from the shim's rewrite
// checks and from fake-gcs-server itself (uploads).
func (c *Counters) PreconditionFailures() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.failed
}

// Requests is the number of requests the shim received, including those
// answered 503 by SetDown.
func (c *Counters) Requests() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.requests
}

// Reset sets every counter to zero.
func (c *Counters) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.requests, c.failed = 0, 0
	c.rewrites = map[string]int{}
}

func (c *Counters) addRequest() {
	c.mu.Lock()
	c.requests++
	c.mu.Unlock()
}

func (c *Counters) addRewrite(dst string) {
	c.mu.Lock()
	c.rewrites[dst]++
	c.mu.Unlock()
}

func (c *Counters) addPreconditionFailure() {
	c.mu.Lock()
	c.failed++
	c.mu.Unlock()
}

// rewritePath matches the escaped path of objects.rewrite and objects.copy,
// as fake-gcs-server's router does.
var rewritePath = regexp.MustCompile(`^/storage/v1/b/([^/]+)/o/(.+)/(rewriteTo|copyTo)/b/([^/]+)/o/(.+)$`)

// ServeHTTP is the shim: latency, faults, rewrite preconditions, counters,
// then fake-gcs-server.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.counters.addRequest()
	if d := time.Duration(s.latency.Load()); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	if s.down.Load() {
		writeError(w, http.StatusServiceUnavailable, "backendError", "gcsemu: storage is down (SetDown)")
		return
	}
	rec := &statusRecorder{ResponseWriter: w}
	if r.Method == http.MethodPost {
		if m := rewritePath.FindStringSubmatch(r.URL.EscapedPath()); m != nil {
			s.serveRewrite(rec, r, unescape(m[4]), unescape(m[5]))
			s.countStatus(rec)
			return
		}
	}
	s.fakeHTTP.ServeHTTP(rec, r)
	s.countStatus(rec)
}

func (s *Server) countStatus(rec *statusRecorder) {
	if rec.status == http.StatusPreconditionFailed {
		s.counters.addPreconditionFailure()
	}
}

// serveRewrite enforces the destination preconditions of a rewrite or copy,
// then passes it to fake-gcs-server.
func (s *Server) serveRewrite(w http.ResponseWriter, r *http.Request, bucket, name string) {
	s.counters.addRewrite(name)
	lock := &s.locks[stripe(bucket+"/"+name, len(s.locks))]
	lock.Lock()
	defer lock.Unlock()

	q := r.URL.Query()
	match, hasMatch, err := intParam(q, "ifGenerationMatch")
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid", err.Error())
		return
	}
	notMatch, hasNotMatch, err := intParam(q, "ifGenerationNotMatch")
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid", err.Error())
		return
	}
	if hasMatch || hasNotMatch {
		var gen int64 // 0 = does not exist
		if obj, err := s.fake.GetObjectStreaming(bucket, name); err == nil {
			gen = obj.Generation
			obj.Close()
		}
		if (hasMatch && gen != match) || (hasNotMatch && gen == notMatch) {
			s.logger.Debug("gcsemu: rewrite precondition failed",
				"bucket", bucket, "object", name, "generation", gen,
				"ifGenerationMatch", q.Get("ifGenerationMatch"), "ifGenerationNotMatch", q.Get("ifGenerationNotMatch"))
			writeError(w, http.StatusPreconditionFailed, "conditionNotMet",
				"At least one of the pre-conditions you specified did not hold.")
			return
		}
	}
	s.fakeHTTP.ServeHTTP(w, r)
}

func intParam(q url.Values, key string) (v int64, ok bool, err error) {
	s := q.Get(key)
	if s == "" {
		return 0, false, nil
	}
	v, err = strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("invalid %s %q", key, s)
	}
	return v, true, nil
}

func unescape(s string) string {
	if u, err := url.PathUnescape(s); err == nil {
		return u
	}
	return s
}

func stripe(key string, n int) int {
	h := fnv.New32a()
	h.Write([]byte(key))
	return int(h.Sum32() % uint32(n))
}

// writeError answers in the JSON error shape of the Cloud Storage JSON API,
// which the client library decodes into *googleapi.Error.
func writeError(w http.ResponseWriter, code int, reason, message string) {
	type item struct {
		Domain       string `json:"domain"`
		Reason       string `json:"reason"`
		Message      string `json:"message"`
		LocationType string `json:"locationType,omitempty"`
		Location     string `json:"location,omitempty"`
	}
	it := item{Domain: "global", Reason: reason, Message: message}
	if code == http.StatusPreconditionFailed {
		it.LocationType, it.Location = "header", "If-Match"
	}
	body := map[string]any{"error": map[string]any{
		"code":    code,
		"message": message,
		"errors":  []item{it},
	}}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(body)
}

// statusRecorder remembers the status code written through it.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// anyGeneration satisfies fake-gcs-server's backend.Conditions: no
// precondition.
type anyGeneration struct{}

func (anyGeneration) ConditionsMet(int64) bool { return true }

type nopCloser struct{ io.ReadSeeker }

func (nopCloser) Close() error { return nil }
