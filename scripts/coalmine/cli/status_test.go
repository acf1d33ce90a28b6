package cli

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/ai-square/coalmine/infra/local/cloud"
	"github.com/ai-square/coalmine/shared/cloudrun"
	"github.com/ai-square/coalmine/shared/metrics"
	"github.com/ai-square/coalmine/shared/release"
)

func TestStatusHistoryCount(t *testing.T) {
	dir := cloudRunWith(t, rolloutWith(20))
	tests := []struct {
		history     string
		code        int
		shows, hide []string
	}{
		{"-1", 2, []string{"--history -1", "0 or more"}, nil},
		{"0", 0, []string{"web-0123456789ab"}, []string{"history"}},
		{"3", 0, []string{"(entry 20)", "(entry 18)"}, []string{"(entry 17)"}},
		{"50", 0, []string{"(entry 20)", "(entry 1)"}, nil},
	}
	for _, tt := range tests {
		code, stdout, stderr := runCLI(t, "--dir", dir, "status", "web", "--history", tt.history)
		out := stdout + stderr
		if code != tt.code {
			t.Errorf("status web --history %s: exit %d, want %d; output %q", tt.history, code, tt.code, out)
			continue
		}
		for _, s := range tt.shows {
			if !strings.Contains(out, s) {
				t.Errorf("status web --history %s: output %q does not mention %q", tt.history, out, s)
			}
		}
		for _, s := range tt.hide {
			if strings.Contains(stdout, s) {
				t.Errorf("status web --history %s: output %q mentions %q", tt.history, stdout, s)
			}
		}
	}
}

func TestStatusEscapesControlCharacters(t *testing.T) {
	st := rolloutWith(1)
	st.Rollout.Reason = "gate \x1b[31mfailed\x1b[0m\a"
	st.Rollout.LastError = "revision web-00002 failed: container stderr: \x1b]0;pwned\a panic \u009b2J \u202eevil"
	st.History[0].Reason = "shifted \x1b[31m"
	st.History[0].Actor = "operator:\amallory"
	dir := cloudRunWith(t, st)
	code, stdout, stderr := runCLI(t, "--dir", dir, "status", "web")
	if code != 0 {
		t.Fatalf("status web: exit %d, stderr %q", code, stderr)
	}
	for _, raw := range []string{"\x1b", "\a", "\u009b", "\u202e"} {
		if strings.Contains(stdout, raw) {
			t.Errorf("status web printed the control character %q unescaped: %q", raw, stdout)
		}
	}
	for _, want := range []string{`gate \x1b[31mfailed\x1b[0m\a`, `container stderr: \x1b]0;pwned\a panic \u009b2J \u202eevil`, `(shifted \x1b[31m)`, `by operator:\amallory`} {
		if !strings.Contains(stdout, want) {
			t.Errorf("status web: output %q does not show %q", stdout, want)
		}
	}
}

// TestStatusWithoutALocalCloud: with no local.env, status needs only the policy
// (COALMINE_POLICY, or --config) and Cloud Run's endpoint: the service's project and region
// come from the policy, not from COALMINE_PROJECT or COALMINE_REGION. The Cloud Run emulator
// stands in for Google's endpoint (CLOUDRUN_EMULATOR_HOST unset: run.googleapis.com with
// Application Default Credentials).
func TestStatusWithoutALocalCloud(t *testing.T) {
	local, err := cloud.ReadEnv(filepath.Join(cloudRunWith(t, rolloutWith(1)), cloud.EnvFile))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir() // no local.env
	for k, v := range map[string]string{
		release.EnvPolicy: writePolicy(t, dir), cloudrun.EmulatorHostEnv: local[cloudrun.EmulatorHostEnv],
		release.EnvProject: "", release.EnvRegion: "", "PUBSUB_EMULATOR_HOST": "", metrics.EmulatorHostEnv: "",
	} {
		t.Setenv(k, v)
	}
	code, stdout, stderr := runCLI(t, "--dir", dir, "status", "web")
	if code != 0 || !strings.Contains(stdout, "web-0123456789ab") {
		t.Errorf("status web with only COALMINE_POLICY and CLOUDRUN_EMULATOR_HOST: exit %d, stdout %q, stderr %q; want exit 0 and the rollout", code, stdout, stderr)
	}
	t.Setenv(release.EnvPolicy, "")
	code, _, stderr = runCLI(t, "--dir", dir, "status", "web")
	if code != 1 || !strings.Contains(stderr, "no policy: pass --config FILE, set COALMINE_POLICY") {
		t.Errorf("status web with no policy: exit %d, stderr %q; want exit 1 asking for --config or COALMINE_POLICY", code, stderr)
	}
}
