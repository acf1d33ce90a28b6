package e2e

import (
	"context"
	"errors"
	"strings"
	"testing"

	"google.golang.org/api/iterator"

	"github.com/ai-square/coalmine/events"
	"github.com/ai-square/coalmine/infra/local/cloud"
	"github.com/ai-square/coalmine/infra/local/pubsubemu"
	"github.com/ai-square/coalmine/infra/local/runemu"
	"github.com/ai-square/coalmine/shared/rollout"
)

// imagePolicy is testPolicy with a Cloud Storage backup: a release that
// is claimed leaves objects in the backup bucket.
const imagePolicy = `
services:
  - name: ai-square
    project: local-project
    region: local
    images: [local.dev/ai-square/web]
    stages:
      - {percent: 10, bake: 1s}
      - {percent: 100}
    windows:
      deny: []
    backup:
      storage:
        sources: [{bucket: ai-square-user-data}]
      target: {bucket: coalmine-backups, prefix: ai-square/}
`

// TestReleaseChecksTheRegistry: a release of a digest that is not in the
// registry is refused before any work, by the Backup function
// (acknowledged, no claim, no backup) and by the CLI (exit 1; that it
// publishes nothing is checked in scripts/coalmine/cli); a release of an
// image that is there starts a rollout.
func TestReleaseChecksTheRegistry(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend pubsubemu.Backend) {
		h := start(t, backend, options{policy: imagePolicy})
		before := h.view()
		unknown := repo + "@sha256:" + strings.Repeat("0d", 32)
		releaseSub := "coalmine-backup-" + events.TopicRelease

		// A release command for it (published by a CLI that does not
		// check, or for a push whose image was deleted since) is refused
		// and acknowledged by Backup.
		h.publishCommand(events.Command{Type: events.CommandRelease, Service: service, Image: unknown, Step: events.StepRelease, Actor: "test"}, 1)
		h.waitFor("the release acknowledged", func(view) bool {
			return h.cloud.Bridge.Stats().Subscriptions[releaseSub].Acks >= 1
		})
		st := h.cloud.Bridge.Stats()
		if got := st.Subscriptions[releaseSub]; got.Failures != 0 {
			t.Errorf("release subscription %+v, want the command acked at its first delivery", got)
		}
		if !h.logged(events.FunctionBackup, "not in the registry") {
			t.Errorf("Backup did not log the refusal")
		}
		after := h.view()
		if after.state.Generation != before.state.Generation || after.state.Rollout != nil {
			t.Errorf("state after the refused release: generation %d → %d, rollout %+v; want it unchanged", before.state.Generation, after.state.Generation, after.state.Rollout)
		}
		if got := st.Subscriptions["coalmine-backup-"+events.TopicBackup].Deliveries + st.Subscriptions["coalmine-deploy-"+events.TopicDeploy].Deliveries; got != 0 {
			t.Errorf("%d backup or deploy commands delivered, want none", got)
		}
		if objs := h.objects("coalmine-backups"); len(objs) != 0 {
			t.Errorf("backup bucket holds %v, want nothing", objs)
		}

		out, err := h.tryCLI("release", service, unknown)
		if err == nil {
			t.Errorf("coalmine release %s: exit 0 (%q), want a refusal", unknown, out)
		} else {
			for _, want := range []string{"exit 1", unknown, "not in the registry", cloud.ImagesDir(h.cloud.Dir)} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("coalmine release %s: %v; want it to mention %q", unknown, err, want)
				}
			}
		}

		// An image in the registry (stored as `coalmine push` stores it,
		// without a notification) is released.
		known := repo + "@sha256:" + strings.Repeat("5e", 32)
		if err := runemu.WriteImage(cloud.ImagesDir(h.cloud.Dir), known, runemu.Image{}); err != nil {
			t.Fatal(err)
		}
		h.cli("release", service, known)
		v := h.waitPhase(rollout.Progressing, 1)
		if got := v.state.Rollout.Image; got != known {
			t.Errorf("rollout image %q, want %q", got, known)
		}
	})
}

// objects lists a bucket's object names.
func (h *harness) objects(bucket string) []string {
	h.t.Helper()
	var out []string
	it := h.cloud.StorageClient.Bucket(bucket).Objects(context.Background(), nil)
	for {
		o, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return out
		}
		if err != nil {
			h.t.Fatalf("list %s: %v", bucket, err)
		}
		out = append(out, o.Name)
	}
}
