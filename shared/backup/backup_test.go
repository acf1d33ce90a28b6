package backup_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/storage"
	"github.com/fsouza/fake-gcs-server/fakestorage"
	"github.com/jackc/pgx/v5"
	"google.golang.org/api/option"

	"github.com/ai-square/coalmine/infra/local/gcsemu"
	"github.com/ai-square/coalmine/infra/local/postgres"
	"github.com/ai-square/coalmine/infra/local/sqladminemu"
	"github.com/ai-square/coalmine/shared/backup"
	"github.com/ai-square/coalmine/shared/backup/cloudsql"
	"github.com/ai-square/coalmine/shared/policy"
	"github.com/ai-square/coalmine/shared/rollout"
)

const (
	dataBucket   = "ai-square-user-data"
	uploadBucket = "ai-square-uploads"
	backupBucket = "coalmine-backups"
)

func testPolicy(t *testing.T, dbDriver string) *policy.Service {
	t.Helper()
	db := "database: {driver: postgres, urlEnv: DATABASE_URL, database: app}"
	switch dbDriver {
	case "cloudsql":
		db = "database: {driver: cloudsql, instance: \"local-project:local-db\", database: app}"
	case "none":
		db = "database: {driver: none}"
	}
	p, err := policy.Parse([]byte(fmt.Sprintf(`
services:
  - name: ai-square
    project: local-project
    region: local
    images: [local.dev/ai-square/web]
    backup:
      storage:
        sources: [{bucket: %s, prefix: users/}, {bucket: %s}]
        workers: 8
      %s
      target: {bucket: %s, prefix: ai-square/}
      retention: {keep: 2, maxAge: 1h}
`, dataBucket, uploadBucket, db, backupBucket)))
	if err != nil {
		t.Fatalf("policy: %v", err)
	}
	return &p.Services[0]
}

type fixture struct {
	gcs    *gcsemu.Server
	client *storage.Client
	pg     *postgres.Server
	dbURL  string
}

func newFixture(t *testing.T, withDB bool) *fixture {
	t.Helper()
	g, err := gcsemu.Start(gcsemu.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	c, err := g.Client(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	for _, b := range []string{dataBucket, uploadBucket, backupBucket} {
		g.Fake().CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: b})
	}
	f := &fixture{gcs: g, client: c}
	if withDB {
		f.pg = postgres.StartForTest(t, postgres.Options{})
		if err := f.pg.CreateDatabase(context.Background(), "app"); err != nil {
			t.Fatal(err)
		}
		f.dbURL = f.pg.URL("app")
	}
	return f
}

func (f *fixture) runner() *backup.Runner {
	return &backup.Runner{Storage: f.client, Budget: 200 * time.Millisecond, Getenv: func(k string) string {
		if k == "DATABASE_URL" {
			return f.dbURL
		}
		return ""
	}}
}

func (f *fixture) put(t *testing.T, bucket, name, content string) {
	t.Helper()
	w := f.client.Bucket(bucket).Object(name).NewWriter(context.Background())
	io.WriteString(w, content)
	if err := w.Close(); err != nil {
		t.Fatalf("put gs://%s/%s: %v", bucket, name, err)
	}
}

// objects returns name -> content of every object in bucket.
func (f *fixture) objects(t *testing.T, bucket string) map[string]string {
	t.Helper()
	out := map[string]string{}
	attrs, _, err := f.gcs.Fake().ListObjectsWithOptions(bucket, fakestorage.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range attrs {
		o, err := f.gcs.Fake().GetObject(bucket, a.Name)
		if err != nil {
			t.Fatal(err)
		}
		out[a.Name] = string(o.Content)
	}
	return out
}

func (f *fixture) exec(t *testing.T, sql string, args ...any) {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), f.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// dbChecksum is an md5 over every table's rows, in a fixed order.
func (f *fixture) dbChecksum(t *testing.T) string {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), f.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var sum string
	err = conn.QueryRow(context.Background(), `SELECT
		coalesce((SELECT md5(string_agg(u::text, '|' ORDER BY email)) FROM users u), 'none') || '/' ||
		coalesce((SELECT md5(string_agg(b::text, '|' ORDER BY id)) FROM blobs b), 'none')`).Scan(&sum)
	if err != nil {
		t.Fatalf("checksum: %v", err)
	}
	return sum
}

