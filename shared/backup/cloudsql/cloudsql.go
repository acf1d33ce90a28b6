// Package cloudsql backs up and restores a Cloud SQL for PostgreSQL database through the
// Cloud SQL Admin API v1 (google.golang.org/api/sqladmin/v1): a backup is an SQL export of
// one database to a Cloud Storage object (Instances.Export), a restore imports such an
// export (Instances.Import).
//
// Both calls only start an operation; Poll and Wait follow it until DONE. An operation that
// ends DONE with error.errors[] set is a failed backup or restore (ErrOperationFailed), even
// though every request succeeded.
//
// Cloud SQL runs one administrative operation per instance and refuses a second one (HTTP
// 409 operationInProgress, ErrBusy), and Pub/Sub redelivers commands. So StartExport and
// Import first look for an operation of the instance doing the same thing (same type, same
// object) and follow it instead of starting another: a redelivery during a long export
// finds the export already running, and (StartExport only) a redelivery after it finds it
// done. Callers should still persist the operation name between invocations and Poll it.
//
// Errors are classified so that callers decide between redelivery and giving up with
// errors.Is and Transient, never by matching messages.
package cloudsql

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"
	sqladmin "google.golang.org/api/sqladmin/v1"
)

// EmulatorHostEnv names the environment variable that points New at a local Cloud SQL Admin
// API (infra/local/sqladminemu): a URL ("http://127.0.0.1:PORT/") or host:port.
const EmulatorHostEnv = "SQLADMIN_EMULATOR_HOST"

// DefaultPollInterval is the PollInterval used when the Driver's is zero.
const DefaultPollInterval = 5 * time.Second

// Operation types and statuses of the Cloud SQL Admin API (sqladmin-gen.go v0.312.0).
const (
	typeExport = "EXPORT"
	typeImport = "IMPORT"
	statusDone = "DONE"
)

// Operation listing: page size and a bound on the pages read when looking for an operation
// to follow (operations are listed newest first, so a running one is near the top).
const (
	listPageSize = 100
	listMaxPages = 10
)

// Errors, wrapped with what failed.
var (
	// ErrBusy: the instance is running another administrative operation (HTTP 409,
	// operationInProgress). Transient: retry later.
	ErrBusy = errors.New("cloudsql: instance busy with another operation")
	// ErrUnavailable: the API could not be reached or asked to back off (HTTP 429, 5xx,
	// network errors). Transient.
	ErrUnavailable = errors.New("cloudsql: admin API unavailable")
	// ErrRequest: the API refused the request (HTTP 4xx other than 409 and 429: bad
	// arguments, permission denied, unknown instance or operation), or the arguments were
	// empty. Permanent.
	ErrRequest = errors.New("cloudsql: request refused")
	// ErrOperationFailed: the operation finished DONE with errors (the export's object
	// already exists, the dump failed, the instance cannot write to the bucket…).
	// Permanent for that operation; a new export needs a new object name.
	ErrOperationFailed = errors.New("cloudsql: operation failed")
)

// Transient reports whether err is worth retrying (by redelivering the command): a busy
// instance, an unavailable API, a deadline. Request refusals, failed operations and
// cancellation are not; unknown errors are (the step deadline bounds them).
func Transient(err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, ErrBusy), errors.Is(err, ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return true
	case errors.Is(err, ErrRequest), errors.Is(err, ErrOperationFailed), errors.Is(err, context.Canceled):
		return false
	}
	return true
}

// Driver exports and imports databases of one Cloud SQL instance.
type Driver struct {
	// Service is the official client.
	Service *sqladmin.Service
	// Project is the instance's project ID; Instance its ID without the project.
	Project, Instance string
	// PollInterval is the pause between two polls in Wait (default 5s).
	PollInterval time.Duration
}

// EmulatorOptions returns client options for SQLADMIN_EMULATOR_HOST, or nil when it is not
// set (the real API with Application Default Credentials).
func EmulatorOptions() []option.ClientOption {
	host := os.Getenv(EmulatorHostEnv)
	if host == "" {
		return nil
	}
	if !strings.Contains(host, "://") {
		host = "http://" + host
	}
	if !strings.HasSuffix(host, "/") {
		host += "/"
	}
	return []option.ClientOption{option.WithEndpoint(host), option.WithoutAuthentication()}
}

