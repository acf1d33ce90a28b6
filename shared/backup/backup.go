// Package backup takes the backup a rollout must have before its canary is
// deployed, and puts it back. A backup lives in the policy's target bucket
// under TARGET_PREFIX + ROLLOUT_ID + "/":
//
//	objects/BUCKET/NAME   server-side copies of the source objects (gcs)
//	manifest.json         name, size, CRC32C and source generation of each copy
//	database.dump         pg_dump custom format (driver postgres), or
//	database.sql.gz       the Cloud SQL export (driver cloudsql)
//	backup.json           the summary, written last: a backup without it is incomplete
//
// A backup runs in chunks (a function has about 9 minutes): each call of
// Backup does one step — copy for a time budget, dump the database, follow
// a Cloud SQL export, verify — and returns where it is; the caller stores
// that in the rollout state and calls again. Everything is idempotent:
// copies carry a DoesNotExist precondition, manifest parts are never
// overwritten, a running Cloud SQL export is followed rather than started
// twice.
package backup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"cloud.google.com/go/storage"

	"github.com/ai-square/coalmine/shared/backup/cloudsql"
	"github.com/ai-square/coalmine/shared/backup/gcs"
	"github.com/ai-square/coalmine/shared/backup/pgdump"
	"github.com/ai-square/coalmine/shared/policy"
	"github.com/ai-square/coalmine/shared/rollout"
)

// Steps of a running backup (rollout.Backup.Step).
const (
	StepStorage  = "storage"
	StepDatabase = "database"
	StepVerify   = "verify"
	StepDone     = "done"
)

// Object names inside a backup.
const (
	SummaryObject  = "backup.json"
	DumpObject     = "database.dump"
	ExportObject   = "database.sql.gz"
	manifestObject = "manifest.json"
)

// Runner takes and restores backups.
type Runner struct {
	Storage *storage.Client
	// Dumper runs pg_dump and pg_restore (driver postgres).
	Dumper *pgdump.Dumper
	// CloudSQL connects to an instance's Admin API (driver cloudsql);
	// default cloudsql.New (honours SQLADMIN_EMULATOR_HOST).
	CloudSQL func(ctx context.Context, project, instance string) (*cloudsql.Driver, error)
	// Getenv looks up the database URL variable (default os.Getenv).
	Getenv func(string) string
	// SkipDatabase, when set, skips database backups with this reason
	// instead of failing (the local cloud without PostgreSQL installed).
	SkipDatabase string
	// Budget bounds one chunk of storage copying or export waiting
	// (default 4m, well inside a function's 9 minutes).
	Budget time.Duration
	// Workers copies at once (default: the policy's backup.storage.workers).
	Workers int
	Now     func() time.Time
	Log     *slog.Logger
}

func (b *Runner) now() time.Time {
	if b.Now != nil {
		return b.Now().UTC()
	}
	return time.Now().UTC()
}

func (b *Runner) budget() time.Duration {
	if b.Budget > 0 {
		return b.Budget
	}
	return 4 * time.Minute
}

func (b *Runner) getenv(k string) string {
	if b.Getenv != nil {
		return b.Getenv(k)
	}
	return os.Getenv(k)
}

func (b *Runner) log() *slog.Logger {
	if b.Log != nil {
		return b.Log
	}
	return slog.Default()
}

// Location is where a rollout's backup lives.
type Location struct {
	Bucket string
	Prefix string // ends with "/"
}

// URL is gs://bucket/prefix.
func (l Location) URL() string { return "gs://" + l.Bucket + "/" + l.Prefix }

// Object is gs://bucket/prefix+name.
func (l Location) Object(name string) string { return l.URL() + name }

// Where returns the location of rollout id's backup under the service's target.
// With id "", it is the root under which every backup of the service lives.
func Where(svc *policy.Service, id string) Location {
	p := svc.Backup.Target.Prefix
	if p != "" && !strings.HasSuffix(p, "/") {
		p += "/"
	}
	if id != "" {
		p += id + "/"
	}
	return Location{Bucket: svc.Backup.Target.Bucket, Prefix: p}
}

// Summary is backup.json: what a complete backup holds.
type Summary struct {
	Service  string    `json:"service"`
	Rollout  string    `json:"rollout"`
	Image    string    `json:"image"`
	Created  time.Time `json:"created"`
	Location string    `json:"location"`
	// Objects and ObjectBytes describe the storage copy ("" manifest: none).
	Manifest    string `json:"manifest,omitempty"`
	Objects     int    `json:"objects"`
	ObjectBytes int64  `json:"objectBytes"`
	// Database is the dump or export object, with its driver and size.
	Database      string `json:"database,omitempty"`
	Driver        string `json:"driver,omitempty"`
	DatabaseName  string `json:"databaseName,omitempty"`
	DatabaseBytes int64  `json:"databaseBytes,omitempty"`
	Skipped       string `json:"skipped,omitempty"`
	// Complete is false for a backup without backup.json (List only).
	Complete bool `json:"-"`
}

