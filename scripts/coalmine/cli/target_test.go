package cli

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/ai-square/coalmine/infra/local/cloud"
	"github.com/ai-square/coalmine/shared/cloudrun"
)

func TestStaleLocalEnvSaysTheLocalCloudIsNotRunning(t *testing.T) {
	dir := t.TempDir()
	dead := closedAddr(t)
	writeLocalEnv(t, dir, map[string]string{
		"PUBSUB_EMULATOR_HOST":    dead,
		cloudrun.EmulatorHostEnv:  dead,
		"STORAGE_EMULATOR_HOST":   dead,
		"COALMINE_LOCAL_REGISTRY": filepath.Join(dir, "images"),
	})
	for _, args := range [][]string{{"status"}, {"status", "web"}, {"promote", "web"}, {"push", testRepository + ":v1"}, {"backups", "list", "web"}, {"alerts"}} {
		code, _, stderr := runCLI(t, append([]string{"--dir", dir}, args...)...)
		for _, want := range []string{"nothing answers at " + dead, filepath.Join(dir, cloud.EnvFile), "the local cloud is not running", "coalmine local up"} {
			if code != 1 || !strings.Contains(stderr, want) {
				t.Errorf("coalmine %v with a stale local.env: exit %d, stderr %q; want exit 1 mentioning %q", args, code, stderr, want)
			}
		}
	}
}

func TestDeadEmulatorInTheEnvironment(t *testing.T) {
	dead := closedAddr(t)
	t.Setenv("PUBSUB_EMULATOR_HOST", dead)
	dir := t.TempDir()
	code, _, stderr := runCLI(t, "--dir", dir, "--config", writePolicy(t, dir), "promote", "web")
	for _, want := range []string{"nothing answers at " + dead, "PUBSUB_EMULATOR_HOST", "environment"} {
		if code != 1 || !strings.Contains(stderr, want) {
			t.Errorf("promote web with a dead PUBSUB_EMULATOR_HOST: exit %d, stderr %q; want exit 1 mentioning %q", code, stderr, want)
		}
	}
}
