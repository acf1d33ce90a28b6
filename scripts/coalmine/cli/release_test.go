package cli

import (
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"cloud.google.com/go/pubsub/v2/pstest"
	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/ai-square/coalmine/infra/local/cloud"
	"github.com/ai-square/coalmine/infra/local/runemu"
	"github.com/ai-square/coalmine/shared/cloudrun"
	"github.com/ai-square/coalmine/shared/release"
)

// TestReleaseRefusesAnImageNotInTheRegistry: `coalmine release` of a
// digest the registry does not hold exits 1 naming the image and the
// registry, and publishes nothing: against a local cloud's registry and
// against a real registry server (the production check).
func TestReleaseRefusesAnImageNotInTheRegistry(t *testing.T) {
	remote := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(remote.Close)
	remoteHost := strings.TrimPrefix(remote.URL, "http://")
	tests := []struct {
		name     string
		repo     string
		local    bool
		registry string // how the error names the registry
	}{
		{name: "local cloud", repo: "local.dev/x/web", local: true},
		{name: "registry server", repo: remoteHost + "/x/web", registry: remoteHost},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			pubsub := pstest.NewServer()
			t.Cleanup(func() { pubsub.Close() })
			run, err := runemu.New(runemu.Options{Project: "my-project", Region: "asia-east1", Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { run.Close() })
			policy := filepath.Join(dir, "policy.yaml")
			pol := fmt.Sprintf("services:\n  - {name: web, project: my-project, region: asia-east1, images: [%s], backup: {required: false}}\n", tt.repo)
			if err := os.WriteFile(policy, []byte(pol), 0o644); err != nil {
				t.Fatal(err)
			}
			env := map[string]string{
				"PUBSUB_EMULATOR_HOST":   pubsub.Addr,
				cloudrun.EmulatorHostEnv: run.Addr(),
				release.EnvProject:       "my-project",
				release.EnvPolicy:        policy,
			}
			if tt.local {
				tt.registry = cloud.ImagesDir(dir)
				env["COALMINE_LOCAL_REGISTRY"] = tt.registry
				if err := runemu.WriteImage(tt.registry, tt.repo+"@sha256:"+strings.Repeat("5e", 32), runemu.Image{}); err != nil {
					t.Fatal(err)
				}
			}
			if err := cloud.WriteEnv(filepath.Join(dir, cloud.EnvFile), env); err != nil {
				t.Fatal(err)
			}

			image := tt.repo + "@sha256:" + strings.Repeat("0d", 32)
			code, stdout, stderr := runCLI(t, "--dir", dir, "release", "web", image)
			if code != 1 {
				t.Errorf("coalmine release web %s: exit %d (stdout %q), want 1", image, code, stdout)
			}
			for _, want := range []string{image, "not in the registry", tt.registry} {
				if !strings.Contains(stderr, want) {
					t.Errorf("coalmine release web %s: stderr %q; want it to mention %q", image, stderr, want)
				}
			}
			if msgs := pubsub.Messages(); len(msgs) != 0 {
				t.Errorf("%d messages published, want none: %q", len(msgs), msgs[0].Data)
			}
		})
	}
}
