package backup

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"cloud.google.com/go/storage"

	"github.com/ai-square/coalmine/shared/backup/gcs"
	"github.com/ai-square/coalmine/shared/backup/pgdump"
	"github.com/ai-square/coalmine/shared/policy"
	"github.com/ai-square/coalmine/shared/rollout"
)

// verify checks every copy against the manifest and the database dump for
// completeness, then writes backup.json. Nothing unverified is "done". It
// works in chunks like the copy: the first call merges the manifest, each
// call verifies copies for one budget (the cursor "objects:N" says how many
// are done), then one call reads the database backup through, and the last
// writes the summary.
func (b *Runner) verify(ctx context.Context, svc *policy.Service, r *rollout.Rollout, loc Location, st *rollout.Backup, log *slog.Logger) error {
	hasObjects := len(svc.Backup.Storage.Sources) > 0
	c := b.copier(svc)
	switch {
	case hasObjects && st.Cursor == "":
		m, err := c.Finish(ctx, loc.Bucket, loc.Prefix)
		if err != nil {
			return classify("manifest", err)
		}
		st.Manifest, st.Objects = loc.Object(manifestObject), len(m.Entries)
		st.Cursor, st.Progress = "objects:0", fmt.Sprintf("verifying %d copies", len(m.Entries))
		return nil
	case strings.HasPrefix(st.Cursor, "objects:"):
		done, err := strconv.Atoi(strings.TrimPrefix(st.Cursor, "objects:"))
		if err != nil {
			return permanent("verification cursor %q unreadable", st.Cursor)
		}
		m, err := c.ReadManifest(ctx, loc.Bucket, loc.Prefix)
		if err != nil {
			return classify("read manifest", err)
		}
		deadline := time.Now().Add(b.budget())
		for done < len(m.Entries) && time.Now().Before(deadline) {
			part := m
			part.Entries = m.Entries[done:min(done+verifyBatch, len(m.Entries))]
			if err := gcs.Verify(ctx, b.Storage, part); err != nil {
				return classify("verify copies", err)
			}
			done += len(part.Entries)
		}
		st.Progress = fmt.Sprintf("%d of %d copies verified", done, len(m.Entries))
		if done < len(m.Entries) {
			st.Cursor = fmt.Sprintf("objects:%d", done)
			return nil
		}
		log.Info("copies verified", "objects", len(m.Entries), "bytes", m.Bytes())
		st.Cursor = "database"
		return nil
	case st.Cursor == "" || st.Cursor == "database":
		if st.Database != "" {
			size, err := b.verifyDatabase(ctx, svc, loc, st.Database)
			if err != nil {
				return err
			}
			st.Bytes = size
			log.Info("database backup verified", "object", st.Database, "bytes", size)
		}
		st.Cursor = "summary"
		fallthrough
	case st.Cursor == "summary":
		return b.writeSummary(ctx, svc, r, loc, st)
	}
	return permanent("verification cursor %q unknown", st.Cursor)
}

// verifyBatch is how many copies are verified between budget checks.
const verifyBatch = 200

// writeSummary writes backup.json, which makes the backup complete.
func (b *Runner) writeSummary(ctx context.Context, svc *policy.Service, r *rollout.Rollout, loc Location, st *rollout.Backup) error {
	sum := Summary{Service: svc.Name, Rollout: r.ID, Image: r.Image, Created: b.now(), Location: loc.URL(), Skipped: st.Skipped, Complete: true,
		Manifest: st.Manifest, Objects: st.Objects}
	if st.Manifest != "" {
		m, err := b.copier(svc).ReadManifest(ctx, loc.Bucket, loc.Prefix)
		if err != nil {
			return classify("read manifest", err)
		}
		sum.ObjectBytes = m.Bytes()
	}
	if st.Database != "" {
		sum.Database, sum.Driver, sum.DatabaseName, sum.DatabaseBytes = st.Database, string(dbDriver(svc)), svc.Backup.Database.Database, st.Bytes
	}
	data, err := json.MarshalIndent(sum, "", "  ")
	if err != nil {
		return err
	}
	w := b.Storage.Bucket(loc.Bucket).Object(loc.Prefix + SummaryObject).NewWriter(ctx)
	w.ContentType = "application/json"
	if _, err := w.Write(data); err != nil {
		w.Close()
		return fmt.Errorf("write %s: %w", loc.Object(SummaryObject), err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("write %s: %w", loc.Object(SummaryObject), err)
	}
	st.Step, st.Cursor, st.Progress = StepDone, "", "verified"
	return nil
}

// verifyDatabase reads the whole dump back: pg_restore must be able to
// decode every block of a custom-format dump; a Cloud SQL export must be a
// complete gzip stream. A truncated or corrupted dump fails the backup.
func (b *Runner) verifyDatabase(ctx context.Context, svc *policy.Service, loc Location, object string) (int64, error) {
	return b.verifyDump(ctx, dbDriver(svc), loc, object)
}

// verifyDump reads a database backup of driver through (see
// verifyDatabase). A damaged one wraps ErrFailed.
func (b *Runner) verifyDump(ctx context.Context, driver policy.DatabaseDriver, loc Location, object string) (int64, error) {
	if !strings.HasPrefix(object, "gs://"+loc.Bucket+"/") {
		return 0, permanent("database backup %s is not in %s", object, loc.URL())
	}
	name := object[len("gs://"+loc.Bucket+"/"):]
	rd, err := b.Storage.Bucket(loc.Bucket).Object(name).NewReader(ctx)
	if errors.Is(err, storage.ErrObjectNotExist) {
		return 0, permanent("database backup %s is missing", object)
	}
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", object, err)
	}
	defer rd.Close()
	cr := &countingReader{r: rd}
	switch driver {
	case policy.DriverPostgres:
		tables, err := b.dumper().Verify(ctx, cr)
		if errors.Is(err, pgdump.ErrInvalidDump) {
			return 0, permanent("database backup %s: %v", object, err)
		}
		if err != nil {
			return 0, fmt.Errorf("verify %s: %w", object, err)
		}
		_ = tables
	case policy.DriverCloudSQL:
		zr, err := gzip.NewReader(bufio.NewReader(cr))
		if err != nil {
			return 0, permanent("database export %s is not gzip: %v", object, err)
		}
		if _, err := io.Copy(io.Discard, zr); err != nil {
			return 0, permanent("database export %s is incomplete: %v", object, err)
		}
	default:
		return 0, permanent("database backup %s has unknown driver %q", object, driver)
	}
	return cr.n, nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