// New connects to the Cloud SQL Admin API for one instance. With no opts and
// SQLADMIN_EMULATOR_HOST set, it uses the emulator.
func New(ctx context.Context, project, instance string, opts ...option.ClientOption) (*Driver, error) {
	if project == "" || instance == "" {
		return nil, fmt.Errorf("%w: project and instance are required", ErrRequest)
	}
	if len(opts) == 0 {
		opts = EmulatorOptions()
	}
	svc, err := sqladmin.NewService(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("cloudsql: client: %w", err)
	}
	return &Driver{Service: svc, Project: project, Instance: instance, PollInterval: DefaultPollInterval}, nil
}

// StartExport starts an SQL export of database to the Cloud Storage object uri
// (gs://bucket/object; a name ending in .gz is compressed) and returns the operation's
// name. The dump drops objects before creating them (clean, if-exists), so importing it
// replaces the database's contents.
//
// If an export of this instance to the same uri is not DONE, it returns that operation
// instead of starting another; if one is DONE without error, it returns that one too (the
// object is already written; Poll reports it done). An export that failed is not followed:
// a new one is started (and fails again if the object exists).
//
// Errors: ErrBusy when another operation runs on the instance (retry later), ErrRequest,
// ErrUnavailable. The export itself may still fail: Poll or Wait the name.
func (d *Driver) StartExport(ctx context.Context, database, uri string) (string, error) {
	if database == "" || uri == "" {
		return "", fmt.Errorf("%w: export needs a database and a uri", ErrRequest)
	}
	what := fmt.Sprintf("export of database %q to %s", database, uri)
	if op, err := d.find(ctx, typeExport, database, uri, true); err != nil {
		return "", classify(what+": listing operations", err)
	} else if op != nil {
		return op.Name, nil
	}
	op, err := d.Service.Instances.Export(d.Project, d.Instance, &sqladmin.InstancesExportRequest{
		ExportContext: &sqladmin.ExportContext{
			FileType:  "SQL",
			Uri:       uri,
			Databases: []string{database},
			SqlExportOptions: &sqladmin.ExportContextSqlExportOptions{
				PostgresExportOptions: &sqladmin.ExportContextSqlExportOptionsPostgresExportOptions{
					Clean:    true,
					IfExists: true,
				},
			},
		},
	}).Context(ctx).Do()
	if err != nil {
		return d.afterRefusal(ctx, typeExport, database, uri, classify(what, err))
	}
	return op.Name, nil
}

// Import starts an import of the SQL export at uri into database and returns the
// operation's name. If an import of this instance from the same uri is not DONE, it returns
// that operation instead of starting another. A DONE import is not reused: importing the
// same object again is a new restore (callers following a restore across redeliveries keep
// its name and Poll it).
//
// Errors as for StartExport.
func (d *Driver) Import(ctx context.Context, database, uri string) (string, error) {
	if database == "" || uri == "" {
		return "", fmt.Errorf("%w: import needs a database and a uri", ErrRequest)
	}
	what := fmt.Sprintf("import of %s into database %q", uri, database)
	if op, err := d.find(ctx, typeImport, database, uri, false); err != nil {
		return "", classify(what+": listing operations", err)
	} else if op != nil {
		return op.Name, nil
	}
	op, err := d.Service.Instances.Import(d.Project, d.Instance, &sqladmin.InstancesImportRequest{
		ImportContext: &sqladmin.ImportContext{FileType: "SQL", Uri: uri, Database: database},
	}).Context(ctx).Do()
	if err != nil {
		return d.afterRefusal(ctx, typeImport, database, uri, classify(what, err))
	}
	return op.Name, nil
}

// afterRefusal handles a refused start: when the instance is busy, the running operation
// may be the same one, started by a concurrent delivery since find looked; follow it then.
func (d *Driver) afterRefusal(ctx context.Context, typ, database, uri string, err error) (string, error) {
	if !errors.Is(err, ErrBusy) {
		return "", err
	}
	if op, ferr := d.find(ctx, typ, database, uri, false); ferr == nil && op != nil {
		return op.Name, nil
	}
	return "", err
}

// errStop ends a listing early.
var errStop = errors.New("stop listing")

// find returns the newest operation of the instance of type typ on uri (and database, when
// the operation names one) that is not DONE, else, with done, the newest one DONE without
// error, else nil. Operations.List has no filter in v1 beyond the instance: the rest is
// matched here, over at most listMaxPages pages.
func (d *Driver) find(ctx context.Context, typ, database, uri string, done bool) (*sqladmin.Operation, error) {
	var running, succeeded *sqladmin.Operation
	pages := 0
	err := d.Service.Operations.List(d.Project).Instance(d.Instance).MaxResults(listPageSize).
		Pages(ctx, func(page *sqladmin.OperationsListResponse) error {
			for _, op := range page.Items {
				if !sameWork(op, typ, database, uri) {
					continue
				}
				if op.Status != statusDone {
					running = op
					return errStop
				}
				if done && succeeded == nil && !failed(op) {
					succeeded = op
				}
			}
			if pages++; pages >= listMaxPages {
				return errStop
			}
			return nil
		})
	if err != nil && !errors.Is(err, errStop) {
		return nil, err
	}
	if running != nil {
		return running, nil
	}
	return succeeded, nil
}