func sources(svc *policy.Service) []gcs.Source {
	var out []gcs.Source
	for _, s := range svc.Backup.Storage.Sources {
		out = append(out, gcs.Source{Bucket: s.Bucket, Prefix: s.Prefix})
	}
	return out
}

func dbDriver(svc *policy.Service) policy.DatabaseDriver {
	d := svc.Backup.Database.Driver
	if d == "" {
		return policy.DriverNone
	}
	return d
}

// ErrFailed marks a backup that cannot succeed (verification failed, source
// missing): the rollout fails and no canary is deployed. Any other error
// from Runner.Backup is transient and the chunk is delivered again.
var ErrFailed = errors.New("backup failed")

// permanent marks a failure that fails the rollout.
func permanent(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrFailed, fmt.Sprintf(format, args...))
}

// Backup does the next step of rollout r's backup (release.Backuper).
func (b *Runner) Backup(ctx context.Context, svc *policy.Service, r *rollout.Rollout) (rollout.Backup, bool, error) {
	var st rollout.Backup
	if r.Backup != nil {
		st = *r.Backup
		st.LastError = ""
	}
	loc := Where(svc, r.ID)
	log := b.log().With("service", svc.Name, "rollout", r.ID, "backup", loc.URL())
	if st.Step == "" {
		st.Prefix = loc.URL()
		st.Step = b.firstStep(svc)
		if st.Step == StepDone {
			st.Skipped = "nothing to back up: no storage sources and no database in the policy"
			return st, true, nil
		}
		log.Info("backup started", "step", st.Step)
	}
	var err error
	switch st.Step {
	case StepStorage:
		err = b.storageChunk(ctx, svc, loc, &st, log)
	case StepDatabase:
		err = b.databaseStep(ctx, svc, loc, &st, log)
	case StepVerify:
		err = b.verify(ctx, svc, r, loc, &st, log)
	case StepDone:
	default:
		return st, false, permanent("unknown backup step %q in the rollout state", st.Step)
	}
	if err != nil {
		return st, false, err
	}
	return st, st.Step == StepDone, nil
}

func (b *Runner) firstStep(svc *policy.Service) string {
	switch {
	case len(svc.Backup.Storage.Sources) > 0:
		return StepStorage
	case dbDriver(svc) != policy.DriverNone:
		return StepDatabase
	}
	return StepDone
}

func (b *Runner) afterStorage(svc *policy.Service) string {
	if dbDriver(svc) != policy.DriverNone {
		return StepDatabase
	}
	return StepVerify
}

func (b *Runner) copier(svc *policy.Service) *gcs.Copier {
	w := b.Workers
	if w <= 0 {
		w = svc.Backup.Storage.Workers
	}
	return &gcs.Copier{Client: b.Storage, Workers: w}
}

// storageChunk copies for one budget and writes the chunk's manifest part.
func (b *Runner) storageChunk(ctx context.Context, svc *policy.Service, loc Location, st *rollout.Backup, log *slog.Logger) error {
	var cur gcs.Cursor
	if st.Cursor != "" {
		if err := json.Unmarshal([]byte(st.Cursor), &cur); err != nil {
			return permanent("backup cursor %q unreadable: %v", st.Cursor, err)
		}
	}
	c := b.copier(svc)
	// The copies in flight when the budget runs out still finish; storage
	// that does not answer fails the chunk instead of hanging it.
	cctx, cancel := context.WithTimeout(ctx, b.budget()+b.budget()/4+10*time.Second)
	defer cancel()
	start := time.Now()
	res, err := c.Copy(cctx, gcs.CopyRequest{Sources: sources(svc), Bucket: loc.Bucket, Prefix: loc.Prefix, Cursor: cur, Budget: b.budget()})
	if err != nil && len(res.Entries) == 0 {
		return classify("copy objects", err)
	}
	seq := st.Objects // a part per chunk, named by the count before it: redone chunks land on the same name
	if perr := c.WritePart(ctx, loc.Bucket, loc.Prefix, seq, res.Entries); perr != nil {
		return classify("write manifest part", perr)
	}
	st.Objects += len(res.Entries)
	next, _ := json.Marshal(res.Next)
	st.Cursor = string(next)
	st.Progress = fmt.Sprintf("%d objects copied", st.Objects)
	log.Info("backup chunk", "copied", res.Copied, "already_there", res.AlreadyThere, "vanished", res.Vanished,
		"objects", st.Objects, "seconds", time.Since(start).Seconds(), "done", res.Done)
	if err != nil {
		return classify("copy objects", err) // the entries so far are recorded; resume from Next
	}
	if res.Done {
		st.Step = b.afterStorage(svc)
		st.Cursor = ""
	}
	return nil
}

