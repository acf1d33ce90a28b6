package cloudsql_test

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/api/option"

	"github.com/ai-square/coalmine/infra/local/sqladminemu"
	"github.com/ai-square/coalmine/shared/backup/cloudsql"
)

const (
	project  = "proj"
	instance = "main-db"
	database = "app"
)

// call is one Export or Import func invocation seen by the emulator.
type call struct{ instance, database, uri string }

// recorder records Export and Import invocations.
type recorder struct {
	mu      sync.Mutex
	exports []call
	imports []call
}

func (r *recorder) export(_ context.Context, inst, db, uri string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.exports = append(r.exports, call{inst, db, uri})
	return nil
}

func (r *recorder) importFn(_ context.Context, inst, db, uri string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.imports = append(r.imports, call{inst, db, uri})
	return nil
}

func (r *recorder) calls() (exports, imports []call) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]call(nil), r.exports...), append([]call(nil), r.imports...)
}

// env is an emulator and a driver connected to it through the official client.
type env struct {
	srv *sqladminemu.Server
	d   *cloudsql.Driver
	rec *recorder
}

// newEnv starts an emulator serving proj:main-db (closed at cleanup) with fast operations
// and recording Export/Import funcs unless o sets them.
func newEnv(t *testing.T, o sqladminemu.Options) *env {
	t.Helper()
	if o.Duration == 0 {
		o.Duration = 40 * time.Millisecond
	}
	if o.Instances == nil {
		o.Instances = []string{project + ":" + instance}
	}
	rec := &recorder{}
	if o.Export == nil {
		o.Export = rec.export
	}
	if o.Import == nil {
		o.Import = rec.importFn
	}
	srv, err := sqladminemu.Start(o)
	if err != nil {
		t.Fatalf("sqladminemu.Start: %v", err)
	}
	t.Cleanup(func() {
		srv.Release()
		srv.Close()
	})
	return &env{srv: srv, d: newDriver(t, srv.URL(), instance), rec: rec}
}

// newDriver connects a driver for instance inst to the API at url.
func newDriver(t *testing.T, url, inst string) *cloudsql.Driver {
	t.Helper()
	d, err := cloudsql.New(context.Background(), project, inst, option.WithEndpoint(url), option.WithoutAuthentication())
	if err != nil {
		t.Fatalf("cloudsql.New: %v", err)
	}
	d.PollInterval = 5 * time.Millisecond
	return d
}

