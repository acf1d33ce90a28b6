package release_test

import (
	"os"
	"testing"

	"github.com/ai-square/coalmine/infra/local/sampleapp"
)

// TestMain: the Cloud Run emulator runs revisions as this test binary.
func TestMain(m *testing.M) {
	sampleapp.RunIfChild()
	os.Exit(m.Run())
}
