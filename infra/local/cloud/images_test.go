package cloud_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/ai-square/coalmine/infra/local/cloud"
	"github.com/ai-square/coalmine/infra/local/runemu"
	"github.com/ai-square/coalmine/shared/release"
)

func TestImages(t *testing.T) {
	dir := cloud.ImagesDir(t.TempDir())
	pushed := "local.dev/x/web@sha256:" + strings.Repeat("5e", 32)
	if err := runemu.WriteImage(dir, pushed, runemu.Image{}); err != nil {
		t.Fatal(err)
	}
	images := cloud.DirImages(dir)
	stable := "local.dev/x/web@sha256:" + strings.Repeat("57", 32)
	images.Registry.Register(stable, runemu.Image{})
	for _, image := range []string{pushed, stable} {
		if err := images.Exists(context.Background(), image); err != nil {
			t.Errorf("Exists(%s) = %v, want nil", image, err)
		}
	}
	unknown := "local.dev/x/web@sha256:" + strings.Repeat("0d", 32)
	err := images.Exists(context.Background(), unknown)
	if !errors.Is(err, release.ErrImageNotFound) {
		t.Fatalf("Exists(%s) = %v, want ErrImageNotFound", unknown, err)
	}
	for _, want := range []string{unknown, dir} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Exists(%s) = %q; want it to name %q", unknown, err, want)
		}
	}
}
