package backup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"cloud.google.com/go/storage"
	"google.golang.org/api/iterator"

	"github.com/ai-square/coalmine/shared/backup/gcs"
	"github.com/ai-square/coalmine/shared/policy"
)

// ErrNoBackup means the service has no complete backup (for that rollout).
var ErrNoBackup = errors.New("no complete backup")

// List returns the service's backups, newest first; incomplete ones (no
// backup.json: the backup failed or is running) are included with Complete
// false.
func (b *Runner) List(ctx context.Context, svc *policy.Service) ([]Summary, error) {
	root := Where(svc, "")
	it := b.Storage.Bucket(root.Bucket).Objects(ctx, &storage.Query{Prefix: root.Prefix, Delimiter: "/"})
	var out []Summary
	for {
		a, err := it.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("list backups in %s: %w", root.URL(), err)
		}
		if a.Prefix == "" {
			continue
		}
		id := strings.TrimSuffix(strings.TrimPrefix(a.Prefix, root.Prefix), "/")
		s, err := b.summary(ctx, svc, id)
		if errors.Is(err, ErrNoBackup) {
			s = Summary{Service: svc.Name, Rollout: id, Location: Where(svc, id).URL()}
			if t, err := b.oldest(ctx, Where(svc, id)); err == nil {
				s.Created = t
			}
		} else if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Created.After(out[j].Created) })
	return out, nil
}

// summary reads backup.json of rollout id.
func (b *Runner) summary(ctx context.Context, svc *policy.Service, id string) (Summary, error) {
	loc := Where(svc, id)
	rd, err := b.Storage.Bucket(loc.Bucket).Object(loc.Prefix + SummaryObject).NewReader(ctx)
	if errors.Is(err, storage.ErrObjectNotExist) {
		return Summary{}, fmt.Errorf("%w for rollout %s in %s", ErrNoBackup, id, loc.URL())
	}
	if err != nil {
		return Summary{}, fmt.Errorf("read %s: %w", loc.Object(SummaryObject), err)
	}
	defer rd.Close()
	data, err := io.ReadAll(rd)
	if err != nil {
		return Summary{}, fmt.Errorf("read %s: %w", loc.Object(SummaryObject), err)
	}
	var s Summary
	if err := json.Unmarshal(data, &s); err != nil {
		return Summary{}, fmt.Errorf("%s is corrupt: %w", loc.Object(SummaryObject), err)
	}
	s.Complete = true
	return s, nil
}

// oldest is the creation time of the first object under loc (for
// incomplete backups).
func (b *Runner) oldest(ctx context.Context, loc Location) (time.Time, error) {
	it := b.Storage.Bucket(loc.Bucket).Objects(ctx, &storage.Query{Prefix: loc.Prefix})
	var t time.Time
	for n := 0; n < 100; n++ {
		a, err := it.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			return t, err
		}
		if t.IsZero() || a.Created.Before(t) {
			t = a.Created
		}
	}
	return t, nil
}

// Find returns the backup of rollout id, or the newest complete one when id is "".
func (b *Runner) Find(ctx context.Context, svc *policy.Service, id string) (Summary, error) {
	if id != "" {
		return b.summary(ctx, svc, id)
	}
	all, err := b.List(ctx, svc)
	if err != nil {
		return Summary{}, err
	}
	for _, s := range all {
		if s.Complete {
			return s, nil
		}
	}
	return Summary{}, fmt.Errorf("%w for service %s in %s", ErrNoBackup, svc.Name, Where(svc, "").URL())
}

// RestoreOptions choose what Restore does.
type RestoreOptions struct {
	Storage, Database bool
	// DryRun plans and changes nothing.
	DryRun bool
	// DeleteNew deletes source objects written after the backup.
	DeleteNew bool
}

// RestoreReport says what Restore did (or would do).
type RestoreReport struct {
	Backup  Summary
	Storage *gcs.RestorePlan
	// Database describes the database restore ("" if not asked for).
	Database string
}

// ErrBackupDamaged means the backup no longer matches what was verified
// when it was taken (an object overwritten, a dump truncated): Restore
// changed nothing.
var ErrBackupDamaged = errors.New("backup damaged; nothing was restored")

