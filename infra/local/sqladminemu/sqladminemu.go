// Package sqladminemu is a local Cloud SQL Admin API v1: an HTTP server that speaks the REST
// subset coalmine's Cloud SQL backup driver uses, so that the official client
// (google.golang.org/api/sqladmin/v1) works against it unchanged:
//
//	POST /v1/projects/{project}/instances/{instance}/export   sql.instances.export
//	POST /v1/projects/{project}/instances/{instance}/import   sql.instances.import
//	GET  /v1/projects/{project}/operations/{operation}        sql.operations.get
//	GET  /v1/projects/{project}/operations?instance=&maxResults=&pageToken=
//	                                                           sql.operations.list
//
// Responses are Google's JSON shapes: operations are marshalled from the official
// sqladmin.Operation type (kind sql#operation, name, status, operationType, targetId,
// targetProject, targetLink, selfLink, user, insertTime/startTime/endTime,
// exportContext/importContext, error.errors[]), and request errors carry Google's error body
// ({"error":{"code":…,"message":…,"errors":[{"domain":"global","reason":…,"message":…}]}}).
//
// Behaviour that a backup driver depends on:
//
//   - One administrative operation per instance: an export or import while another operation
//     of the instance is not DONE is refused with HTTP 409, reason operationInProgress.
//   - An operation goes PENDING → RUNNING → DONE over Options.Duration, or is held until
//     Release when the test called Hold.
//   - What an export or import does is pluggable (Options.Export, Options.Import); an export
//     whose func fails, or whose object already exists (Options.Exists), still returns a
//     PENDING operation from the request, and the operation ends DONE with error.errors[]
//     set: failure is reported at operation level, as Cloud SQL does.
//   - Faults can be injected per request (FailNext, FailNextOn) and requests are counted
//     (Calls).
//
// # Differences from Cloud SQL (what is assumed, not verified)
//
//   - Verified against sqladmin-gen.go v0.312.0: paths, HTTP methods, query parameters, JSON
//     field names, status and operation type values. Operations.List has no filter
//     parameter in v1: the client sends instance, maxResults and pageToken only.
//   - Reported by users, not verified: the 409 operationInProgress body ("Operation failed
//     because another operation was already in progress. …") and 404 instanceDoesNotExist
//     ("The Cloud SQL instance does not exist.").
//   - Assumed: the operation error codes (CodeRDBMS, CodeExportFailed, CodeImportFailed) and
//     their messages; 404 operationDoesNotExist for an unknown operation; 400 invalid for
//     the request checks below; the default and largest page size; the page token format; that a list
//     is ordered newest first by insertion (Google documents "reverse chronological order of
//     the start time").
//   - Only fileType SQL is accepted, an export must name exactly one database (Cloud SQL for
//     PostgreSQL exports all databases only in parallel directory exports), and the uri must
//     be gs://bucket/object. Other request fields are echoed in the operation's context but
//     have no effect. The location, fields and alt parameters are ignored, and there is no
//     authentication.
//   - Operations are kept in memory for the life of the server; Operations.Cancel, backups
//     and every other resource are not served (404).
package sqladminemu

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	sqladmin "google.golang.org/api/sqladmin/v1"
)

// Defaults of Options.
const (
	DefaultProject  = "local-project"
	DefaultInstance = "local-db"
	DefaultDuration = 200 * time.Millisecond
	DefaultPageSize = 100
	DefaultListen   = "127.0.0.1:0"
)

// Method names for Calls and FailNextOn: the RPC ids of the official client.
const (
	MethodExport         = "sql.instances.export"
	MethodImport         = "sql.instances.import"
	MethodGetOperation   = "sql.operations.get"
	MethodListOperations = "sql.operations.list"
)

// Operation error codes set in error.errors[].code. They are plausible, NOT verified
// against Cloud SQL: callers must not depend on them.
const (
	// CodeRDBMS: the database side of an export or import failed (Options.Export or
	// Options.Import returned an error).
	CodeRDBMS = "ERROR_RDBMS"
	// CodeExportFailed: the export's object already exists.
	CodeExportFailed = "EXPORT_FAILED"
	// CodeImportFailed: the import's object does not exist.
	CodeImportFailed = "IMPORT_FAILED"
)