func ctxFor(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// export starts an export and waits for it, failing the test on any error.
func (e *env) export(t *testing.T, uri string) string {
	t.Helper()
	ctx := ctxFor(t)
	op, err := e.d.StartExport(ctx, database, uri)
	if err != nil {
		t.Fatalf("StartExport(%s): %v", uri, err)
	}
	if err := e.d.Wait(ctx, op); err != nil {
		t.Fatalf("Wait(export %s): %v", uri, err)
	}
	return op
}

func TestExportSucceeds(t *testing.T) {
	e := newEnv(t, sqladminemu.Options{})
	ctx := ctxFor(t)
	uri := "gs://backups/app/r1.sql.gz"
	op, err := e.d.StartExport(ctx, database, uri)
	if err != nil {
		t.Fatalf("StartExport: %v", err)
	}
	if op == "" {
		t.Fatal("StartExport returned an empty operation name")
	}
	if done, err := e.d.Poll(ctx, op); err != nil || done {
		t.Errorf("Poll right after start = %v, %v; want false, nil", done, err)
	}
	if err := e.d.Wait(ctx, op); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	exports, _ := e.rec.calls()
	want := []call{{project + ":" + instance, database, uri}}
	if len(exports) != 1 || exports[0] != want[0] {
		t.Errorf("Export func calls = %v, want %v", exports, want)
	}
	if got, want := e.srv.Calls(sqladminemu.MethodExport), 1; got != want {
		t.Errorf("export requests = %d, want %d", got, want)
	}
	if done, err := e.d.Poll(ctx, op); err != nil || !done {
		t.Errorf("Poll after Wait = %v, %v; want true, nil", done, err)
	}
}

func TestExportOperationFails(t *testing.T) {
	e := newEnv(t, sqladminemu.Options{Export: func(context.Context, string, string, string) error {
		return errors.New("pg_dump: connection refused")
	}})
	ctx := ctxFor(t)
	op, err := e.d.StartExport(ctx, database, "gs://backups/app/r1.sql")
	if err != nil {
		t.Fatalf("StartExport: %v (the request succeeds, the operation fails)", err)
	}
	err = e.d.Wait(ctx, op)
	if !errors.Is(err, cloudsql.ErrOperationFailed) {
		t.Fatalf("Wait = %v, want ErrOperationFailed", err)
	}
	if cloudsql.Transient(err) {
		t.Errorf("Transient(%v) = true, want false", err)
	}
	for _, want := range []string{sqladminemu.CodeRDBMS, "pg_dump: connection refused", op, "gs://backups/app/r1.sql"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	if done, err := e.d.Poll(ctx, op); !done || !errors.Is(err, cloudsql.ErrOperationFailed) {
		t.Errorf("Poll = %v, %v; want true, ErrOperationFailed", done, err)
	}
}

func TestExportToExistingObjectFailsAtOperationLevel(t *testing.T) {
	uri := "gs://backups/app/taken.sql"
	e := newEnv(t, sqladminemu.Options{Exists: func(u string) bool { return u == uri }})
	ctx := ctxFor(t)
	op, err := e.d.StartExport(ctx, database, uri)
	if err != nil {
		t.Fatalf("StartExport: %v (the request succeeds, the operation fails)", err)
	}
	err = e.d.Wait(ctx, op)
	if !errors.Is(err, cloudsql.ErrOperationFailed) || !strings.Contains(err.Error(), sqladminemu.CodeExportFailed) {
		t.Fatalf("Wait = %v, want ErrOperationFailed naming %s", err, sqladminemu.CodeExportFailed)
	}
	if exports, _ := e.rec.calls(); len(exports) != 0 {
		t.Errorf("Export func calls = %v, want none (the object exists)", exports)
	}
	// A failed export is not followed: a redelivery starts a new one (which fails again).
	op2, err := e.d.StartExport(ctx, database, uri)
	if err != nil {
		t.Fatalf("StartExport again: %v", err)
	}
	if op2 == op {
		t.Errorf("StartExport again returned the failed operation %s, want a new one", op)
	}
}

func TestRequestErrors(t *testing.T) {
	tests := []struct {
		name      string
		method    string
		code      int
		reason    string
		want      error
		transient bool
	}{
		{"invalid export", sqladminemu.MethodExport, http.StatusBadRequest, "invalid", cloudsql.ErrRequest, false},
		{"forbidden export", sqladminemu.MethodExport, http.StatusForbidden, "notAuthorized", cloudsql.ErrRequest, false},
		{"busy instance", sqladminemu.MethodExport, http.StatusConflict, sqladminemu.ReasonOperationInProgress, cloudsql.ErrBusy, true},
		{"rate limited", sqladminemu.MethodExport, http.StatusTooManyRequests, "rateLimitExceeded", cloudsql.ErrUnavailable, true},
		{"backend error", sqladminemu.MethodExport, http.StatusServiceUnavailable, "backendError", cloudsql.ErrUnavailable, true},
		{"listing fails", sqladminemu.MethodListOperations, http.StatusInternalServerError, "backendError", cloudsql.ErrUnavailable, true},
		{"listing refused", sqladminemu.MethodListOperations, http.StatusBadRequest, "invalid", cloudsql.ErrRequest, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, sqladminemu.Options{})
			e.srv.FailNextOn(tt.method, tt.code, tt.reason)
			_, err := e.d.StartExport(ctxFor(t), database, "gs://backups/app/r1.sql")
			if !errors.Is(err, tt.want) {
				t.Fatalf("StartExport = %v, want %v", err, tt.want)
			}
			if got := cloudsql.Transient(err); got != tt.transient {
				t.Errorf("Transient(%v) = %v, want %v", err, got, tt.transient)
			}
			for _, want := range []string{strconv.Itoa(tt.code), tt.reason} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not name %q", err, want)
				}
			}
			if exports, _ := e.rec.calls(); len(exports) != 0 {
				t.Errorf("Export func calls = %v, want none", exports)
			}
		})
	}
}

func TestPollRequestErrors(t *testing.T) {
	e := newEnv(t, sqladminemu.Options{})
	ctx := ctxFor(t)
	if _, err := e.d.Poll(ctx, "no-such-operation"); !errors.Is(err, cloudsql.ErrRequest) || !strings.Contains(err.Error(), "404") {
		t.Errorf("Poll(unknown) = %v, want ErrRequest naming 404", err)
	}
	op, err := e.d.StartExport(ctx, database, "gs://backups/app/r1.sql")
	if err != nil {
		t.Fatalf("StartExport: %v", err)
	}
	// Wait rides over a transient read error.
	e.srv.FailNextOn(sqladminemu.MethodGetOperation, http.StatusServiceUnavailable, "backendError")
	if err := e.d.Wait(ctx, op); err != nil {
		t.Fatalf("Wait after a 503 = %v, want nil", err)
	}
	if got := e.srv.Calls(sqladminemu.MethodGetOperation); got < 2 {
		t.Errorf("operation reads = %d, want at least 2", got)
	}
}

