package cloud

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"cloud.google.com/go/storage"
	"github.com/fsouza/fake-gcs-server/fakestorage"
	"github.com/jackc/pgx/v5"

	"github.com/ai-square/coalmine/infra/local/gcsemu"
	"github.com/ai-square/coalmine/infra/local/postgres"
	"github.com/ai-square/coalmine/infra/local/sampleapp"
	"github.com/ai-square/coalmine/shared/policy"
)

// SampleUsers are the users the local cloud seeds: all in Cloud Storage,
// the first one also migrated to PostgreSQL (so the mini AI Square's
// fallback from PostgreSQL to Cloud Storage shows).
var SampleUsers = []map[string]any{
	{"email": "alice@example.com", "name": "Alice", "language": "en", "progress": map[string]any{"ai-literacy": 0.8}},
	{"email": "bob@example.com", "name": "Bob", "language": "zh-TW", "progress": map[string]any{"ai-literacy": 0.3}},
	{"email": "carol@example.com", "name": "Carol", "language": "ja", "progress": map[string]any{}},
}

// startData starts Cloud Storage (always) and PostgreSQL (when its binaries
// are installed), creates the policy's buckets and databases and seeds them.
func (c *Cloud) startData(ctx context.Context, cfg Config) error {
	var err error
	c.Storage, err = gcsemu.Start(gcsemu.Options{Listen: cfg.Listen + ":0", Logger: c.log.With("component", "storage")})
	if err != nil {
		return fmt.Errorf("local cloud: cloud storage: %w", err)
	}
	c.closers = append(c.closers, c.Storage.Close)
	c.StorageClient, err = c.Storage.Client(ctx)
	if err != nil {
		return err
	}
	c.closers = append(c.closers, c.StorageClient.Close)
	for _, b := range buckets(c.Policy) {
		c.Storage.Fake().CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: b})
	}
	for _, s := range c.Policy.Services {
		for _, src := range s.Backup.Storage.Sources {
			if err := seedObjects(ctx, c.StorageClient, src.Bucket, src.Prefix); err != nil {
				return err
			}
		}
	}
	c.dbURLs = map[string]string{}
	if !needsPostgres(c.Policy) {
		return nil
	}
	if _, ok := postgres.Available(); !ok {
		c.DatabaseSkipped = "PostgreSQL is not installed on this machine (apt-get install -y postgresql): database backups are skipped"
		c.log.Warn(c.DatabaseSkipped)
		return nil
	}
	c.Postgres, err = postgres.Start(ctx, postgres.Options{Dir: filepath.Join(c.Dir, "postgres"), Logger: c.log.With("component", "postgres")})
	if err != nil {
		return fmt.Errorf("local cloud: postgresql: %w", err)
	}
	c.closers = append(c.closers, func() error { c.Postgres.Stop(); return nil })
	for _, s := range c.Policy.Services {
		db := s.Backup.Database
		if db.Driver != policy.DriverPostgres {
			continue
		}
		if err := c.Postgres.CreateDatabase(ctx, db.Database); err != nil && !alreadyExists(err) {
			return fmt.Errorf("local cloud: create database %s: %w", db.Database, err)
		}
		url := c.Postgres.URL(db.Database)
		if err := seedDatabase(ctx, url); err != nil {
			return err
		}
		c.dbURLs[db.URLEnv] = url
	}
	return nil
}

func alreadyExists(err error) bool {
	return err != nil && (errors.Is(err, os.ErrExist) || strings.Contains(err.Error(), "already exists"))
}

func needsPostgres(p *policy.Policy) bool {
	for _, s := range p.Services {
		if s.Backup.Database.Driver == policy.DriverPostgres {
			return true
		}
	}
	return false
}

// buckets lists every bucket the policy names.
func buckets(p *policy.Policy) []string {
	var out []string
	for _, s := range p.Services {
		for _, src := range s.Backup.Storage.Sources {
			out = append(out, src.Bucket)
		}
		if s.Backup.Target.Bucket != "" {
			out = append(out, s.Backup.Target.Bucket)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func seedObjects(ctx context.Context, c *storage.Client, bucket, prefix string) error {
	for _, u := range SampleUsers {
		data, _ := json.Marshal(u)
		w := c.Bucket(bucket).Object(prefix + sampleapp.UserObject(u["email"].(string))).NewWriter(ctx)
		w.ContentType = "application/json"
		if _, err := w.Write(data); err != nil {
			w.Close()
			return fmt.Errorf("local cloud: seed gs://%s: %w", bucket, err)
		}
		if err := w.Close(); err != nil {
			return fmt.Errorf("local cloud: seed gs://%s: %w", bucket, err)
		}
	}
	return nil
}

func seedDatabase(ctx context.Context, url string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return fmt.Errorf("local cloud: seed database: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sampleapp.UsersSchema); err != nil {
		return fmt.Errorf("local cloud: seed database: %w", err)
	}
	data, _ := json.Marshal(SampleUsers[0])
	_, err = conn.Exec(ctx, `INSERT INTO users (email, data) VALUES ($1, $2) ON CONFLICT (email) DO NOTHING`, SampleUsers[0]["email"], data)
	if err != nil {
		return fmt.Errorf("local cloud: seed database: %w", err)
	}
	return nil
}

// serviceEnv is the environment every service template gets: where its
// data lives, as a real service's configuration would say.
func (c *Cloud) serviceEnv(s *policy.Service) map[string]string {
	env := map[string]string{gcsemu.EnvEmulatorHost: c.Storage.Host()}
	if srcs := s.Backup.Storage.Sources; len(srcs) > 0 {
		env[sampleapp.EnvUserBucket] = srcs[0].Bucket
	}
	if url := c.dbURLs[s.Backup.Database.URLEnv]; url != "" {
		env[sampleapp.EnvDatabaseURL] = url
		env[s.Backup.Database.URLEnv] = url
	}
	return env
}