// Reasons used in request error bodies (errors[].reason).
const (
	ReasonOperationInProgress   = "operationInProgress"
	ReasonInstanceDoesNotExist  = "instanceDoesNotExist"
	ReasonOperationDoesNotExist = "operationDoesNotExist"
	ReasonInvalid               = "invalid"
	ReasonNotFound              = "notFound"
)

// msgInProgress is the message users report for a refused concurrent operation.
const msgInProgress = "Operation failed because another operation was already in progress. " +
	"Try your request after the current operation is complete."

// Options configure a Server.
type Options struct {
	// Instances served, each "project:instance"; default "local-project:local-db".
	Instances []string
	// Duration is how long an operation takes from insertion to DONE (a quarter of it
	// PENDING, the rest RUNNING), at least as long as its Export or Import func runs;
	// default 200ms.
	Duration time.Duration
	// Export performs an export; instance is "project:instance" as in Instances. It runs
	// while the operation is RUNNING, with a context cancelled by Close; an error ends the
	// operation DONE with a CodeRDBMS error. Nil: writes nothing and succeeds.
	Export func(ctx context.Context, instance, database, uri string) error
	// Import performs an import, like Export. Nil: does nothing and succeeds.
	Import func(ctx context.Context, instance, database, uri string) error
	// Exists reports whether the object at uri exists: an export to an existing object
	// fails (CodeExportFailed), an import of a missing one fails (CodeImportFailed). Nil:
	// the objects this server exported successfully exist, no other.
	Exists func(uri string) bool
	// PageSize is the largest list page: the page size when the request sets no
	// maxResults, and the cap on maxResults (default 100).
	PageSize int
	// Listen is the TCP address to listen on (default 127.0.0.1:0).
	Listen string
}

// Server is a running local Cloud SQL Admin API. Its methods are safe for concurrent use.
type Server struct {
	opts   Options
	ln     net.Listener
	srv    *http.Server
	url    string
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once

	mu        sync.Mutex
	closed    bool
	instances map[string]*instance  // by "project:instance"
	ops       map[string]*operation // by "project/name"
	seq       int64
	exported  map[string]bool
	faults    []fault
	calls     map[string]int
	gate      chan struct{} // closed while not held
}

type instance struct {
	project, id string
	running     *operation
}

type operation struct {
	seq      int64
	inst     *instance
	op       *sqladmin.Operation
	inserted time.Time
	database string
	uri      string
}

type fault struct {
	method string // "" for any
	code   int
	reason string
}

// Start starts a server on o.Listen.
func Start(o Options) (*Server, error) {
	if o.Duration <= 0 {
		o.Duration = DefaultDuration
	}
	if o.PageSize <= 0 {
		o.PageSize = DefaultPageSize
	}
	if o.Listen == "" {
		o.Listen = DefaultListen
	}
	if len(o.Instances) == 0 {
		o.Instances = []string{DefaultProject + ":" + DefaultInstance}
	}
	s := &Server{
		opts:      o,
		instances: make(map[string]*instance),
		ops:       make(map[string]*operation),
		exported:  make(map[string]bool),
		calls:     make(map[string]int),
		gate:      make(chan struct{}),
	}
	close(s.gate)
	for _, pi := range o.Instances {
		p, i, ok := strings.Cut(pi, ":")
		if !ok || p == "" || i == "" || strings.Contains(i, ":") {
			return nil, fmt.Errorf("sqladminemu: instance %q is not project:instance", pi)
		}
		s.instances[pi] = &instance{project: p, id: i}
	}
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return nil, fmt.Errorf("sqladminemu: listen: %w", err)
	}
	s.ln = ln
	s.url = "http://" + ln.Addr().String() + "/"
	s.ctx, s.cancel = context.WithCancel(context.Background())

	mux := http.NewServeMux()
	mux.Handle("POST /v1/projects/{project}/instances/{instance}/export", s.handle(MethodExport, s.export))
	mux.Handle("POST /v1/projects/{project}/instances/{instance}/import", s.handle(MethodImport, s.importOp))
	mux.Handle("GET /v1/projects/{project}/operations/{operation}", s.handle(MethodGetOperation, s.getOp))
	mux.Handle("GET /v1/projects/{project}/operations", s.handle(MethodListOperations, s.listOps))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, ReasonNotFound,
			fmt.Sprintf("%s %s is not served by the local Cloud SQL Admin API.", r.Method, r.URL.Path))
	})
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go s.srv.Serve(ln) //nolint:errcheck // returns ErrServerClosed at Close
	return s, nil
}