// Restore puts the backup s back: the objects over their sources (objects
// written after the backup only listed, or deleted with DeleteNew) and the
// database from its dump or export. Before it changes anything it checks
// the whole of what it would put back: every copy against the manifest
// (size, CRC32C and content) and the database backup read through. A
// backup that fails the check changes nothing and returns an error wrapping
// ErrBackupDamaged. With DryRun it checks and plans, and changes nothing.
func (b *Runner) Restore(ctx context.Context, svc *policy.Service, s Summary, o RestoreOptions) (RestoreReport, error) {
	rep := RestoreReport{Backup: s}
	loc := Where(svc, s.Rollout)
	var m gcs.Manifest
	objects := o.Storage && s.Manifest != ""
	if objects {
		var err error
		m, err = b.copier(svc).ReadManifest(ctx, loc.Bucket, loc.Prefix)
		if err != nil {
			return rep, fmt.Errorf("read manifest: %w", err)
		}
		if err := gcs.Verify(ctx, b.Storage, m); err != nil {
			if errors.Is(err, gcs.ErrMismatch) {
				return rep, fmt.Errorf("%w: the objects of %s do not match its manifest: %w", ErrBackupDamaged, loc.URL(), err)
			}
			return rep, fmt.Errorf("check the backup's objects: %w", err)
		}
	}
	database := o.Database && s.Database != ""
	if database {
		if _, err := b.verifyDump(ctx, policy.DatabaseDriver(s.Driver), loc, s.Database); err != nil {
			if errors.Is(err, ErrFailed) {
				return rep, fmt.Errorf("%w: %w", ErrBackupDamaged, err)
			}
			return rep, fmt.Errorf("check the database backup: %w", err)
		}
	}
	if objects {
		plan, err := gcs.Restore(ctx, b.Storage, m, gcs.RestoreOptions{DryRun: o.DryRun, DeleteNew: o.DeleteNew})
		rep.Storage = &plan
		if err != nil {
			return rep, fmt.Errorf("restore objects: %w", err)
		}
	}
	if database {
		desc, err := b.restoreDatabase(ctx, svc, loc, s, o.DryRun)
		rep.Database = desc
		if err != nil {
			return rep, err
		}
	}
	return rep, nil
}

func (b *Runner) restoreDatabase(ctx context.Context, svc *policy.Service, loc Location, s Summary, dryRun bool) (string, error) {
	db := svc.Backup.Database
	switch policy.DatabaseDriver(s.Driver) {
	case policy.DriverPostgres:
		url := b.getenv(db.URLEnv)
		if url == "" {
			return "", fmt.Errorf("restore database: %s is not set", db.URLEnv)
		}
		desc := fmt.Sprintf("database %s from %s (%d bytes, pg_restore --clean --single-transaction)", s.DatabaseName, s.Database, s.DatabaseBytes)
		if dryRun {
			return desc, nil // Restore read the dump through already
		}
		rd, err := b.Storage.Bucket(loc.Bucket).Object(loc.Prefix + DumpObject).NewReader(ctx)
		if err != nil {
			return desc, fmt.Errorf("restore database: read %s: %w", s.Database, err)
		}
		defer rd.Close()
		if err := b.dumper().Restore(ctx, url, rd); err != nil {
			return desc, fmt.Errorf("restore database: %w", err)
		}
		return desc, nil
	case policy.DriverCloudSQL:
		project, instance, ok := db.ProjectInstance()
		if !ok {
			return "", fmt.Errorf("restore database: instance %q is not PROJECT:INSTANCE", db.Instance)
		}
		desc := fmt.Sprintf("Cloud SQL %s:%s database %s imported from %s", project, instance, s.DatabaseName, s.Database)
		if dryRun {
			return desc, nil
		}
		d, err := b.cloudSQL(ctx, project, instance)
		if err != nil {
			return desc, err
		}
		op, err := d.Import(ctx, s.DatabaseName, s.Database)
		if err != nil {
			return desc, fmt.Errorf("restore database: import: %w", err)
		}
		if err := d.Wait(ctx, op); err != nil {
			return desc, fmt.Errorf("restore database: import %s: %w", op, err)
		}
		return desc, nil
	}
	return "", fmt.Errorf("restore database: backup has unknown driver %q", s.Driver)
}

// Prune deletes the backups the policy's retention no longer keeps: the
// newest retention.keep complete backups are always kept; older ones, and
// incomplete ones, go once older than retention.maxAge. keep names rollouts never to delete (one in progress).
// With dryRun it only returns what it would delete.
func (b *Runner) Prune(ctx context.Context, svc *policy.Service, keep map[string]bool, dryRun bool) ([]Summary, error) {
	all, err := b.List(ctx, svc)
	if err != nil {
		return nil, err
	}
	ret := svc.Backup.Retention
	now := b.now()
	// Only complete backups count towards keep: failed or running ones
	// must never push the last restorable backup out.
	var gone []Summary
	complete := 0
	for _, s := range all {
		if s.Complete {
			complete++
			if complete <= ret.Keep {
				continue
			}
		}
		if keep[s.Rollout] {
			continue
		}
		if ret.MaxAge.Duration > 0 && now.Sub(s.Created) < ret.MaxAge.Duration {
			continue
		}
		gone = append(gone, s)
	}
	if dryRun {
		return gone, nil
	}
	for _, s := range gone {
		loc := Where(svc, s.Rollout)
		it := b.Storage.Bucket(loc.Bucket).Objects(ctx, &storage.Query{Prefix: loc.Prefix})
		for {
			a, err := it.Next()
			if errors.Is(err, iterator.Done) {
				break
			}
			if err != nil {
				return gone, fmt.Errorf("prune %s: %w", loc.URL(), err)
			}
			if err := b.Storage.Bucket(loc.Bucket).Object(a.Name).Delete(ctx); err != nil && !errors.Is(err, storage.ErrObjectNotExist) {
				return gone, fmt.Errorf("prune %s: delete %s: %w", loc.URL(), a.Name, err)
			}
		}
	}
	return gone, nil
}
