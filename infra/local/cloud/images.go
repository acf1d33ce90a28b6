package cloud

import (
	"context"
	"errors"
	"fmt"

	"github.com/ai-square/coalmine/infra/local/runemu"
	"github.com/ai-square/coalmine/shared/release"
)

// Images is the local cloud's image registry as release.Images: it holds
// the images `coalmine push` stored in Dir and those registered with
// Registry (the services' stable images).
type Images struct {
	Registry *runemu.Registry
	// Dir is the registry's directory (ImagesDir), for errors.
	Dir string
}

// DirImages is the registry of the local cloud whose images are in dir
// (ImagesDir), as a process other than the cloud's (the CLI) sees it.
func DirImages(dir string) Images {
	reg := runemu.NewRegistry()
	reg.SetDir(dir)
	return Images{Registry: reg, Dir: dir}
}

// Exists returns nil when image is registered, an error wrapping
// release.ErrImageNotFound when it is not.
func (i Images) Exists(_ context.Context, image string) error {
	_, err := i.Registry.Resolve(image)
	if errors.Is(err, runemu.ErrImageNotFound) {
		return fmt.Errorf("image %s: %w of the local cloud (%s): push it with coalmine push", image, release.ErrImageNotFound, i.Dir)
	}
	if err != nil {
		return fmt.Errorf("local image registry %s: %w", i.Dir, err)
	}
	return nil
}