// URL is the API root ("http://127.0.0.1:PORT/"), for option.WithEndpoint together with
// option.WithoutAuthentication.
func (s *Server) URL() string { return s.url }

// Close stops the server: operations not DONE stay as they are, running Export and Import
// funcs see their context cancelled, and Close waits for them.
func (s *Server) Close() error {
	var err error
	s.once.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.cancel()
		err = s.srv.Close()
		s.wg.Wait()
	})
	return err
}

// Hold keeps operations from starting their work and from finishing: they stay RUNNING
// until Release.
func (s *Server) Hold() {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.gate:
		s.gate = make(chan struct{})
	default: // already held
	}
}

// Release lets held operations proceed.
func (s *Server) Release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.gate:
	default:
		close(s.gate)
	}
}

// FailNext makes the next request, whatever its method, fail with HTTP status code and
// Google's error body with the given reason. Faults queue up in the order injected.
func (s *Server) FailNext(code int, reason string) { s.FailNextOn("", code, reason) }

// FailNextOn makes the next request of method (Method*) fail like FailNext.
func (s *Server) FailNextOn(method string, code int, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, fault{method: method, code: code, reason: reason})
}

// Calls is how many requests of method (Method*) the server received, failed ones
// included.
func (s *Server) Calls(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[method]
}

// handle counts the call and applies a queued fault before h.
func (s *Server) handle(method string, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.calls[method]++
		var f *fault
		for i := range s.faults {
			if s.faults[i].method == "" || s.faults[i].method == method {
				ff := s.faults[i]
				f = &ff
				s.faults = append(s.faults[:i], s.faults[i+1:]...)
				break
			}
		}
		s.mu.Unlock()
		if f != nil {
			msg := "Injected fault."
			if f.reason == ReasonOperationInProgress {
				msg = msgInProgress
			}
			writeError(w, f.code, f.reason, msg)
			return
		}
		h(w, r)
	})
}

// writeError writes Google's JSON error body.
func writeError(w http.ResponseWriter, code int, reason, msg string) {
	type item struct {
		Domain  string `json:"domain"`
		Reason  string `json:"reason"`
		Message string `json:"message"`
	}
	type body struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Errors  []item `json:"errors"`
	}
	b, _ := json.Marshal(map[string]body{"error": {Code: code, Message: msg,
		Errors: []item{{Domain: "global", Reason: reason, Message: msg}}}})
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(code)
	w.Write(b) //nolint:errcheck // the client went away
}

func invalid(w http.ResponseWriter, format string, args ...any) {
	writeError(w, http.StatusBadRequest, ReasonInvalid, "Invalid request: "+fmt.Sprintf(format, args...))
}

func instanceNotFound(w http.ResponseWriter) {
	writeError(w, http.StatusNotFound, ReasonInstanceDoesNotExist, "The Cloud SQL instance does not exist.")
}

// timestamp formats t as Cloud SQL does (RFC 3339, UTC, milliseconds).
func timestamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// newName returns a random UUID, the shape of Cloud SQL operation names.
func newName() string {
	var b [16]byte
	rand.Read(b[:]) //nolint:errcheck // never fails
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// validURI reports whether uri is gs://bucket/object.
func validURI(uri string) bool {
	rest, ok := strings.CutPrefix(uri, "gs://")
	if !ok {
		return false
	}
	bucket, object, ok := strings.Cut(rest, "/")
	return ok && bucket != "" && object != ""
}

func (s *Server) export(w http.ResponseWriter, r *http.Request) {
	var req sqladmin.InstancesExportRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		invalid(w, "body is not an InstancesExportRequest: %v", err)
		return
	}
	key := r.PathValue("project") + ":" + r.PathValue("instance")
	if !s.knownInstance(key) {
		instanceNotFound(w)
		return
	}
	ec := req.ExportContext
	switch {
	case ec == nil:
		invalid(w, "exportContext is required.")
		return
	case ec.FileType != "SQL":
		invalid(w, "fileType %q is not supported by the local emulator (only SQL).", ec.FileType)
		return
	case !validURI(ec.Uri):
		invalid(w, "uri %q is not gs://bucket/object.", ec.Uri)
		return
	case len(ec.Databases) != 1:
		invalid(w, "exactly one database must be exported (got %d).", len(ec.Databases))
		return
	}
	ec.Kind = "sql#exportContext"
	s.start(w, key, &sqladmin.Operation{OperationType: "EXPORT", ExportContext: ec}, ec.Databases[0], ec.Uri)
}