func TestUnknownInstance(t *testing.T) {
	e := newEnv(t, sqladminemu.Options{})
	d := newDriver(t, e.srv.URL(), "nope")
	ctx := ctxFor(t)
	for name, start := range map[string]func() (string, error){
		"StartExport": func() (string, error) { return d.StartExport(ctx, database, "gs://backups/app/r1.sql") },
		"Import":      func() (string, error) { return d.Import(ctx, database, "gs://backups/app/r1.sql") },
	} {
		_, err := start()
		if !errors.Is(err, cloudsql.ErrRequest) || cloudsql.Transient(err) {
			t.Errorf("%s on an unknown instance = %v, want permanent ErrRequest", name, err)
		}
		if err != nil && (!strings.Contains(err.Error(), "404") || !strings.Contains(err.Error(), "does not exist")) {
			t.Errorf("%s error %q does not name the 404 and Google's message", name, err)
		}
	}
}

func TestNetworkErrorIsTransient(t *testing.T) {
	e := newEnv(t, sqladminemu.Options{})
	url := e.srv.URL()
	e.srv.Close()
	d := newDriver(t, url, instance)
	_, err := d.StartExport(ctxFor(t), database, "gs://backups/app/r1.sql")
	if !errors.Is(err, cloudsql.ErrUnavailable) || !cloudsql.Transient(err) {
		t.Errorf("StartExport against a closed server = %v, want transient ErrUnavailable", err)
	}
}

func TestRedeliveryFollowsRunningExport(t *testing.T) {
	e := newEnv(t, sqladminemu.Options{})
	e.srv.Hold()
	ctx := ctxFor(t)
	uri := "gs://backups/app/r1.sql"
	op, err := e.d.StartExport(ctx, database, uri)
	if err != nil {
		t.Fatalf("StartExport: %v", err)
	}
	// The function's time runs out while the export runs: Wait gives up, the export goes on.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	err = e.d.Wait(short, op)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || !cloudsql.Transient(err) || !strings.Contains(err.Error(), "keeps running") {
		t.Errorf("Wait past the deadline = %v, want a transient DeadlineExceeded saying the operation keeps running", err)
	}
	// Redelivery: the same export is found, not started again.
	again, err := e.d.StartExport(ctx, database, uri)
	if err != nil {
		t.Fatalf("StartExport (redelivery): %v", err)
	}
	if again != op {
		t.Errorf("StartExport (redelivery) = %s, want the running %s", again, op)
	}
	if got, want := e.srv.Calls(sqladminemu.MethodExport), 1; got != want {
		t.Errorf("export requests = %d, want %d", got, want)
	}
	// Another backup while this one runs: the instance is busy.
	_, err = e.d.StartExport(ctx, database, "gs://backups/app/r2.sql")
	if !errors.Is(err, cloudsql.ErrBusy) || !cloudsql.Transient(err) {
		t.Errorf("StartExport(other uri) while running = %v, want transient ErrBusy", err)
	}
	if done, err := e.d.Poll(ctx, op); done || err != nil {
		t.Errorf("Poll while held = %v, %v; want false, nil", done, err)
	}
	e.srv.Release()
	if err := e.d.Wait(ctx, op); err != nil {
		t.Fatalf("Wait after release: %v", err)
	}
	// Redelivery after the export finished: the finished export is returned.
	before := e.srv.Calls(sqladminemu.MethodExport)
	done, err := e.d.StartExport(ctx, database, uri)
	if err != nil || done != op {
		t.Errorf("StartExport after done = %s, %v; want %s, nil", done, err, op)
	}
	if got := e.srv.Calls(sqladminemu.MethodExport); got != before {
		t.Errorf("export requests = %d, want %d (no new export)", got, before)
	}
	if exports, _ := e.rec.calls(); len(exports) != 1 {
		t.Errorf("Export func calls = %v, want exactly one", exports)
	}
}