// sameWork reports whether op is an operation of type typ on uri and database. The database
// is compared only when the operation's context names it.
func sameWork(op *sqladmin.Operation, typ, database, uri string) bool {
	if op == nil || op.OperationType != typ {
		return false
	}
	switch typ {
	case typeExport:
		ec := op.ExportContext
		return ec != nil && ec.Uri == uri && (len(ec.Databases) == 0 || slices.Contains(ec.Databases, database))
	case typeImport:
		ic := op.ImportContext
		return ic != nil && ic.Uri == uri && (ic.Database == "" || ic.Database == database)
	}
	return false
}

// failed reports whether a DONE operation carries errors.
func failed(op *sqladmin.Operation) bool {
	return op.Error != nil && len(op.Error.Errors) > 0
}

// Poll reads the operation once: done is true when it is DONE without error; an operation
// DONE with errors returns an error wrapping ErrOperationFailed that names its codes and
// messages; PENDING or RUNNING returns false.
func (d *Driver) Poll(ctx context.Context, opName string) (done bool, err error) {
	op, err := d.Service.Operations.Get(d.Project, opName).Context(ctx).Do()
	if err != nil {
		return false, classify("reading operation "+opName, err)
	}
	if op.Status != statusDone {
		return false, nil
	}
	if failed(op) {
		return true, operationError(op)
	}
	return true, nil
}

// operationError describes a DONE operation's errors.
func operationError(op *sqladmin.Operation) error {
	var what string
	switch {
	case op.ExportContext != nil:
		what = " to " + op.ExportContext.Uri
	case op.ImportContext != nil:
		what = " from " + op.ImportContext.Uri
	}
	var errs []string
	for _, e := range op.Error.Errors {
		if e != nil {
			errs = append(errs, e.Code+": "+e.Message)
		}
	}
	return fmt.Errorf("%w: %s%s (operation %s): %s", ErrOperationFailed, op.OperationType, what, op.Name, strings.Join(errs, "; "))
}

// Wait polls the operation every PollInterval until it is DONE (nil, or the
// ErrOperationFailed error of Poll) or ctx ends. Transient read errors are retried. When ctx
// ends first, Wait returns the context's error, and the operation keeps running in Cloud SQL:
// a later invocation can follow it by name (Poll, Wait) or find it again (StartExport,
// Import).
func (d *Driver) Wait(ctx context.Context, opName string) error {
	interval := d.PollInterval
	if interval <= 0 {
		interval = DefaultPollInterval
	}
	var last error
	for {
		done, err := d.Poll(ctx, opName)
		switch {
		case err == nil && done:
			return nil
		case errors.Is(err, ErrOperationFailed):
			return err
		case err != nil && ctx.Err() == nil && !Transient(err):
			return err // ErrRequest
		case err != nil:
			last = err
		}
		if ctx.Err() == nil {
			timer := time.NewTimer(interval)
			select {
			case <-timer.C:
				continue
			case <-ctx.Done():
				timer.Stop()
			}
		}
		msg := "cloudsql: waiting for operation " + opName + " (it keeps running in Cloud SQL; follow it by name)"
		if last != nil && !errors.Is(last, ctx.Err()) {
			msg += " after " + last.Error()
		}
		return fmt.Errorf("%s: %w", msg, ctx.Err())
	}
}

// classify wraps a request error with ErrBusy, ErrUnavailable or ErrRequest.
func classify(what string, err error) error {
	var ge *googleapi.Error
	switch {
	case errors.As(err, &ge):
		var sentinel error
		switch {
		case ge.Code == 409:
			sentinel = ErrBusy
		case ge.Code == 429 || ge.Code >= 500:
			sentinel = ErrUnavailable
		case ge.Code >= 400:
			sentinel = ErrRequest
		default:
			return fmt.Errorf("cloudsql: %s: %w", what, err)
		}
		return fmt.Errorf("%w: %s: %w", sentinel, what, err)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("cloudsql: %s: %w", what, err)
	}
	return fmt.Errorf("%w: %s: %w", ErrUnavailable, what, err)
}
