package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/ai-square/coalmine/events"
	"github.com/ai-square/coalmine/infra/local/postgres"
	"github.com/ai-square/coalmine/infra/local/pubsubemu"
	"github.com/ai-square/coalmine/infra/local/sampleapp"
	"github.com/ai-square/coalmine/shared/backup"
	"github.com/ai-square/coalmine/shared/policy"
	"github.com/ai-square/coalmine/shared/release"
	"github.com/ai-square/coalmine/shared/rollout"
)

// dataPolicy is the AI Square policy: Cloud Storage user data and a
// PostgreSQL database backed up before every canary, the post-rollback
// sync hook.
const dataPolicy = `
services:
  - name: ai-square
    project: local-project
    region: local
    images: [local.dev/ai-square/web]
    stages:
      - {percent: 10, bake: 1s}
      - {percent: 30, bake: 1s}
      - {percent: 50, bake: 1s}
      - {percent: 100}
    windows:
      deny: []
    backup:
      storage:
        sources: [{bucket: ai-square-user-data}]
      database: {driver: postgres, urlEnv: DATABASE_URL, database: ai_square_db}
      target: {bucket: coalmine-backups, prefix: ai-square/}
    rollback:
      hook: {path: /internal/sync-gcs-from-postgres, method: POST, timeout: 30s}
    deadlines: {backup: 4s, retries: 1}
`

func userRequest(t *testing.T, method, url string, body string) (status int, store string, data map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	json.Unmarshal(b, &data)
	return resp.StatusCode, resp.Header.Get(sampleapp.HeaderUserStore), data
}

// TestMiniAISquare: a push of an image with USE_POSTGRES=true backs up,
// deploys and serves users from PostgreSQL at stage 1; a user written
// through the canary is readable through the stable revision after abort
// and the post-rollback hook.
func TestMiniAISquare(t *testing.T) {
	postgres.SkipIfUnavailable(t)
	forEachBackend(t, func(t *testing.T, backend pubsubemu.Backend) {
		h := start(t, backend, options{policy: dataPolicy})
		h.push(repo+":pg", "--env", "USE_POSTGRES=true")
		v := h.waitPhase(rollout.Progressing, 1)
		r := v.state.Rollout
		if b := r.Backup; b == nil || b.Step != backup.StepDone || b.Manifest == "" || b.Database == "" || b.Objects != 3 {
			t.Fatalf("rollout backup = %+v, want a verified backup of 3 objects and the database", b)
		}
		svc, _ := h.cloud.Policy.Service(service)
		sum, err := h.cloud.Backups.Find(context.Background(), svc, r.ID)
		if err != nil || !sum.Complete || sum.DatabaseBytes == 0 {
			t.Fatalf("backup summary = %+v, %v", sum, err)
		}
		canaryURL, stableURL := v.tagURI[rollout.TagCanary], v.tagURI[rollout.TagStable]
		if code, store, _ := userRequest(t, "GET", canaryURL+"/api/users/alice@example.com", ""); code != 200 || store != "postgres" {
			t.Errorf("canary GET alice: %d from %q, want 200 from postgres", code, store)
		}
		if code, store, _ := userRequest(t, "GET", canaryURL+"/api/users/bob@example.com", ""); code != 200 || store != "gcs-fallback" {
			t.Errorf("canary GET bob (not migrated): %d from %q, want 200 from gcs-fallback", code, store)
		}
		if code, store, _ := userRequest(t, "GET", stableURL+"/api/users/alice@example.com", ""); code != 200 || store != "gcs" {
			t.Errorf("stable GET alice: %d from %q, want 200 from gcs", code, store)
		}
		if code, store, _ := userRequest(t, "PUT", canaryURL+"/api/users/dave@example.com", `{"name":"Dave","progress":{"ai-literacy":0.5}}`); code != 200 || store != "postgres" {
			t.Fatalf("canary PUT dave: %d to %q, want 200 to postgres", code, store)
		}
		if code, _, _ := userRequest(t, "GET", stableURL+"/api/users/dave@example.com", ""); code != 404 {
			t.Errorf("stable GET dave before the rollback: %d, want 404 (written to PostgreSQL only)", code)
		}
		h.cli("abort", service)
		v = h.waitPhase(rollout.RolledBack, 1)
		code, store, data := userRequest(t, "GET", v.svc.GetUri()+"/api/users/dave@example.com", "")
		if code != 200 || store != "gcs" || data["name"] != "Dave" {
			t.Errorf("stable GET dave after the rollback: %d from %q, %v; want Dave from gcs", code, store, data)
		}
		if !h.logged(events.FunctionRollback, "post-rollback hook done") {
			t.Errorf("the Rollback function never reported the hook")
		}
		out := h.cli("backups", "list", service)
		if !strings.Contains(out, r.ID) || !strings.Contains(out, "complete") {
			t.Errorf("backups list:\n%s", out)
		}
	})
}