// classify keeps permanent gcs errors permanent and leaves the rest transient.
func classify(what string, err error) error {
	if errors.Is(err, gcs.ErrMismatch) || errors.Is(err, gcs.ErrConflict) || errors.Is(err, gcs.ErrInvalid) {
		return permanent("%s: %v", what, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// databaseStep dumps the database (postgres) or starts and follows the
// Cloud SQL export.
func (b *Runner) databaseStep(ctx context.Context, svc *policy.Service, loc Location, st *rollout.Backup, log *slog.Logger) error {
	db := svc.Backup.Database
	switch dbDriver(svc) {
	case policy.DriverPostgres:
		url := b.getenv(db.URLEnv)
		if url == "" {
			if b.SkipDatabase != "" {
				st.Skipped = joinReason(st.Skipped, "database: "+b.SkipDatabase)
				st.Step = StepVerify
				return nil
			}
			return permanent("database: %s is not set; the postgres driver needs the database URL", db.URLEnv)
		}
		start := time.Now()
		w := b.Storage.Bucket(loc.Bucket).Object(loc.Prefix + DumpObject).NewWriter(ctx)
		w.ContentType = "application/octet-stream"
		w.ChunkSize = 8 << 20
		stats, err := b.dumper().Dump(ctx, url, w)
		if err != nil {
			w.CloseWithError(err)
			if errors.Is(err, pgdump.ErrNotInstalled) {
				return permanent("database: %v", err)
			}
			return fmt.Errorf("database dump: %w", err)
		}
		if err := w.Close(); err != nil {
			return fmt.Errorf("database dump: upload %s: %w", loc.Object(DumpObject), err)
		}
		st.Database, st.Bytes = loc.Object(DumpObject), stats.Bytes
		st.Step = StepVerify
		log.Info("database dumped", "bytes", stats.Bytes, "seconds", time.Since(start).Seconds(), "object", st.Database)
		return nil
	case policy.DriverCloudSQL:
		project, instance, ok := db.ProjectInstance()
		if !ok {
			return permanent("database: instance %q is not PROJECT:INSTANCE", db.Instance)
		}
		d, err := b.cloudSQL(ctx, project, instance)
		if err != nil {
			return fmt.Errorf("cloud sql: %w", err)
		}
		uri := loc.Object(ExportObject)
		if st.Operation == "" {
			op, err := d.StartExport(ctx, db.Database, uri)
			if err != nil {
				return b.cloudSQLError("start export", err)
			}
			// Record the operation before waiting: a redelivery follows it.
			st.Operation, st.Database = op, uri
			st.Progress = "Cloud SQL export " + op + " running"
			log.Info("cloud sql export started", "operation", op, "uri", uri)
			return nil
		}
		wctx, cancel := context.WithTimeout(ctx, b.budget())
		defer cancel()
		err = d.Wait(wctx, st.Operation)
		if err != nil && wctx.Err() != nil && ctx.Err() == nil {
			st.Progress = "Cloud SQL export " + st.Operation + " still running"
			return nil // not done yet: the next chunk keeps waiting
		}
		if err != nil {
			return b.cloudSQLError("export", err)
		}
		st.Step = StepVerify
		log.Info("cloud sql export done", "operation", st.Operation)
		return nil
	}
	st.Step = StepVerify
	return nil
}

func (b *Runner) cloudSQLError(what string, err error) error {
	if cloudsql.Transient(err) {
		return fmt.Errorf("cloud sql %s: %w", what, err)
	}
	return permanent("cloud sql %s: %v", what, err)
}

func (b *Runner) cloudSQL(ctx context.Context, project, instance string) (*cloudsql.Driver, error) {
	if b.CloudSQL != nil {
		return b.CloudSQL(ctx, project, instance)
	}
	return cloudsql.New(ctx, project, instance)
}

func (b *Runner) dumper() *pgdump.Dumper {
	if b.Dumper != nil {
		return b.Dumper
	}
	return &pgdump.Dumper{}
}

func joinReason(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// FromEnvironment returns the runner a deployed Backup function uses:
// Cloud Storage with Application Default Credentials (or the emulator
// named by STORAGE_EMULATOR_HOST), pg_dump from the image, the Cloud SQL
// Admin API (or SQLADMIN_EMULATOR_HOST), database URLs from the process
// environment.
func FromEnvironment(ctx context.Context) (*Runner, error) {
	c, err := storage.NewClient(ctx)
	if err != nil {
		return nil, fmt.Errorf("backup: cloud storage client: %w", err)
	}
	return &Runner{Storage: c}, nil
}