func (f *fixture) seed(t *testing.T, objects int) {
	t.Helper()
	for i := range objects {
		f.put(t, dataBucket, fmt.Sprintf("users/u%04d@example.com.json", i), fmt.Sprintf(`{"n":%d,"name":"user %d"}`, i, i))
	}
	f.put(t, dataBucket, "other/not-in-backup.txt", "outside the source prefix")
	f.put(t, uploadBucket, "avatars/a.png", "\x89PNG\x00\x01binary")
	if f.pg != nil {
		f.exec(t, `CREATE TABLE users (email text PRIMARY KEY, data jsonb NOT NULL)`)
		f.exec(t, `CREATE TABLE blobs (id int PRIMARY KEY, body bytea)`)
		f.exec(t, `INSERT INTO users SELECT 'u' || g || '@example.com', jsonb_build_object('n', g, 'name', '使用者 ' || g) FROM generate_series(1, 500) g`)
		f.exec(t, `INSERT INTO blobs SELECT g, decode(md5(g::text), 'hex') FROM generate_series(1, 200) g`)
	}
}

// run calls Backup until it is done, as the chain's continuations do, and
// returns the final state.
func run(t *testing.T, r *backup.Runner, svc *policy.Service, ro *rollout.Rollout) (rollout.Backup, error) {
	t.Helper()
	for n := 0; n < 1000; n++ {
		b, done, err := r.Backup(context.Background(), svc, ro)
		if err != nil {
			return b, err
		}
		ro.Backup = &b
		if done {
			return b, nil
		}
	}
	t.Fatal("backup never finished")
	return rollout.Backup{}, nil
}

func newRollout(id string) *rollout.Rollout {
	return &rollout.Rollout{ID: id, Image: "local.dev/ai-square/web@sha256:" + strings.Repeat("1", 64), Phase: rollout.BackingUp}
}

