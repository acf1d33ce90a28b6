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

	"cloud.google.com/go/storage"

	"github.com/ai-square/coalmine/shared/backup/gcs"
	"github.com/ai-square/coalmine/shared/backup/pgdump"
	"github.com/ai-square/coalmine/shared/policy"
	"github.com/ai-square/coalmine/shared/rollout"
)

// verify checks every copy against the manifest and the database dump for
// completeness, then writes backup.json. Nothing unverified is "done".
func (b *Runner) verify(ctx context.Context, svc *policy.Service, r *rollout.Rollout, loc Location, st *rollout.Backup, log *slog.Logger) error {
	sum := Summary{Service: svc.Name, Rollout: r.ID, Image: r.Image, Created: b.now(), Location: loc.URL(), Skipped: st.Skipped, Complete: true}
	if len(svc.Backup.Storage.Sources) > 0 {
		c := b.copier(svc)
		m, err := c.Finish(ctx, loc.Bucket, loc.Prefix)
		if err != nil {
			return classify("manifest", err)
		}
		if err := gcs.Verify(ctx, b.Storage, m); err != nil {
			return classify("verify copies", err)
		}
		sum.Manifest, sum.Objects, sum.ObjectBytes = loc.Object(manifestObject), len(m.Entries), m.Bytes()
		st.Manifest, st.Objects = sum.Manifest, sum.Objects
		log.Info("copies verified", "objects", sum.Objects, "bytes", sum.ObjectBytes)
	}
	if st.Database != "" {
		size, err := b.verifyDatabase(ctx, svc, loc, st.Database)
		if err != nil {
			return err
		}
		sum.Database, sum.Driver, sum.DatabaseName, sum.DatabaseBytes = st.Database, string(dbDriver(svc)), svc.Backup.Database.Database, size
		st.Bytes = size
		log.Info("database backup verified", "object", st.Database, "bytes", size)
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
	st.Step, st.Progress = StepDone, "verified"
	return nil
}

// verifyDatabase reads the whole dump back: pg_restore must be able to
// decode every block of a custom-format dump; a Cloud SQL export must be a
// complete gzip stream. A truncated or corrupted dump fails the backup.
func (b *Runner) verifyDatabase(ctx context.Context, svc *policy.Service, loc Location, object string) (int64, error) {
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
	switch dbDriver(svc) {
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