func TestConcurrentDeliveriesShareOneExport(t *testing.T) {
	e := newEnv(t, sqladminemu.Options{})
	e.srv.Hold()
	ctx := ctxFor(t)
	uri := "gs://backups/app/r1.sql"
	const n = 4
	names := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { names[i], errs[i] = e.d.StartExport(ctx, database, uri) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("delivery %d: %v", i, errs[i])
		}
		if names[i] != names[0] {
			t.Errorf("delivery %d follows %s, delivery 0 follows %s; want the same operation", i, names[i], names[0])
		}
	}
	e.srv.Release()
	if err := e.d.Wait(ctx, names[0]); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if exports, _ := e.rec.calls(); len(exports) != 1 {
		t.Errorf("Export func calls = %v, want exactly one", exports)
	}
}

func TestFindPaginates(t *testing.T) {
	e := newEnv(t, sqladminemu.Options{PageSize: 1, Duration: 10 * time.Millisecond})
	first := e.export(t, "gs://backups/app/a.sql")
	e.export(t, "gs://backups/app/b.sql")
	e.export(t, "gs://backups/app/c.sql")
	// With one operation per page, a is on the third page.
	lists := e.srv.Calls(sqladminemu.MethodListOperations)
	got, err := e.d.StartExport(ctxFor(t), database, "gs://backups/app/a.sql")
	if err != nil || got != first {
		t.Errorf("StartExport(a) = %s, %v; want the done %s", got, err, first)
	}
	if got, want := e.srv.Calls(sqladminemu.MethodListOperations)-lists, 3; got != want {
		t.Errorf("list requests = %d, want %d (one page per operation)", got, want)
	}
	if got, want := e.srv.Calls(sqladminemu.MethodExport), 3; got != want {
		t.Errorf("export requests = %d, want %d", got, want)
	}
}

func TestImportRoundTrip(t *testing.T) {
	e := newEnv(t, sqladminemu.Options{})
	ctx := ctxFor(t)
	uri := "gs://backups/app/r1.sql"
	e.export(t, uri)

	e.srv.Hold()
	op, err := e.d.Import(ctx, "app_restore", uri)
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	again, err := e.d.Import(ctx, "app_restore", uri)
	if err != nil || again != op {
		t.Errorf("Import (redelivery) = %s, %v; want the running %s", again, err, op)
	}
	if got, want := e.srv.Calls(sqladminemu.MethodImport), 1; got != want {
		t.Errorf("import requests = %d, want %d", got, want)
	}
	e.srv.Release()
	if err := e.d.Wait(ctx, op); err != nil {
		t.Fatalf("Wait(import): %v", err)
	}
	_, imports := e.rec.calls()
	want := call{project + ":" + instance, "app_restore", uri}
	if len(imports) != 1 || imports[0] != want {
		t.Errorf("Import func calls = %v, want [%v]", imports, want)
	}
}

func TestImportOfMissingObjectFails(t *testing.T) {
	e := newEnv(t, sqladminemu.Options{})
	ctx := ctxFor(t)
	op, err := e.d.Import(ctx, database, "gs://backups/app/never-written.sql")
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	if err := e.d.Wait(ctx, op); !errors.Is(err, cloudsql.ErrOperationFailed) {
		t.Errorf("Wait = %v, want ErrOperationFailed", err)
	}
}

func TestEmptyArgumentsAreRefused(t *testing.T) {
	e := newEnv(t, sqladminemu.Options{})
	ctx := ctxFor(t)
	if _, err := e.d.StartExport(ctx, "", "gs://b/o"); !errors.Is(err, cloudsql.ErrRequest) {
		t.Errorf("StartExport without database = %v, want ErrRequest", err)
	}
	if _, err := e.d.Import(ctx, database, ""); !errors.Is(err, cloudsql.ErrRequest) {
		t.Errorf("Import without uri = %v, want ErrRequest", err)
	}
	if got := e.srv.Calls(sqladminemu.MethodListOperations); got != 0 {
		t.Errorf("list requests = %d, want 0", got)
	}
}

func TestEmulatorHostEnv(t *testing.T) {
	e := newEnv(t, sqladminemu.Options{})
	t.Setenv(cloudsql.EmulatorHostEnv, strings.TrimSuffix(strings.TrimPrefix(e.srv.URL(), "http://"), "/"))
	d, err := cloudsql.New(context.Background(), project, instance)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if d.PollInterval != cloudsql.DefaultPollInterval {
		t.Errorf("PollInterval = %v, want %v", d.PollInterval, cloudsql.DefaultPollInterval)
	}
	if _, err := d.StartExport(ctxFor(t), database, "gs://backups/app/r1.sql"); err != nil {
		t.Errorf("StartExport through %s: %v", cloudsql.EmulatorHostEnv, err)
	}
}
