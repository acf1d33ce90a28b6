package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	pb "cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/v2/pstest"

	"github.com/ai-square/coalmine/events"
	"github.com/ai-square/coalmine/infra/local/runemu"
)

func TestPushRefusesARepositoryNoServiceAllows(t *testing.T) {
	srv := pstest.NewServer()
	t.Cleanup(func() { srv.Close() })
	topic := "projects/" + runemu.DefaultProject + "/topics/" + events.TopicGCR
	if _, err := srv.GServer.CreateTopic(context.Background(), &pb.Topic{Name: topic}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	registry := filepath.Join(dir, "images")
	writeLocalEnv(t, dir, map[string]string{"PUBSUB_EMULATOR_HOST": srv.Addr, "COALMINE_LOCAL_REGISTRY": registry})

	code, stdout, stderr := runCLI(t, "--dir", dir, "push", "local.dev/x/other:v1")
	if code != 1 {
		t.Errorf("push local.dev/x/other:v1: exit %d, want 1; stdout %q, stderr %q", code, stdout, stderr)
	}
	for _, want := range []string{`"local.dev/x/other"`, "web: " + testRepository} {
		if !strings.Contains(stderr, want) {
			t.Errorf("push local.dev/x/other:v1: stderr %q does not mention %q", stderr, want)
		}
	}
	if got := len(srv.Messages()); got != 0 {
		t.Errorf("push of a repository no service allows published %d messages, want 0", got)
	}
	if entries, err := os.ReadDir(registry); err == nil && len(entries) > 0 {
		t.Errorf("push of a repository no service allows registered %d images, want 0", len(entries))
	}

	// The repository the policy allows is pushed as before.
	code, stdout, stderr = runCLI(t, "--dir", dir, "push", testRepository+":v1")
	if code != 0 || !strings.HasPrefix(stdout, testRepository+"@sha256:") {
		t.Errorf("push %s:v1: exit %d, stdout %q, stderr %q", testRepository, code, stdout, stderr)
	}
	if got := len(srv.Messages()); got != 1 {
		t.Errorf("push of an allowed repository published %d messages, want 1", got)
	}
}

func TestImageErrorsShowTheUsersText(t *testing.T) {
	tests := []struct{ image, mentions string }{
		{"web", `"web": want HOST/PATH`},
		{"docker.io", `"docker.io": want HOST/PATH, found no "/"`},
		{"local.dev/X/web", `"local.dev/X/web": invalid path component "X"`},
		{"local.dev//web", `"local.dev//web": invalid path component ""`},
		{"local.dev/x/web:", `"local.dev/x/web:": want 1 to 128 characters`},
		{"local.dev/x/web:-v1", `"local.dev/x/web:-v1": want 1 to 128 characters`},
		{"", `empty reference`},
		{"local.dev/" + strings.Repeat("Long", 50), `invalid path component`},
	}
	for _, tt := range tests {
		code, _, stderr := runCLI(t, "push", tt.image)
		msg, _, _ := strings.Cut(stderr, "\n") // the usage that follows says the tag defaults to latest
		if code != 2 || !strings.Contains(msg, tt.mentions) || strings.Contains(msg, "latest") {
			t.Errorf("push %q: exit %d, stderr %q; want exit 2 and an error mentioning %q, never latest", tt.image, code, stderr, tt.mentions)
		}
	}
}

func TestReleaseImageErrors(t *testing.T) {
	dir := cloudRunWith(t, rolloutWith(0))
	tests := []struct{ image, mentions string }{
		{testRepository + ":v2", `"local.dev/x/web:v2" has no digest`},
		{testRepository, `"local.dev/x/web" has no digest`},
		{testRepository + "@sha256:abc", `"local.dev/x/web@sha256:abc": want sha256:<64 lowercase hex digits>`},
		{"web@sha256:" + strings.Repeat("a", 64), `want HOST/PATH`},
	}
	for _, tt := range tests {
		code, _, stderr := runCLI(t, "--dir", dir, "release", "web", tt.image)
		if code != 2 || !strings.Contains(stderr, tt.mentions) || !strings.Contains(stderr, "Usage: coalmine release") {
			t.Errorf("release web %q: exit %d, stderr %q; want exit 2 mentioning %q", tt.image, code, stderr, tt.mentions)
		}
	}
}
