package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ai-square/coalmine/infra/local/runemu"
)

func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	code = Main(context.Background(), args, &o, &e)
	return code, o.String(), e.String()
}

func TestEveryCommandHasHelp(t *testing.T) {
	for _, c := range commands {
		args := append(strings.Fields(c.name), "--help")
		code, _, stderr := runCLI(t, args...)
		if code != 0 || !strings.Contains(stderr, "Usage: coalmine "+c.name) || !strings.Contains(stderr, c.summary) {
			t.Errorf("coalmine %s --help: exit %d, output %q", c.name, code, stderr)
		}
		code, stdout, _ := runCLI(t, append([]string{"help"}, strings.Fields(c.name)...)...)
		if code != 0 || !strings.Contains(stdout, "Usage: coalmine "+c.name) {
			t.Errorf("coalmine help %s: exit %d, output %q", c.name, code, stdout)
		}
	}
	code, stdout, _ := runCLI(t, "help")
	if code != 0 || !strings.Contains(stdout, "promote") {
		t.Errorf("coalmine help: exit %d, %q", code, stdout)
	}
}

func TestUsageErrors(t *testing.T) {
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policy, []byte("services:\n  - {name: web, project: my-project, region: asia-east1, images: [local.dev/x/web], backup: {required: false}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args     []string
		code     int
		mentions string
	}{
		{nil, 2, "Usage"},
		{[]string{"launch"}, 2, `unknown command "launch"`},
		{[]string{"local"}, 2, "which subcommand"},
		{[]string{"push"}, 2, "missing IMAGE"},
		{[]string{"push", "local.dev/x/web:v1", "--error-rate", "2"}, 2, "not a fraction"},
		{[]string{"push", "local.dev/x/web@sha256:" + strings.Repeat("a", 64)}, 2, "has a digest"},
		{[]string{"--dir", dir, "--config", policy, "push", "local.dev/x/web:v1"}, 1, "needs a local cloud"},
		{[]string{"--dir", dir, "promote"}, 2, "missing SERVICE"},
		{[]string{"--dir", dir, "promote", "web"}, 1, "no policy"},
		{[]string{"--dir", dir, "--config", policy, "promote", "nope"}, 1, `service "nope" is not in the policy (services: web)`},
		{[]string{"status", "a", "b"}, 2, `unexpected argument "b"`},
		{[]string{"release", "web"}, 2, "missing IMAGE@DIGEST"},
	}
	for _, tt := range tests {
		code, _, stderr := runCLI(t, tt.args...)
		if code != tt.code || !strings.Contains(stderr, tt.mentions) {
			t.Errorf("coalmine %v: exit %d, stderr %q; want exit %d mentioning %q", tt.args, code, stderr, tt.code, tt.mentions)
		}
	}
}

func TestPositional(t *testing.T) {
	tests := []struct {
		usage    string
		names    []string
		min, max int
	}{
		{"", nil, 0, 0},
		{"SERVICE", []string{"SERVICE"}, 1, 1},
		{"SERVICE IMAGE@DIGEST", []string{"SERVICE", "IMAGE@DIGEST"}, 2, 2},
		{"[SERVICE] [--yes]", []string{"[SERVICE]"}, 0, 1},
		{"IMAGE [--error-rate R] [--env KEY=value]...", []string{"IMAGE"}, 1, 1},
		{"[--dir DIR] [--pubsub pstest|gcloud|external]", nil, 0, 0},
		{"SERVICE [PATH]...", []string{"SERVICE", "[PATH]..."}, 1, -1},
		{"FILE...", []string{"FILE..."}, 1, -1},
		{"[A [B]]", []string{"[A]", "[B]"}, 0, 2},
	}
	for _, tt := range tests {
		names, least, most := positional(tt.usage)
		if !slices.Equal(names, tt.names) || least != tt.min || most != tt.max {
			t.Errorf("positional(%q) = %q, %d, %d; want %q, %d, %d", tt.usage, names, least, most, tt.names, tt.min, tt.max)
		}
	}
}

func TestSplitImage(t *testing.T) {
	tests := []struct{ in, repo, tag string }{
		{"local.dev/ai-square/web:v2", "local.dev/ai-square/web", "v2"},
		{"local.dev/ai-square/web", "local.dev/ai-square/web", "latest"},
		{"localhost:5000/web:1.0", "localhost:5000/web", "1.0"},
	}
	for _, tt := range tests {
		repo, tag, err := splitImage(tt.in)
		if err != nil || repo != tt.repo || tag != tt.tag {
			t.Errorf("splitImage(%q) = %q, %q, %v; want %q, %q", tt.in, repo, tag, err, tt.repo, tt.tag)
		}
	}
	if _, _, err := splitImage("not an image"); err == nil {
		t.Errorf("splitImage accepted garbage")
	}
}

func TestDigestDependsOnTagAndSettings(t *testing.T) {
	a := digestOf("local.dev/x/web", "v1", imageWith(nil))
	if a != digestOf("local.dev/x/web", "v1", imageWith(nil)) {
		t.Errorf("digest is not deterministic")
	}
	if a == digestOf("local.dev/x/web", "v2", imageWith(nil)) || a == digestOf("local.dev/x/web", "v1", imageWith(map[string]string{"A": "1"})) {
		t.Errorf("different images share a digest")
	}
	if !strings.HasPrefix(a, "sha256:") || len(a) != 71 {
		t.Errorf("digest %q is not sha256:64hex", a)
	}
}

func imageWith(env map[string]string) runemu.Image { return runemu.Image{Env: env} }

func TestInterleaveFlagsAfterArguments(t *testing.T) {
	c := find("push")
	a := &app{stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}}
	fs := newFlagSet(a, c)
	if err := fs.Parse(interleave(fs, []string{"local.dev/x/web:v1", "--fail-start", "--latency-ms", "20"})); err != nil {
		t.Fatal(err)
	}
	if fs.NArg() != 1 || fs.Arg(0) != "local.dev/x/web:v1" || fs.Lookup("fail-start").Value.String() != "true" || fs.Lookup("latency-ms").Value.String() != "20" {
		t.Errorf("parsed args %v, fail-start %s, latency %s", fs.Args(), fs.Lookup("fail-start").Value, fs.Lookup("latency-ms").Value)
	}
}