// TestBackupFailureBlocksDeploy: a corrupted copy, a truncated dump,
// unreachable storage and a database that is down each fail the rollout
// with the reason; no canary revision is created and the stable revision
// keeps 100%.
func TestBackupFailureBlocksDeploy(t *testing.T) {
	postgres.SkipIfUnavailable(t)
	// A backup that cannot be verified fails on its own; one that cannot
	// reach its sources is ended by the 4 s backup deadline. The first kind
	// gets a long deadline, so a slow machine cannot end it by the clock
	// before verification runs.
	cases := []struct {
		name   string
		before func(h *harness) // after start, before the push
		wrap   func(h **harness) func(release.Backuper) release.Backuper
		reason string
		slow   bool // no short backup deadline
	}{
		{name: "corrupted copy", wrap: beforeVerify(func(h *harness, loc backup.Location) error {
			return h.cloud.Storage.CorruptObject(loc.Bucket, loc.Prefix+"objects/ai-square-user-data/users/bob@example.com.json")
		}), reason: "does not match its manifest", slow: true},
		{name: "truncated dump", wrap: beforeVerify(func(h *harness, loc backup.Location) error {
			obj, err := h.cloud.Storage.Fake().GetObject(loc.Bucket, loc.Prefix+backup.DumpObject)
			if err != nil {
				return err
			}
			w := h.cloud.StorageClient.Bucket(loc.Bucket).Object(loc.Prefix + backup.DumpObject).NewWriter(context.Background())
			w.Write(obj.Content[:len(obj.Content)/3])
			return w.Close()
		}), reason: "dump", slow: true},
		{name: "storage unreachable", before: func(h *harness) { h.cloud.Storage.SetDown(true) }, reason: "backup did not finish"},
		{name: "database down", before: func(h *harness) { h.cloud.Postgres.Stop() }, reason: "backup did not finish"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var hp *harness
			o := options{policy: dataPolicy, ticks: true, sweep: everySecond}
			if tc.slow {
				o.policy = strings.Replace(dataPolicy, "deadlines: {backup: 4s, retries: 1}", "deadlines: {backup: 5m, retries: 1}", 1)
			}
			if tc.wrap != nil {
				o.wrapBackups = tc.wrap(&hp)
			}
			h := start(t, pubsubemu.BackendPstest, o)
			hp = h
			before := len(h.revisions())
			stable := h.view().tags[rollout.TagStable]
			if tc.before != nil {
				tc.before(h)
			}
			h.push(repo + ":blocked")
			v := h.waitPhase(rollout.Failed, 0)
			if !strings.Contains(v.state.Rollout.Reason, tc.reason) {
				t.Errorf("failure reason = %q, want it to mention %q", v.state.Rollout.Reason, tc.reason)
			}
			if v.state.Rollout.Canary != "" || len(h.revisions()) != before {
				t.Errorf("a canary was deployed: %q, %d revisions (had %d)", v.state.Rollout.Canary, len(h.revisions()), before)
			}
			if v.percent[stable] != 100 && !(stable == "" && len(v.percent) == 1) {
				t.Errorf("traffic = %v, want the stable revision at 100%%", v.percent)
			}
			t.Logf("failed: %s", v.state.Rollout.Reason)
		})
	}
}

// beforeVerify wraps the backup runner so that fault runs once, right
// before the verification step.
func beforeVerify(fault func(h *harness, loc backup.Location) error) func(h **harness) func(release.Backuper) release.Backuper {
	return func(hp **harness) func(release.Backuper) release.Backuper {
		return func(inner release.Backuper) release.Backuper {
			var once sync.Once
			return backuperFunc(func(ctx context.Context, svc *policy.Service, r *rollout.Rollout) (rollout.Backup, bool, error) {
				var err error
				if r.Backup != nil && r.Backup.Step == backup.StepVerify {
					once.Do(func() { err = fault(*hp, backup.Where(svc, r.ID)) })
				}
				if err != nil {
					return *r.Backup, false, fmt.Errorf("test fault: %w", err)
				}
				return inner.Backup(ctx, svc, r)
			})
		}
	}
}

type backuperFunc func(ctx context.Context, svc *policy.Service, r *rollout.Rollout) (rollout.Backup, bool, error)

func (f backuperFunc) Backup(ctx context.Context, svc *policy.Service, r *rollout.Rollout) (rollout.Backup, bool, error) {
	return f(ctx, svc, r)
}

// TestBackupNotRequired: with backup.required false, a backup that fails
// verification is reported and the deploy goes on.
func TestBackupNotRequired(t *testing.T) {
	postgres.SkipIfUnavailable(t)
	pol := strings.Replace(dataPolicy, "    backup:\n", "    backup:\n      required: false\n", 1)
	var hp *harness
	wrap := beforeVerify(func(h *harness, loc backup.Location) error {
		return h.cloud.Storage.CorruptObject(loc.Bucket, loc.Prefix+"objects/ai-square-user-data/users/bob@example.com.json")
	})
	h := start(t, pubsubemu.BackendPstest, options{policy: pol, wrapBackups: wrap(&hp)})
	hp = h
	h.push(repo + ":optional")
	v := h.waitPhase(rollout.Progressing, 1)
	if b := v.state.Rollout.Backup; b == nil || !strings.Contains(b.Skipped, "does not match its manifest") {
		t.Errorf("backup = %+v, want the verification failure recorded as skipped", b)
	}
}
