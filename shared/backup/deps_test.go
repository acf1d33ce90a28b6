package backup_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestDoesNotImportRelease keeps the dependency one way: shared/release
// orchestrates rollouts and uses backups (release.Backuper); the backup
// packages must not import it back, not even for an error.
func TestDoesNotImportRelease(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command to list the imports with: %v", err)
	}
	out, err := exec.Command(goTool, "list", "-deps", "./...").Output()
	if err != nil {
		t.Fatalf("go list -deps ./...: %v", err)
	}
	const release = "github.com/ai-square/coalmine/shared/release"
	if deps := strings.Fields(string(out)); slices.Contains(deps, release) {
		t.Errorf("go list -deps ./shared/backup/... lists %s; want the backup packages not to depend on it", release)
	}
}