func TestRoundTrip(t *testing.T) {
	f := newFixture(t, true)
	f.seed(t, 60)
	svc := testPolicy(t, "postgres")
	seededObjects := f.objects(t, dataBucket)
	seededUploads := f.objects(t, uploadBucket)
	seededDB := f.dbChecksum(t)

	r := f.runner()
	b, err := run(t, r, svc, newRollout("ai-square-aaaa"))
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	if b.Step != backup.StepDone || b.Objects != 61 || b.Manifest == "" || !strings.HasSuffix(b.Database, backup.DumpObject) || b.Bytes == 0 {
		t.Fatalf("backup state = %+v", b)
	}

	// Change, delete and add rows and objects.
	f.put(t, dataBucket, "users/u0001@example.com.json", `{"changed":true}`)
	if err := f.client.Bucket(dataBucket).Object("users/u0002@example.com.json").Delete(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.put(t, dataBucket, "users/new@example.com.json", `{"new":true}`)
	f.put(t, uploadBucket, "avatars/a.png", "overwritten")
	f.exec(t, `UPDATE users SET data = '{"changed":true}' WHERE email = 'u1@example.com'`)
	f.exec(t, `DELETE FROM users WHERE email LIKE 'u2%'`)
	f.exec(t, `INSERT INTO users VALUES ('new@example.com', '{}')`)
	f.exec(t, `DROP TABLE blobs`)
	mutatedObjects, mutatedDB := f.objects(t, dataBucket), f.dbChecksumOrDropped(t)

	s, err := r.Find(context.Background(), svc, "")
	if err != nil || s.Rollout != "ai-square-aaaa" || s.Objects != 61 || s.Database == "" {
		t.Fatalf("Find = %+v, %v", s, err)
	}
	// A dry run changes nothing.
	rep, err := r.Restore(context.Background(), svc, s, backup.RestoreOptions{Storage: true, Database: true, DryRun: true, DeleteNew: true})
	if err != nil {
		t.Fatalf("dry run: %v", err)
	}
	if len(rep.Storage.Restore) != 3 || len(rep.Storage.New) != 1 || rep.Database == "" {
		t.Errorf("dry-run plan = %+v, database %q; want 3 to restore, 1 new", rep.Storage, rep.Database)
	}
	if got := f.objects(t, dataBucket); !equalMaps(got, mutatedObjects) || f.dbChecksumOrDropped(t) != mutatedDB {
		t.Fatalf("the dry run changed something")
	}

	if _, err := r.Restore(context.Background(), svc, s, backup.RestoreOptions{Storage: true, Database: true, DeleteNew: true}); err != nil {
		t.Fatalf("restore: %v", err)
	}
	if got := f.objects(t, dataBucket); !equalMaps(got, seededObjects) {
		t.Errorf("objects after restore differ from the seed:\n got %v\nwant %v", keys(got), keys(seededObjects))
	}
	if got := f.objects(t, uploadBucket); !equalMaps(got, seededUploads) {
		t.Errorf("uploads after restore = %v, want %v", got, seededUploads)
	}
	if got := f.dbChecksum(t); got != seededDB {
		t.Errorf("database checksum after restore = %s, want %s", got, seededDB)
	}
}

func (f *fixture) dbChecksumOrDropped(t *testing.T) string {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), f.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var sum string
	if err := conn.QueryRow(context.Background(), `SELECT md5(string_agg(u::text, '|' ORDER BY email)) FROM users u`).Scan(&sum); err != nil {
		t.Fatal(err)
	}
	return sum
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestKilledPastHalfway: a backup of 1,000 objects killed once more than
// half is copied and delivered again from the state it had before (a crash
// keeps nothing of the chunk in flight) completes; each object is rewritten
// at most twice, some rewrites meet 412, and the manifest verifies.
func TestKilledPastHalfway(t *testing.T) {
	f := newFixture(t, false)
	f.seed(t, 1000)
	svc := testPolicy(t, "none")
	r := f.runner()
	r.Budget = time.Minute // one chunk would do it all
	ro := newRollout("ai-square-kill")

	ctx, kill := context.WithCancel(context.Background())
	var killedAt atomic.Int64
	go func() {
		for ctx.Err() == nil {
			if n := f.gcs.Counters().RewrittenObjects(); n >= 600 {
				killedAt.Store(int64(n))
				kill()
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	_, _, err := r.Backup(ctx, svc, ro) // killed: its result is lost
	kill()
	if err == nil || killedAt.Load() == 0 {
		t.Fatalf("the first chunk was not killed (err %v, killed at %d)", err, killedAt.Load())
	}
	ro.Backup = nil // the state as persisted before the crash
	b, err := run(t, r, svc, ro)
	if err != nil {
		t.Fatalf("redelivered backup: %v", err)
	}
	if b.Objects != 1001 || b.Step != backup.StepDone {
		t.Fatalf("backup = %+v, want 1001 objects done", b)
	}
	c := f.gcs.Counters()
	most := 0
	for i := range 1000 {
		name := fmt.Sprintf("ai-square/ai-square-kill/objects/%s/users/u%04d@example.com.json", dataBucket, i)
		n := c.Rewrites(name)
		if n == 0 || n > 2 {
			t.Errorf("%s rewritten %d times, want 1 or 2", name, n)
		}
		most = max(most, n)
	}
	if c.PreconditionFailures() == 0 {
		t.Errorf("no 412: the redelivery did not meet the copies of the killed chunk")
	}
	t.Logf("killed after %d rewrites; then %d precondition failures (412); most rewrites of one object: %d", killedAt.Load(), c.PreconditionFailures(), most)
}

// TestVerificationAndOutages: a corrupted copy or a truncated dump fails the
// backup for good; unreachable storage or database is a transient error.
func TestVerificationAndOutages(t *testing.T) {
	f := newFixture(t, true)
	f.seed(t, 20)
	svc := testPolicy(t, "postgres")
	r := f.runner()

	// Corrupt a copy just before verification.
	ro := newRollout("ai-square-corrupt")
	b := stepUntil(t, r, svc, ro, backup.StepVerify)
	if err := f.gcs.CorruptObject(backupBucket, "ai-square/ai-square-corrupt/objects/"+dataBucket+"/users/u0003@example.com.json"); err != nil {
		t.Fatal(err)
	}
	_, err := run(t, r, svc, ro)
	if !errors.Is(err, backup.ErrFailed) || !strings.Contains(err.Error(), "u0003") {
		t.Errorf("verify with a corrupted copy = %v, want ErrBackupFailed naming it", err)
	}
	_ = b

	// Truncate the dump just before verification.
	ro = newRollout("ai-square-truncated")
	stepUntil(t, r, svc, ro, backup.StepVerify)
	dump := "ai-square/ai-square-truncated/" + backup.DumpObject
	obj, err := f.gcs.Fake().GetObject(backupBucket, dump)
	if err != nil {
		t.Fatal(err)
	}
	f.put(t, backupBucket, dump, string(obj.Content[:len(obj.Content)/2]))
	_, err = run(t, r, svc, ro)
	if !errors.Is(err, backup.ErrFailed) {
		t.Errorf("verify with a truncated dump = %v, want ErrBackupFailed", err)
	}

	// Storage unreachable: transient, and quick.
	f.gcs.SetDown(true)
	start := time.Now()
	_, _, err = r.Backup(context.Background(), svc, newRollout("ai-square-down"))
	f.gcs.SetDown(false)
	if err == nil || errors.Is(err, backup.ErrFailed) || time.Since(start) > 30*time.Second {
		t.Errorf("backup with storage down = %v after %s, want a transient error", err, time.Since(start))
	}

	// Database down: transient.
	ro = newRollout("ai-square-dbdown")
	stepUntil(t, r, svc, ro, backup.StepDatabase)
	f.dbURL = "postgres://postgres@127.0.0.1:1/app?sslmode=disable"
	_, _, err = r.Backup(context.Background(), svc, ro)
	if err == nil || errors.Is(err, backup.ErrFailed) {
		t.Errorf("backup with the database down = %v, want a transient error", err)
	}
}

// stepUntil runs backup steps until the next step to run is step.
func stepUntil(t *testing.T, r *backup.Runner, svc *policy.Service, ro *rollout.Rollout, step string) rollout.Backup {
	t.Helper()
	for n := 0; n < 100; n++ {
		if ro.Backup != nil && ro.Backup.Step == step {
			return *ro.Backup
		}
		b, _, err := r.Backup(context.Background(), svc, ro)
		if err != nil {
			t.Fatalf("backup step: %v", err)
		}
		ro.Backup = &b
	}
	t.Fatalf("never reached step %s", step)
	return rollout.Backup{}
}

// TestCloudSQL runs the Cloud SQL driver through the runner against the
// local Cloud SQL Admin server: the export is started once, followed across
// chunks, verified; an operation error fails the backup.
func TestCloudSQL(t *testing.T) {
	f := newFixture(t, false)
	f.seed(t, 5)
	svc := testPolicy(t, "cloudsql")
	var exports atomic.Int32
	fail := atomic.Bool{}
	emu, err := sqladminemu.Start(sqladminemu.Options{Duration: 300 * time.Millisecond, Export: func(ctx context.Context, instance, database, uri string) error {
		exports.Add(1)
		if fail.Load() {
			return errors.New("disk full")
		}
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		fmt.Fprintf(zw, "-- export of %s\nCREATE TABLE users (email text);\n", database)
		zw.Close()
		name := strings.TrimPrefix(uri, "gs://"+backupBucket+"/")
		f.put(t, backupBucket, name, buf.String())
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	r := f.runner()
	r.Budget = 50 * time.Millisecond // shorter than the export: it is followed across chunks
	r.CloudSQL = func(ctx context.Context, project, instance string) (*cloudsql.Driver, error) {
		d, err := cloudsql.New(ctx, project, instance, sqladminemuOptions(emu)...)
		if d != nil {
			d.PollInterval = 20 * time.Millisecond
		}
		return d, err
	}
	b, err := run(t, r, svc, newRollout("ai-square-csql"))
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	if !strings.HasSuffix(b.Database, backup.ExportObject) || b.Operation == "" || exports.Load() != 1 {
		t.Errorf("backup = %+v after %d export calls, want one export followed to the end", b, exports.Load())
	}
	fail.Store(true)
	_, err = run(t, r, svc, newRollout("ai-square-csql-fail"))
	if !errors.Is(err, backup.ErrFailed) || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("backup with a failing export = %v, want ErrBackupFailed with the reason", err)
	}
}

func TestPrune(t *testing.T) {
	f := newFixture(t, false)
	f.seed(t, 2)
	svc := testPolicy(t, "none")
	r := f.runner()
	now := time.Now()
	for i, id := range []string{"ai-square-old1", "ai-square-old2", "ai-square-new1", "ai-square-new2"} {
		r.Now = func() time.Time { return now.Add(time.Duration(i-4) * time.Hour) }
		if _, err := run(t, r, svc, newRollout(id)); err != nil {
			t.Fatal(err)
		}
	}
	r.Now = func() time.Time { return now }
	list, err := r.List(context.Background(), svc)
	if err != nil || len(list) != 4 || list[0].Rollout != "ai-square-new2" {
		t.Fatalf("List = %v, %v", list, err)
	}
	would, err := r.Prune(context.Background(), svc, map[string]bool{"ai-square-old1": true}, true)
	if err != nil || len(would) != 1 || would[0].Rollout != "ai-square-old2" {
		t.Fatalf("dry-run prune = %v, %v; want old2 (keep 2, old1 protected)", would, err)
	}
	if list, _ := r.List(context.Background(), svc); len(list) != 4 {
		t.Fatalf("a dry-run prune deleted something")
	}
	if _, err := r.Prune(context.Background(), svc, nil, false); err != nil {
		t.Fatal(err)
	}
	list, _ = r.List(context.Background(), svc)
	if len(list) != 2 || list[1].Rollout != "ai-square-new1" {
		t.Errorf("after prune: %v, want the two newest", list)
	}
}

func sqladminemuOptions(s *sqladminemu.Server) []option.ClientOption {
	return []option.ClientOption{option.WithEndpoint(strings.TrimSuffix(s.URL(), "/") + "/"), option.WithoutAuthentication()}
}

// TestRestoreChecksTheWholeBackupFirst: a backup damaged after it was taken
// (one copy overwritten, or the dump truncated) restores nothing, not even
// the parts that are intact; before the fix the copies went back first and
// the check came after, leaving the corrupted copy live.
func TestRestoreChecksTheWholeBackupFirst(t *testing.T) {
	f := newFixture(t, true)
	f.seed(t, 10)
	svc := testPolicy(t, "postgres")
	r := f.runner()
	if _, err := run(t, r, svc, newRollout("ai-square-damaged")); err != nil {
		t.Fatalf("backup: %v", err)
	}
	s, err := r.Find(context.Background(), svc, "ai-square-damaged")
	if err != nil {
		t.Fatal(err)
	}
	// The live data moves on: the restore has objects and rows to put back.
	f.put(t, dataBucket, "users/u0003@example.com.json", `{"live":"after the backup"}`)
	f.put(t, dataBucket, "users/u0004@example.com.json", `{"live":"after the backup"}`)
	f.exec(t, `UPDATE users SET data = '{"live":true}' WHERE email = 'u1@example.com'`)
	liveObjects, liveDB := f.objects(t, dataBucket), f.dbChecksum(t)
	prefix := "ai-square/ai-square-damaged/"

	// One copy overwritten in the backup bucket.
	copyName := prefix + "objects/" + dataBucket + "/users/u0003@example.com.json"
	original, err := f.gcs.Fake().GetObject(backupBucket, copyName)
	if err != nil {
		t.Fatal(err)
	}
	f.put(t, backupBucket, copyName, `{"n":3,"name":"tampered"}`)
	for _, o := range []backup.RestoreOptions{
		{Storage: true},
		{Storage: true, Database: true},
		{Storage: true, DryRun: true},
	} {
		_, err := r.Restore(context.Background(), svc, s, o)
		if !errors.Is(err, backup.ErrBackupDamaged) || !strings.Contains(err.Error(), "u0003") {
			t.Errorf("restore %+v of a backup with an overwritten copy = %v, want ErrBackupDamaged naming it", o, err)
		}
		if got := f.objects(t, dataBucket); !equalMaps(got, liveObjects) {
			t.Fatalf("restore %+v of a damaged backup changed the live objects: u0003 = %q, u0004 = %q",
				o, got["users/u0003@example.com.json"], got["users/u0004@example.com.json"])
		}
		if f.dbChecksum(t) != liveDB {
			t.Fatalf("restore %+v of a damaged backup changed the database", o)
		}
	}
	f.put(t, backupBucket, copyName, string(original.Content))

	// The dump truncated: neither the database nor the objects change.
	dump := prefix + backup.DumpObject
	obj, err := f.gcs.Fake().GetObject(backupBucket, dump)
	if err != nil {
		t.Fatal(err)
	}
	f.put(t, backupBucket, dump, string(obj.Content[:len(obj.Content)/2]))
	_, err = r.Restore(context.Background(), svc, s, backup.RestoreOptions{Storage: true, Database: true})
	if !errors.Is(err, backup.ErrBackupDamaged) {
		t.Errorf("restore with a truncated dump = %v, want ErrBackupDamaged", err)
	}
	if got := f.objects(t, dataBucket); !equalMaps(got, liveObjects) || f.dbChecksum(t) != liveDB {
		t.Fatalf("restore with a truncated dump changed the live data")
	}
	f.put(t, backupBucket, dump, string(obj.Content))

	// Intact again: the restore goes through.
	if _, err := r.Restore(context.Background(), svc, s, backup.RestoreOptions{Storage: true, Database: true}); err != nil {
		t.Fatalf("restore of the intact backup: %v", err)
	}
	if got := f.objects(t, dataBucket)["users/u0003@example.com.json"]; got != `{"n":3,"name":"user 3"}` {
		t.Errorf("u0003 after the restore = %q", got)
	}
}
