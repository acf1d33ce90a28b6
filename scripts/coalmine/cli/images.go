package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"github.com/ai-square/coalmine/infra/local/cloud"
	"github.com/ai-square/coalmine/shared/registry"
	"github.com/ai-square/coalmine/shared/release"
)

// releaseImage is the IMAGE@DIGEST of `release SERVICE IMAGE@DIGEST`.
func releaseImage(fs *flag.FlagSet) (string, error) {
	if fs.NArg() != 2 {
		return "", usagef("want SERVICE and IMAGE@DIGEST")
	}
	ref, err := digestRef(fs.Arg(1))
	if err != nil {
		return "", err
	}
	return ref.Repository + "@" + ref.Digest, nil
}

// images is the registry of the target's images: the local cloud's, or
// the image's own registry (Artifact Registry).
func (t *target) images() release.Images {
	if t.registry != "" {
		return cloud.DirImages(t.registry)
	}
	return registry.New()
}

// checkImage refuses an image that is not in its registry, or whose
// registry cannot tell.
func (t *target) checkImage(ctx context.Context, image string) error {
	err := t.images().Exists(ctx, image)
	switch {
	case errors.Is(err, release.ErrImageNotFound):
		return fmt.Errorf("%w; nothing published", err)
	case err != nil:
		return fmt.Errorf("cannot tell whether the image is in its registry; nothing published: %w", err)
	}
	return nil
}