func (s *Server) importOp(w http.ResponseWriter, r *http.Request) {
	var req sqladmin.InstancesImportRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		invalid(w, "body is not an InstancesImportRequest: %v", err)
		return
	}
	key := r.PathValue("project") + ":" + r.PathValue("instance")
	if !s.knownInstance(key) {
		instanceNotFound(w)
		return
	}
	ic := req.ImportContext
	switch {
	case ic == nil:
		invalid(w, "importContext is required.")
		return
	case ic.FileType != "SQL":
		invalid(w, "fileType %q is not supported by the local emulator (only SQL).", ic.FileType)
		return
	case !validURI(ic.Uri):
		invalid(w, "uri %q is not gs://bucket/object.", ic.Uri)
		return
	}
	ic.Kind = "sql#importContext"
	s.start(w, key, &sqladmin.Operation{OperationType: "IMPORT", ImportContext: ic}, ic.Database, ic.Uri)
}

func (s *Server) knownInstance(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.instances[key] != nil
}

// start inserts op on the instance (409 when one is running) and runs it in the background.
func (s *Server) start(w http.ResponseWriter, key string, op *sqladmin.Operation, database, uri string) {
	now := time.Now()
	s.mu.Lock()
	inst := s.instances[key]
	if inst.running != nil {
		s.mu.Unlock()
		writeError(w, http.StatusConflict, ReasonOperationInProgress, msgInProgress)
		return
	}
	if s.closed {
		s.mu.Unlock()
		writeError(w, http.StatusServiceUnavailable, "backendError", "The service is shutting down.")
		return
	}
	name := newName()
	op.Kind = "sql#operation"
	op.Name = name
	op.Status = "PENDING"
	op.TargetId = inst.id
	op.TargetProject = inst.project
	op.TargetLink = s.url + "v1/projects/" + inst.project + "/instances/" + inst.id
	op.SelfLink = s.url + "v1/projects/" + inst.project + "/operations/" + name
	op.User = "local-user@" + inst.project + ".iam.gserviceaccount.com"
	op.InsertTime = timestamp(now)
	s.seq++
	o := &operation{seq: s.seq, inst: inst, op: op, inserted: now, database: database, uri: uri}
	s.ops[inst.project+"/"+name] = o
	inst.running = o
	s.wg.Add(1)
	b, err := json.Marshal(op)
	s.mu.Unlock()
	go s.run(o)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "backendError", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.Write(b) //nolint:errcheck // the client went away
}

// sleepUntil waits until t or Close; false on Close.
func (s *Server) sleepUntil(t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return s.ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-s.ctx.Done():
		return false
	}
}

// passGate waits while the server is held; false on Close.
func (s *Server) passGate() bool {
	for {
		s.mu.Lock()
		gate := s.gate
		s.mu.Unlock()
		select {
		case <-gate:
			s.mu.Lock()
			same := gate == s.gate
			s.mu.Unlock()
			if same {
				return true
			}
		case <-s.ctx.Done():
			return false
		}
	}
}

