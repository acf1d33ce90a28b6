package sqladminemu_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"
	sqladmin "google.golang.org/api/sqladmin/v1"

	"github.com/ai-square/coalmine/infra/local/sqladminemu"
)

const (
	project  = "proj"
	instance = "main-db"
)

// start runs an emulator (closed at cleanup) serving proj:main-db, and an official client.
func start(t *testing.T, o sqladminemu.Options) (*sqladminemu.Server, *sqladmin.Service) {
	t.Helper()
	if o.Instances == nil {
		o.Instances = []string{project + ":" + instance}
	}
	if o.Duration == 0 {
		o.Duration = 40 * time.Millisecond
	}
	srv, err := sqladminemu.Start(o)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		srv.Release()
		srv.Close()
	})
	svc, err := sqladmin.NewService(context.Background(), option.WithEndpoint(srv.URL()), option.WithoutAuthentication())
	if err != nil {
		t.Fatalf("NewService: %v", err)
	}
	return srv, svc
}

func ctxFor(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func exportReq(db, uri string) *sqladmin.InstancesExportRequest {
	return &sqladmin.InstancesExportRequest{ExportContext: &sqladmin.ExportContext{
		FileType: "SQL", Uri: uri, Databases: []string{db},
		SqlExportOptions: &sqladmin.ExportContextSqlExportOptions{
			PostgresExportOptions: &sqladmin.ExportContextSqlExportOptionsPostgresExportOptions{Clean: true, IfExists: true},
		},
	}}
}

// waitDone polls the operation until DONE.
func waitDone(t *testing.T, svc *sqladmin.Service, name string) *sqladmin.Operation {
	t.Helper()
	ctx := ctxFor(t)
	for {
		op, err := svc.Operations.Get(project, name).Context(ctx).Do()
		if err != nil {
			t.Fatalf("Operations.Get(%s): %v", name, err)
		}
		if op.Status == "DONE" {
			return op
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// apiError asserts err is a googleapi.Error with code and reason.
func apiError(t *testing.T, what string, err error, code int, reason string) {
	t.Helper()
	var ge *googleapi.Error
	if !errors.As(err, &ge) {
		t.Fatalf("%s = %v, want a googleapi.Error", what, err)
	}
	if ge.Code != code || len(ge.Errors) != 1 || ge.Errors[0].Reason != reason || ge.Message == "" {
		t.Errorf("%s = code %d errors %+v message %q; want code %d reason %s and a message", what, ge.Code, ge.Errors, ge.Message, code, reason)
	}
}

func TestExportLifecycleAndShape(t *testing.T) {
	var seen []string
	srv, svc := start(t, sqladminemu.Options{Export: func(_ context.Context, inst, db, uri string) error {
		seen = append(seen, inst, db, uri)
		return nil
	}})
	ctx := ctxFor(t)
	srv.Hold()
	uri := "gs://backups/app/r1.sql.gz"
	op, err := svc.Instances.Export(project, instance, exportReq("app", uri)).Context(ctx).Do()
	if err != nil {
		t.Fatalf("Export: %v", err)
	}
	if op.Kind != "sql#operation" || op.Status != "PENDING" || op.OperationType != "EXPORT" ||
		op.TargetId != instance || op.TargetProject != project || op.InsertTime == "" || op.Name == "" ||
		!strings.HasSuffix(op.SelfLink, "/v1/projects/"+project+"/operations/"+op.Name) {
		t.Errorf("Export returned %+v; want a PENDING sql#operation of type EXPORT on %s/%s with name and selfLink", op, project, instance)
	}
	if ec := op.ExportContext; ec == nil || ec.Uri != uri || ec.Kind != "sql#exportContext" || ec.SqlExportOptions == nil ||
		ec.SqlExportOptions.PostgresExportOptions == nil || !ec.SqlExportOptions.PostgresExportOptions.Clean {
		t.Errorf("exportContext = %+v, want the request's echoed", ec)
	}
	// Held: RUNNING, never DONE.
	deadline := time.Now().Add(time.Second)
	for {
		got, err := svc.Operations.Get(project, op.Name).Context(ctx).Do()
		if err != nil {
			t.Fatalf("Operations.Get: %v", err)
		}
		if got.Status == "RUNNING" {
			if got.StartTime == "" {
				t.Error("RUNNING operation has no startTime")
			}
			break
		}
		if got.Status != "PENDING" || time.Now().After(deadline) {
			t.Fatalf("status = %s, want PENDING then RUNNING", got.Status)
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	if got, _ := svc.Operations.Get(project, op.Name).Context(ctx).Do(); got == nil || got.Status != "RUNNING" {
		t.Fatalf("held operation = %+v, want still RUNNING", got)
	}
	if len(seen) != 0 {
		t.Errorf("Export func ran while held: %v", seen)
	}
	srv.Release()
	done := waitDone(t, svc, op.Name)
	if done.Error != nil || done.EndTime == "" {
		t.Errorf("DONE operation = error %+v endTime %q; want no error and an endTime", done.Error, done.EndTime)
	}
	if want := []string{project + ":" + instance, "app", uri}; strings.Join(seen, " ") != strings.Join(want, " ") {
		t.Errorf("Export func saw %v, want %v", seen, want)
	}
	if _, err := time.Parse(time.RFC3339, done.InsertTime); err != nil {
		t.Errorf("insertTime %q is not RFC 3339: %v", done.InsertTime, err)
	}
}

func TestOneOperationPerInstance(t *testing.T) {
	srv, svc := start(t, sqladminemu.Options{})
	ctx := ctxFor(t)
	srv.Hold()
	op, err := svc.Instances.Export(project, instance, exportReq("app", "gs://b/one.sql")).Context(ctx).Do()
	if err != nil {
		t.Fatalf("Export: %v", err)
	}
	_, err = svc.Instances.Export(project, instance, exportReq("app", "gs://b/two.sql")).Context(ctx).Do()
	apiError(t, "second Export", err, http.StatusConflict, sqladminemu.ReasonOperationInProgress)
	_, err = svc.Instances.Import(project, instance, &sqladmin.InstancesImportRequest{
		ImportContext: &sqladmin.ImportContext{FileType: "SQL", Uri: "gs://b/one.sql", Database: "app"},
	}).Context(ctx).Do()
	apiError(t, "Import during Export", err, http.StatusConflict, sqladminemu.ReasonOperationInProgress)
	if got, want := srv.Calls(sqladminemu.MethodExport), 2; got != want {
		t.Errorf("Calls(export) = %d, want %d", got, want)
	}
	srv.Release()
	waitDone(t, svc, op.Name)
	// Free again; the first object now exists, so an import of it succeeds.
	imp, err := svc.Instances.Import(project, instance, &sqladmin.InstancesImportRequest{
		ImportContext: &sqladmin.ImportContext{FileType: "SQL", Uri: "gs://b/one.sql", Database: "app"},
	}).Context(ctx).Do()
	if err != nil {
		t.Fatalf("Import after Export: %v", err)
	}
	if got := waitDone(t, svc, imp.Name); got.Error != nil || got.OperationType != "IMPORT" || got.ImportContext == nil {
		t.Errorf("import = %+v, want a successful IMPORT with its importContext", got)
	}
}

func TestOperationErrors(t *testing.T) {
	srv, svc := start(t, sqladminemu.Options{Export: func(_ context.Context, _, db, _ string) error {
		if db == "broken" {
			return errors.New("pg_dump failed")
		}
		return nil
	}})
	_ = srv
	ctx := ctxFor(t)
	tests := []struct {
		name, db, uri, code string
	}{
		{"export func fails", "broken", "gs://b/broken.sql", sqladminemu.CodeRDBMS},
		{"first export succeeds", "app", "gs://b/app.sql", ""},
		{"object exists", "app", "gs://b/app.sql", sqladminemu.CodeExportFailed},
	}
	for _, tt := range tests {
		op, err := svc.Instances.Export(project, instance, exportReq(tt.db, tt.uri)).Context(ctx).Do()
		if err != nil {
			t.Fatalf("%s: Export: %v (operation failures are not request failures)", tt.name, err)
		}
		done := waitDone(t, svc, op.Name)
		switch {
		case tt.code == "" && done.Error != nil:
			t.Errorf("%s: error = %+v, want none", tt.name, done.Error.Errors)
		case tt.code != "" && (done.Error == nil || len(done.Error.Errors) != 1 || done.Error.Errors[0].Code != tt.code ||
			done.Error.Errors[0].Message == "" || done.Error.Errors[0].Kind != "sql#operationError"):
			t.Errorf("%s: error = %+v, want one %s sql#operationError with a message", tt.name, done.Error, tt.code)
		}
	}
	imp, err := svc.Instances.Import(project, instance, &sqladmin.InstancesImportRequest{
		ImportContext: &sqladmin.ImportContext{FileType: "SQL", Uri: "gs://b/missing.sql", Database: "app"},
	}).Context(ctx).Do()
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	if got := waitDone(t, svc, imp.Name); got.Error == nil || got.Error.Errors[0].Code != sqladminemu.CodeImportFailed {
		t.Errorf("import of a missing object = %+v, want %s", got.Error, sqladminemu.CodeImportFailed)
	}
}

func TestRequestValidation(t *testing.T) {
	_, svc := start(t, sqladminemu.Options{})
	ctx := ctxFor(t)
	tests := []struct {
		name     string
		instance string
		req      *sqladmin.InstancesExportRequest
		code     int
		reason   string
	}{
		{"unknown instance", "nope", exportReq("app", "gs://b/o.sql"), http.StatusNotFound, sqladminemu.ReasonInstanceDoesNotExist},
		{"no context", instance, &sqladmin.InstancesExportRequest{}, http.StatusBadRequest, sqladminemu.ReasonInvalid},
		{"csv", instance, &sqladmin.InstancesExportRequest{ExportContext: &sqladmin.ExportContext{FileType: "CSV", Uri: "gs://b/o.csv", Databases: []string{"app"}}}, http.StatusBadRequest, sqladminemu.ReasonInvalid},
		{"no database", instance, &sqladmin.InstancesExportRequest{ExportContext: &sqladmin.ExportContext{FileType: "SQL", Uri: "gs://b/o.sql"}}, http.StatusBadRequest, sqladminemu.ReasonInvalid},
		{"bad uri", instance, exportReq("app", "s3://b/o.sql"), http.StatusBadRequest, sqladminemu.ReasonInvalid},
		{"bucket only", instance, exportReq("app", "gs://b"), http.StatusBadRequest, sqladminemu.ReasonInvalid},
	}
	for _, tt := range tests {
		_, err := svc.Instances.Export(project, tt.instance, tt.req).Context(ctx).Do()
		apiError(t, tt.name, err, tt.code, tt.reason)
	}
	_, err := svc.Operations.Get(project, "no-such-op").Context(ctx).Do()
	apiError(t, "Get(unknown)", err, http.StatusNotFound, sqladminemu.ReasonOperationDoesNotExist)
	_, err = svc.Operations.List(project).Instance("nope").Context(ctx).Do()
	apiError(t, "List(unknown instance)", err, http.StatusNotFound, sqladminemu.ReasonInstanceDoesNotExist)
	_, err = svc.Operations.List(project).Instance(instance).PageToken("garbage!").Context(ctx).Do()
	apiError(t, "List(bad token)", err, http.StatusBadRequest, sqladminemu.ReasonInvalid)
}

func TestListPagesNewestFirst(t *testing.T) {
	srv, svc := start(t, sqladminemu.Options{PageSize: 2, Duration: 5 * time.Millisecond,
		Instances: []string{project + ":" + instance, project + ":other"}})
	ctx := ctxFor(t)
	var names []string
	for _, uri := range []string{"gs://b/1.sql", "gs://b/2.sql", "gs://b/3.sql"} {
		op, err := svc.Instances.Export(project, instance, exportReq("app", uri)).Context(ctx).Do()
		if err != nil {
			t.Fatalf("Export: %v", err)
		}
		waitDone(t, svc, op.Name)
		names = append([]string{op.Name}, names...)
	}
	other, err := svc.Instances.Export(project, "other", exportReq("app", "gs://b/x.sql")).Context(ctx).Do()
	if err != nil {
		t.Fatalf("Export(other): %v", err)
	}
	var got []string
	pages := 0
	err = svc.Operations.List(project).Instance(instance).MaxResults(100).Pages(ctx, func(r *sqladmin.OperationsListResponse) error {
		pages++
		if r.Kind != "sql#operationsList" {
			t.Errorf("kind = %q, want sql#operationsList", r.Kind)
		}
		for _, op := range r.Items {
			got = append(got, op.Name)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if strings.Join(got, ",") != strings.Join(names, ",") {
		t.Errorf("listed %v, want %v (newest first, only this instance)", got, names)
	}
	if pages != 2 {
		t.Errorf("pages = %d, want 2 (PageSize caps maxResults)", pages)
	}
	all, err := svc.Operations.List(project).Context(ctx).Do()
	if err != nil {
		t.Fatalf("List(project): %v", err)
	}
	if len(all.Items) != 2 || all.Items[0].Name != other.Name {
		t.Errorf("project listing first page = %d items starting %v, want 2 starting with %s", len(all.Items), all.Items, other.Name)
	}
	if got := srv.Calls(sqladminemu.MethodListOperations); got != 3 {
		t.Errorf("Calls(list) = %d, want 3", got)
	}
}

func TestFailNext(t *testing.T) {
	srv, svc := start(t, sqladminemu.Options{})
	ctx := ctxFor(t)
	srv.FailNext(http.StatusServiceUnavailable, "backendError")
	_, err := svc.Operations.List(project).Instance(instance).Context(ctx).Do()
	apiError(t, "List after FailNext", err, http.StatusServiceUnavailable, "backendError")
	if _, err := svc.Operations.List(project).Instance(instance).Context(ctx).Do(); err != nil {
		t.Errorf("second List = %v, want the fault used up", err)
	}
	srv.FailNextOn(sqladminemu.MethodExport, http.StatusConflict, sqladminemu.ReasonOperationInProgress)
	if _, err := svc.Operations.List(project).Instance(instance).Context(ctx).Do(); err != nil {
		t.Errorf("List with an export fault queued = %v, want nil", err)
	}
	_, err = svc.Instances.Export(project, instance, exportReq("app", "gs://b/o.sql")).Context(ctx).Do()
	apiError(t, "Export after FailNextOn", err, http.StatusConflict, sqladminemu.ReasonOperationInProgress)
	if got, want := srv.Calls(sqladminemu.MethodListOperations), 3; got != want {
		t.Errorf("Calls(list) = %d, want %d", got, want)
	}
}

func TestErrorBodyIsGoogles(t *testing.T) {
	srv, _ := start(t, sqladminemu.Options{})
	srv.FailNext(http.StatusConflict, sqladminemu.ReasonOperationInProgress)
	for _, path := range []string{"v1/projects/" + project + "/operations?instance=" + instance, "v1/projects/" + project + "/backupRuns"} {
		res, err := http.Get(srv.URL() + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		var body struct {
			Error struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
				Errors  []struct {
					Domain, Reason, Message string
				} `json:"errors"`
			} `json:"error"`
		}
		if err := json.Unmarshal(b, &body); err != nil {
			t.Fatalf("GET %s body %q: %v", path, b, err)
		}
		e := body.Error
		if e.Code != res.StatusCode || e.Message == "" || len(e.Errors) != 1 || e.Errors[0].Domain != "global" || e.Errors[0].Reason == "" {
			t.Errorf("GET %s: status %d body %s; want Google's error body", path, res.StatusCode, b)
		}
		if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Errorf("GET %s: Content-Type %q, want application/json", path, ct)
		}
	}
}

func TestCloseCancelsRunningWork(t *testing.T) {
	started := make(chan struct{})
	srv, svc := start(t, sqladminemu.Options{Export: func(ctx context.Context, _, _, _ string) error {
		close(started)
		<-ctx.Done()
		return ctx.Err()
	}})
	if _, err := svc.Instances.Export(project, instance, exportReq("app", "gs://b/o.sql")).Context(ctxFor(t)).Do(); err != nil {
		t.Fatalf("Export: %v", err)
	}
	<-started
	closed := make(chan error, 1)
	go func() { closed <- srv.Close() }()
	select {
	case <-closed:
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not return while an Export func was running")
	}
}

func TestStartRejectsBadInstances(t *testing.T) {
	for _, inst := range []string{"noproject", ":x", "p:", "p:i:j"} {
		if srv, err := sqladminemu.Start(sqladminemu.Options{Instances: []string{inst}}); err == nil {
			srv.Close()
			t.Errorf("Start(Instances: %q) = nil error, want one", inst)
		}
	}
}