// exists applies Options.Exists, or the objects this server exported.
func (s *Server) exists(uri string) bool {
	if s.opts.Exists != nil {
		return s.opts.Exists(uri)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.exported[uri]
}

// run moves o through PENDING → RUNNING → DONE.
func (s *Server) run(o *operation) {
	defer s.wg.Done()
	if !s.sleepUntil(o.inserted.Add(s.opts.Duration / 4)) {
		return
	}
	s.mu.Lock()
	o.op.Status = "RUNNING"
	o.op.StartTime = timestamp(time.Now())
	typ := o.op.OperationType
	s.mu.Unlock()
	if !s.passGate() {
		return
	}
	key := o.inst.project + ":" + o.inst.id
	var opErr *sqladmin.OperationError
	fail := func(code, msg string) {
		opErr = &sqladmin.OperationError{Kind: "sql#operationError", Code: code, Message: msg}
	}
	switch typ {
	case "EXPORT":
		if s.exists(o.uri) {
			fail(CodeExportFailed, fmt.Sprintf("The destination object %s already exists; exports do not overwrite objects.", o.uri))
		} else if f := s.opts.Export; f != nil {
			if err := f(s.ctx, key, o.database, o.uri); err != nil {
				fail(CodeRDBMS, fmt.Sprintf("Export of database %q failed: %v", o.database, err))
			}
		}
	case "IMPORT":
		if !s.exists(o.uri) {
			fail(CodeImportFailed, fmt.Sprintf("The source object %s does not exist.", o.uri))
		} else if f := s.opts.Import; f != nil {
			if err := f(s.ctx, key, o.database, o.uri); err != nil {
				fail(CodeRDBMS, fmt.Sprintf("Import into database %q failed: %v", o.database, err))
			}
		}
	}
	if !s.sleepUntil(o.inserted.Add(s.opts.Duration)) || !s.passGate() {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if typ == "EXPORT" && opErr == nil {
		s.exported[o.uri] = true
	}
	if opErr != nil {
		o.op.Error = &sqladmin.OperationErrors{Kind: "sql#operationErrors", Errors: []*sqladmin.OperationError{opErr}}
	}
	o.op.Status = "DONE"
	o.op.EndTime = timestamp(time.Now())
	o.inst.running = nil
}

func (s *Server) getOp(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	o := s.ops[r.PathValue("project")+"/"+r.PathValue("operation")]
	var b []byte
	var err error
	if o != nil {
		b, err = json.Marshal(o.op)
	}
	s.mu.Unlock()
	switch {
	case o == nil:
		writeError(w, http.StatusNotFound, ReasonOperationDoesNotExist, "The Cloud SQL operation does not exist.")
	case err != nil:
		writeError(w, http.StatusInternalServerError, "backendError", err.Error())
	default:
		w.Header().Set("Content-Type", "application/json; charset=UTF-8")
		w.Write(b) //nolint:errcheck // the client went away
	}
}

// pageToken encodes the sequence number below which the next page starts.
func pageToken(seq int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte("before:" + strconv.FormatInt(seq, 10)))
}

func parsePageToken(tok string) (int64, error) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return 0, err
	}
	n, ok := strings.CutPrefix(string(b), "before:")
	if !ok {
		return 0, errors.New("unknown token")
	}
	return strconv.ParseInt(n, 10, 64)
}

func (s *Server) listOps(w http.ResponseWriter, r *http.Request) {
	project := r.PathValue("project")
	q := r.URL.Query()
	inst := q.Get("instance")
	size := s.opts.PageSize
	if v := q.Get("maxResults"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			invalid(w, "maxResults %q is not a non-negative integer.", v)
			return
		}
		if n > 0 && n < size {
			size = n
		}
	}
	before := int64(-1)
	if tok := q.Get("pageToken"); tok != "" {
		n, err := parsePageToken(tok)
		if err != nil {
			invalid(w, "pageToken %q is not valid.", tok)
			return
		}
		before = n
	}
	if inst != "" && !s.knownInstance(project+":"+inst) {
		instanceNotFound(w)
		return
	}
	s.mu.Lock()
	var match []*operation
	for _, o := range s.ops {
		if o.inst.project != project || (inst != "" && o.inst.id != inst) || (before >= 0 && o.seq >= before) {
			continue
		}
		match = append(match, o)
	}
	slices.SortFunc(match, func(a, b *operation) int { return cmp.Compare(b.seq, a.seq) }) // newest first
	resp := &sqladmin.OperationsListResponse{Kind: "sql#operationsList"}
	for i, o := range match {
		if i == size {
			resp.NextPageToken = pageToken(match[i-1].seq)
			break
		}
		cp := *o.op
		resp.Items = append(resp.Items, &cp)
	}
	b, err := json.Marshal(resp)
	s.mu.Unlock()
	if err != nil {
		writeError(w, http.StatusInternalServerError, "backendError", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.Write(b) //nolint:errcheck // the client went away
}
